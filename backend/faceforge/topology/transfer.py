"""FaceForge's expressions on a character's own triangles (deformation transfer, Sumner & Popovic 2004).

The source of every expression is FaceForge's model (its mean identity by default, see
:data:`SOURCE_IDENTITIES`) posed on the registered template
(:class:`~faceforge.topology.Correspondence`): its neutral -> expression deformation gradients
per template triangle. Each character triangle of the face takes the gradient of the
template triangle under its centroid (normal-compatible, so the lower lip takes the lower lip's);
the character's vertices then follow from one sparse Poisson solve, factorised once per
character, one back-substitution per key (:class:`faceforge.data.transfer.DeformationTransfer`,
the dataset builder's solver). Vertices off the face are held, so the face's boundary blends
into the still head; the gradients there are near identity already, as the model's
expressions hold the skull and neck. Parts move their own way (:mod:`.parts`): eyes rotate for
``eyeLook*``, lower teeth and tongue ride on the jaw, eyelashes follow the skin under them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from faceforge.data.geometry import apply_rigid, connected_components, rigid_align
from faceforge.data.transfer import DeformationTransfer, deformation_gradients
from faceforge.errors import FaceForgeError
from faceforge.progress import ProgressCallback, report
from faceforge.topology.correspondence import Correspondence
from faceforge.topology.parts import Parts, find_parts, gaze_rotation
from faceforge.topology.surface import BarycentricMap, Surface
from faceforge.topology.template import Template

__all__ = [
    "CharacterKeys",
    "expression_sources",
    "proxy_rig",
    "transfer_expressions",
]

#: Keys solved together (memory: one ``(chunk, F, 3, 3)`` gradient block).
KEY_CHUNK = 8


@dataclass
class CharacterKeys:
    """Shape-key offsets for a character.

    Attributes:
        names: FaceForge expression names, one per key.
        deltas: ``(K, V, 3)`` float32 offsets from the character's basis, in its own frame and units.
        parts: the part label of each character vertex.
        timings: phase -> seconds.
        figures: per-key and overall quality figures (flipped triangles, held-vertex motion).
    """

    names: list[str]
    deltas: np.ndarray
    parts: Parts
    timings: dict[str, float] = field(default_factory=dict)
    figures: dict[str, object] = field(default_factory=dict)


#: Where the transferred expressions come from: the identity fitted to the character (its posterior
#: mean: directions the character's shape does not determine fall back to the mean identity) or
#: the model's mean identity. Measured (default model, relative RMS of the keys, median key) on
#: heads of known identity: fitted 4-8 %, mean 7-15 %; on Face Cap's avatar against its artist's
#: keys both 75 % (the raw fitted code, without the posterior, 77 %).
SOURCE_IDENTITIES = ("fitted", "mean")


def expression_sources(
    model,  # noqa: ANN001 - FaceModel
    correspondence: Correspondence,
    names: Sequence[str],
    identity: str = "fitted",
) -> tuple[np.ndarray, np.ndarray]:
    """A FaceForge identity's neutral and expressions, posed on the registered template.

    Args:
        identity: ``fitted`` (the character's identity) or ``mean`` (see :data:`SOURCE_IDENTITIES`).

    Returns:
        ``rest (V_t, 3)`` and ``deformed (K, V_t, 3)`` float64 in the template frame (metres).
    """
    unknown = [n for n in names if n not in model.expression_names]
    if unknown:
        raise FaceForgeError(f"the model has no expressions named {unknown}")
    if identity not in SOURCE_IDENTITIES:
        raise FaceForgeError(f"the source identity is one of {SOURCE_IDENTITIES}, not {identity!r}")
    code = correspondence.w_source if identity == "fitted" else model.identity_prior[0].detach().cpu().numpy()
    w_id = torch.as_tensor(code, dtype=torch.float32, device=model.device)
    codes = torch.stack([model.neutral_expression] + [model.expression_code(n) for n in names])
    with torch.no_grad():
        faces = model.decode(w_id.expand(len(codes), -1), codes).cpu().numpy().astype(np.float64)
    r, t = correspondence.source_rotation, correspondence.source_translation
    faces = (faces - t) @ r  # x_template = R^T (x_model - t), as row vectors
    return faces[0], faces[1:]


def proxy_rig(
    model,  # noqa: ANN001 - FaceModel
    w_id: np.ndarray,
    names: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """A character's FaceForge proxy: the identity's neutral head and its expression keys.

    Args:
        w_id: ``(r_id,)`` the identity code fitted to the character (``Correspondence.w_source``).
        names: the FaceForge expressions of the character's keys (a profile's sources).

    Returns:
        ``neutral (V_t, 3)`` and ``keys (K, V_t, 3)`` float32 in the model's frame (metres): the
        rig a take is made and baked on before its values drive the character's keys.
    """
    w = np.asarray(w_id, dtype=np.float32).reshape(-1)
    if w.shape != (model.rank_identity,) or not np.all(np.isfinite(w)):
        raise FaceForgeError(
            f"the identity code has {w.size} numbers; this model's have {model.rank_identity} "
            "(retarget the character again with the loaded model)"
        )
    unknown = [n for n in names if n not in model.expression_names]
    if unknown:
        raise FaceForgeError(f"the model has no expressions named {unknown}")
    codes = torch.stack([model.neutral_expression] + [model.expression_code(n) for n in names])
    with torch.no_grad():
        w_t = torch.as_tensor(w, device=model.device)
        faces = model.decode(w_t.expand(len(codes), -1), codes).cpu().numpy()
    return faces[0], faces[1:] - faces[0][None]


def _jaw_motion(template: Template, rest: np.ndarray, deformed: np.ndarray) -> list[tuple]:
    jaw = template.regions["jaw"]
    return [rigid_align(rest[jaw], d[jaw]) for d in deformed]


def transfer_expressions(
    model,  # noqa: ANN001 - FaceModel
    correspondence: Correspondence,
    vertices: np.ndarray,
    faces: np.ndarray,
    names: Sequence[str],
    gains: Sequence[float] | None = None,
    assigned_parts: dict[str, np.ndarray] | None = None,
    progress: ProgressCallback | None = None,
    identity: str = "fitted",
) -> CharacterKeys:
    """Transfer FaceForge's expressions onto a registered character.

    Args:
        model: the face model the correspondence was made with.
        correspondence: from :func:`~faceforge.topology.register_character` on this character.
        vertices: ``(V, 3)`` the character's basis (its frame and units).
        faces: ``(F, 3)`` its triangles.
        names: FaceForge expression names (ARKit names, emotions...).
        gains: per-name intensity (1: the model's expression; a profile's gain).
        assigned_parts: part kind -> vertex indices, overriding :func:`~faceforge.topology.parts.find_parts`.
        progress: ``progress(done, total, message)``; returning False cancels.
        identity: the source identity of the expressions (:data:`SOURCE_IDENTITIES`).

    Returns:
        :class:`CharacterKeys` with ``deltas (K, V, 3)`` in the character's units.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    names = list(names)
    gains = np.ones(len(names)) if gains is None else np.asarray(gains, dtype=np.float64)
    if len(gains) != len(names):
        raise FaceForgeError(f"{len(gains)} gains for {len(names)} keys")
    if len(v) != len(correspondence.face):
        raise FaceForgeError("the correspondence was made for another mesh (vertex counts differ)")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    template = Template.from_model(model)
    sim = correspondence.similarity
    local = sim.apply(v)
    tongue_ids = template.regions.get("tongue", np.zeros(0, dtype=np.int64))
    parts = find_parts(
        local,
        f,
        correspondence.face,
        sim.apply(correspondence.landmarks),
        assigned_parts,
        tongue=correspondence.registered[tongue_ids],
    )
    rest, deformed = expression_sources(model, correspondence, names, identity)
    deformed = rest[None] + gains[:, None, None] * (deformed - rest[None])
    skin_faces = np.flatnonzero(template.skin[template.faces].all(1))
    registered = Surface(correspondence.registered, template.faces[skin_faces])
    skin = parts.kind == "skin"
    tri_free = skin[f].any(axis=1)
    sub_faces = f[tri_free]
    # Each face triangle takes the gradient of the template triangle under its centroid.
    centroids = local[sub_faces].mean(axis=1)
    n = np.cross(
        local[sub_faces[:, 1]] - local[sub_faces[:, 0]], local[sub_faces[:, 2]] - local[sub_faces[:, 0]]
    )
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
    source_tri = skin_faces[registered.closest(centroids, normals=n, min_cos=0.3).faces]
    timings["set-up"] = time.perf_counter() - clock

    clock = time.perf_counter()
    report(progress, 0, len(names) + 1, "factorising")
    used = np.unique(sub_faces)
    remap = -np.ones(len(v), dtype=np.int64)
    remap[used] = np.arange(len(used))
    local_faces = remap[sub_faces]
    sub_free = skin[used]
    # A skin piece with no held vertex (a head cut at the neck inside the face) is pinned at its
    # vertex farthest from the mouth, so the solve has no free translation.
    labels = connected_components(local_faces, len(used))
    held = ~sub_free
    for c in np.setdiff1d(np.unique(labels), np.unique(labels[held])):
        members = np.flatnonzero(labels == c)
        mouth = correspondence.landmarks[48:68].mean(axis=0)
        held[members[np.argmax(np.linalg.norm(v[used[members]] - mouth, axis=1))]] = True
    solver = DeformationTransfer(local[used], local_faces, np.flatnonzero(held)) if len(used) else None
    timings["factorise"] = time.perf_counter() - clock

    clock = time.perf_counter()
    deltas = np.zeros((len(names), len(v), 3), dtype=np.float32)
    attached = np.flatnonzero(parts.kind == "attached")
    attached_map = registered.closest(local[attached]) if len(attached) else None
    lower = parts.indices("lower")
    tongue = parts.indices("tongue")
    jaw = _jaw_motion(template, rest, deformed) if len(lower) or len(tongue) else []
    if len(tongue):
        # Each tongue vertex follows the template tongue vertex nearest it on the registered head.
        placed = correspondence.registered[tongue_ids]
        nearest = tongue_ids[np.argmin(np.linalg.norm(local[tongue][:, None] - placed[None], axis=2), axis=1)]
    for start in range(0, len(names), KEY_CHUNK):
        stop = min(start + KEY_CHUNK, len(names))
        report(progress, start + 1, len(names) + 1, f"keys {start + 1}-{stop} of {len(names)}")
        chunk = deformed[start:stop]
        new_local = np.repeat(local[None], stop - start, axis=0)
        if solver is not None:
            q = deformation_gradients(rest, chunk, template.faces)[:, source_tri]
            new_local[:, used] = solver.transfer(q)
        if attached_map is not None:
            shift = [_on_skin(attached_map, template, d - rest, skin_faces) for d in chunk]
            new_local[:, attached] += np.stack(shift)
        for k in range(stop - start):
            key = start + k
            if len(lower):
                r, t = jaw[key]
                new_local[k, lower] = apply_rigid(local[lower], r, t)
            if len(tongue):
                r, t = jaw[key]
                own = deformed[key, nearest] - apply_rigid(rest[nearest], r, t)  # beyond the jaw's
                new_local[k, tongue] = apply_rigid(local[tongue], r, t) + own
            for side, centre in parts.eye_centres.items():
                rot = gaze_rotation(names[key], side, float(gains[key]))
                if rot is not None:
                    idx = parts.indices(side)
                    new_local[k, idx] = (local[idx] - centre) @ rot.T + centre
        deltas[start:stop] = (
            sim.inverse(new_local.reshape(-1, 3)).reshape(stop - start, -1, 3) - v[None]
        ).astype(np.float32)
    deltas[:, parts.kind == "held"] = 0.0  # exactly: no round-off of the frame change in the keys
    timings["keys"] = time.perf_counter() - clock
    report(progress, len(names) + 1, len(names) + 1, "transferred")
    figures = _quality(local, f, deltas, sim, parts)
    return CharacterKeys(names=names, deltas=deltas, parts=parts, timings=timings, figures=figures)


