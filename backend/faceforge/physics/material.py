"""The material space of a FaceForge head: soft tissue between skin and bones, as an embedded hex lattice.

Generalized Physical Face Model, Sec. 3: the undeformed soft tissue Omega^0 lies between the skin and
the bones (skull and jaw); it is discretized by regular elements, and skin, skull and jaw are embedded
in them with trilinear weights (``W_skin``, ``W_skull``, ``W_jaw``).

The skin is the head crop's frontal face (every vertex a facial action moves, without the tongue and
the deep mouth cavity). The bones are not in the data, so they are built from it: each outer skin
vertex is offset inward along its normal by a soft-tissue depth. The depths are published adult means
at craniofacial landmarks (ultrasound and needle studies; rounded values close to De Greef et al.
2006, Forensic Sci. Int. 159S), set at the head's iBUG-68 / anatomical landmarks and interpolated over
the face by a harmonic (graph Laplacian) fill. Bone points under jaw-side skin (MakeHuman ``jaw``
bone weight >= 0.5, or skin that ``jawOpen`` moves by more than half its maximum, below the mouth)
belong to the jaw; the rest to the skull. Eyelids, nose, lips and the mouth lining get no bone point:
there is eyeball, cartilage or teeth behind them, not skull.

A point belongs to the soft tissue when it lies behind the nearest skin point (against its outward
normal) and no deeper than that point's tissue depth; each lattice cell is sampled at 27 points and
keeps its occupied fraction as its volume. Upper and lower lip touch at rest; cells there are
duplicated per side and the nodes along the lip contact are split (a virtual-node cut), so the mouth can
open. Teeth are rigid collision proxies: two arches of triangles behind the lips, the upper one moving
with the skull and the lower one with the jaw.

This module builds it step by step; the steps live by what they do: head regions, normals and tissue
depths in :mod:`.tissue`, the mouth (jaw side, lip separation, lip contact, teeth) in :mod:`.mouth`,
cells, elements, the lip cut and trilinear embedding in :mod:`.lattice`, skull and jaw in :mod:`.bones`.
The type is :mod:`.material_space`'s, its disk form and cache key :mod:`.material_cache`'s.
"""

from __future__ import annotations

import numpy as np

from faceforge.errors import FaceForgeError
from faceforge.physics.bones import embed_bones
from faceforge.physics.lattice import _CORNERS as _CORNERS
from faceforge.physics.lattice import (
    Lattice,
    SkinSamples,
    build_lattice,
    lattice_grid,
    occupy_cells,
    sample_skin,
)
from faceforge.physics.lattice import trilinear_weights as trilinear_weights
from faceforge.physics.material_cache import load_material_space, material_cache_key, save_material_space
from faceforge.physics.material_space import MIN_FRACTION, MaterialSpace
from faceforge.physics.mouth import (
    anatomical_teeth,
    lip_contact_points,
    mouth_sets,
    separate_lips,
    teeth_arches,
)
from faceforge.physics.tissue import TISSUE_DEPTH_MM, head_regions, tissue_depth, vertex_normals

__all__ = [
    "RESOLUTIONS_MM",
    "TISSUE_DEPTH_MM",
    "MaterialSpace",
    "build_material_space",
    "load_material_space",
    "material_cache_key",
    "save_material_space",
    "head_regions",
    "separate_lips",
    "tissue_depth",
    "vertex_normals",
]

#: Lattice spacings the paper studies (Table 2), millimetres; 2 mm is its default.
RESOLUTIONS_MM = (6.8, 4.5, 3.0, 2.0, 1.3)


def _simulated_skin(
    vertices: np.ndarray, faces: np.ndarray, regions: dict[str, np.ndarray], jaw_open: np.ndarray | None
) -> tuple[np.ndarray, dict, dict]:
    """The simulated skin, its jaw side, and lips that cross at rest pulled apart:
    ``(rest vertices, mouth sets, separation info)`` (see :func:`mouth_sets`, :func:`separate_lips`)."""
    sets = mouth_sets(vertices, faces, regions, jaw_open)
    vertices, separation = separate_lips(vertices, faces, sets["lip_faces"], sets["lower"])
    if separation["crossings"]:
        sets = mouth_sets(vertices, faces, regions, jaw_open)
    return vertices, sets, separation


