"""Separate parts of a character: eyes, teeth and tongue, attached pieces, and what is held.

A character mesh often carries more than its skin: eyeballs (with cornea and iris shells), upper and
lower teeth, a tongue, eyelashes and brows as cards, hair, a body. Each moves its own way in an
expression: eyes rotate about their centres for ``eyeLook*`` (a smear of the lid deformation
would tear them), lower teeth and the tongue ride on the jaw, eyelashes follow the skin under them,
hair and clothes keep still. :func:`find_parts` tells the components apart from their position
on the registered head; a user's own assignment (vertex groups, materials) overrides it.

All geometry is in the template frame (metres, +X subject's left, -Y forward, +Z up).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faceforge.data.geometry import connected_components, fit_sphere
from faceforge.errors import FaceForgeError

__all__ = ["ASSIGNABLE_PARTS", "PART_KINDS", "Parts", "find_parts", "gaze_rotation", "GAZE_DEGREES"]

#: What a character vertex can be. ``skin``: deformation transfer; ``attached``: follows the skin
#: displacement under it; ``eye_left``/``eye_right``: rotates about the eye centre; ``lower``:
#: carried rigidly by the jaw (lower teeth); ``tongue``: the jaw's motion plus the template tongue's
#: own (``tongueOut``); ``held``: keeps its place.
PART_KINDS = ("skin", "attached", "eye_left", "eye_right", "lower", "held", "tongue")
#: What a user may assign: a part kind, or ``eye`` (an eye of either side: each connected piece
#: goes to the eye it sits at, as a material named "Eye" covers both).
ASSIGNABLE_PARTS = (*PART_KINDS, "eye")
#: A mouth part lying this close (median, metres) to the registered template's tongue is a tongue.
TONGUE_DISTANCE = 0.004

#: Eye rotation of an ``eyeLook*`` key at weight 1 (degrees), the range face rigs commonly give
#: the ARKit gaze keys. A profile's gain scales it per key.
GAZE_DEGREES = {"Up": 25.0, "Down": 30.0, "In": 30.0, "Out": 35.0}
#: A component no larger than this around its centroid (metres) may be an eye part.
EYE_PART_RADIUS = 0.02
#: ... when its centroid lies this close to where the template's eye is (metres).
EYE_SEARCH = 0.02
#: A component whose centroid lies this close to the mouth's centre, behind the lips, is a mouth part
#: if no larger than :data:`MOUTH_PART_RADIUS` around its centroid (a tongue reaches 4.6 cm).
MOUTH_SEARCH = 0.04
MOUTH_PART_RADIUS = 0.06


@dataclass
class Parts:
    """Per-vertex part labels of a character and the geometry the moving parts need.

    Attributes:
        kind: ``(V,)`` array of :data:`PART_KINDS` strings.
        eye_centres: side (``eye_left``/``eye_right``) -> ``(3,)`` rotation centre (template frame).
        source: part kind -> ``"found"`` or ``"assigned"``.
    """

    kind: np.ndarray
    eye_centres: dict[str, np.ndarray] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)

    def indices(self, kind: str) -> np.ndarray:
        return np.flatnonzero(self.kind == kind)

    def counts(self) -> dict[str, int]:
        return {k: int((self.kind == k).sum()) for k in PART_KINDS}


def _sphere_centre(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through ``points (N, 3)``: centre and relative RMS residual."""
    centre, _, residual = fit_sphere(points)
    return centre, residual


def _sided_eyes(
    assigned: dict[str, np.ndarray], labels: np.ndarray, local: np.ndarray, eye_prior: dict, n: int
) -> dict[str, np.ndarray]:
    """``assigned`` with an ``eye`` entry split into ``eye_left`` / ``eye_right`` by connected
    piece (each to the nearer eye); checks every entry's indices."""
    for part, idx in assigned.items():
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise FaceForgeError(f"part {part!r} names vertices the character does not have")
    eyes = np.asarray(assigned.pop("eye", []), dtype=np.int64)
    for c in np.unique(labels[eyes]):
        piece = eyes[labels[eyes] == c]
        centroid = local[piece].mean(axis=0)
        side = min(eye_prior, key=lambda s: np.linalg.norm(centroid - eye_prior[s]))
        assigned[side] = np.union1d(np.asarray(assigned.get(side, []), dtype=np.int64), piece)
    return assigned


