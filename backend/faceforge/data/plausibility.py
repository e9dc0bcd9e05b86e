"""Is a sampled head plausible? Flipped triangles, self-intersections and facial proportions.

A dataset that covers the space of faces has to push anny's local targets far, and far enough
breaks a head: triangles fold over, the lips or the nostrils pass through each other, or the
face gets proportions no person has. :func:`check_head` measures the three against the
identity's own phenotype-only head (the local targets may add no fold and no intersection, and
may move a proportion by no more than the spread human populations show,
``resources/anthropometry.toml``), and says which test failed.

Meshes are ``(V, 3)`` float arrays in metres with ``(F, 3)`` int triangles.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

__all__ = [
    "PlausibilityReport",
    "anthropometric_ratios",
    "check_head",
    "flipped_triangles",
    "new_intersections",
    "proportion_limits",
    "self_intersecting_pairs",
]


def _normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(F, 3)`` unnormalised triangle normals (twice the area times the unit normal)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return np.cross(b - a, c - a)


def flipped_triangles(vertices: np.ndarray, faces: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Indices of the triangles whose normal turned by more than 90 degrees from ``reference``'s
    (same topology), or whose area collapsed below 1e-4 of the reference's (a fold).

    Both meshes must be rigidly aligned (the dataset's canonical frame): the test compares
    normal directions.
    """
    n_new, n_ref = _normals(vertices, faces), _normals(reference, faces)
    area_new, area_ref = np.linalg.norm(n_new, axis=1), np.linalg.norm(n_ref, axis=1)
    folded = np.einsum("fc,fc->f", n_new, n_ref) <= 0.0
    collapsed = area_new < 1e-4 * np.maximum(area_ref, 1e-300)
    return np.flatnonzero(folded | collapsed)