def _tissue_lattice(
    vertices: np.ndarray,
    skin_vertices: np.ndarray,
    regions: dict[str, np.ndarray],
    sets: dict,
    normals: np.ndarray,
    depth: np.ndarray,
    h: float,
) -> tuple[SkinSamples, Lattice]:
    """Tissue membership by the nearest skin point, then elements cut along the lip contact:
    ``(skin samples, lattice)``."""
    skin = sample_skin(vertices, sets["dom_faces"], normals, depth, h)
    grid = lattice_grid(skin.points, depth, h)
    reach = float(depth[skin_vertices].max()) + 1.8 * h
    lower = sets["lower"]
    occupancy = occupy_cells(skin, depth, grid, reach, lower, vertices[skin_vertices], lower[skin_vertices])
    lattice = build_lattice(occupancy, lip_contact_points(vertices, regions, sets), grid)
    return skin, lattice


def build_material_space(
    vertices: np.ndarray,
    faces: np.ndarray,
    resolution: float = 0.002,
    *,
    regions: dict[str, np.ndarray] | None = None,
    jaw_open: np.ndarray | None = None,
) -> MaterialSpace:
    """Build the material space of a head.

    Args:
        vertices: ``(V, 3)`` rest (neutral) head in metres, FaceForge head topology.
        faces: ``(F, 3)`` head triangles.
        resolution: lattice spacing in metres (paper: 6.8, 4.5, 3, 2 (default), 1.3 mm).
        regions: head annotations (default: the stored ones, see :func:`head_regions`).
        jaw_open: ``(V, 3)`` displacement of ``jawOpen`` on this head; marks jaw-side skin (lower
            face). Default: the skin's MakeHuman jaw weight alone.

    Returns:
        The :class:`MaterialSpace`.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    n = len(vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.isfinite(vertices).all():
        raise FaceForgeError("the rest face must be a finite (V, 3) array")
    if not 0.0005 <= resolution <= 0.02:
        raise FaceForgeError(f"lattice resolution {resolution * 1e3:.2f} mm is outside 0.5-20 mm")
    regions = head_regions(n) if regions is None else regions
    h = float(resolution)

    vertices, sets, separation = _simulated_skin(vertices, faces, regions, jaw_open)
    skin_vertices = np.flatnonzero(sets["used"])
    normals = vertex_normals(vertices, faces)
    depth = tissue_depth(vertices, faces, regions)

    skin, lattice = _tissue_lattice(vertices, skin_vertices, regions, sets, normals, depth, h)

    # --- embeddings of skin and bones, collision surfaces ------------------------------------------
    W_skin, ok = lattice.embed(vertices[skin_vertices], np.where(sets["lower"][skin_vertices], 2, 1))
    if not ok.all():
        raise FaceForgeError(f"{int((~ok).sum())} skin vertices fell outside the lattice")
    bones = embed_bones(vertices, skin_vertices, regions, sets, normals, depth, lattice)
    # The head's own teeth where they clear the lips (FaceForge heads), else proxy arches.
    from faceforge.heads.assets import stored_base_vertex_indices

    crop = n == len(stored_base_vertex_indices())
    own = anatomical_teeth(vertices, regions, sets["lip_faces"]) if crop else None
    lip_faces = sets["lip_faces"]
    if own is not None:
        teeth_v, teeth_f, teeth_jaw, setbacks, lining = own
        lip_faces = lip_faces[lining]  # the lining the teeth sit in is attached to them
        teeth = {"teeth": "anatomical", "teeth_move_mm": setbacks, "lining_attached": int((~lining).sum())}
    else:
        teeth_v, teeth_f, teeth_jaw = teeth_arches(vertices, regions, skin.points)
        teeth = {"teeth": "proxy arches"}

    return MaterialSpace(
        resolution=h,
        origin=lattice.grid.origin,
        nodes=lattice.nodes,
        elements=lattice.elements,
        element_cells=lattice.cells,
        volumes=np.maximum(lattice.occupied, MIN_FRACTION * h**3),
        occupied=lattice.occupied,
        element_vertex=np.asarray(lattice.element_vertex, dtype=np.int64),
        skin_vertices=skin_vertices,
        W_skin=W_skin,
        skull_nodes=bones.skull_nodes,
        jaw_nodes=bones.jaw_nodes,
        skull_points=bones.skull_points,
        W_skull=bones.W_skull,
        jaw_points=bones.jaw_points,
        W_jaw=bones.W_jaw,
        lip_faces=lip_faces,
        teeth_vertices=teeth_v,
        teeth_faces=teeth_f,
        teeth_jaw=teeth_jaw,
        depth=depth,
        rest_vertices=vertices,
        faces=faces,
        stats={
            "split_nodes": int(len(lattice.split)),
            "rest_lip_crossings": separation["crossings"],
            "rest_lip_separation_mm": separation["shift_mm"],
            "bone_points_dropped": bones.dropped,
            **teeth,
        },
    )
