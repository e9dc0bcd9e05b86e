"""``faceforge simulate`` and ``faceforge bench simulate`` from the command line (small lattices)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.anny


def run(*args: str, cache: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "faceforge", *args]
    env = dict(os.environ, **({"FACEFORGE_CACHE": cache} if cache else {}))
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)


def test_simulate_a_generated_face_with_contact(small_model_path, tmp_path):
    out = tmp_path / "sim"
    done = run(
        "simulate", "--model", str(small_model_path), "--resolution", "6.8", "--frames", "2",
        "--expression", "jawOpen=0.2,mouthPressLeft=1.5,mouthPressRight=1.5,mouthRollLower=1.5",
        "--out", str(out), "--json", cache=str(tmp_path / "cache"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)  # stdout holds only the JSON
    assert payload["frames"] == 2
    # the target's lips cross; the simulation's do not (a generated neutral whose lips cross at rest
    # is opened first: the material reports it)
    assert payload["penetrations_target"] > 0 and payload["penetrations"] == 0
    assert payload["material"]["elements"] > 500 and payload["material"]["rest_lip_crossings"] >= 0
    data = np.load(out / "simulation.npz")
    assert data["frames"].shape == data["targets"].shape == (2, 4521, 3)
    assert sorted(p.name for p in out.glob("frame_*.obj")) == ["frame_0000.obj", "frame_0001.obj"]
    # the material space was kept on disk for the next run on this face
    assert len(list((tmp_path / "cache" / "physics").glob("material-*.npz"))) == 1
    again = run("simulate", "--model", str(small_model_path), "--frames", "2", "--out", str(out))
    assert again.returncode == 1 and "already holds frame_0000.obj" in again.stderr  # before simulating


def test_simulate_reports_bad_input_in_one_line(small_model_path, tmp_path):
    model = str(small_model_path)
    done = run("simulate", "--model", model, "--expression", "notAKey=1", "--out", str(tmp_path))
    assert done.returncode != 0
    assert "unknown expression key" in done.stderr and "Traceback" not in done.stderr


def test_simulate_refuses_a_device_it_does_not_have(small_model_path, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    done = run("simulate", "--model", str(small_model_path), "--device", "cuda", "--out", str(tmp_path))
    assert done.returncode != 0
    assert "no CUDA GPU" in done.stderr and "Traceback" not in done.stderr


def test_bench_simulate_small_json(tmp_path):
    figure = tmp_path / "lips.png"
    done = run("bench", "simulate", "--small", "--frames", "2", "--json", "--figure", str(figure))
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    for key in ("elements", "seconds_per_frame", "v2v_mm", "penetrations_before", "penetrations_after"):
        assert key in payload
    assert set(payload["seconds_per_frame"]) == {"no_contact", "contact"}
    assert payload["device"] in ("cpu", "cuda")
    assert payload["penetrations_before"] > 0 and payload["penetrations_after"] == 0
    assert payload["v2v_by_resolution"]["6.8"]["v2v_mm"] > payload["v2v_by_resolution"]["4.5"]["v2v_mm"]
    assert figure.stat().st_size > 10_000
