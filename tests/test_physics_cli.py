"""``faceforge simulate`` and ``faceforge bench simulate`` from the command line (small lattices)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.anny


def run(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "faceforge", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def test_simulate_a_generated_face_with_contact(small_model_path, tmp_path):
    out = tmp_path / "sim"
    done = run(
        "simulate", "--model", str(small_model_path), "--resolution", "6.8", "--frames", "2",
        "--expression", "jawOpen=0.2,mouthPressLeft=1.5,mouthPressRight=1.5,mouthRollLower=1.5",
        "--out", str(out), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)  # stdout holds only the JSON
    assert payload["frames"] == 2
    # contact removes the target's extra intersections; a decoded neutral whose lips already cross at
    # rest keeps those regions glued (zero-penetration results on a clean rest: tests/test_physics.py)
    assert payload["penetrations"] < payload["penetrations_target"]
    assert payload["material"]["elements"] > 1000
    data = np.load(out / "simulation.npz")
    assert data["frames"].shape == data["targets"].shape == (2, 4521, 3)
    assert sorted(p.name for p in out.glob("frame_*.obj")) == ["frame_0000.obj", "frame_0001.obj"]


def test_simulate_reports_bad_input_in_one_line(small_model_path, tmp_path):
    model = str(small_model_path)
    done = run("simulate", "--model", model, "--expression", "notAKey=1", "--out", str(tmp_path))
    assert done.returncode != 0
    assert "unknown expression key" in done.stderr and "Traceback" not in done.stderr


def test_bench_simulate_small_json(tmp_path):
    figure = tmp_path / "lips.png"
    done = run("bench", "simulate", "--small", "--frames", "2", "--json", "--figure", str(figure))
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    for key in ("elements", "seconds_per_frame", "v2v_mm", "penetrations_before", "penetrations_after"):
        assert key in payload
    assert set(payload["seconds_per_frame"]) == {"no_contact", "contact"}
    assert payload["penetrations_before"] > 0 and payload["penetrations_after"] == 0
    assert payload["v2v_by_resolution"]["6.8"]["v2v_mm"] > payload["v2v_by_resolution"]["4.5"]["v2v_mm"]
    assert figure.stat().st_size > 10_000
