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
from faceforge.topology.identity import SurfaceFit, fit_identity_to_surface
from faceforge.topology.nricp import NonRigidICP
from faceforge.topology.surface import BarycentricMap, Surface
from faceforge.topology.template import Template

__all__ = [
    "Correspondence",
    "register_character",
    "propose_landmarks",
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
        w_source: ``(r_id,)`` the code the expressions come from: the fit's posterior mean, where
            directions the character's shape does not determine fall back to the mean identity
            (:func:`~faceforge.topology.identity.posterior_code`).
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
    w_source: np.ndarray
    source_rotation: np.ndarray
    source_translation: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def model_to_character(self) -> np.ndarray:
        """``(3, 3)`` displacements in the model's frame (metres) -> the character's frame and units,
        as row vectors (``d_character = d_model @ M``): the source rotation, then the similarity's
        rotation and scale undone."""
        return self.source_rotation @ self.similarity.rotation / self.similarity.scale


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


#: Units a character may be modelled in (metres per unit): metre, decimetre, centimetre, millimetre, inch.
UNITS = (1.0, 0.1, 0.01, 0.001, 0.0254)
#: A real unit replaces the fitted size when it lies within this factor of it ...
UNIT_RANGE = 1.35
#: ... and its fit leaves the surfaces no farther apart than this factor (plus 0.02 mm) of the
#: free fit's: a head modelled in centimetres is most likely life-size, and identity and size
#: explain a head's size together only through its proportions.
UNIT_TOLERANCE = 1.1


#: Weight of edited landmarks in the identity fit (their mean squared distance against the data's).
LANDMARK_WEIGHT = 1.0


def _sub(progress: ProgressCallback | None, step: int, total: int) -> ProgressCallback | None:
    """Progress of one phase reported as step ``step`` of ``total`` (cancel passes through)."""
    if progress is None:
        return None
    return lambda _done, _of, message: progress(step, total, message)


def _fit_in_unit(
    model,  # noqa: ANN001 - FaceModel
    template: Template,
    similarity: Similarity,
    local: Surface,
    weights: np.ndarray,
    **kw,  # noqa: ANN001
) -> tuple[Similarity, SurfaceFit, float | None]:
    """The identity fit with a free size, or at a real unit where one fits as well.

    Returns ``(similarity, fit, unit)``: the similarity maps the character into the fitted head's
    true size (metres; the fit's own scale is then 1), ``unit`` is the real unit used or None.
    """
    free = fit_identity_to_surface(model, template, local, weights, **kw)
    metres = similarity.scale / free.scale  # metres per character unit, as fitted
    best, unit = free, None
    near = [u for u in UNITS if 1.0 / UNIT_RANGE < u / metres < UNIT_RANGE]
    if near:
        u = min(near, key=lambda q: abs(np.log(q / metres)))
        fixed = fit_identity_to_surface(model, template, local, weights, scale=similarity.scale / u, **kw)
        if fixed.residual_mm <= UNIT_TOLERANCE * free.residual_mm + 0.02 * similarity.scale / u:
            best, unit = fixed, u
    s = best.scale
    return Similarity(similarity.scale / s, similarity.rotation, similarity.translation / s), best, unit


@dataclass
class _Fitted:
    """The character aligned and FaceForge's identity fitted to it (phases 1-2)."""

    template: Template
    vertices: np.ndarray
    faces: np.ndarray
    similarity: Similarity
    fit: SurfaceFit
    unit: float | None
    local: Surface
    start: np.ndarray
    landmarks: np.ndarray
    edited: bool
    weights: np.ndarray
    timings: dict[str, float]


def _align_and_fit(
    model,  # noqa: ANN001 - FaceModel
    vertices: np.ndarray,
    faces: np.ndarray,
    landmarks: np.ndarray | None,
    progress: ProgressCallback | None,
    total: int,
) -> _Fitted:
    """Checks, alignment (coarse or from landmarks), identity fit and proposed landmarks."""
    v, f = check_character(vertices, faces)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    template = Template.from_model(model)
    surface = Surface(v, f)
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
    aligned = Surface(similarity.apply(v), f)
    lm_aligned = similarity.apply(landmarks) if edited else None
    similarity, fit, unit = _fit_in_unit(
        model,
        template,
        similarity,
        aligned,
        weights,
        landmarks=lm_aligned,
        landmark_weight=LANDMARK_WEIGHT if edited else 0.0,
        progress=_sub(progress, 1, total),
    )
    # The character in the template frame at its fitted true size: later geometry is in metres.
    local = Surface(similarity.apply(v), f)
    start = fit.vertices / fit.scale
    # Proposed on the fitted head, whose features already sit near the character's; edited
    # landmarks keep their places and unknown (NaN) ones take the proposed.
    proposed = similarity.inverse(local.points(local.closest(start[template.landmarks])))
    landmarks = proposed if not edited else np.where(np.isfinite(landmarks), landmarks, proposed)
    timings["identity fit"] = time.perf_counter() - clock
    return _Fitted(template, v, f, similarity, fit, unit, local, start, landmarks, edited, weights, timings)


def propose_landmarks(
    model,  # noqa: ANN001 - FaceModel
    vertices: np.ndarray,
    faces: np.ndarray,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, dict]:
    """The 68 landmarks FaceForge proposes on a character, before any non-rigid registration.

    The first two phases of :func:`register_character` (alignment, identity fit): the fitted
    head's landmark vertices snapped to the character's surface. The user moves the wrong ones
    and registers from them (``register_character(..., landmarks=...)``).

    Returns:
        ``landmarks (68, 3)`` in the character's frame and figures (``identity_fit_mm``, ``unit``,
        phase ``timings_s``).

    Raises:
        FaceForgeError: as :func:`register_character`.
    """
    fitted = _align_and_fit(model, vertices, faces, None, progress, 2)
    report(progress, 2, 2, "landmarks proposed")
    figures = {
        "identity_fit_mm": fitted.fit.residual_mm / fitted.fit.scale,
        "unit": fitted.unit,
        "metres_per_unit": float(fitted.similarity.scale),
        "timings_s": fitted.timings,
    }
    return fitted.landmarks, figures


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
    total = 4
    fitted = _align_and_fit(model, vertices, faces, landmarks, progress, total)
    template, v, f = fitted.template, fitted.vertices, fitted.faces
    similarity, fit, unit, local, start = (
        fitted.similarity,
        fitted.fit,
        fitted.unit,
        fitted.local,
        fitted.start,
    )
    landmarks, edited, weights, timings = fitted.landmarks, fitted.edited, fitted.weights, fitted.timings
    lm_local = similarity.apply(landmarks)

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

    # Floating parts (the tongue) follow the fitted identity.
    rest = ~template.skin
    registered[rest] = start[rest]

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
        "identity_fit_mm": fit.residual_mm / fit.scale,
        "identity_iterations": fit.iterations,
        "character_face_vertices": int(face.sum()),
        "components": int(connected_components(f, len(v)).max() + 1),
        # The unit (metres per character unit) the character was read in, or None where the
        # alignment's own scale fitted better (a head no real size explains).
        "unit": unit,
        "open_edges_on_face_mm": defects["open_edge_length_m"] * 1e3,
    }
    return Correspondence(
        similarity=similarity,
        landmarks=landmarks,
        registered=registered,
        to_character=to_character,
        to_template=to_template,
        face=face,
        w_id=fit.w_id,
        w_source=fit.w_source,
        # x_template = R x_model + t / s  <=>  x_model = R^T x_template - R^T t / s.
        source_rotation=fit.rotation.T,
        source_translation=-fit.rotation.T @ fit.translation / fit.scale,
        timings=timings,
        figures=figures,
    )
