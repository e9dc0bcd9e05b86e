"""The embedded hex lattice of the material space: which cells hold soft tissue, the elements (cut
along the lip contact) and their nodes, and trilinear embedding of points in them.

A point belongs to the soft tissue when it lies behind the nearest skin point (against its outward
normal) and no deeper than that point's tissue depth; each lattice cell is sampled at 27 points and
keeps its occupied fraction as its volume. Cells near the lip contact are duplicated per side (upper,
lower) and the nodes that both an upper and a lower element touch are split (a virtual-node cut), so
the mouth can open.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

__all__ = [
    "Grid",
    "Lattice",
    "Occupancy",
    "SkinSamples",
    "build_lattice",
    "lattice_grid",
    "occupy_cells",
    "sample_skin",
    "trilinear_weights",
]

# Trilinear hex on the unit cube: corner a has local coordinates _CORNERS[a] in {0, 1}^3.
_CORNERS = np.array([[i, j, k] for k in (0, 1) for j in (0, 1) for i in (0, 1)], dtype=np.int64)


def trilinear_weights(local: np.ndarray) -> np.ndarray:
    """``(P, 8)`` trilinear weights of points with unit-cube coordinates ``local (P, 3)``."""
    c = _CORNERS[None].astype(np.float64)
    t = local[:, None, :]
    return np.prod(np.where(c == 1, t, 1.0 - t), axis=2)


def _sample_triangles(vertices: np.ndarray, faces: np.ndarray, spacing: float) -> tuple[np.ndarray, ...]:
    """Points on triangles at about ``spacing``: ``(points, face index, barycentric (P, 3))``."""
    e = np.linalg.norm(vertices[faces] - vertices[faces[:, [1, 2, 0]]], axis=2).max(axis=1)
    counts = np.maximum(1, np.ceil(e / spacing)).astype(np.int64)
    pts, fid, bary = [], [], []
    for n in np.unique(counts):
        sel = np.flatnonzero(counts == n)
        ij = np.array([(i, j) for i in range(n + 1) for j in range(n + 1 - i)], dtype=np.float64) / n
        b = np.column_stack([1.0 - ij.sum(axis=1), ij[:, 0], ij[:, 1]])
        tri = vertices[faces[sel]]  # (f, 3, 3)
        p = np.einsum("sk,fkd->fsd", b, tri).reshape(-1, 3)
        pts.append(p)
        fid.append(np.repeat(sel, len(b)))
        bary.append(np.tile(b, (len(sel), 1)))
    return np.concatenate(pts), np.concatenate(fid), np.concatenate(bary)


def _mode_rows(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, ``values`` at the cell centre sample (13 of 27) if masked, else at the first masked one."""
    pick = np.where(mask[:, 13], 13, np.argmax(mask, axis=1))
    return values[np.arange(len(values)), pick]


@dataclass(frozen=True)
class SkinSamples:
    """Points on the simulated skin at about a third of the lattice spacing (at most 2/3 mm).

    Attributes:
        points: ``(P, 3)``; normal: ``(P, 3)`` unit outward normals; depth: ``(P,)`` tissue depth (m);
        vertex: ``(P,)`` the nearest corner (head vertex) of each point's triangle; tree: a k-d tree of
        ``points``; spacing: the sampling distance (m).
    """

    points: np.ndarray
    normal: np.ndarray
    depth: np.ndarray
    vertex: np.ndarray
    tree: cKDTree
    spacing: float


def sample_skin(
    vertices: np.ndarray, dom_faces: np.ndarray, normals: np.ndarray, depth: np.ndarray, h: float
) -> SkinSamples:
    """Sample the simulated skin triangles ``dom_faces`` for a lattice of spacing ``h``, with normals and
    depths interpolated from the vertices'."""
    samples, sample_face, sample_bary = _sample_triangles(vertices, dom_faces, min(h, 0.002) / 3)
    corner = dom_faces[sample_face]
    s_normal = np.einsum("sk,skd->sd", sample_bary, normals[corner])
    s_normal /= np.linalg.norm(s_normal, axis=1, keepdims=True)
    s_depth = np.einsum("sk,sk->s", sample_bary, depth[corner])
    s_vertex = corner[np.arange(len(corner)), np.argmax(sample_bary, axis=1)]
    tree = cKDTree(samples)
    spacing = min(h, 0.002) / 3
    return SkinSamples(samples, s_normal, s_depth, s_vertex, tree, spacing)