def _on_skin(
    mapping: BarycentricMap, template: Template, displacement: np.ndarray, skin_faces: np.ndarray
) -> np.ndarray:
    return mapping.apply(displacement, template.faces[skin_faces])


def _quality(local: np.ndarray, faces: np.ndarray, deltas: np.ndarray, sim, parts: Parts) -> dict:  # noqa: ANN001
    """Flipped triangles per key and the largest motion of held vertices (template-frame mm)."""
    normals0 = np.cross(local[faces[:, 1]] - local[faces[:, 0]], local[faces[:, 2]] - local[faces[:, 0]])
    moving = (parts.kind != "held")[faces].any(axis=1)
    flipped = {}
    for k in range(len(deltas)):
        x = local + sim.scale * deltas[k].astype(np.float64) @ sim.rotation.T
        n1 = np.cross(x[faces[:, 1]] - x[faces[:, 0]], x[faces[:, 2]] - x[faces[:, 0]])
        flipped[k] = int(((np.einsum("fd,fd->f", normals0, n1) < 0) & moving).sum())
    held = parts.kind == "held"
    held_motion = float(np.abs(deltas[:, held]).max() * sim.scale * 1e3) if held.any() else 0.0
    return {
        "flipped_triangles_max": max(flipped.values(), default=0),
        "held_vertex_motion_mm": held_motion,
        "parts": parts.counts(),
    }
