"""Closest points on a triangle mesh and barycentric maps between surfaces.

A :class:`Surface` answers "which point of this mesh is nearest to each query point" exactly
(point-to-triangle distance, Ericson's region test) among the triangles whose centroids are
nearest to the query, found with a k-d tree. ``k`` candidates per query is exact in practice
for meshes whose triangles are of similar size; the result is the nearest of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["BarycentricMap", "Surface", "closest_points_on_triangles", "vertex_normals"]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(V, 3)`` unit area-weighted vertex normals (zero for isolated vertices)."""
    v = np.asarray(vertices, dtype=np.float64)
    n = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    out = np.zeros_like(v)
    for c in range(3):
        np.add.at(out, faces[:, c], n)
    length = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, length, out=np.zeros_like(out), where=length > 0)


def closest_points_on_triangles(
    points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Closest point of each triangle ``(a, b, c)`` to each point (all ``(N, 3)``).

    Returns:
        ``(N, 3)`` closest points and ``(N, 3)`` their barycentric coordinates.
    """
    ab, ac, ap = b - a, c - a, points - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = points - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = points - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    bary = np.zeros((len(points), 3))
    done = np.zeros(len(points), dtype=bool)

    def assign(mask: np.ndarray, values: np.ndarray) -> None:
        m = mask & ~done
        bary[m] = values[m] if values.ndim == 2 else values
        done[m] = True

    ones, zeros = np.ones(len(points)), np.zeros(len(points))
    assign((d1 <= 0) & (d2 <= 0), np.stack([ones, zeros, zeros], 1))  # vertex a
    assign((d3 >= 0) & (d4 <= d3), np.stack([zeros, ones, zeros], 1))  # vertex b
    assign((d6 >= 0) & (d5 <= d6), np.stack([zeros, zeros, ones], 1))  # vertex c
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.nan_to_num(d1 / (d1 - d3))
        assign((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - v, v, zeros], 1))  # edge ab
        w = np.nan_to_num(d2 / (d2 - d6))
        assign((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - w, zeros, w], 1))  # edge ac
        w = np.nan_to_num((d4 - d3) / ((d4 - d3) + (d5 - d6)))
        assign((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), np.stack([zeros, 1 - w, w], 1))  # bc
        denom = va + vb + vc
        denom = np.where(np.abs(denom) < 1e-300, 1.0, denom)
        inside = np.stack([va / denom, vb / denom, vc / denom], 1)
    assign(np.ones(len(points), dtype=bool), inside)
    closest = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    return closest, bary


@dataclass(frozen=True)
class BarycentricMap:
    """Points given on a mesh by triangle and barycentric coordinates.

    Attributes:
        faces: ``(N,)`` triangle index of each point in the mesh's ``faces``.
        weights: ``(N, 3)`` barycentric coordinates (sum to 1).
        distances: ``(N,)`` distance of each query to its point when the map was made (units of
            the mesh).
    """

    faces: np.ndarray
    weights: np.ndarray
    distances: np.ndarray

    def apply(self, vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
        """The points on a deformed copy of the mesh: ``vertices (..., V, 3)`` -> ``(..., N, 3)``."""
        corners = triangles[self.faces]  # (N, 3)
        v = np.asarray(vertices)
        return np.einsum("...nkd,nk->...nd", v[..., corners, :], self.weights)


class Surface:
    """A triangle mesh ready for closest-point queries.

    Args:
        vertices: ``(V, 3)`` positions.
        faces: ``(F, 3)`` triangles.
        candidates: triangles examined per query (nearest centroids).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, candidates: int = 12) -> None:
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.candidates = min(candidates, len(self.faces))
        self._tree = cKDTree(self.vertices[self.faces].mean(axis=1))
        n = np.cross(
            self.vertices[self.faces[:, 1]] - self.vertices[self.faces[:, 0]],
            self.vertices[self.faces[:, 2]] - self.vertices[self.faces[:, 0]],
        )
        length = np.linalg.norm(n, axis=1, keepdims=True)
        self.face_normals = np.divide(n, length, out=np.zeros_like(n), where=length > 0)
        self.vertex_normals = vertex_normals(self.vertices, self.faces)

    def closest(
        self, points: np.ndarray, normals: np.ndarray | None = None, min_cos: float = 0.0
    ) -> BarycentricMap:
        """The nearest surface point of each of ``points (N, 3)``.

        With ``normals (N, 3)``, triangles facing away (normal cosine below ``min_cos``) are
        passed over when a compatible one is among the candidates: a point on the lower lip
        then maps onto the lower lip, not the upper lip a fraction of a millimetre above it.
        """
        p = np.asarray(points, dtype=np.float64)
        _, cand = self._tree.query(p, k=self.candidates)
        cand = cand.reshape(len(p), -1)
        k = cand.shape[1]
        tri = self.vertices[self.faces[cand.reshape(-1)]]  # (N*k, 3, 3)
        q = np.repeat(p, k, axis=0)
        closest, bary = closest_points_on_triangles(q, tri[:, 0], tri[:, 1], tri[:, 2])
        d = np.linalg.norm(closest - q, axis=1).reshape(len(p), k)
        if normals is not None:
            cos = np.einsum("nkd,nd->nk", self.face_normals[cand], np.asarray(normals, np.float64))
            facing = cos >= min_cos
            facing[~facing.any(axis=1)] = True  # nothing compatible: the nearest of all
            best = np.where(facing, d, np.inf).argmin(axis=1)
        else:
            best = d.argmin(axis=1)
        rows = np.arange(len(p))
        return BarycentricMap(
            faces=cand[rows, best],
            weights=bary.reshape(len(p), k, 3)[rows, best],
            distances=d[rows, best],
        )

    def points(self, mapping: BarycentricMap) -> np.ndarray:
        """``(N, 3)`` positions of ``mapping`` on this surface."""
        return mapping.apply(self.vertices, self.faces)

    def normals(self, mapping: BarycentricMap) -> np.ndarray:
        """``(N, 3)`` interpolated unit vertex normals at ``mapping``'s points."""
        n = mapping.apply(self.vertex_normals, self.faces)
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
