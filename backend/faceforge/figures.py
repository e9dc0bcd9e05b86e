"""Saving matplotlib figures the same way everywhere (reports, READMEs, benches)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["save_figure"]


def save_figure(fig, out: str | os.PathLike, dpi: int = 110) -> Path:  # noqa: ANN001 - a matplotlib Figure
    """Write ``fig`` to ``out`` (its folder created), close it and return the path."""
    import matplotlib.pyplot as plt

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