def _segments_cross_triangles(
    p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> np.ndarray:
    """``(K,)`` whether segment ``p -> q`` crosses triangle ``abc`` (Moller-Trumbore, strictly
    inside both: touching at an edge or a corner does not count)."""
    direction = q - p
    e1, e2 = b - a, c - a
    h = np.cross(direction, e2)
    det = np.einsum("kc,kc->k", e1, h)
    ok = np.abs(det) > 1e-18
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = p - a
    u = inv * np.einsum("kc,kc->k", s, h)
    qv = np.cross(s, e1)
    v = inv * np.einsum("kc,kc->k", direction, qv)
    t = inv * np.einsum("kc,kc->k", e2, qv)
    eps = 1e-9
    return ok & (u > eps) & (v > eps) & (u + v < 1 - eps) & (t > eps) & (t < 1 - eps)


def self_intersecting_pairs(
    vertices: np.ndarray, faces: np.ndarray, moved: np.ndarray | None = None, chunk: int = 200_000
) -> set[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of triangles sharing no vertex that pass through each other.

    Candidates are the triangle pairs whose centroids are closer than their circumradii allow
    (k-d tree queries by size bin) and whose bounding boxes overlap, tested exactly by crossing
    each triangle's edges with the other triangle. ``moved`` (``(F,)`` bool) restricts the
    search to pairs with at least one moved triangle (a head compared with its baseline).
    """
    from scipy.spatial import cKDTree

    corners = vertices[faces]  # (F, 3, 3)
    centroid = corners.mean(axis=1)
    radius = np.linalg.norm(corners - centroid[:, None], axis=2).max(axis=1)
    if moved is not None and not moved.any():
        return set()
    # Size bins: each triangle looks for partners no larger than itself within twice its own
    # bin's radius, so the few large neck triangles do not set the small ones' search radius.
    edges = np.percentile(radius, [50, 80, 95, 100])
    bins = np.minimum(np.searchsorted(edges, radius), len(edges) - 1)
    first, second = [], []
    for b, reach in enumerate(edges):
        members, pool = np.flatnonzero(bins == b), np.flatnonzero(bins <= b)
        if len(members) == 0:
            continue
        near = cKDTree(centroid[members]).sparse_distance_matrix(
            cKDTree(centroid[pool]), 2.0 * float(reach), output_type="ndarray"
        )
        i, j = members[near["i"]], pool[near["j"]]
        keep = near["v"] <= radius[i] + radius[j]
        if moved is not None:
            keep &= moved[i] | moved[j]
        first.append(i[keep])
        second.append(j[keep])
    i, j = np.concatenate(first), np.concatenate(second)
    low_index, high_index = np.minimum(i, j)[i != j], np.maximum(i, j)[i != j]
    keys = np.unique(low_index * len(faces) + high_index)
    pairs = np.stack([keys // len(faces), keys % len(faces)], axis=1)
    if len(pairs) == 0:
        return set()
    low, high = corners.min(axis=1), corners.max(axis=1)
    found: set[tuple[int, int]] = set()
    for start in range(0, len(pairs), chunk):
        i, j = pairs[start : start + chunk].T
        overlap = ((low[i] <= high[j]) & (low[j] <= high[i])).all(axis=1)
        shared = (faces[i][:, :, None] == faces[j][:, None, :]).any(axis=(1, 2))
        i, j = i[overlap & ~shared], j[overlap & ~shared]
        hit = np.zeros(len(i), dtype=bool)
        for first, second in ((i, j), (j, i)):
            a, b, c = (corners[second, k] for k in range(3))
            for e0, e1 in ((0, 1), (1, 2), (2, 0)):
                hit |= _segments_cross_triangles(corners[first, e0], corners[first, e1], a, b, c)
        found.update(zip(np.minimum(i, j)[hit].tolist(), np.maximum(i, j)[hit].tolist(), strict=True))
    return found


#: Rings of neighbours around the baseline's own intersecting triangles that form its contact
#: regions (anny's infant morph already presses the lips into each other).
CONTACT_RINGS = 2


def new_intersections(
    pairs: set[tuple[int, int]], baseline_pairs: set[tuple[int, int]], faces: np.ndarray
) -> set[tuple[int, int]]:
    """The intersecting pairs that are new relative to the baseline's.

    A pair with a triangle in one of the baseline's contact regions (its intersecting triangles
    and :data:`CONTACT_RINGS` rings of neighbours) is the same contact moved a little, not a new
    one, as long as the contact does not grow past 1.5 times the baseline's pairs plus 10;
    past that the whole growth counts. Elsewhere every intersecting pair is new. The count
    measures the length of the crossing's outline, not its depth: a lower lip pushed 4 mm into
    the upper one crosses 114 pairs, pushed 9 mm 144, 12 mm 186 (on the anny template).
    """
    fresh = pairs - baseline_pairs
    if not baseline_pairs or not fresh:
        return fresh
    touched = np.zeros(len(faces), dtype=bool)
    touched[[t for pair in baseline_pairs for t in pair]] = True
    n_vertices = int(faces.max()) + 1
    for _ in range(CONTACT_RINGS):
        ring = np.zeros(n_vertices, dtype=bool)
        ring[faces[touched].ravel()] = True
        touched = ring[faces].any(axis=1)
    elsewhere = {p for p in fresh if not (touched[p[0]] or touched[p[1]])}
    in_contact = len(pairs) - len(elsewhere)
    if in_contact > 1.5 * len(baseline_pairs) + 10:
        return fresh
    return elsewhere


@functools.lru_cache(maxsize=1)
def _anthropometry() -> dict:
    path = resources.files("faceforge.data") / "resources" / "anthropometry.toml"
    return tomllib.loads(path.read_text())


def proportion_limits() -> dict[str, dict]:
    """Per facial proportion: its two landmark distances (BabyFM landmark names) and the largest
    relative change local shape targets may make (``max_relative_change``), from the published
    population norms in ``resources/anthropometry.toml``."""
    return dict(_anthropometry()["ratio"])


def anthropometric_ratios(vertices: np.ndarray, landmarks: dict[str, int]) -> dict[str, float]:
    """The facial proportions of :func:`proportion_limits` on one head.

    Args:
        vertices: ``(V, 3)`` head, metres.
        landmarks: BabyFM landmark name -> vertex index (``exR``, ``enR``, ``aL``, ``chL`` ...).
    """

    def distance(a: str, b: str) -> float:
        return float(np.linalg.norm(vertices[landmarks[a]] - vertices[landmarks[b]]))

    out = {}
    for name, spec in proportion_limits().items():
        numerator, denominator = (
            distance(*pair.split("-")) for pair in (spec["numerator"], spec["denominator"])
        )
        out[name] = numerator / max(denominator, 1e-12)
    return out


@dataclass
class PlausibilityReport:
    """What :func:`check_head` found on one head.

    Attributes:
        flipped: triangles flipped or collapsed relative to the template.
        new_intersections: intersecting triangle pairs the template does not have.
        ratio_changes: relative change of each facial proportion from the phenotype-only head.
        failures: human-readable reasons, empty when the head is plausible.
    """

    flipped: int
    new_intersections: int
    ratio_changes: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def plausible(self) -> bool:
        return not self.failures


def check_head(
    vertices: np.ndarray,
    faces: np.ndarray,
    baseline: np.ndarray,
    landmarks: dict[str, int],
    baseline_intersections: set[tuple[int, int]] | None = None,
    baseline_ratios: dict[str, float] | None = None,
) -> PlausibilityReport:
    """Check one neutral head against its phenotype-only ``baseline`` (see the module docstring).

    Args:
        vertices: ``(V, 3)`` the head, rigidly aligned to ``baseline``, metres.
        faces: ``(F, 3)`` triangles.
        baseline: ``(V, 3)`` the same phenotype without local targets, same frame. Only what
            the local targets add counts: MakeHuman's own infant morphs already fold a few
            nostril and ear triangles.
        landmarks: BabyFM landmark name -> vertex index.
        baseline_intersections: the baseline's own intersecting pairs (computed if None); see
            :func:`new_intersections` for how they are discounted.
        baseline_ratios: :func:`anthropometric_ratios` of the baseline (computed if None).
    """
    moved = (np.linalg.norm(vertices - baseline, axis=1) > 1e-5)[faces].any(axis=1)
    flipped = len(flipped_triangles(vertices, faces, baseline))
    if baseline_intersections is None:
        baseline_intersections = self_intersecting_pairs(baseline, faces, moved)
    new = new_intersections(self_intersecting_pairs(vertices, faces, moved), baseline_intersections, faces)
    if baseline_ratios is None:
        baseline_ratios = anthropometric_ratios(baseline, landmarks)
    ratios = anthropometric_ratios(vertices, landmarks)
    changes = {k: ratios[k] / baseline_ratios[k] - 1.0 for k in ratios}
    failures = []
    if flipped:
        failures.append(f"{flipped} flipped triangles")
    if new:
        failures.append(f"{len(new)} self-intersecting triangle pairs")
    for name, spec in proportion_limits().items():
        if abs(changes[name]) > spec["max_relative_change"]:
            failures.append(
                f"{name} changed by {100 * changes[name]:+.0f}% "
                f"(limit ±{100 * spec['max_relative_change']:.0f}%)"
            )
    return PlausibilityReport(flipped, len(new), changes, failures)
