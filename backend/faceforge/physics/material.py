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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from faceforge.errors import FaceForgeError

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

#: Adult soft-tissue depth (mm) at craniofacial landmarks, keyed by where FaceForge puts them:
#: ``ibug:<i>`` (0-based iBUG-68 index), ``babyfm:<name>``, ``mid:<a>,<b>`` (the vertex nearest to
#: the midpoint of two iBUG points) or ``region:<name>`` (every vertex of a region).
TISSUE_DEPTH_MM: dict[str, float] = {
    "region:forehead": 4.5,  # mid-forehead / frontal eminence
    "region:skull": 5.0,  # vertex and temples (scalp)
    "mid:21,22": 5.5,  # glabella
    "ibug:27": 6.5,  # nasion
    "ibug:29": 3.0,  # end of the nasal bones (rhinion)
    "ibug:30": 10.0,  # nose tip (cartilage: tissue here)
    "ibug:31": 8.0,  # alae
    "ibug:35": 8.0,
    "ibug:33": 12.0,  # subnasale / mid-philtrum
    "ibug:51": 12.5,  # upper lip margin
    "ibug:57": 13.5,  # lower lip margin
    "babyfm:sl": 11.0,  # chin-lip fold (sublabiale)
    "babyfm:pg": 11.5,  # mental eminence (pogonion)
    "ibug:8": 7.0,  # beneath the chin (menton)
    "ibug:19": 6.0,  # supraorbital
    "ibug:24": 6.0,
    "babyfm:oiR": 6.5,  # suborbital (orbitale inferius)
    "babyfm:oiL": 6.5,
    "mid:31,1": 13.0,  # inferior malar
    "mid:35,15": 13.0,
    "ibug:36": 9.0,  # lateral orbit
    "ibug:45": 9.0,
    "ibug:0": 7.0,  # zygomatic arch (in front of the tragion)
    "ibug:16": 7.0,
    "ibug:3": 12.5,  # gonion
    "ibug:13": 12.5,
    "mid:48,3": 19.0,  # occlusal line
    "mid:54,13": 19.0,
    "ibug:48": 14.0,  # cheilion
    "ibug:54": 14.0,
    "region:eyes": 3.0,  # eyelids
    "region:cavity": 6.0,  # mouth lining (lips and cheeks from inside)
}

_MM = 1e-3

#: Smallest quadrature volume of an element, as a fraction of its cell.
MIN_FRACTION = 0.25


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(V, 3)`` unit area-weighted vertex normals (outward for the head crop's winding)."""
    fn = np.cross(
        vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]]
    )
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], fn)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-30)


def head_regions(n_vertices: int) -> dict[str, np.ndarray]:
    """Boolean ``(V,)`` masks of the stored head annotations plus ``cavity`` (mouth lining without
    the lips), ``jaw_weight`` (float) and the landmark index arrays ``ibug68`` / ``babyfm23``."""
    from faceforge.data.annotations import load_annotations, load_jaw_weights

    notes = load_annotations()
    if notes["n_vertices"] != n_vertices:
        raise FaceForgeError(
            f"the physical face needs the FaceForge head topology ({notes['n_vertices']} vertices), "
            f"got {n_vertices}"
        )
    out: dict[str, np.ndarray] = {}
    for name, indices in notes["regions"].items():
        mask = np.zeros(n_vertices, dtype=bool)
        mask[np.asarray(indices, dtype=np.int64)] = True
        out[name] = mask
    out["cavity"] = out["mouth"] & ~out["upper_lip"] & ~out["lower_lip"]
    out["jaw_weight"] = load_jaw_weights(n_vertices)
    out["ibug68"] = np.asarray(notes["landmarks"]["ibug68"], dtype=np.int64)
    babyfm = notes["landmark_names"]["babyfm23"]
    out["babyfm23"] = np.asarray(notes["landmarks"]["babyfm23"], dtype=np.int64)
    out["babyfm23_names"] = np.asarray(babyfm)
    return out


def _graph_laplacian(faces: np.ndarray, n: int) -> sp.csr_matrix:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    a = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.float64)
    return sp.diags(np.asarray(a.sum(axis=1)).ravel()) - a


