"""The mouth of the material space: which skin is simulated and which side the jaw moves, lips that
cross at rest pulled apart, where upper and lower lip touch, and the rigid teeth proxies.

Skin on the jaw side (MakeHuman ``jaw`` bone weight >= 0.5, or skin that ``jawOpen`` moves by more than
half its maximum) moves with the jaw. Upper and lower lip touch at rest; the lattice is cut along their
contact (:mod:`faceforge.physics.lattice`) so the mouth can open. Teeth are two arches of triangles
behind the lips, the upper one moving with the skull and the lower one with the jaw.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from faceforge.errors import FaceForgeError
from faceforge.physics.tissue import graph_laplacian

__all__ = ["anatomical_teeth", "lip_contact_points", "mouth_sets", "separate_lips", "teeth_arches"]

#: The head's own teeth must keep this gap to the lip collision surface at rest (metres); each arch
#: is moved straight back by the least setback that gives it, at most :data:`TEETH_MAX_SETBACK`.
TEETH_CLEARANCE = 3e-4
TEETH_MAX_SETBACK = 0.006
#: ... and the lower arch, where it crosses the upper one, also down by up to this (metres).
TEETH_MAX_DROP = 0.004


def _offsets(drop: float) -> list[np.ndarray]:
    """Candidate ``(3,)`` moves of an arch, the smallest first: back (+Y) and down (-Z)."""
    back = np.arange(0.0, TEETH_MAX_SETBACK + 1e-9, 2.5e-4)
    down = np.arange(0.0, drop + 1e-9, 5e-4)
    moves = [np.array([0.0, b, -d]) for d in down for b in back]
    return sorted(moves, key=lambda m: float(np.linalg.norm(m)))


_TEETH_OFFSETS = {"teeth_upper": _offsets(0.0), "teeth_lower": _offsets(TEETH_MAX_DROP)}


def mouth_sets(
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
    adjacency = graph_laplacian(faces, len(vertices))
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


def lip_contact_points(vertices: np.ndarray, regions: dict[str, np.ndarray], sets: dict) -> np.ndarray:
    """``(P, 3)`` the lip contact: skin vertices of the mouth (lips and lining) where upper and lower
    skin face each other across < 3 mm, within 1 cm of the inner-lip height (``sets``: :func:`mouth_sets`)."""
    lips, used, lower, contact_z = sets["lips"], sets["used"], sets["lower"], sets["contact_z"]
    mouthish = (lips | regions["cavity"]) & used
    up = np.flatnonzero(mouthish & ~lower)
    dn = np.flatnonzero(mouthish & lower)
    contact_pts = np.zeros((0, 3))
    if len(up) and len(dn):
        d_up, _ = cKDTree(vertices[dn]).query(vertices[up])
        d_dn, _ = cKDTree(vertices[up]).query(vertices[dn])
        contact_pts = np.concatenate([vertices[up[d_up < 0.003]], vertices[dn[d_dn < 0.003]]])
        contact_pts = contact_pts[np.abs(contact_pts[:, 2] - contact_z) < 0.01]
    return contact_pts


def _surface_samples(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The vertices, centroids and edge midpoints of triangles ``faces``."""
    midpoints = 0.5 * (vertices[faces[:, 0]] + vertices[faces[:, 1]])
    return np.concatenate([vertices[np.unique(faces)], vertices[faces].mean(axis=1), midpoints])


