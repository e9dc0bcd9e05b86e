"""Lip-lip and lip-teeth contact: incremental potential contact (IPC) through ``ipctk``.

The collision mesh is the lips and the mouth lining near them (skin vertices embedded in the
lattice, positions ``W_lip x``) plus the teeth proxies (rigid: upper with the skull, lower with the
jaw). ``ipctk`` gives the barrier b(d) = -(d - dhat)^2 ln(d / dhat) on squared distances, its
gradient and PSD-projected Hessian, conservative CCD step sizes and the adaptive stiffness rules.
Intersections are counted exactly: every edge against every triangle it shares no vertex with,
through ``ipctk.is_edge_intersecting_triangle`` (orientation predicates) after an AABB prefilter.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

__all__ = ["MouthCollisions", "count_intersecting_pairs", "edges_of", "intersecting_pairs"]


def edges_of(faces: np.ndarray) -> np.ndarray:
    """``(E, 2)`` unique undirected edges of triangles ``faces``."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def intersecting_pairs(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(K, 5)`` vertex ids (edge a, b; triangle i, j, k) of every intersecting (edge, triangle) pair
    that shares no vertex.

    Args:
        vertices: ``(V, 3)`` positions; faces: ``(F, 3)`` triangles into them.
    """
    import ipctk

    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if len(faces) == 0:
        return np.zeros((0, 5), dtype=np.int64)
    edges = edges_of(faces)
    tri = vertices[faces]
    tri_lo, tri_hi = tri.min(axis=1), tri.max(axis=1)
    seg = vertices[edges]
    seg_lo, seg_hi = seg.min(axis=1), seg.max(axis=1)
    radius = float(
        np.linalg.norm(tri_hi - tri_lo, axis=1).max() + np.linalg.norm(seg_hi - seg_lo, axis=1).max()
    )
    tree = cKDTree(0.5 * (tri_lo + tri_hi))
    hits = []
    for ei, cands in enumerate(tree.query_ball_point(0.5 * (seg_lo + seg_hi), r=0.5 * radius)):
        if not cands:
            continue
        c = np.asarray(cands)
        overlap = (tri_lo[c] <= seg_hi[ei]).all(axis=1) & (tri_hi[c] >= seg_lo[ei]).all(axis=1)
        c = c[overlap]
        a, b = edges[ei]
        c = c[~((faces[c] == a) | (faces[c] == b)).any(axis=1)]
        for f in c:
            t0, t1, t2 = tri[f]
            if ipctk.is_edge_intersecting_triangle(seg[ei, 0], seg[ei, 1], t0, t1, t2):
                hits.append((a, b, *faces[f]))
    return np.asarray(hits, dtype=np.int64).reshape(-1, 5)


def count_intersecting_pairs(vertices: np.ndarray, faces: np.ndarray) -> int:
    """Number of (edge, triangle) pairs that intersect, over pairs that share no vertex."""
    return len(intersecting_pairs(vertices, faces))


class MouthCollisions:
    """The mouth's collision mesh and its barrier, in the lattice's free degrees of freedom.

    Args:
        W_lip: ``(m, N)`` embedding of the lip collision vertices in the lattice nodes.
        lip_faces: ``(F_l, 3)`` triangles into the ``m`` lip vertices.
        teeth_rest: ``(T, 3)`` teeth proxy vertices at rest; ``teeth_faces`` into them (offset
            by ``m`` in the collision mesh); ``teeth_jaw`` marks the lower (jaw) teeth.
        dhat: barrier activation distance (m).
    """

    def __init__(
        self,
        W_lip: sp.csr_matrix,
        lip_faces: np.ndarray,
        teeth_rest: np.ndarray,
        teeth_faces: np.ndarray,
        teeth_jaw: np.ndarray,
        dhat: float = 3e-4,
    ) -> None:
        import ipctk

        self.W = W_lip.tocsr()
        self.m = self.W.shape[0]
        self.teeth_rest = np.asarray(teeth_rest, dtype=np.float64)
        self.teeth_jaw = np.asarray(teeth_jaw, dtype=bool)
        self.faces = np.concatenate([lip_faces, teeth_faces + self.m]).astype(np.int32)
        self.edges = edges_of(self.faces).astype(np.int32)
        self.dhat = float(dhat)
        self._ipctk = ipctk
        rest = np.zeros((self.m + len(self.teeth_rest), 3))
        self.mesh = ipctk.CollisionMesh(
            np.asfortranarray(rest), np.asfortranarray(self.edges), np.asfortranarray(self.faces)
        )
        self.stiffness = 0.0
        self.max_stiffness = 0.0

    def teeth(self, jaw_rotation: np.ndarray, jaw_translation: np.ndarray) -> np.ndarray:
        """``(T, 3)`` teeth positions for a jaw transform (upper teeth stay with the skull)."""
        t = self.teeth_rest.copy()
        t[self.teeth_jaw] = t[self.teeth_jaw] @ jaw_rotation.T + jaw_translation
        return t

    def positions(self, x: np.ndarray, teeth: np.ndarray) -> np.ndarray:
        """``(m + T, 3)`` collision vertex positions from node positions ``x (N, 3)``."""
        return np.asfortranarray(np.concatenate([self.W @ x, teeth]))

    def exclude_rest_contacts(self, rest: np.ndarray, distance: float) -> int:
        """Forbid collisions between the vertices of primitives closer than ``distance`` at ``rest``.

        Returns the number of vertex pairs excluded."""
        c = self._ipctk.NormalCollisions()
        c.build(self.mesh, rest, distance)
        pairs: dict[tuple[int, int], bool] = {}
        edges, faces = self.mesh.edges, self.mesh.faces
        for k in range(len(c)):
            ids = sorted(int(i) for i in c[k].vertex_ids(edges, faces) if i >= 0)
            for i, a in enumerate(ids):
                for b in ids[i + 1 :]:
                    pairs[(a, b)] = False
        if pairs:
            self.mesh.can_collide = self._ipctk.make_sparse_filter(pairs, True)
        self._glued = pairs
        return len(pairs)

    def rebuild_mesh(self, rest_positions: np.ndarray) -> None:
        """Use ``rest_positions`` as the mesh's rest state (ipctk needs a rest state for some queries)."""
        self.mesh = self._ipctk.CollisionMesh(
            np.asfortranarray(rest_positions), np.asfortranarray(self.edges), np.asfortranarray(self.faces)
        )
        if getattr(self, "_glued", None):
            self.mesh.can_collide = self._ipctk.make_sparse_filter(self._glued, True)

    def collisions(self, V: np.ndarray):  # noqa: ANN201 - ipctk.NormalCollisions
        c = self._ipctk.NormalCollisions()
        c.build(self.mesh, V, self.dhat)
        return c

    def potential(self, V: np.ndarray, collisions=None) -> float:  # noqa: ANN001
        """Barrier energy kappa * sum b(d) (J) at collision positions ``V``."""
        c = self.collisions(V) if collisions is None else collisions
        if len(c) == 0 or self.stiffness == 0:
            return 0.0
        return float(self._ipctk.BarrierPotential(self.dhat, self.stiffness)(c, self.mesh, V))

    def gradient_hessian(self, V: np.ndarray, collisions) -> tuple[np.ndarray, sp.csr_matrix]:  # noqa: ANN001
        """``(grad (m + T, 3), H (3(m+T), 3(m+T)))`` of the barrier (row-major xyz interleaved)."""
        pot = self._ipctk.BarrierPotential(self.dhat, self.stiffness)
        g = pot.gradient(collisions, self.mesh, V).reshape(-1, 3)
        H = pot.hessian(
            collisions, self.mesh, V, project_hessian_to_psd=self._ipctk.PSDProjectionMethod.CLAMP
        )
        return g, H.tocsr()

    def unit_gradient(self, V: np.ndarray, collisions) -> np.ndarray:  # noqa: ANN001
        return self._ipctk.BarrierPotential(self.dhat, 1.0).gradient(collisions, self.mesh, V).reshape(-1, 3)

    def collision_free_step(self, V0: np.ndarray, V1: np.ndarray) -> float:
        return float(self._ipctk.compute_collision_free_stepsize(self.mesh, V0, V1))

    def min_distance(self, V: np.ndarray, collisions) -> float:  # noqa: ANN001
        if len(collisions) == 0:
            return np.inf
        return float(np.sqrt(collisions.compute_minimum_distance(self.mesh, V)))
