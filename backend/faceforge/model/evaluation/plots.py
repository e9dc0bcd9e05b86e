"""Figures of the BabyFlow evaluation: latent KDEs before/after the flow and per-vertex error maps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from faceforge.figures import save_figure

__all__ = ["plot_error_maps", "plot_kde"]


def plot_kde(before: np.ndarray, after: np.ndarray, title: str, path: Path, components: int = 4) -> Path:
    """KDE of the first components of standardised ``w`` (blue) and ``z = f(w)`` (orange)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import gaussian_kde

    k = int(min(components, before.shape[1]))
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 2.8), squeeze=False)
    grid = np.linspace(-4.5, 4.5, 301)
    for j, ax in enumerate(axes[0]):
        for data, colour, label in (
            (before[:, j], "tab:blue", "w (no flow)"),
            (after[:, j], "tab:orange", "z = f(w)"),
        ):
            if len(data) > 2 and np.std(data) > 1e-12:
                ax.plot(grid, gaussian_kde(data)(grid), color=colour, label=label)
        ax.plot(grid, np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi), "k--", lw=0.8, label="N(0, 1)")
        ax.set_title(f"component {j + 1}", fontsize=9)
        ax.set_yticks([])
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_error_maps(
    mean_face: np.ndarray, faces: np.ndarray, maps: dict[str, np.ndarray], title: str, path: Path
) -> Path:
    """Front views of the mean face coloured by each method's mean per-vertex test error (mm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    tri = mean_face[faces] * 1e3
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    facing = -normal[:, 1] / np.maximum(np.linalg.norm(normal, axis=1), 1e-12)  # the face looks to -Y
    order = np.argsort(-tri[:, :, 1].mean(axis=1))  # painter's algorithm: far (large Y) first
    keep = order[facing[order] > 0]
    vmax = float(np.nanpercentile(np.concatenate([m for m in maps.values()]), 98))
    fig, axes = plt.subplots(1, len(maps), figsize=(3.0 * len(maps), 3.6), squeeze=False)
    for ax, (method, values) in zip(axes[0], maps.items(), strict=True):
        colours = np.nan_to_num(values[faces[keep]].mean(axis=1))
        collection = PolyCollection(tri[keep][:, :, [0, 2]], array=colours, cmap="jet", linewidths=0)
        collection.set_clim(0.0, vmax)
        ax.add_collection(collection)
        ax.autoscale_view()
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"{method}\n{np.nanmean(values):.3f} mm", fontsize=8)
    fig.colorbar(collection, ax=axes[0].tolist(), shrink=0.8, label="mean error (mm)")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
