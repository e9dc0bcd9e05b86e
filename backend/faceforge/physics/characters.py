"""Physics on a retargeted character: simulated on its FaceForge proxy, carried by the correspondence.

A character of any topology has no lattice of its own. Its FaceForge proxy (the identity fitted to
it, in FaceForge's topology, :func:`~faceforge.topology.transfer.proxy_rig`) is simulated with the
character's key values mapped to the FaceForge expressions its keys were made from; what physics
adds to the proxy's shape-key pose, ``delta = simulated - targets`` per frame, is carried to every
character vertex on the face through the correspondence (the barycentric point of the registered
template it lies on) and turned into the character's frame and units. The character's own keys
then make its pose and the carried correction adds the physics: lips the contact kept apart on
the proxy stay apart on the character, as far as the correspondence is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceforge.errors import FaceForgeError
from faceforge.progress import ProgressCallback

__all__ = ["CharacterMap", "proxy_head", "simulate_character", "source_values"]


@dataclass(frozen=True)
class CharacterMap:
    """Where each character vertex lies on the registered template, and the frames' relation.

    Attributes:
        faces: ``(V_c,)`` template triangle (index into the model's faces) under each vertex.
        weights: ``(V_c, 3)`` barycentric coordinates on it.
        on_face: ``(V_c,)`` bool, vertices the template covers (the others take no correction).
        to_character: ``(3, 3)`` displacements model frame (metres) -> character frame and units,
            as row vectors: ``d_character = d_model @ to_character``.
    """

    faces: np.ndarray
    weights: np.ndarray
    on_face: np.ndarray
    to_character: np.ndarray

    @classmethod
    def from_correspondence(cls, correspondence) -> CharacterMap:  # noqa: ANN001 - Correspondence
        at = correspondence.to_template
        return cls(
            at.faces.copy(), at.weights.copy(), correspondence.face.copy(), correspondence.model_to_character
        )

    def check(self, n_faces: int) -> None:
        """One clear error when the arrays do not fit together or the model's triangles."""
        n = len(self.faces)
        if self.weights.shape != (n, 3) or self.on_face.shape != (n,) or self.to_character.shape != (3, 3):
            raise FaceForgeError(
                "the character map needs faces (V,), weights (V, 3), on_face (V,) and a 3x3 frame map; got "
                f"{self.faces.shape}, {self.weights.shape}, {self.on_face.shape}, {self.to_character.shape}"
            )
        if n and (self.faces.min() < 0 or self.faces.max() >= n_faces):
            raise FaceForgeError(
                "the character map names triangles the face model does not have "
                "(retarget the character again with the loaded model)"
            )
        if not (np.isfinite(self.weights).all() and np.isfinite(self.to_character).all()):
            raise FaceForgeError("the character map has non-finite numbers")

    def carry(self, triangles: np.ndarray, displacements: np.ndarray) -> np.ndarray:
        """Model-frame displacements of the template ``(T, V_t, 3)`` -> the character's ``(T, V_c, 3)``."""
        corners = triangles[self.faces]  # (V_c, 3)
        d = np.einsum("tvkd,vk->tvd", displacements[:, corners], self.weights) @ self.to_character
        d[:, ~self.on_face] = 0.0
        return d


def source_values(
    values: np.ndarray, targets: Sequence[str], sources: Sequence[str]
) -> tuple[np.ndarray, list[str]]:
    """Per-frame values of the FaceForge expressions from the character's key values.

    Args:
        values: ``(T, K)`` values of the character's keys ``targets``.
        sources: the FaceForge expression of each target (a profile's sources).

    Returns:
        ``(T, E)`` values of the distinct sources (the mean where several keys share one, as the
        left and right halves of a split key do) and their names.
    """
    names = list(dict.fromkeys(sources))
    out = np.zeros((len(values), len(names)))
    for e, name in enumerate(names):
        columns = [k for k, s in enumerate(sources) if s == name]
        out[:, e] = np.asarray(values)[:, columns].mean(axis=1)
    return out, names


def simulate_character(
    model,  # noqa: ANN001 - FaceModel
    w_id: np.ndarray,
    sources: Sequence[str],
    values: np.ndarray,
    character_map: CharacterMap,
    physical_face=None,  # noqa: ANN001 - PhysicalFace of the proxy, built here when None
    resolution: float = 0.0068,
    contact: bool = True,
    gravity: np.ndarray | None = None,
    jaw_scale: float = 1.0,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, object]:
    """Simulate a character's animation on its FaceForge proxy and carry the physics onto it.

    Args:
        w_id: ``(r_id,)`` the identity fitted to the character.
        sources: ``E`` FaceForge expressions; values: ``(T, E)`` their values per frame.
        character_map: the character's correspondence (:class:`CharacterMap`).
        physical_face: the proxy's :class:`~faceforge.physics.simulate.PhysicalFace` (a caller that
            keeps it between calls passes it; it must be built on :func:`proxy_head`'s neutral).
        resolution: lattice spacing (m) when the physical face is built here.
        gravity: ``(3,)`` m/s^2 in the *character's* frame (turned into the model's).

    Returns:
        ``corrections (T, V_c, 3)`` to add to the character's shape-key pose (its units) and the
        proxy's :class:`~faceforge.physics.simulate.SimulationResult`.
    """
    from faceforge.physics.simulate import PhysicalFace, PhysicsOptions

    triangles = model.faces.cpu().numpy().astype(np.int64)
    character_map.check(len(triangles))
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(sources) or len(values) < 1:
        raise FaceForgeError(f"values must be (frames >= 1, {len(sources)}), got {values.shape}")
    neutral, keys = proxy_head(model, w_id, sources)
    if physical_face is None:
        jaw = keys[list(sources).index("jawOpen")] if "jawOpen" in sources else None
        physical_face = PhysicalFace(
            neutral, triangles, resolution, PhysicsOptions(contact=contact), jaw_open=jaw, progress=progress
        )
    if gravity is not None:
        g = np.asarray(gravity, dtype=np.float64)
        rotation = character_map.to_character / np.cbrt(np.linalg.det(character_map.to_character))
        gravity = g @ rotation.T  # row vectors: d_model = d_character @ R^T for a rotation R
    targets = neutral[None] + np.tensordot(values, keys, axes=1)
    result = physical_face.simulate(targets, jaw_scale=jaw_scale, gravity=gravity, progress=progress)
    corrections = character_map.carry(triangles, result.frames - targets)
    return corrections.astype(np.float32), result


def proxy_head(model, w_id: np.ndarray, sources: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The proxy's neutral ``(V_t, 3)`` and keys ``(E, V_t, 3)`` (float64, metres, model frame)."""
    from faceforge.topology.transfer import proxy_rig

    neutral, keys = proxy_rig(model, w_id, sources)
    return neutral.astype(np.float64), keys.astype(np.float64)