def tissue_depth(vertices: np.ndarray, faces: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """``(V,)`` soft-tissue depth in metres: :data:`TISSUE_DEPTH_MM` at its landmarks, filled
    harmonically over the mesh (a smooth field that takes the published value at each landmark)."""
    n = len(vertices)
    ibug = regions["ibug68"]
    names = list(regions["babyfm23_names"])
    fixed: dict[int, float] = {}
    for key, depth in TISSUE_DEPTH_MM.items():
        kind, _, what = key.partition(":")
        if kind == "region":
            for v in np.flatnonzero(regions[what]):
                fixed.setdefault(int(v), depth)
            continue
        if kind == "ibug":
            v = int(ibug[int(what)])
        elif kind == "babyfm":
            v = int(regions["babyfm23"][names.index(what)])
        else:
            a, b = (int(i) for i in what.split(","))
            mid = 0.5 * (vertices[ibug[a]] + vertices[ibug[b]])
            v = int(np.argmin(np.linalg.norm(vertices - mid, axis=1)))
        fixed[v] = depth  # landmarks win over region defaults
    lap = _graph_laplacian(faces, n)
    known = np.zeros(n, dtype=bool)
    values = np.zeros(n)
    for v, depth in fixed.items():
        known[v] = True
        values[v] = depth
    free = np.flatnonzero(~known)
    # Vertices in no triangle keep a default depth: give them a diagonal so the system is regular.
    lff = lap[free][:, free] + sp.eye(len(free)) * 1e-9
    rhs = -lap[free][:, known] @ values[known]
    values[free] = sp.linalg.spsolve(lff.tocsc(), rhs)
    return np.clip(values, 2.0, 25.0) * _MM


# Trilinear hex on the unit cube: corner a has local coordinates _CORNERS[a] in {0, 1}^3.
_CORNERS = np.array([[i, j, k] for k in (0, 1) for j in (0, 1) for i in (0, 1)], dtype=np.int64)


def trilinear_weights(local: np.ndarray) -> np.ndarray:
    """``(P, 8)`` trilinear weights of points with unit-cube coordinates ``local (P, 3)``."""
    c = _CORNERS[None].astype(np.float64)
    t = local[:, None, :]
    return np.prod(np.where(c == 1, t, 1.0 - t), axis=2)


@dataclass
class MaterialSpace:
    """An embedded hex lattice over a head's soft tissue (all lengths in metres).

    Attributes:
        resolution: lattice spacing h.
        origin: ``(3,)`` lattice origin; cell ``(i, j, k)`` spans ``origin + h * [i, i+1] x ...``.
        nodes: ``(N, 3)`` rest node positions (split lip nodes appear once per side).
        elements: ``(E, 8)`` node indices per hex, corner order of :data:`_CORNERS`.
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


def _teeth_arches(
    vertices: np.ndarray, regions: dict[str, np.ndarray], tree_points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two curved strips behind the lips (upper with the skull, lower with the jaw).

    The arch follows the inner lip contour (iBUG 61-68) pushed back until it clears all skin by at
    least 1 mm (0.5 mm as a last resort); it spans up to 80% of the mouth corners' width and up to 9 mm
    above and below the lip contact line (narrower and lower where the mouth is small), with a 1 mm
    gap between upper and lower incisal edges.
    """
    ibug = regions["ibug68"]
    inner = vertices[ibug[60:68]]
    corners = vertices[ibug[[48, 54]]]
    z0 = float(inner[:, 2].mean())
    front = float(inner[:, 1].min())
    width = 0.5 * float(abs(corners[1, 0] - corners[0, 0]))
    tree = cKDTree(tree_points)
    xs = np.linspace(-1.0, 1.0, 15)
    m = len(xs)
    for clearance in (0.001, 0.0005):
        for height in (0.009, 0.007, 0.005, 0.0035):
            for spread in (0.8, 0.65, 0.5):
                for back in np.arange(0.002, 0.03, 0.001):
                    # parabola: centre behind the inner lip contour, sides curving 12 mm backwards
                    y = front + back + 0.012 * xs**2
                    x = spread * width * xs
                    verts, faces, jaw = [], [], []
                    for rows, is_jaw in (((z0 + 0.0005, z0 + 0.0005 + height), False),
                                         ((z0 - 0.0005 - height, z0 - 0.0005), True)):  # fmt: skip
                        base = sum(len(v) for v in verts)
                        grid = np.array([[xi, yi, zi] for zi in rows for xi, yi in zip(x, y, strict=True)])
                        quads = [
                            (base + i, base + i + 1, base + m + i + 1, base + m + i) for i in range(m - 1)
                        ]
                        faces += [(a, b, c) for a, b, c, d in quads] + [(a, c, d) for a, b, c, d in quads]
                        verts.append(grid)
                        jaw += [is_jaw] * len(grid)
                    v = np.concatenate(verts)
                    f = np.asarray(faces, dtype=np.int64)
                    dense = np.concatenate([v, v[f].mean(axis=1), 0.5 * (v[f[:, 0]] + v[f[:, 1]])])
                    if tree.query(dense)[0].min() > clearance:
                        return v, f, np.asarray(jaw)
    raise FaceForgeError("could not place the teeth proxies inside the mouth without touching the lips")


def _mode_rows(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, ``values`` at the cell centre sample (13 of 27) if masked, else at the first masked one."""
    pick = np.where(mask[:, 13], 13, np.argmax(mask, axis=1))
    return values[np.arange(len(values)), pick]


def _mouth_sets(
    vertices: np.ndarray, faces: np.ndarray, regions: dict[str, np.ndarray], jaw_open: np.ndarray | None
) -> dict:
    """Masks the build and the lip separation share: the simulated ``domain`` and its triangles,
    the jaw side ``lower``, the inner-lip height ``contact_z`` and the lip collision triangles."""
    n = len(vertices)
    lips = regions["upper_lip"] | regions["lower_lip"]
    lip_front = float(vertices[lips, 1].min())
    deep_cavity = regions["cavity"] & (vertices[:, 1] > lip_front + 0.025)
    domain = ~regions["held"] & ~regions["tongue"] & ~deep_cavity
    dom_faces = faces[domain[faces].all(axis=1)]
    used = np.zeros(n, dtype=bool)
    used[dom_faces.ravel()] = True
    # Jaw side: MakeHuman jaw weight, or skin jawOpen moves (the lower lip, chin, mouth floor).
    lower = regions["jaw_weight"] >= 0.5
    if jaw_open is not None:
        motion = np.linalg.norm(jaw_open, axis=1)
        lower |= motion > 0.5 * motion[domain].max()
    contact_z = float(vertices[regions["ibug68"][60:68], 2].mean())
    mouth_zone = (lips | regions["cavity"]) & used
    near_mouth = np.abs(vertices[:, 2] - contact_z) < 0.02
    lip_faces = dom_faces[(mouth_zone & near_mouth)[dom_faces].all(axis=1)]
    return {
        "lips": lips,
        "domain": domain,
        "dom_faces": dom_faces,
        "used": used,
        "lower": lower,
        "contact_z": contact_z,
        "lip_faces": lip_faces,
    }


def separate_lips(
    vertices: np.ndarray,
    faces: np.ndarray,
    lip_faces: np.ndarray,
    lower: np.ndarray,
    *,
    margin: float = 1e-4,
    max_shift: float = 0.004,
) -> tuple[np.ndarray, dict]:
    """Open lips that cross each other at rest by the least vertical shift that untangles them.

    A generated face can have its upper and lower lip (or their linings) pass through each other in
    its neutral pose; a simulator with contact cannot start from an intersecting rest state. Every
    crossing found (exact edge-triangle tests) seeds a smooth bump (Gaussian in distance, 5 mm);
    upper-side vertices move up and jaw-side ones down by ``s`` times the bump, with the side sign
    smoothed over the mesh so the mouth corners do not tear. ``s`` is the smallest shift (bisection
    to 10 um) that leaves no crossing, plus ``margin``.

    Args:
        vertices: ``(V, 3)`` head (m), z up; faces: ``(F, 3)``; lip_faces: ``(Fl, 3)`` the lip and
            lining triangles to untangle; lower: ``(V,)`` bool, the jaw side.

    Returns:
        ``(vertices, info)``: the separated head (a copy) and ``{"crossings", "shift_mm"}``.

    Raises:
        FaceForgeError: if ``max_shift`` does not untangle them.
    """
    from faceforge.physics.contact import count_intersecting_pairs, intersecting_pairs

    vertices = np.asarray(vertices, dtype=np.float64)
    crossings = intersecting_pairs(vertices, lip_faces)
    info = {"crossings": int(len(crossings)), "shift_mm": 0.0}
    if not len(crossings):
        return vertices.copy(), info
    seeds = np.unique(crossings)
    dist, _ = cKDTree(vertices[seeds]).query(vertices)
    bump = np.exp(-((dist / 0.005) ** 2))
    sign = np.where(lower, -1.0, 1.0)
    adjacency = _graph_laplacian(faces, len(vertices))
    degree = adjacency.diagonal()
    walk = sp.diags(1.0 / np.maximum(degree, 1.0)) @ (sp.diags(degree) - adjacency)
    for _ in range(10):  # a few averaging sweeps: the sign fades to 0 where the two sides meet
        sign = 0.5 * sign + 0.5 * (walk @ sign)
    direction = np.zeros_like(vertices)
    direction[:, 2] = bump * sign

    def clean(shift: float) -> bool:
        return count_intersecting_pairs(vertices + shift * direction, lip_faces) == 0

    if not clean(max_shift):
        raise FaceForgeError(
            f"the lips of this face cross at rest ({len(crossings)} crossings) and a "
            f"{max_shift * 1e3:.0f} mm separation does not untangle them"
        )
    lo, hi = 0.0, max_shift
    while hi - lo > 1e-5:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if clean(mid) else (mid, hi)
    shift = hi + margin
    info["shift_mm"] = float(shift * 1e3)
    return vertices + shift * direction, info


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

    # --- the simulated skin, its jaw side, and lips that cross at rest pulled apart ---------------
    sets = _mouth_sets(vertices, faces, regions, jaw_open)
    vertices, separation = separate_lips(vertices, faces, sets["lip_faces"], sets["lower"])
    if separation["crossings"]:
        sets = _mouth_sets(vertices, faces, regions, jaw_open)
    lips, dom_faces, used = sets["lips"], sets["dom_faces"], sets["used"]
    lower, contact_z = sets["lower"], sets["contact_z"]
    skin_vertices = np.flatnonzero(used)
    normals = vertex_normals(vertices, faces)
    depth = tissue_depth(vertices, faces, regions)

    # --- tissue membership by the nearest skin point ------------------------------------------
    samples, sample_face, sample_bary = _sample_triangles(vertices, dom_faces, min(h, 0.002) / 3)
    corner = dom_faces[sample_face]
    s_normal = np.einsum("sk,skd->sd", sample_bary, normals[corner])
    s_normal /= np.linalg.norm(s_normal, axis=1, keepdims=True)
    s_depth = np.einsum("sk,sk->s", sample_bary, depth[corner])
    s_vertex = corner[np.arange(len(corner)), np.argmax(sample_bary, axis=1)]
    tree = cKDTree(samples)
    spacing = min(h, 0.002) / 3

    lo = samples.min(axis=0) - depth.max() - h
    hi = samples.max(axis=0) + h
    origin = np.floor(lo / h) * h
    dims = np.ceil((hi - origin) / h).astype(np.int64)
    # Candidate cells: those along each skin sample's inward normal down to its depth, dilated by one.
    step = np.arange(0.0, 1.0 + 1e-9, 1.0 / max(2, int(np.ceil(depth.max() / (0.5 * h)))))
    thin = samples[:: max(1, int(round((0.5 * h / spacing) ** 2)))]
    thin_i = np.arange(len(samples))[:: max(1, int(round((0.5 * h / spacing) ** 2)))]
    ray = thin[:, None, :] - step[None, :, None] * (s_depth[thin_i, None, None] * s_normal[thin_i, None, :])
    ray_cells = np.clip(np.floor((ray.reshape(-1, 3) - origin) / h).astype(np.int64), 0, dims - 1)
    base = np.column_stack(np.unravel_index(np.unique(np.ravel_multi_index(ray_cells.T, dims)), dims))
    offs = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    keys = (base[:, None, :] + offs[None]).reshape(-1, 3)
    keys = keys[(keys >= 0).all(axis=1) & (keys < dims).all(axis=1)]
    cand = np.column_stack(np.unravel_index(np.unique(np.ravel_multi_index(keys.T, dims)), dims))
    reach = float(depth[skin_vertices].max()) + 1.8 * h

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

    # Cells that hold a skin vertex are kept even if their tissue fraction is tiny.
    skin_cells = np.floor((vertices[skin_vertices] - origin) / h).astype(np.int64)
    cell_flat = np.ravel_multi_index(cand.T, dims)
    order = np.argsort(cell_flat)
    pos = order[np.searchsorted(cell_flat[order], np.ravel_multi_index(skin_cells.T, dims))]
    fraction = inside.mean(axis=1)
    forced = np.zeros(len(cand), dtype=bool)
    forced[pos] = True
    active = (fraction > 0) | forced
    fraction = np.maximum(fraction, np.where(forced, 1.0 / 27, 0.0))

    # --- lip contact: where upper and lower skin face each other across < 3 mm ---------------
    mouthish = (lips | regions["cavity"]) & used
    up = np.flatnonzero(mouthish & ~lower)
    dn = np.flatnonzero(mouthish & lower)
    contact_pts = np.zeros((0, 3))
    if len(up) and len(dn):
        d_up, _ = cKDTree(vertices[dn]).query(vertices[up])
        d_dn, _ = cKDTree(vertices[up]).query(vertices[dn])
        contact_pts = np.concatenate([vertices[up[d_up < 0.003]], vertices[dn[d_dn < 0.003]]])
        contact_pts = contact_pts[np.abs(contact_pts[:, 2] - contact_z) < 0.01]

    # --- elements: one per active cell, two (upper and lower) where a cell straddles the contact
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
        keep = mask.any(axis=1)
        cells.append(cand[straddle[keep]])
        labels.append(np.full(int(keep.sum()), lab, dtype=np.int64))
        vols.append(mask[keep].mean(axis=1) * h**3)
        elem_vertex.append(_mode_rows(near_vertex[straddle[keep]], mask[keep]))
    # a straddling cell with no inside sample (held only for a skin vertex) keeps one plain element
    lone = straddle[~inside[straddle].any(axis=1)]
    cells.append(cand[lone])
    labels.append(np.zeros(len(lone), dtype=np.int64))
    vols.append(np.full(len(lone), h**3 / 27))
    elem_vertex.append(_mode_rows(near_vertex[lone], inside[lone]))
    cells = np.concatenate(cells)
    labels = np.concatenate(labels)
    vols = np.concatenate(vols)
    elem_vertex = np.concatenate(elem_vertex)

    # --- nodes: split only grid nodes that both an upper and a lower element touch near the contact
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

    # --- embeddings ----------------------------------------------------------------------
    cell_key = np.ravel_multi_index(cells.T, dims) * 3 + labels
    key_order = np.argsort(cell_key)
    sorted_keys = cell_key[key_order]

    def lookup(keys: np.ndarray) -> np.ndarray:
        at = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
        return np.where(sorted_keys[at] == keys, key_order[at], -1)

    def embed(points: np.ndarray, point_side: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
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
            (weights.ravel(), (rows, elements[e[idx]].ravel())), shape=(len(points), len(node_pos))
        )
        return w, ok

    skin_side = np.where(lower[skin_vertices], 2, 1)
    W_skin, ok = embed(vertices[skin_vertices], skin_side)
    if not ok.all():
        raise FaceForgeError(f"{int((~ok).sum())} skin vertices fell outside the lattice")

    # bone points: outer skin offset inward by the tissue depth
    no_bone = regions["eyes"] | regions["nose"] | lips | regions["cavity"]
    bone_src = skin_vertices[~no_bone[skin_vertices]]
    bone_pts = vertices[bone_src] - depth[bone_src, None] * normals[bone_src]
    is_jaw = lower[bone_src] & (vertices[bone_src, 2] < contact_z)
    W_bone, ok_bone = embed(bone_pts, np.where(is_jaw, 2, 1))
    skull_all = np.unique(W_bone[np.flatnonzero(ok_bone & ~is_jaw)].indices)
    jaw_all = np.unique(W_bone[np.flatnonzero(ok_bone & is_jaw)].indices)
    # Nodes claimed by both bones (skull and jaw points in one cell: where the bones meet) are given to
    # one of them; a bone point is kept only if all its nodes are its own bone's, so every kept point
    # is enforced exactly (Eq. 4) and the two bones never pull on one node.
    both = np.intersect1d(skull_all, jaw_all)
    # a node both bones claim goes to the bone whose points weigh more on it
    skull_w = np.asarray(W_bone[np.flatnonzero(ok_bone & ~is_jaw)].sum(axis=0)).ravel()
    jaw_w = np.asarray(W_bone[np.flatnonzero(ok_bone & is_jaw)].sum(axis=0)).ravel()
    to_jaw = both[jaw_w[both] > skull_w[both]]
    skull_nodes = np.setdiff1d(skull_all, to_jaw)
    jaw_nodes = np.setdiff1d(jaw_all, np.setdiff1d(both, to_jaw))
    W_coo = W_bone.tocoo()
    in_own = np.where(is_jaw[W_coo.row], np.isin(W_coo.col, jaw_nodes), np.isin(W_coo.col, skull_nodes))
    foreign = np.bincount(W_coo.row[~in_own], minlength=W_bone.shape[0]) > 0
    keep_skull = ok_bone & ~is_jaw & ~foreign
    keep_jaw = ok_bone & is_jaw & ~foreign
    W_skull = W_bone[np.flatnonzero(keep_skull)]
    W_jaw = W_bone[np.flatnonzero(keep_jaw)]
    if not keep_jaw.any() or not keep_skull.any():
        raise FaceForgeError(
            f"at {h * 1e3:.1f} mm the lattice cannot separate skull and jaw on this face; "
            "use a finer resolution"
        )

    # --- collision surfaces -----------------------------------------------------------------
    lip_faces = sets["lip_faces"]
    teeth_v, teeth_f, teeth_jaw = _teeth_arches(vertices, regions, samples)

    return MaterialSpace(
        resolution=h,
        origin=origin,
        nodes=node_pos,
        elements=elements,
        element_cells=cells,
        volumes=np.maximum(vols, MIN_FRACTION * h**3),
        occupied=vols,
        element_vertex=np.asarray(elem_vertex, dtype=np.int64),
        skin_vertices=skin_vertices,
        W_skin=W_skin,
        skull_nodes=skull_nodes,
        jaw_nodes=jaw_nodes,
        skull_points=bone_pts[keep_skull],
        W_skull=W_skull,
        jaw_points=bone_pts[keep_jaw],
        W_jaw=W_jaw,
        lip_faces=lip_faces,
        teeth_vertices=teeth_v,
        teeth_faces=teeth_f,
        teeth_jaw=teeth_jaw,
        depth=depth,
        rest_vertices=vertices,
        faces=faces,
        stats={
            "split_nodes": int(len(split)),
            "rest_lip_crossings": separation["crossings"],
            "rest_lip_separation_mm": separation["shift_mm"],
            "bone_points_dropped": int((ok_bone & foreign).sum() + (~ok_bone).sum()),
        },
    )


# --- on-disk cache ---------------------------------------------------------------------------------

_SPARSE_FIELDS = ("W_skin", "W_skull", "W_jaw")


def material_cache_key(
    vertices: np.ndarray, faces: np.ndarray, resolution: float, jaw_open: np.ndarray | None = None
) -> str:
    """Hex digest naming a material space: the head, its triangles, the resolution, the jaw marker,
    and the code and annotations that build it (an edit to either invalidates old entries)."""
    import hashlib
    from importlib import resources

    h = hashlib.sha1()
    h.update(np.ascontiguousarray(vertices, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(faces, dtype=np.int64).tobytes())
    h.update(f"{resolution:.9f}".encode())
    if jaw_open is not None:
        h.update(np.ascontiguousarray(jaw_open, dtype=np.float64).tobytes())
    h.update(open(__file__, "rb").read())
    folder = resources.files("faceforge.data") / "resources"
    for name in ("anny_head_annotations.json", "anny_head_jaw_weights.txt"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()


def save_material_space(material: MaterialSpace, path: str | Path) -> Path:
    """Write ``material`` to ``path`` (``.npz``, written to a temporary file and renamed)."""
    import dataclasses
    import json
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(material):
        value = getattr(material, f.name)
        if f.name in _SPARSE_FIELDS:
            csr = sp.csr_matrix(value)
            arrays[f"{f.name}.data"] = csr.data
            arrays[f"{f.name}.indices"] = csr.indices
            arrays[f"{f.name}.indptr"] = csr.indptr
            arrays[f"{f.name}.shape"] = np.asarray(csr.shape, dtype=np.int64)
        elif f.name == "stats":
            arrays["stats"] = np.asarray(json.dumps(value))
        else:
            arrays[f.name] = np.asarray(value)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_material_space(path: str | Path) -> MaterialSpace:
    """Read a material space written by :func:`save_material_space`."""
    import dataclasses
    import json

    with np.load(Path(path), allow_pickle=False) as z:
        values: dict = {}
        for f in dataclasses.fields(MaterialSpace):
            if f.name in _SPARSE_FIELDS:
                shape = tuple(int(s) for s in z[f"{f.name}.shape"])
                values[f.name] = sp.csr_matrix(
                    (z[f"{f.name}.data"], z[f"{f.name}.indices"], z[f"{f.name}.indptr"]), shape=shape
                )
            elif f.name == "stats":
                values["stats"] = json.loads(str(z["stats"]))
            elif f.name == "resolution":
                values["resolution"] = float(z["resolution"])
            else:
                values[f.name] = z[f.name]
    return MaterialSpace(**values)
