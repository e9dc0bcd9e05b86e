"""Saving matplotlib figures the same way everywhere (reports, READMEs, benches)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["save_figure"]


def save_figure(fig, out: str | os.PathLike, dpi: int = 110) -> Path:  # noqa: ANN001 - a matplotlib Figure
    """Write ``fig`` to ``out`` (its folder created; format from the suffix, PNG without one)
    through a temporary name and a rename, close it and return the path."""
    import matplotlib.pyplot as plt

    path = Path(out)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".").lower() or "png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