def _crossing(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``(F_b,)`` bool: the triangles of mesh ``b`` crossed by an edge of mesh ``a``, or whose own
    edges cross a triangle of ``a`` (each mesh ``(vertices, faces)``)."""
    from faceforge.physics.contact import intersecting_pairs

    va, fa = a
    vb, fb = b
    n = len(va)
    pairs = intersecting_pairs(np.concatenate([va, vb]), np.concatenate([fa, fb + n]))
    hit = np.zeros(len(fb), dtype=bool)
    if not len(pairs):
        return hit
    edge_in_b, tri_in_b = (pairs[:, :2] >= n).all(axis=1), (pairs[:, 2:] >= n).all(axis=1)
    faces_b = {tuple(sorted(f)): k for k, f in enumerate(fb.tolist())}
    by_edge: dict[tuple[int, int], list[int]] = {}
    for k, (i, j, m) in enumerate(fb.tolist()):
        for e in ((i, j), (j, m), (m, i)):
            by_edge.setdefault(tuple(sorted(e)), []).append(k)
    for row in pairs[~edge_in_b & tri_in_b]:  # an edge of a through a triangle of b
        hit[faces_b[tuple(sorted((row[2:] - n).tolist()))]] = True
    for row in pairs[edge_in_b & ~tri_in_b]:  # an edge of b through a triangle of a
        hit[by_edge[tuple(sorted((row[:2] - n).tolist()))]] = True
    return hit


def anatomical_teeth(
    vertices: np.ndarray, regions: dict[str, np.ndarray], lip_faces: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, list[float]], np.ndarray] | None:
    """The head's own upper and lower teeth (:mod:`faceforge.heads`, placed as the add-on shows
    them, then moved as below; the shown ones are not moved) as collision bodies: ``(vertices,
    faces, jaw mask, each arch's move (x, y, z) in mm, lining kept)``, or None when an arch cannot
    clear the lips within :data:`TEETH_MAX_SETBACK`.

    Each arch makes the smallest move (back, and for the lower arch also down by up to
    :data:`TEETH_MAX_DROP`) that keeps it :data:`TEETH_CLEARANCE` from the lips (``upper_lip``/
    ``lower_lip`` triangles of the collision surface) and crossing neither them nor, for the lower
    arch, the upper one. Teeth sit in the gums, so the mouth lining they
    cross or nearly touch at rest is attached to them: ``lining kept (F,)`` is False for those
    collision triangles, which leave the collision surface.

    Args:
        vertices: ``(V, 3)`` the simulated rest skin (lips separated).
        regions: the physics' head regions (``tongue``, ``upper_lip``, ``lower_lip`` masks).
        lip_faces: ``(F, 3)`` the lip collision triangles.
    """
    from faceforge.heads.assets import helper_geometry
    from faceforge.heads.parts import place_rigid_part

    lip_faces = np.asarray(lip_faces, dtype=np.int64)
    lips = regions["upper_lip"] | regions["lower_lip"]
    on_lips = lips[lip_faces].all(axis=1)
    lip_mesh = (vertices, lip_faces[on_lips])
    tree = cKDTree(_surface_samples(*lip_mesh))
    helpers = helper_geometry()
    out_v, out_f, jaw, setbacks = [], [], [], {}
    for part in ("teeth_upper", "teeth_lower"):
        placed = place_rigid_part(part, vertices, ~regions["tongue"])
        tris = helpers.parts[part][1]
        dense = _surface_samples(placed, tris)
        for offset in _TEETH_OFFSETS[part]:
            moved = placed + offset
            if tree.query(dense + offset)[0].min() < TEETH_CLEARANCE:
                continue
            if _crossing((moved, tris), lip_mesh).any():
                continue
            if out_v and _crossing((out_v[0], out_f[0]), (moved, tris)).any():
                continue
            break
        else:
            return None
        out_f.append(tris + sum(len(v) for v in out_v))
        out_v.append(moved)
        jaw += [part == "teeth_lower"] * len(placed)
        setbacks[part] = [round(float(c) * 1e3, 2) for c in offset]
    teeth_v = np.concatenate(out_v)
    teeth_f = np.concatenate(out_f).astype(np.int64)
    # Exact point-triangle distances both ways: a lining triangle with a corner near the teeth, or
    # nearest to a tooth vertex that is near it, would shrink the barrier to nothing.
    from faceforge.topology.surface import Surface

    used = np.unique(lip_faces)
    to_teeth = Surface(teeth_v, teeth_f).closest(vertices[used]).distances
    near_vertex = np.zeros(len(vertices), dtype=bool)
    near_vertex[used[to_teeth < 2 * TEETH_CLEARANCE]] = True
    to_lining = Surface(vertices, lip_faces).closest(teeth_v)
    near_face = np.zeros(len(lip_faces), dtype=bool)
    near_face[to_lining.faces[to_lining.distances < 2 * TEETH_CLEARANCE]] = True
    crossed = _crossing((teeth_v, teeth_f), (vertices, lip_faces))
    attached = ~on_lips & (near_vertex[lip_faces].any(axis=1) | near_face | crossed)
    return teeth_v, teeth_f, np.asarray(jaw), setbacks, ~attached


def teeth_arches(
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
