"""Retargeting: FaceForge's expressions as shape keys on a character, named by a profile.

:func:`retarget_character` = :func:`~faceforge.topology.register_character` (landmarks,
alignment, identity fit, non-rigid ICP, correspondence) + :func:`~faceforge.topology.transfer.
transfer_expressions` (deformation transfer, parts) + the profile's names, gains and region limits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from faceforge.progress import ProgressCallback
from faceforge.topology.correspondence import Correspondence, register_character
from faceforge.topology.profiles import Profile, load_profile, region_weights
from faceforge.topology.template import Template
from faceforge.topology.transfer import CharacterKeys, transfer_expressions

__all__ = ["Retarget", "retarget_character", "apply_profile"]


@dataclass
class Retarget:
    """A retargeted character: its correspondence, the profile, and the keys named by it."""

    correspondence: Correspondence
    profile: Profile
    keys: CharacterKeys

    @property
    def timings(self) -> dict[str, float]:
        return {**self.correspondence.timings, **self.keys.timings}


def _scaled(
    progress: ProgressCallback | None, offset: float, share: float, prefix: str
) -> ProgressCallback | None:
    if progress is None:
        return None
    return lambda d, t, m: progress(int(offset + share * d / max(t, 1)), 100, f"{prefix}: {m}")


def apply_profile(
    model,  # noqa: ANN001 - FaceModel
    correspondence: Correspondence,
    vertices: np.ndarray,
    faces: np.ndarray,
    profile: Profile,
    assigned_parts: dict[str, np.ndarray] | None = None,
    progress: ProgressCallback | None = None,
) -> CharacterKeys:
    """The profile's keys on a registered character (``names`` are the profile's targets)."""
    rows = profile.keys
    keys = transfer_expressions(
        model,
        correspondence,
        vertices,
        faces,
        [r.source for r in rows],
        gains=[r.gain for r in rows],
        assigned_parts=assigned_parts,
        progress=progress,
    )
    template = Template.from_model(model)
    at = correspondence.to_template
    for k, row in enumerate(rows):
        if row.region is not None:
            w = region_weights(row.region, template.vertices, template.regions)
            # The region's weight at each character vertex's point on the registered head.
            weight = (w[template.faces[at.faces]] * at.weights).sum(axis=1)
            keys.deltas[k] *= weight[:, None].astype(np.float32)
    keys.names = profile.targets
    return keys


def retarget_character(
    model,  # noqa: ANN001 - FaceModel
    vertices: np.ndarray,
    faces: np.ndarray,
    profile: Profile | str = "arkit",
    landmarks: np.ndarray | None = None,
    assigned_parts: dict[str, np.ndarray] | None = None,
    progress: ProgressCallback | None = None,
) -> Retarget:
    """Register FaceForge's head onto a character and make the profile's shape keys on it.

    Args:
        model: the face model.
        vertices: ``(V, 3)`` the character's basis, any units and orientation.
        faces: ``(F, 3)`` its triangles (every component: eyes, teeth... are parts).
        profile: a :class:`Profile` or a preset name / JSON path for :func:`load_profile`.
        landmarks: optional ``(68, 3)`` edited landmarks (character frame).
        assigned_parts: part kind -> vertex indices (the user's own assignment).
        progress: ``progress(done, total, message)``; returning False cancels.

    Returns:
        :class:`Retarget`; ``keys.deltas (K, V, 3)`` are offsets in the character's units.
    """
    clock = time.perf_counter()
    if isinstance(profile, str):
        profile = load_profile(profile, model.expression_names, list(model.metadata["regions"]))
    correspondence = register_character(
        model, vertices, faces, landmarks, _scaled(progress, 0, 60, "register")
    )
    keys = apply_profile(
        model, correspondence, vertices, faces, profile, assigned_parts, _scaled(progress, 60, 40, "keys")
    )
    keys.timings["total"] = time.perf_counter() - clock
    return Retarget(correspondence=correspondence, profile=profile, keys=keys)
