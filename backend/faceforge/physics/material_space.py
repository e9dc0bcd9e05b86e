"""The material space type: an embedded hex lattice over a head's soft tissue, with the skin, skull
and jaw embedded in it (built by :func:`faceforge.physics.material.build_material_space`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

__all__ = ["MIN_FRACTION", "MaterialSpace"]

_MM = 1e-3

#: Smallest quadrature volume of an element, as a fraction of its cell.
MIN_FRACTION = 0.25


@dataclass
class MaterialSpace:
    """An embedded hex lattice over a head's soft tissue (all lengths in metres).

    Attributes:
        resolution: lattice spacing h.
        origin: ``(3,)`` lattice origin; cell ``(i, j, k)`` spans ``origin + h * [i, i+1] x ...``.
        nodes: ``(N, 3)`` rest node positions (split lip nodes appear once per side).
        elements: ``(E, 8)`` node indices per hex, corner order of :data:`faceforge.physics.lattice._CORNERS`.
        element_cells: ``(E, 3)`` integer cell coordinates.
        volumes: ``(E,)`` quadrature volume of each element (m^3): the occupied volume, at least
            :data:`MIN_FRACTION` of the cell so that a cell the skin barely enters cannot let its outer
            nodes drift (their weight in the skin embedding is small, their stiffness would be too).
        occupied: ``(E,)`` the occupied volume itself (m^3).
        element_vertex: ``(E,)`` nearest skin vertex of each element (for per-vertex maps:
            paralysis weights, vertex groups).
        skin_vertices: ``(S,)`` head vertices simulated (the face); the rest of the head stays put.
        W_skin: ``(S, N)`` trilinear embedding of the simulated skin vertices.
        skull_nodes / jaw_nodes: node indices held by the skull (fixed) and moved by the jaw.
        jaw_points: ``(J, 3)`` rest jaw bone points; ``W_jaw (J, N)`` their embedding.
        skull_points: ``(K, 3)`` rest skull bone points; ``W_skull (K, N)``.
        lip_faces: ``(Fl, 3)`` triangles (head vertex indices) of the lips and the mouth lining near
            them: the skin side of the collision mesh.
        teeth_vertices: ``(T, 3)`` rest teeth proxy vertices; ``teeth_faces`` their triangles;
            ``teeth_jaw`` which of them move with the jaw.
        depth: ``(V,)`` tissue depth per head vertex (m).
    """

    resolution: float
    origin: np.ndarray
    nodes: np.ndarray
    elements: np.ndarray
    element_cells: np.ndarray
    volumes: np.ndarray
    occupied: np.ndarray
    element_vertex: np.ndarray
    skin_vertices: np.ndarray
    W_skin: sp.csr_matrix
    skull_nodes: np.ndarray
    jaw_nodes: np.ndarray
    skull_points: np.ndarray
    W_skull: sp.csr_matrix
    jaw_points: np.ndarray
    W_jaw: sp.csr_matrix
    lip_faces: np.ndarray
    teeth_vertices: np.ndarray
    teeth_faces: np.ndarray
    teeth_jaw: np.ndarray
    depth: np.ndarray
    rest_vertices: np.ndarray
    faces: np.ndarray
    stats: dict = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_elements(self) -> int:
        return len(self.elements)

    def summary(self) -> dict:
        """JSON-ready counts and sizes."""
        return {
            "resolution_mm": self.resolution / _MM,
            "elements": self.n_elements,
            "nodes": self.n_nodes,
            "skull_nodes": len(self.skull_nodes),
            "jaw_nodes": len(self.jaw_nodes),
            "skin_vertices": len(self.skin_vertices),
            "tissue_volume_cm3": float(self.occupied.sum() * 1e6),
            **self.stats,
        }
