"""The mesh hierarchy S2D-Dec runs on (Sparse2Dense Sec. 3.2), built for any head topology.

- **down-sampling** by quadric-error half-edge collapse that keeps original vertices (a vertex is
  merged into a neighbour that stays where it is), so each coarse level is a subset of the finer
  one; every connected component keeps at least one triangle's worth of vertices;
- **up-sampling** by barycentric weights of each fine vertex's closest point on the coarse mesh
  (own point-to-triangle projection), exact for the vertices both levels share;
- **spirals** per level: the vertex, then its 1-ring, 2-ring... each ring ordered counter-clockwise
  around the vertex normal from a fixed start, cut or padded (with a zero "dummy" vertex) to a
  fixed length.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from faceforge.errors import FaceForgeError

__all__ = ["MeshHierarchy", "build_hierarchy", "decimate", "spirals", "upsampling_matrix"]


# -- mesh hierarchy ------------------------------------------------------------------------------


def _face_quadrics(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(V, 4, 4)`` sum of the (area-weighted) plane quadrics of each vertex's triangles."""
    p0, p1, p2 = (vertices[faces[:, k]] for k in range(3))
    normal = np.cross(p1 - p0, p2 - p0)
    area = np.linalg.norm(normal, axis=1, keepdims=True)
    unit = normal / np.maximum(area, 1e-20)
    plane = np.concatenate([unit, -np.sum(unit * p0, axis=1, keepdims=True)], axis=1)
    k = plane[:, :, None] * plane[:, None, :] * (0.5 * area)[:, :, None]
    quadrics = np.zeros((len(vertices), 4, 4))
    for c in range(3):
        np.add.at(quadrics, faces[:, c], k)
    return quadrics


