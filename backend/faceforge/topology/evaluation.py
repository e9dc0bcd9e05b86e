"""Retargeting test pairs with known ground truth, and the figures ``faceforge eval retarget`` reports.

A test character is a FaceForge head of *another* identity, moved into another frame and unit
(centimetres, Y up), optionally re-topologised (:func:`remesh`: Blender's subdivide + decimate,
vertex order shuffled). Every character vertex lies at a known point (barycentric coordinates) of
that identity's neutral, so its true position in every expression is the same point of the
identity's decoded expression: the ground truth for the correspondence (where on the head each
vertex is) and for every transferred key (where each vertex goes).

Figures (see :func:`evaluate_retarget`):

- correspondence error: distance, on the true head, between where a character vertex is and where
  the correspondence puts it (mm, face vertices);
- per-key transfer error: relative RMS of the displacement, ``|d_ours - d_true| / |d_true|`` over the
  face vertices (keys moving the face less than :data:`MIN_KEY_MOTION` are listed apart: their
  ratio divides by almost nothing);
- eyelid gap under ``eyeBlink*``: mean distance between the upper and lower lid landmarks
  (iBUG 37/41 and 38/40, 43/47 and 44/46) on the keyed character, beside the same figure on the
  ground truth;
- flipped triangles and the largest motion of held vertices (from :func:`transfer_expressions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from faceforge.errors import FaceForgeError
from faceforge.topology.surface import BarycentricMap, Surface

__all__ = [
    "TestCharacter",
    "make_test_character",
    "remesh",
    "evaluate_retarget",
    "subdivide",
    "MIN_KEY_MOTION",
    "Y_UP_CM",
]

#: Keys whose largest true displacement is below this (metres) are reported apart.
MIN_KEY_MOTION = 0.001
#: iBUG pairs (upper lid, lower lid) of the right and the left eye.
LID_PAIRS = {"eyeBlinkRight": [(37, 41), (38, 40)], "eyeBlinkLeft": [(43, 47), (44, 46)]}
#: The test characters' frame: template (Z up, metres) -> Y up, centimetres, moved off the origin.
Y_UP_CM = (
    np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]) * 100.0,
    np.array([3.0, 150.0, 2.0]),
)


@dataclass
class TestCharacter:
    """A character with known ground truth.

    Attributes:
        name: what it is ("identity 5, same topology", "identity 5, remeshed").
        vertices: ``(V, 3)`` the character (centimetres, Y up).
        faces: ``(F, 3)`` its triangles.
        on_truth: where each character vertex lies on the true identity's neutral
            (barycentric on the model's triangles).
        w_id: the true identity code.
    """

    __test__ = False  # not a pytest class

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    on_truth: BarycentricMap
    w_id: torch.Tensor

    def to_character(self, points: np.ndarray) -> np.ndarray:
        """Template-frame metres -> the character's frame."""
        return points @ Y_UP_CM[0].T + Y_UP_CM[1]

    def true_neutral(self, model) -> np.ndarray:  # noqa: ANN001
        """``(V_t, 3)`` the true identity's neutral head in the model's topology (template frame)."""
        with torch.no_grad():
            neutral = model.decode(self.w_id[None], model.neutral_expression)[0]
        return neutral.cpu().numpy().astype(np.float64)

    def truth(self, model, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        """True neutral ``(V, 3)`` and key offsets ``(K, V, 3)`` in the character's frame."""
        codes = torch.stack([model.neutral_expression] + [model.expression_code(n) for n in names])
        with torch.no_grad():
            decoded = model.decode(self.w_id.expand(len(codes), -1), codes).cpu().numpy().astype(np.float64)
        tri = model.faces.cpu().numpy()
        placed = np.stack([self.to_character(self.on_truth.apply(d, tri)) for d in decoded])
        return placed[0], placed[1:] - placed[0][None]


def make_test_character(
    model,  # noqa: ANN001 - FaceModel
    seed: int = 5,
    radius: float = 0.5,
    remeshed: bool = False,
    target_vertices: int = 6000,
) -> TestCharacter:
    """Another identity of ``model`` as a character (same topology, or remeshed by Blender)."""
    sample = model.sample(1, seed=seed, radius=radius)
    w_id = sample["w_id"][0].detach()
    with torch.no_grad():
        neutral = model.decode(w_id[None], model.neutral_expression)[0].cpu().numpy().astype(np.float64)
    tri = model.faces.cpu().numpy().astype(np.int64)
    if remeshed:
        vertices, faces = remesh(neutral, tri, target_vertices, seed=seed)
        on_truth = Surface(neutral, tri).closest(vertices)
        name = f"identity {seed}, remeshed to {len(vertices)} vertices"
    else:
        vertices, faces = neutral, tri
        # Vertex i is a corner of some triangle holding it: weight 1 on that corner.
        owner = np.zeros(len(neutral), dtype=np.int64)
        owner[tri.ravel()] = np.repeat(np.arange(len(tri)), 3)
        weights = (tri[owner] == np.arange(len(neutral))[:, None]).astype(np.float64)
        on_truth = BarycentricMap(faces=owner, weights=weights, distances=np.zeros(len(neutral)))
        name = f"identity {seed}, same topology"
    character = vertices @ Y_UP_CM[0].T + Y_UP_CM[1]
    return TestCharacter(name=name, vertices=character, faces=faces, on_truth=on_truth, w_id=w_id)


def subdivide(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One midpoint subdivision: every triangle into four (``V + E`` vertices, ``4F`` triangles)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mid = len(vertices) + inverse.reshape(3, -1).T  # (F, 3): midpoints of edges 01, 12, 20
    a, b, c = faces.T
    ab, bc, ca = mid.T
    new_faces = np.concatenate(
        [np.stack(t, axis=1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))]
    )
    new_vertices = np.concatenate([vertices, vertices[unique].mean(axis=1)])
    return new_vertices, new_faces


def remesh(
    vertices: np.ndarray, faces: np.ndarray, target_vertices: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Another topology of the same surface: midpoint subdivision until it is finer than
    ``target_vertices``, Blender's decimation down to it, the vertex order shuffled.

    Needs the ``bpy`` module (installed with FaceForge's dev extra); resets Blender's scene.
    """
    try:
        import bpy
    except ImportError as exc:  # pragma: no cover - bpy is a dev dependency
        raise FaceForgeError("remeshing test characters needs the bpy module (pip install bpy)") from exc
    fine_v, fine_f = subdivide(vertices, faces)
    while len(fine_v) < 1.5 * target_vertices:
        fine_v, fine_f = subdivide(fine_v, fine_f)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    mesh = bpy.data.meshes.new("remesh")
    mesh.from_pydata(fine_v.tolist(), [], fine_f.tolist())
    obj = bpy.data.objects.new("remesh", mesh)
    bpy.context.scene.collection.objects.link(obj)
    decimate = obj.modifiers.new("decimate", "DECIMATE")
    decimate.decimate_type = "COLLAPSE"
    decimate.ratio = min(1.0, target_vertices / len(fine_v))
    triangulate = obj.modifiers.new("triangulate", "TRIANGULATE")
    triangulate.quad_method = "BEAUTY"
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    out = evaluated.to_mesh()
    try:
        v = np.empty(len(out.vertices) * 3)
        out.vertices.foreach_get("co", v)
        out.calc_loop_triangles()
        f = np.empty(len(out.loop_triangles) * 3, dtype=np.int64)
        out.loop_triangles.foreach_get("vertices", f)
    finally:
        evaluated.to_mesh_clear()
        bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(mesh)
    v, f = v.reshape(-1, 3), f.reshape(-1, 3)
    order = np.random.default_rng(seed).permutation(len(v))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(v))
    return v[order], rank[f]


def _flipped(rest: np.ndarray, offsets: np.ndarray, faces: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """``(K, F)`` bool: triangles (among ``moving``) whose normal turns by more than 90 degrees."""

    def normals(x: np.ndarray) -> np.ndarray:
        return np.cross(x[faces[:, 1]] - x[faces[:, 0]], x[faces[:, 2]] - x[faces[:, 0]])

    n0 = normals(rest)
    return np.stack([(np.einsum("fd,fd->f", n0, normals(rest + d)) < 0) & moving for d in offsets])


def _lid_gap(points: BarycentricMap, positions: np.ndarray, faces: np.ndarray, pairs: list) -> float:
    lm = points.apply(positions, faces)
    return float(np.mean([np.linalg.norm(lm[a] - lm[b]) for a, b in pairs]))


def evaluate_retarget(
    model,  # noqa: ANN001 - FaceModel
    character: TestCharacter,
    result,  # noqa: ANN001 - Retarget made with an identity profile (targets = sources)
) -> dict:
    """Figures of a retargeted test character against its ground truth (see the module docstring)."""
    names = [k.source for k in result.profile.keys]
    if [k.target for k in result.profile.keys] != names:
        raise FaceForgeError("evaluate with a profile whose targets are FaceForge's own names (arkit)")
    corr = result.correspondence
    rest, truth = character.truth(model, names)
    scale = float(np.linalg.norm(Y_UP_CM[0][0]))  # character units per metre
    mask = corr.face & (result.keys.parts.kind == "skin")
    # Correspondence: the point the map gives, on the true head, against the vertex's own point.
    tri = model.faces.cpu().numpy()
    mapped = character.to_character(corr.to_template.apply(character.true_neutral(model), tri))
    corr_mm = np.linalg.norm(mapped - rest, axis=1)[mask] / scale * 1e3
    ours = result.keys.deltas.astype(np.float64)
    per_key, small = {}, {}
    for k, name in enumerate(names):
        d_true = truth[k][mask]
        error = np.sqrt(((ours[k][mask] - d_true) ** 2).sum() / max((d_true**2).sum(), 1e-30))
        largest = np.linalg.norm(d_true, axis=1).max() / scale
        (per_key if largest >= MIN_KEY_MOTION else small)[name] = float(error)
    moving = mask[character.faces].any(axis=1)
    flipped = _flipped(character.vertices, ours, character.faces, moving)
    true_flips = _flipped(rest, truth, character.faces, moving)
    lids = {}
    lm_on = Surface(character.vertices, character.faces).closest(corr.landmarks)
    for key, pairs in LID_PAIRS.items():
        if key in names:
            k = names.index(key)
            lids[key] = {
                "ours_mm": _lid_gap(lm_on, character.vertices + ours[k], character.faces, pairs)
                / scale
                * 1e3,
                "truth_mm": _lid_gap(lm_on, rest + truth[k], character.faces, pairs) / scale * 1e3,
                "open_mm": _lid_gap(lm_on, character.vertices, character.faces, pairs) / scale * 1e3,
            }
    tongue = result.keys.parts.kind == "tongue"
    tongue_out = None
    if "tongueOut" in names and tongue.any():
        k = names.index("tongueOut")
        d_true = truth[k][tongue]
        tongue_out = float(np.sqrt(((ours[k][tongue] - d_true) ** 2).sum() / max((d_true**2).sum(), 1e-30)))
    errors = np.array(list(per_key.values())) if per_key else np.zeros(1)
    worst = max(per_key, key=per_key.get) if per_key else None
    return {
        "character": character.name,
        "n_vertices": int(len(character.vertices)),
        "face_vertices": int(mask.sum()),
        "correspondence_mean_mm": float(corr_mm.mean()),
        "correspondence_p95_mm": float(np.percentile(corr_mm, 95)),
        "transfer_median": float(np.median(errors)),
        "transfer_worst": float(errors.max()),
        "transfer_worst_key": worst,
        "transfer_per_key": per_key,
        "transfer_small_keys": small,
        "lid_gap": lids,
        # tongueOut on the character's tongue (relative RMS over its vertices).
        "tongue_out_on_tongue": tongue_out,
        # The true head folds too (a closed upper lid creases): count the flips it does not have.
        "flipped_triangles_max": int(flipped.sum(1).max()),
        "flipped_triangles_truth_max": int(true_flips.sum(1).max()),
        "flipped_triangles_not_in_truth_max": int((flipped & ~true_flips).sum(1).max()),
        "held_vertex_motion_mm": result.keys.figures["held_vertex_motion_mm"],
        "parts": result.keys.figures["parts"],
        "timings_s": result.timings,
    }
