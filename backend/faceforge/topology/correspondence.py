"""The correspondence between FaceForge's template and a character mesh of any topology.

:func:`register_character` runs the pipeline: checks, coarse similarity alignment and proposed
landmarks (:mod:`.align`), a fit of FaceForge's identity to the character so the template already
resembles it (and, on request, the source of the expressions transferred later), non-rigid ICP of the
template skin onto the character (:mod:`.nricp`), and barycentric maps both ways. Every later
feature (retargeting, scan fitting of any topology, capture) uses the :class:`Correspondence` it
returns and re-implements none of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from faceforge.data.geometry import connected_components, triangle_areas
from faceforge.errors import FaceForgeError
from faceforge.progress import ProgressCallback, report
from faceforge.topology.align import Similarity, coarse_alignment, umeyama
from faceforge.topology.checks import boundary_edges, check_face_surface
from faceforge.topology.nricp import NonRigidICP
from faceforge.topology.surface import BarycentricMap, Surface
from faceforge.topology.template import Template

__all__ = [
    "Correspondence",
    "register_character",
    "check_character",
    "MIN_FACE_VERTICES",
]

#: A mesh with fewer vertices than this in the face region cannot carry FaceForge's expressions.
MIN_FACE_VERTICES = 300
#: Coarse alignment scores (template <-> character trimmed mean distance, as a fraction of the
#: template's size) above this mean the mesh is not a head. Measured: heads of the default model's
#: identities 0.04-0.13 (an extreme one), a sphere 0.17, an ellipsoid 0.21, a cube 0.23.
NO_FACE_SCORE = 0.15
#: A character vertex farther than this from the registered template is outside the face (metres,
#: template frame): it keeps its position in every expression.
FACE_DISTANCE = 0.004
#: Rounds of (closest points, identity fit) before the non-rigid registration. Closest points
#: converge slowly along the surface: 10 rounds bring a head inside the model's identity space
#: to a code whose expressions differ from the true ones by 1-2 % (3 rounds: 3-6 %).
IDENTITY_ROUNDS = 10


@dataclass
class Correspondence:
    """Template <-> character correspondence (see the module docstring).

    Attributes:
        similarity: character frame -> template frame.
        landmarks: ``(68, 3)`` landmarks on the character (character frame).
        registered: ``(V_t, 3)`` template vertices registered onto the character (template frame).
        to_character: template skin vertices -> points on the character (barycentric on its faces).
        to_template: character vertices -> points on the registered template skin.
        face: ``(V_c,)`` bool, character vertices inside the face the template covers.
        w_id: ``(r_id,)`` identity code fitted to the character (with a neutral expression).
        source_rotation, source_translation: rigid map of the model's frame onto the registered
            template (``x_template = R (x_model - t)`` as :class:`~faceforge.model.fitting.FitResult`).
        timings: phase -> seconds.
        figures: fit figures (millimetres in the template frame).
    """

    similarity: Similarity
    landmarks: np.ndarray
    registered: np.ndarray
    to_character: BarycentricMap
    to_template: BarycentricMap
    face: np.ndarray
    w_id: np.ndarray
    source_rotation: np.ndarray
    source_translation: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)


def check_character(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The character as float64/int64 arrays, or one clear error naming the problem."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise FaceForgeError(f"the character needs (V, 3) vertices, got shape {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise FaceForgeError(f"the character needs (F, 3) triangles, got shape {f.shape}")
    if not np.isfinite(v).all():
        raise FaceForgeError("the character has non-finite vertex coordinates (NaN or infinity)")
    if f.min() < 0 or f.max() >= len(v):
        raise FaceForgeError("the character's triangles index vertices it does not have")
    if len(v) < MIN_FACE_VERTICES:
        raise FaceForgeError(
            f"the character has {len(v)} vertices; at least {MIN_FACE_VERTICES} are needed to carry a face"
        )
    if triangle_areas(v, f).sum() <= 0:
        raise FaceForgeError("the character has no surface (all its triangles are degenerate)")
    return v, f


def _fit_identity(model, targets: np.ndarray, weights: np.ndarray):  # noqa: ANN001, ANN202
    from faceforge.model.fitting import fit_scan

    scan = np.where((weights > 0)[:, None], targets, np.nan)
    return fit_scan(
        model, scan, weights=np.where(weights > 0, weights, 0.0), use_flows=False, rounds=2, neutral=True
    )


#: Units a character may be modelled in (metres per unit): metre, decimetre, centimetre, millimetre, inch.
UNITS = (1.0, 0.1, 0.01, 0.001, 0.0254)
#: The alignment's scale is replaced by a unit's only within this factor of it.
UNIT_RANGE = 1.35


def _unit_similarity(similarity: Similarity, vertices: np.ndarray) -> Similarity | None:
    """The similarity at the nearest real unit (same rotation and centre), if one is near."""
    ratio = np.array(UNITS) / similarity.scale
    k = int(np.argmin(np.abs(np.log(ratio))))
    if not (1.0 / UNIT_RANGE < ratio[k] < UNIT_RANGE) or abs(np.log(ratio[k])) < 0.005:
        return None
    centre = vertices.mean(axis=0)
    translation = similarity.apply(centre) - UNITS[k] * similarity.rotation @ centre
    return Similarity(UNITS[k], similarity.rotation, translation)


def _identity_rounds(model, template: Template, local: Surface, weights: np.ndarray) -> tuple:  # noqa: ANN001
    """Closest points <-> identity fit, :data:`IDENTITY_ROUNDS` times: ``(fit, residual in metres)``."""
    start = template.vertices
    for _ in range(IDENTITY_ROUNDS):
        hit = local.closest(start)
        use = weights * (hit.distances < 0.01)
        fit = _fit_identity(model, local.points(hit), use)
        start = fit.vertices.astype(np.float64)
    hit = local.closest(start)
    residual = float((weights * np.minimum(hit.distances, 0.01)).sum() / weights.sum())
    return fit, residual


def register_character(
    model,  # noqa: ANN001 - FaceModel
    vertices: np.ndarray,
    faces: np.ndarray,
    landmarks: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
) -> Correspondence:
    """Register FaceForge's template onto a character mesh (see the module docstring).

    Args:
        model: the face model (template, identity space).
        vertices: ``(V_c, 3)`` character vertices, any units and orientation.
        faces: ``(F_c, 3)`` character triangles (all components: parts are told apart later).
        landmarks: optional ``(68, 3)`` landmarks on the character in its frame (edited markers;
            NaN rows are unknown). Without them they are proposed.
        progress: ``progress(done, total, message)``; returning False cancels.

    Raises:
        FaceForgeError: bad arrays, a mesh too coarse, or no face found.
    """
    v, f = check_character(vertices, faces)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    template = Template.from_model(model)
    surface = Surface(v, f)
    total = 4
    report(progress, 0, total, "alignment")
    edited = landmarks is not None
    if not edited:
        similarity, score = coarse_alignment(template, surface)
        if score / template.size() > NO_FACE_SCORE:
            raise FaceForgeError(
                "no face found: the best alignment of FaceForge's head leaves the surfaces "
                f"{score / template.size():.0%} of a head's size apart "
                f"(a head fits within {NO_FACE_SCORE:.0%})"
            )
    else:
        landmarks = np.asarray(landmarks, dtype=np.float64)
        if landmarks.shape != (len(template.landmarks), 3):
            raise FaceForgeError(
                f"landmarks must have shape ({len(template.landmarks)}, 3), got {landmarks.shape}"
            )
        ok = np.isfinite(landmarks).all(1)
        if ok.sum() < 4:
            raise FaceForgeError("at least 4 landmarks are needed to align the character")
        similarity = umeyama(landmarks[ok], template.vertices[template.landmarks[ok]])
    timings["alignment"] = time.perf_counter() - clock

    clock = time.perf_counter()
    report(progress, 1, total, "identity fit")
    weights = template.fit_weights()
    # Alignment scales the character to the *mean* head: a head 15 % larger than the mean is
    # shrunk by 15 % and the identity fit then finds a wrong, smaller face (and its expressions).
    # A character made in a real unit is tried at that unit too; the identity that fits the
    # surface more closely decides (measured on heads of known identity: 4-10 mm -> ~1 mm).
    candidates = [similarity] + [s for s in [_unit_similarity(similarity, v)] if s is not None]
    best = None
    for candidate in candidates:
        trial = _identity_rounds(model, template, Surface(candidate.apply(v), f), weights)
        if best is None or trial[1] < best[2]:
            best = (candidate, *trial)
    similarity, fit, residual = best
    unit = similarity.scale if similarity is not candidates[0] else None
    # The character in the template frame: all later geometry is in metres there.
    local = Surface(similarity.apply(v), f)
    start = fit.vertices.astype(np.float64)
    # Proposed on the fitted head, whose features already sit near the character's; edited
    # landmarks keep their places and unknown (NaN) ones take the proposed.
    proposed = similarity.inverse(local.points(local.closest(start[template.landmarks])))
    landmarks = proposed if not edited else np.where(np.isfinite(landmarks), landmarks, proposed)
    lm_local = similarity.apply(landmarks)
    timings["identity fit"] = time.perf_counter() - clock

    clock = time.perf_counter()
    report(progress, 2, total, "non-rigid registration")
    skin = np.flatnonzero(template.skin)
    remap = -np.ones(template.n_vertices, dtype=np.int64)
    remap[skin] = np.arange(len(skin))
    skin_faces = remap[template.faces[template.skin[template.faces].all(1)]]
    lm_skin = remap[template.landmarks]
    icp = NonRigidICP(start[skin], skin_faces, weights[skin], unit=template.size(), max_distance=0.01)
    result = icp.run(local, lm_skin, lm_local, landmark_weight=1.0 if edited else 0.0)
    registered = start.copy()
    registered[skin] = result.vertices
    timings["non-rigid registration"] = time.perf_counter() - clock

    # The identity fitted by closest points is kept (a refit to the registered vertices, which
    # the non-rigid step slid along the surface, measured 5-10 % worse keys).
    refit = fit
    # Floating parts (the tongue) follow the fitted identity.
    rest = ~template.skin
    registered[rest] = refit.vertices[rest]

    clock = time.perf_counter()
    report(progress, 3, total, "correspondence")
    reg_surface = Surface(registered, template.faces[template.skin[template.faces].all(1)])
    to_template = reg_surface.closest(local.vertices, normals=local.vertex_normals, min_cos=0.3)
    to_template = BarycentricMap(
        faces=np.flatnonzero(template.skin[template.faces].all(1))[to_template.faces],
        weights=to_template.weights,
        distances=to_template.distances,
    )
    to_character = local.closest(registered[skin])
    face = to_template.distances < FACE_DISTANCE
    held = np.zeros(template.n_vertices, dtype=bool)
    held[template.regions["held"]] = True
    corner_held = held[template.faces[to_template.faces]].all(1)
    face &= ~corner_held
    if face.sum() < MIN_FACE_VERTICES:
        raise FaceForgeError(
            f"only {int(face.sum())} of the character's vertices lie on the face FaceForge registered; "
            f"at least {MIN_FACE_VERTICES} are needed (is the mesh a head, and fine enough?)"
        )
    skin_tris = template.faces[template.skin[template.faces].all(1)]
    own_boundary = registered[np.unique(boundary_edges(skin_tris))]
    defects = check_face_surface(local.vertices, f, face, lm_local, own_boundary)
    timings["correspondence"] = time.perf_counter() - clock
    report(progress, total, total, "registered")
    matched = result.weights > 0
    figures = {
        "registration_mean_mm": float(result.distances[matched].mean() * 1e3)
        if matched.any()
        else float("nan"),
        "registration_p95_mm": float(np.quantile(result.distances[matched], 0.95) * 1e3)
        if matched.any()
        else float("nan"),
        "matched_fraction": float(matched.mean()),
        "identity_fit_mm": float(refit.error_mm),
        "character_face_vertices": int(face.sum()),
        "components": int(connected_components(f, len(v)).max() + 1),
        # The unit (metres per character unit) the character was read in, or None where the
        # alignment's own scale fitted better (a head no real size explains).
        "unit": unit,
        "identity_residual_mm": residual * 1e3,
        "open_edges_on_face_mm": defects["open_edge_length_m"] * 1e3,
    }
    return Correspondence(
        similarity=similarity,
        landmarks=landmarks,
        registered=registered,
        to_character=to_character,
        to_template=to_template,
        face=face,
        w_id=refit.w_id,
        source_rotation=refit.rotation,
        source_translation=refit.translation,
        timings=timings,
        figures=figures,
    )
