"""How closely a simulated skin follows its target, beyond the mean: the tail and local roughness.

V2V (the mean sim-vs-target distance) hides a fold: one mouth-corner vertex 11 mm off its target moves
the mean of ~3,000 skin vertices by a few micrometres. These figures do not:

- ``max_mm`` / ``p99_mm``: the largest and 99th-percentile per-vertex distance to the target;
- ``lip_roughness_mm`` (max) / ``lip_roughness_p99_mm``: around the lips (lips, mouth lining and the
  skin within 15 mm of the mouth corners), how far each vertex's deviation ``sim - target`` differs
  from the mean deviation of its mesh neighbours (the umbrella Laplacian of the deviation field). A
  smooth under- or overshoot scores near 0 however large it is; a spike or a crumpled corner, where one
  vertex leaves its neighbours, scores its full height.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["deviation_figures", "lip_zone"]

#: The lip zone reaches this far (m) from the mouth corners and the lip contact line.
LIP_ZONE_RADIUS = 0.015


def lip_zone(rest: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """``(V,)`` bool: lips, mouth lining, and skin within 15 mm of the inner lip contour (iBUG 61-68)
    and the mouth corners (iBUG 49, 55), on the ``(V, 3)`` rest head (m)."""
    ibug = regions["ibug68"]
    anchors = rest[np.concatenate([ibug[60:68], ibug[[48, 54]]])]
    near = np.zeros(len(rest), dtype=bool)
    for point in anchors:
        near |= np.linalg.norm(rest - point, axis=1) < LIP_ZONE_RADIUS
    return near | regions["upper_lip"] | regions["lower_lip"] | (regions["cavity"] & near)


def _umbrella(faces: np.ndarray, n: int) -> sp.csr_matrix:
    """``(n, n)`` row-normalised vertex adjacency of a triangle mesh (rows of lone vertices empty)."""
    i = faces[:, [0, 1, 2, 1, 2, 0]].ravel()
    j = faces[:, [1, 2, 0, 0, 1, 2]].ravel()
    adjacency = sp.csr_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    adjacency.data[:] = 1.0  # an edge shared by two triangles counts once
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return sp.diags(1.0 / np.maximum(degree, 1.0)) @ adjacency


def deviation_figures(
    simulated: np.ndarray,
    target: np.ndarray,
    faces: np.ndarray,
    skin_vertices: np.ndarray,
    lips: np.ndarray,
) -> dict[str, float]:
    """Per-frame figures of ``simulated (V, 3)`` against ``target (V, 3)`` (m) over the simulated skin.

    Args:
        faces: ``(F, 3)`` head triangles; skin_vertices: ``(S,)`` the simulated vertices;
        lips: ``(V,)`` bool, the lip zone (:func:`lip_zone`).

    Returns:
        ``{"v2v_mm", "max_mm", "p99_mm", "lip_roughness_mm", "lip_roughness_p99_mm"}`` (mm).
    """
    deviation = np.asarray(simulated, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    distance = np.linalg.norm(deviation[skin_vertices], axis=1) * 1e3
    # neighbours among simulated skin only: the unsimulated rest of the head sits exactly on its target
    simulated_mask = np.zeros(len(deviation), dtype=bool)
    simulated_mask[skin_vertices] = True
    skin_faces = faces[simulated_mask[faces].all(axis=1)]
    umbrella = _umbrella(skin_faces, len(deviation))
    roughness = np.linalg.norm(deviation - umbrella @ deviation, axis=1) * 1e3
    zone = lips & simulated_mask & (np.asarray(umbrella.sum(axis=1)).ravel() > 0)
    rough = roughness[zone] if zone.any() else np.zeros(1)
    return {
        "v2v_mm": float(distance.mean()),
        "max_mm": float(distance.max()),
        "p99_mm": float(np.percentile(distance, 99)),
        "lip_roughness_mm": float(rough.max()),
        "lip_roughness_p99_mm": float(np.percentile(rough, 99)),
    }