@dataclass(frozen=True)
class Grid:
    """The regular grid: cell ``(i, j, k)`` spans ``origin + h * [i, i+1] x ...``, ``dims`` cells a side."""

    origin: np.ndarray
    dims: np.ndarray
    h: float


def lattice_grid(samples: np.ndarray, depth: np.ndarray, h: float) -> Grid:
    """A grid of spacing ``h`` that holds the skin ``samples`` and the tissue behind them."""
    lo = samples.min(axis=0) - depth.max() - h
    hi = samples.max(axis=0) + h
    origin = np.floor(lo / h) * h
    dims = np.ceil((hi - origin) / h).astype(np.int64)
    return Grid(origin, dims, h)


@dataclass(frozen=True)
class Occupancy:
    """The candidate cells and their 27 samples each (3 x 3 x 3, centre sample 13).

    Attributes:
        cells: ``(C, 3)`` integer cell coordinates; inside: ``(C, 27)`` samples in the tissue;
        side: ``(C, 27)`` 1 upper, 2 lower (jaw) side of each sample's nearest skin point;
        near_vertex: ``(C, 27)`` that skin point's head vertex; fraction: ``(C,)`` occupied fraction;
        active: ``(C,)`` cells kept (occupied, or holding a skin vertex); skin_sides: ``(C, 3)`` bool,
        whether the cell holds a simulated skin vertex of side 1 (upper) / 2 (lower) (column 0 unused).
    """

    cells: np.ndarray
    inside: np.ndarray
    side: np.ndarray
    near_vertex: np.ndarray
    fraction: np.ndarray
    active: np.ndarray
    skin_sides: np.ndarray


def _candidate_cells(skin: SkinSamples, depth: np.ndarray, grid: Grid) -> np.ndarray:
    """``(C, 3)`` cells along each skin sample's inward normal down to its depth, dilated by one."""
    samples, s_normal, s_depth, spacing = skin.points, skin.normal, skin.depth, skin.spacing
    origin, dims, h = grid.origin, grid.dims, grid.h
    step = np.arange(0.0, 1.0 + 1e-9, 1.0 / max(2, int(np.ceil(depth.max() / (0.5 * h)))))
    thin = samples[:: max(1, int(round((0.5 * h / spacing) ** 2)))]
    thin_i = np.arange(len(samples))[:: max(1, int(round((0.5 * h / spacing) ** 2)))]
    ray = thin[:, None, :] - step[None, :, None] * (s_depth[thin_i, None, None] * s_normal[thin_i, None, :])
    ray_cells = np.clip(np.floor((ray.reshape(-1, 3) - origin) / h).astype(np.int64), 0, dims - 1)
    base = np.column_stack(np.unravel_index(np.unique(np.ravel_multi_index(ray_cells.T, dims)), dims))
    offs = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    keys = (base[:, None, :] + offs[None]).reshape(-1, 3)
    keys = keys[(keys >= 0).all(axis=1) & (keys < dims).all(axis=1)]
    return np.column_stack(np.unravel_index(np.unique(np.ravel_multi_index(keys.T, dims)), dims))


