"""Pictures of the physical face: mid-sagittal sections of the mouth before and after contact."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from faceforge.figures import save_figure

__all__ = ["plane_section", "render_lip_sections"]


def plane_section(vertices: np.ndarray, faces: np.ndarray, x: float = 0.0) -> np.ndarray:
    """``(S, 2, 2)`` segments (y, z) where the triangles cross the plane X = ``x``."""
    d = vertices[faces, 0] - x  # (F, 3)
    segments = []
    for tri, dist in zip(faces, d, strict=True):
        points = []
        for a, b in ((0, 1), (1, 2), (2, 0)):
            if (dist[a] < 0) != (dist[b] < 0):
                t = dist[a] / (dist[a] - dist[b])
                p = vertices[tri[a]] + t * (vertices[tri[b]] - vertices[tri[a]])
                points.append(p[1:])
        if len(points) == 2:
            segments.append(points)
    return np.asarray(segments).reshape(-1, 2, 2)


def render_lip_sections(
    panels: list[tuple[str, np.ndarray, np.ndarray, int]], out: str | os.PathLike, x: float = 0.0
) -> Path:
    """Side-by-side sections of mouth meshes: ``panels`` of ``(title, vertices, faces, n_teeth_faces)``
    (the last ``n_teeth_faces`` triangles are teeth, drawn grey). Saves a PNG and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), sharex=True, sharey=True)
    for ax, (title, vertices, faces, n_teeth) in zip(np.atleast_1d(axes), panels, strict=True):
        skin = plane_section(vertices * 1e3, faces[: len(faces) - n_teeth], x * 1e3)
        teeth = plane_section(vertices * 1e3, faces[len(faces) - n_teeth :], x * 1e3)
        ax.add_collection(LineCollection(skin, colors="#b03a2e", linewidths=1.6))
        ax.add_collection(LineCollection(teeth, colors="#7f8c8d", linewidths=2.4))
        ax.set_title(title, fontsize=10)
        ax.set_aspect("equal")
        ax.set_xlabel("y (mm, front to back)")
        ax.autoscale()
    np.atleast_1d(axes)[0].set_ylabel("z (mm)")
    fig.suptitle("Mid-sagittal section of lips (red) and teeth proxies (grey)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out)