def find_parts(
    local: np.ndarray,
    faces: np.ndarray,
    face: np.ndarray,
    landmarks: np.ndarray,
    assigned: dict[str, np.ndarray] | None = None,
    tongue: np.ndarray | None = None,
) -> Parts:
    """Label every character vertex with its part.

    Args:
        local: ``(V, 3)`` character vertices in the template frame (metres).
        faces: ``(F, 3)`` character triangles.
        face: ``(V,)`` bool, vertices on the face the template registered.
        landmarks: ``(68, 3)`` iBUG landmarks on the character (template frame).
        assigned: optional part kind -> vertex indices (a user's vertex groups); these win.
        tongue: ``(T, 3)`` the template's tongue registered into the character (template frame).

    Returns:
        :class:`Parts`. A component with face vertices and vertices off the face is ``skin``; one
        lying wholly on the face is ``attached``; small components at the eyes are eye parts, those
        in the mouth behind the lips ``lower`` if below the mouth corners; the rest is ``held``.
    """
    n = len(local)
    labels = connected_components(faces, n)
    kind = np.full(n, "held", dtype=object)
    eye_lm = {"eye_right": landmarks[36:42].mean(axis=0), "eye_left": landmarks[42:48].mean(axis=0)}
    # Eyeball centres sit about one eye radius behind the lid opening (+Y is backwards).
    eye_prior = {side: p + np.array([0.0, 0.011, 0.0]) for side, p in eye_lm.items()}
    mouth = landmarks[48:68].mean(axis=0)
    corners_z = landmarks[[48, 54], 2].mean()
    eye_points: dict[str, list[np.ndarray]] = {"eye_left": [], "eye_right": []}
    for c in range(labels.max() + 1):
        members = np.flatnonzero(labels == c)
        on_face = face[members]
        p = local[members]
        centroid = p.mean(axis=0)
        spread = np.linalg.norm(p - centroid, axis=1).max()
        side = min(eye_prior, key=lambda s: np.linalg.norm(centroid - eye_prior[s]))
        # An eyeball (or its cornea shell) is a sphere in the socket, close to the lids the
        # template registered; an iris disc lies behind them. Eyelashes are cards on the lids.
        if (
            spread < EYE_PART_RADIUS
            and np.linalg.norm(centroid - eye_prior[side]) < EYE_SEARCH
            and len(members) >= 4
            and (on_face.mean() < 0.5 or _sphere_centre(p)[1] < 0.15)
        ):
            kind[members] = side
            eye_points[side].append(p)
        elif (
            spread < MOUTH_PART_RADIUS
            and np.linalg.norm(centroid - mouth) < MOUTH_SEARCH
            and centroid[1] > mouth[1] - 0.002
            and on_face.mean() < 0.5
        ):
            # Teeth and tongue behind the lips (their tips may come near the lips' inside).
            kind[members] = "lower" if centroid[2] < corners_z else "held"
            if tongue is not None and len(tongue):
                gap = np.linalg.norm(p[:, None] - tongue[None], axis=2).min(axis=1)
                if np.median(gap) < TONGUE_DISTANCE:
                    kind[members] = "tongue"
        elif on_face.all():
            kind[members] = "attached"
        elif on_face.any() and on_face.sum() >= 0.05 * len(members):
            kind[members] = "skin"
            kind[members[~on_face]] = "held"
        else:
            kind[members] = "held"
    # Skin vertices of components that also lie on the face stay "skin"; held ones keep still.
    kind[(kind == "skin") & ~face] = "held"
    kind[face & (kind == "held")] = "skin"
    source = {k: "found" for k in PART_KINDS}
    assigned = _sided_eyes(dict(assigned or {}), labels, local, eye_prior, n)
    for part, idx in assigned.items():
        if part not in PART_KINDS:
            raise FaceForgeError(f"unknown part {part!r}; parts are {', '.join(ASSIGNABLE_PARTS)}")
        idx = np.asarray(idx, dtype=np.int64)
        kind[idx] = part
        source[part] = "assigned"
        if part in eye_points:
            eye_points[part] = [local[idx]]
    centres = {}
    for side, chunks in eye_points.items():
        if (kind == side).any():
            pts = np.concatenate(chunks) if chunks else local[kind == side]
            centre, residual = _sphere_centre(pts)
            # An eye made of shells fits a sphere well; a flat iris alone does not: use the prior.
            centres[side] = centre if residual < 0.15 else pts.mean(axis=0) + np.array([0.0, 0.0055, 0.0])
    return Parts(kind=np.asarray(kind, dtype=str), eye_centres=centres, source=source)


def gaze_rotation(name: str, side: str, gain: float = 1.0) -> np.ndarray | None:
    """``(3, 3)`` eye rotation of an ``eyeLook*`` key for one eye, or None if the key moves it not.

    ``eyeLookOutLeft`` turns the left eye towards the subject's left (+X), ``eyeLookUpLeft`` up.
    """
    if not name.startswith("eyeLook"):
        return None
    rest = name[len("eyeLook") :]
    direction = next((d for d in GAZE_DEGREES if rest.startswith(d)), None)
    key_side = "eye_left" if rest.endswith("Left") else "eye_right" if rest.endswith("Right") else None
    if direction is None or key_side != side:
        return None
    angle = np.radians(GAZE_DEGREES[direction] * gain)
    c, s = np.cos(angle), np.sin(angle)
    if direction in ("Up", "Down"):
        a = -angle if direction == "Up" else angle  # about +X: positive turns -Y (forward) down
        c, s = np.cos(a), np.sin(a)
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    # About +Z: positive turns forward (-Y) towards +X (the subject's left).
    towards_left = (direction == "Out") == (side == "eye_left")
    s = s if towards_left else -s
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