def _sample_cells(
    cand: np.ndarray, grid: Grid, skin: SkinSamples, reach: float, lower: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue membership of 27 samples per cell by the nearest skin point: ``(inside, side, near_vertex)``."""
    samples, s_normal, s_depth, s_vertex = skin.points, skin.normal, skin.depth, skin.vertex
    tree, spacing = skin.tree, skin.spacing
    origin, h = grid.origin, grid.h
    sub = (np.arange(3) + 0.5) / 3
    sub = np.array([[a, b, c] for c in sub for b in sub for a in sub])  # (27, 3) in the unit cell
    inside = np.zeros((len(cand), 27), dtype=bool)
    side = np.zeros((len(cand), 27), dtype=np.int8)  # 1 upper, 2 lower (only near the lip contact)
    near_vertex = np.zeros((len(cand), 27), dtype=np.int64)
    chunk = 20000
    for s in range(0, len(cand), chunk):
        c = cand[s : s + chunk]
        pts = (origin + h * (c[:, None, :] + sub[None])).reshape(-1, 3)
        dist, nearest = tree.query(pts, distance_upper_bound=reach + h)
        ok = np.isfinite(dist)
        nearest = np.where(ok, nearest, 0)
        d_normal = np.einsum("pd,pd->p", samples[nearest] - pts, s_normal[nearest])
        # behind the nearest skin point, no deeper than its depth, and not off the mesh border
        inn = ok & (d_normal >= -1e-9) & (d_normal <= s_depth[nearest]) & (dist <= d_normal + 2 * spacing)
        inside[s : s + chunk] = inn.reshape(-1, 27)
        nv = s_vertex[nearest]
        near_vertex[s : s + chunk] = nv.reshape(-1, 27)
        side[s : s + chunk] = np.where(lower[nv], 2, 1).reshape(-1, 27)
    return inside, side, near_vertex


def occupy_cells(
    skin: SkinSamples,
    depth: np.ndarray,
    grid: Grid,
    reach: float,
    lower: np.ndarray,
    skin_points: np.ndarray,
    skin_lower: np.ndarray,
) -> Occupancy:
    """Sample the candidate cells (nearest skin point within ``reach + h``; ``lower``: the ``(V,)``
    jaw-side mask of head vertices). Cells that hold one of ``skin_points (S, 3)`` (the simulated skin
    vertices, jaw side ``skin_lower (S,)``) are kept even if their tissue fraction is tiny, and remember
    which sides' vertices they hold."""
    origin, dims, h = grid.origin, grid.dims, grid.h
    cand = _candidate_cells(skin, depth, grid)
    inside, side, near_vertex = _sample_cells(cand, grid, skin, reach, lower)
    skin_cells = np.floor((skin_points - origin) / h).astype(np.int64)
    cell_flat = np.ravel_multi_index(cand.T, dims)
    order = np.argsort(cell_flat)
    pos = order[np.searchsorted(cell_flat[order], np.ravel_multi_index(skin_cells.T, dims))]
    fraction = inside.mean(axis=1)
    forced = np.zeros(len(cand), dtype=bool)
    forced[pos] = True
    skin_sides = np.zeros((len(cand), 3), dtype=bool)
    skin_sides[pos, np.where(skin_lower, 2, 1)] = True
    active = (fraction > 0) | forced
    fraction = np.maximum(fraction, np.where(forced, 1.0 / 27, 0.0))
    return Occupancy(cand, inside, side, near_vertex, fraction, active, skin_sides)


def _cut_elements(
    occ: Occupancy, contact_pts: np.ndarray, grid: Grid
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One element per active cell, one per side (upper, lower) where a cell straddles the lip contact
    ``contact_pts``: ``(cells, labels (0 plain, 1 upper, 2 lower), occupied volumes, element_vertex)``.

    A straddling cell has a side's element when tissue samples of that side fill part of it or a skin
    vertex of that side lies in it: a lip vertex must never be carried by the other lip's element (it
    would move with the other lip, and the mouth corner folds into a spike)."""
    cand, inside, side, near_vertex = occ.cells, occ.inside, occ.side, occ.near_vertex
    fraction, active = occ.fraction, occ.active
    origin, h = grid.origin, grid.h
    cells, labels, vols, elem_vertex = [], [], [], []
    contact_tree = cKDTree(contact_pts) if len(contact_pts) else None
    centres = origin + h * (cand + 0.5)
    near_contact = np.zeros(len(cand), dtype=bool)
    if contact_tree is not None:
        near_contact = np.isfinite(contact_tree.query(centres, distance_upper_bound=1.5 * h)[0])
    act = np.flatnonzero(active)
    plain = act[~near_contact[act]]
    cells.append(cand[plain])
    labels.append(np.zeros(len(plain), dtype=np.int64))
    vols.append(fraction[plain] * h**3)
    elem_vertex.append(_mode_rows(near_vertex[plain], inside[plain]))
    straddle = act[near_contact[act]]
    for lab in (1, 2):
        mask = inside[straddle] & (side[straddle] == lab)
        keep = mask.any(axis=1) | occ.skin_sides[straddle, lab]
        cells.append(cand[straddle[keep]])
        labels.append(np.full(int(keep.sum()), lab, dtype=np.int64))
        # a side held only for its skin vertex gets the forced minimum (1/27 of the cell)
        vols.append(np.maximum(mask[keep].mean(axis=1), 1.0 / 27) * h**3)
        elem_vertex.append(
            _mode_rows(near_vertex[straddle[keep]], mask[keep] | ~mask[keep].any(axis=1)[:, None])
        )
    cells = np.concatenate(cells)
    labels = np.concatenate(labels)
    vols = np.concatenate(vols)
    elem_vertex = np.concatenate(elem_vertex)
    return cells, labels, vols, elem_vertex


def _split_nodes(
    cells: np.ndarray, labels: np.ndarray, grid: Grid
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes of the elements, splitting only grid nodes that both an upper and a lower element touch near
    the contact: ``(elements (E, 8), node positions (N, 3), split grid node indices)``."""
    origin, dims, h = grid.origin, grid.dims, grid.h
    node_cells = (cells[:, None, :] + _CORNERS[None]).reshape(-1, 3)
    node_flat = np.ravel_multi_index(node_cells.T, dims + 1).reshape(-1, 8)
    node_label = np.repeat(labels[:, None], 8, axis=1)
    touched_up = np.unique(node_flat[node_label == 1])
    touched_dn = np.unique(node_flat[node_label == 2])
    split = np.intersect1d(touched_up, touched_dn)
    is_split = np.isin(node_flat, split)
    key = node_flat * 3 + np.where(is_split, node_label, 0)
    uniq, elements = np.unique(key.ravel(), return_inverse=True)
    elements = elements.reshape(-1, 8)
    grid_index = uniq // 3
    node_pos = origin + h * np.column_stack(np.unravel_index(grid_index, dims + 1)).astype(np.float64)
    return elements, node_pos, split


@dataclass
class Lattice:
    """The cut lattice: elements per cell and side, their nodes, and point embedding.

    Attributes:
        grid: the :class:`Grid`; cells: ``(E, 3)`` cell of each element; labels: ``(E,)`` its side
        (0 plain, 1 upper, 2 lower); occupied: ``(E,)`` occupied volume (m^3); element_vertex: ``(E,)``
        nearest skin vertex; elements: ``(E, 8)`` node indices (corner order of :data:`_CORNERS`);
        nodes: ``(N, 3)`` rest positions; split: grid indices of the nodes split at the lip contact.
    """

    grid: Grid
    cells: np.ndarray
    labels: np.ndarray
    occupied: np.ndarray
    element_vertex: np.ndarray
    elements: np.ndarray
    nodes: np.ndarray
    split: np.ndarray
    _key_order: np.ndarray = field(init=False, repr=False)
    _sorted_keys: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cell_key = np.ravel_multi_index(self.cells.T, self.grid.dims) * 3 + self.labels
        self._key_order = np.argsort(cell_key)
        self._sorted_keys = cell_key[self._key_order]

    def _lookup(self, keys: np.ndarray) -> np.ndarray:
        sorted_keys, key_order = self._sorted_keys, self._key_order
        at = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
        return np.where(sorted_keys[at] == keys, key_order[at], -1)

    def embed(self, points: np.ndarray, point_side: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """Trilinear embedding ``(P, N)`` of ``points (P, 3)`` on side ``point_side (P,)`` (1 upper,
        2 lower), and which points fell inside an element (rows of the others are empty)."""
        origin, dims, h = self.grid.origin, self.grid.dims, self.grid.h
        lookup, elements = self._lookup, self.elements
        cell = np.floor((points - origin) / h).astype(np.int64)
        valid = (cell >= 0).all(axis=1) & (cell < dims).all(axis=1)
        flat = np.ravel_multi_index(np.where(valid[:, None], cell, 0).T, dims) * 3
        e = lookup(flat + point_side)  # the element of the point's own side ...
        e = np.where(e < 0, lookup(flat), e)  # ... or the cell's single element ...
        e = np.where(
            e < 0, lookup(flat + np.where(point_side > 0, 3 - point_side, 0)), e
        )  # ... or the other side
        ok = valid & (e >= 0)
        idx = np.flatnonzero(ok)
        weights = trilinear_weights((points[idx] - origin) / h - cell[idx])
        rows = np.repeat(idx, 8)
        w = sp.csr_matrix(
            (weights.ravel(), (rows, elements[e[idx]].ravel())), shape=(len(points), len(self.nodes))
        )
        return w, ok


def build_lattice(occ: Occupancy, contact_pts: np.ndarray, grid: Grid) -> Lattice:
    """The elements of the occupied cells, cut along the lip contact ``contact_pts (P, 3)``."""
    cells, labels, vols, elem_vertex = _cut_elements(occ, contact_pts, grid)
    elements, node_pos, split = _split_nodes(cells, labels, grid)
    return Lattice(grid, cells, labels, vols, elem_vertex, elements, node_pos, split)
