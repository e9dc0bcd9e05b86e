"""``faceforge bench addon`` and its subdivision helper."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from faceforge.addon_bench import midpoint_subdivide

pytestmark = pytest.mark.anny


def area(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    return 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)


def test_midpoint_subdivision_quadruples_the_triangles():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2], [1, 3, 2]], np.int32)
    dense, tris = midpoint_subdivide(vertices, faces)
    assert tris.shape == (8, 3) and dense.shape == (4 + 5, 3)  # one new vertex per edge (5 edges)
    np.testing.assert_allclose(dense[:4], vertices)
    assert area(dense, tris).sum() == pytest.approx(area(vertices, faces).sum())
    np.testing.assert_allclose(area(dense, tris), 0.125)


def test_bench_addon_prints_its_figures(small_model_path):
    proc = subprocess.run(
        [sys.executable, "-m", "faceforge", "bench", "addon", "--model", str(small_model_path),
         "--repeats", "1", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(proc.stdout)
    assert payload["head_vertices"] == 4521 and payload["keys"] > 52
    assert 60_000 < payload["dense_vertices"] < 80_000
    assert payload["head_bulk_s"] > 0 and payload["dense_bulk_s"] > 0 and payload["speedup_vs_loop"] > 0