class _HalfEdgeCollapse:
    """The mutable mesh of :func:`decimate`: triangles, per-vertex quadrics and adjacency.

    A half-edge collapse ``u -> v`` removes ``u`` and re-attaches its triangles to ``v``, which
    stays where it is. ``version[u]`` counts the changes around ``u``, so that queued costs
    computed before a change can be recognised as stale.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        """``vertices (V, 3)`` float64 and ``faces (F, 3)`` int64 of the fine mesh."""
        n = len(vertices)
        self.vertices = vertices
        self.quadrics = _face_quadrics(vertices, faces)  # (V, 4, 4)
        self.homogeneous = np.concatenate([vertices, np.ones((n, 1))], axis=1)  # (V, 4)
        self.tri = faces.copy()
        self.alive_face = np.ones(len(self.tri), dtype=bool)
        self.vertex_faces: list[set[int]] = [set() for _ in range(n)]
        for f, (a, b, c) in enumerate(self.tri):
            self.vertex_faces[a].add(f)
            self.vertex_faces[b].add(f)
            self.vertex_faces[c].add(f)
        self.alive = np.ones(n, dtype=bool)
        self.version = np.zeros(n, dtype=np.int64)

    def cost(self, u: int, v: int) -> float:
        """Quadric error of moving ``u`` onto ``v`` (``v``'s position under both quadrics)."""
        x = self.homogeneous[v]
        return float(x @ (self.quadrics[u] + self.quadrics[v]) @ x)

    def neighbours(self, u: int) -> set[int]:
        """The vertices sharing a live triangle with ``u``."""
        return {int(w) for f in self.vertex_faces[u] for w in self.tri[f]} - {u}

    def is_current(self, u: int, v: int, version_u: int, version_v: int) -> bool:
        """Whether a queued collapse ``u -> v`` is still valid: both alive, nothing changed since."""
        return bool(
            self.alive[u] and self.alive[v] and version_u == self.version[u] and version_v == self.version[v]
        )

    def _flips_a_triangle(self, u: int, v: int, survivors: list[int]) -> bool:
        """Whether moving ``u`` onto ``v`` turns any of the ``survivors`` triangles over."""
        vertices = self.vertices
        for f in survivors:
            a, b, d = self.tri[f]
            before = np.cross(vertices[b] - vertices[a], vertices[d] - vertices[a])
            moved = [v if w == u else w for w in (a, b, d)]
            after = np.cross(vertices[moved[1]] - vertices[moved[0]], vertices[moved[2]] - vertices[moved[0]])
            if np.dot(before, after) <= 0.0:
                return True
        return False

    def can_collapse(self, u: int, v: int) -> bool:
        """Whether ``u -> v`` is an edge whose collapse keeps its component and flips nothing."""
        if v not in self.neighbours(u):
            return False
        # Keep components alive: never collapse a vertex whose faces would all vanish.
        survivors = [f for f in self.vertex_faces[u] if v not in self.tri[f]]
        if not survivors and len(self.vertex_faces[v] - self.vertex_faces[u]) == 0:
            return False
        # Reject collapses that flip a triangle.
        return not self._flips_a_triangle(u, v, survivors)

    def collapse(self, u: int, v: int) -> None:
        """Remove ``u``: drop the triangles on the edge, move ``u``'s others to ``v``, merge the
        quadrics and mark the neighbourhood of ``v`` changed."""
        tri, vertex_faces = self.tri, self.vertex_faces
        for f in list(vertex_faces[u]):
            if v in tri[f]:
                self.alive_face[f] = False
                for w in tri[f]:
                    vertex_faces[int(w)].discard(f)
            else:
                tri[f][tri[f] == u] = v
                vertex_faces[v].add(f)
        vertex_faces[u].clear()
        self.alive[u] = False
        self.quadrics[v] += self.quadrics[u]
        self.version[v] += 1
        for w in self.neighbours(v):
            self.version[w] += 1

    def coarse_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """``kept (V',)`` sorted indices of the live vertices and the live, non-degenerate
        triangles ``(F', 3)`` indexing into ``kept``."""
        n = len(self.vertices)
        kept = np.flatnonzero(self.alive)
        remap = -np.ones(n, dtype=np.int64)
        remap[kept] = np.arange(len(kept))
        coarse = remap[self.tri[self.alive_face]]
        coarse = coarse[
            (coarse[:, 0] != coarse[:, 1]) & (coarse[:, 1] != coarse[:, 2]) & (coarse[:, 0] != coarse[:, 2])
        ]
        return kept, coarse


def decimate(vertices: np.ndarray, faces: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric half-edge collapse down to ``target`` vertices, keeping original vertices.

    Returns:
        ``kept (target,)`` sorted indices of the kept vertices and the coarse ``faces (F', 3)``
        indexing into ``kept``.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    n = len(vertices)
    if not 3 <= target <= n:
        raise FaceForgeError(f"cannot decimate {n} vertices to {target}")
    mesh = _HalfEdgeCollapse(vertices, faces)
    # Queue entries: (cost, u, v, version of u, version of v) of the collapse u -> v.
    heap = [(mesh.cost(u, v), u, v, 0, 0) for u in range(n) for v in mesh.neighbours(u)]
    heapq.heapify(heap)
    remaining = n
    while remaining > target and heap:
        _, u, v, vu, vv = heapq.heappop(heap)
        if not mesh.is_current(u, v, vu, vv) or not mesh.can_collapse(u, v):
            continue
        mesh.collapse(u, v)
        remaining -= 1
        version = mesh.version
        for w in mesh.neighbours(v):
            heapq.heappush(heap, (mesh.cost(v, w), v, w, version[v], version[w]))
            heapq.heappush(heap, (mesh.cost(w, v), w, v, version[w], version[v]))
    return mesh.coarse_mesh()


def _closest_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentric coordinates ``(P, T, 3)`` of each point's closest point on each triangle."""
    ab, ac = b - a, c - a
    ap = points[:, None] - a[None]
    d00 = np.sum(ab * ab, axis=-1)
    d01 = np.sum(ab * ac, axis=-1)
    d11 = np.sum(ac * ac, axis=-1)
    d20 = np.sum(ap * ab[None], axis=-1)
    d21 = np.sum(ap * ac[None], axis=-1)
    denom = np.maximum(d00 * d11 - d01 * d01, 1e-30)
    v = (d11 * d20 - d01 * d21) / denom
    w = (d00 * d21 - d01 * d20) / denom
    bary = np.stack([1.0 - v - w, v, w], axis=-1)
    # Outside the triangle: clamp to the simplex and renormalize (a close, cheap approximation of
    # the exact edge projection, exact inside and at the vertices).
    bary = np.clip(bary, 0.0, None)
    return bary / np.maximum(bary.sum(axis=-1, keepdims=True), 1e-30)


def upsampling_matrix(
    fine: np.ndarray,
    coarse_vertices: np.ndarray,
    coarse_faces: np.ndarray,
    kept: np.ndarray,
    chunk: int = 256,
) -> sparse.csr_matrix:
    """``(V_fine, V_coarse)`` barycentric weights of each fine vertex on its closest coarse triangle;
    kept vertices map to themselves with weight 1."""
    a, b, c = (coarse_vertices[coarse_faces[:, k]] for k in range(3))
    rows, cols, vals = [], [], []
    for start in range(0, len(fine), chunk):
        points = fine[start : start + chunk]
        bary = _closest_on_triangles(points, a, b, c)
        closest = np.einsum("ptk,tkd->ptd", bary, np.stack([a, b, c], axis=1))
        distance = np.linalg.norm(closest - points[:, None], axis=-1)
        best = np.argmin(distance, axis=1)
        for i, t in enumerate(best):
            for k in range(3):
                rows.append(start + i)
                cols.append(int(coarse_faces[t, k]))
                vals.append(float(bary[i, t, k]))
    matrix = sparse.coo_matrix((vals, (rows, cols)), shape=(len(fine), len(coarse_vertices))).tolil()
    for j, i in enumerate(kept):
        matrix.rows[i], matrix.data[i] = [j], [1.0]
    return matrix.tocsr()


def spirals(vertices: np.ndarray, faces: np.ndarray, length: int) -> np.ndarray:
    """``(V, length)`` spiral indices (the vertex, its rings counter-clockwise); ``V`` pads.

    Each ring is ordered by angle around the vertex normal, starting from the direction of the
    vertex's lowest-index neighbour, so the order is the same for every mesh of the topology.
    """
    n = len(vertices)
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for a, b, c in faces:
        neighbours[a] |= {b, c}
        neighbours[b] |= {a, c}
        neighbours[c] |= {a, b}
    p0, p1, p2 = (vertices[faces[:, k]] for k in range(3))
    face_normal = np.cross(p1 - p0, p2 - p0)
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normal)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-20)
    out = np.full((n, length), n, dtype=np.int64)
    for v in range(n):
        seq, seen, ring = [v], {v}, [v]
        if neighbours[v]:
            ref = vertices[min(neighbours[v])] - vertices[v]
        else:
            ref = np.array([1.0, 0.0, 0.0])
        axis_x = ref - np.dot(ref, normals[v]) * normals[v]
        axis_x /= max(np.linalg.norm(axis_x), 1e-20)
        axis_y = np.cross(normals[v], axis_x)
        while len(seq) < length:
            nxt = sorted({w for u in ring for w in neighbours[u]} - seen)
            if not nxt:
                break
            offsets = vertices[nxt] - vertices[v]
            angles = np.arctan2(offsets @ axis_y, offsets @ axis_x) % (2 * np.pi)
            nxt = [nxt[i] for i in np.argsort(angles, kind="stable")]
            seq.extend(nxt)
            seen.update(nxt)
            ring = nxt
        seq = seq[:length]
        out[v, : len(seq)] = seq
    return out


@dataclass
class MeshHierarchy:
    """Levels of a mesh, finest first.

    Attributes:
        vertices: per level ``(V_l, 3)`` template positions.
        faces: per level ``(F_l, 3)``.
        kept: per coarser level, indices of its vertices in the level above.
        up: per coarser level, the ``(V_{l-1}, V_l)`` up-sampling matrix.
        spirals: per level ``(V_l, L)`` spiral indices (``V_l`` = the zero pad vertex).
    """

    vertices: list[np.ndarray]
    faces: list[np.ndarray]
    kept: list[np.ndarray]
    up: list[sparse.csr_matrix]
    spirals: list[np.ndarray]


def build_hierarchy(
    vertices: np.ndarray, faces: np.ndarray, factors: tuple[int, ...] = (4, 4, 4, 4), spiral_length: int = 9
) -> MeshHierarchy:
    """Decimate by each factor in turn, with up-sampling matrices and spirals per level."""
    levels_v, levels_f = [np.asarray(vertices, np.float64)], [np.asarray(faces, np.int64)]
    kept_all, up_all = [], []
    for factor in factors:
        v, f = levels_v[-1], levels_f[-1]
        kept, coarse_faces = decimate(v, f, max(len(v) // factor, 4))
        coarse_vertices = v[kept]
        up_all.append(upsampling_matrix(v, coarse_vertices, coarse_faces, kept))
        kept_all.append(kept)
        levels_v.append(coarse_vertices)
        levels_f.append(coarse_faces)
    spiral_all = [spirals(v, f, spiral_length) for v, f in zip(levels_v, levels_f, strict=True)]
    return MeshHierarchy(levels_v, levels_f, kept_all, up_all, spiral_all)
