"""``faceforge model build|info`` and ``faceforge bench model`` as a user runs them."""

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


def test_model_build_info_and_bench(small_dataset_dir, tmp_path):
    out = tmp_path / "model.pt"
    args = ["model", "build", "--data", str(small_dataset_dir), "--population", "all", "--out", str(out)]
    args += ["--small", "--epochs", "5"]
    built = run(*args, "--json")
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout)["all"]
    assert out.is_file() and report["rank_identity"] >= 1 and not report["cached"]
    again = run(*args, "--json")  # a model built with the same settings from the same data is reused
    assert json.loads(again.stdout)["all"]["cached"] is True
    info = run("model", "info", str(out), "--json")
    assert json.loads(info.stdout)["n_vertices"] == 4521
    bench = run("bench", "model", "--model", str(out), "--json")
    assert bench.returncode == 0, bench.stderr
    figures = json.loads(bench.stdout)
    assert figures["decode_faces_per_second"] > 0 and figures["fit_seconds_median"]["bilinear"] > 0

    sampled = run(
        "model", "sample", "--model", str(out), "--n", "2", "--radius", "0.9", "--out", str(tmp_path)
    )
    assert sampled.returncode == 0, sampled.stderr
    assert (tmp_path / "face_001.obj").is_file() and (tmp_path / "codes.npz").is_file()
    codes = np.load(tmp_path / "codes.npz")
    assert codes["w_id"].shape == (2, report["rank_identity"])
    fitted = run("model", "fit", str(tmp_path / "face_001.obj"), "--model", str(out), "--no-flows", "--json")
    assert fitted.returncode == 0, fitted.stderr
    fit = json.loads(fitted.stdout)
    assert fit["error_mm"] < 0.5 and (tmp_path / "face_001_fit.obj").is_file()  # a face the model can make
    np.testing.assert_allclose(fit["w_id"], codes["w_id"][1], atol=0.05 * np.abs(codes["w_id"][1]).max())
    missing = run("model", "sample", "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path))
    assert missing.returncode == 1 and "faceforge model build" in missing.stderr


def test_model_errors_are_one_line(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a model")
    result = run("model", "info", str(broken))
    assert result.returncode == 1 and "not a readable FaceForge model file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_stale_cached_model_is_rebuilt_not_reused(small_model_path, small_dataset, tmp_path):
    from faceforge.store import cached_model_report as _cached_model_report
    from faceforge.store import model_build_config as _model_build_config

    config = _model_build_config(small=True, population="all", seed=0, epochs=5)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"an older or damaged file")
    assert _cached_model_report(broken, config, small_dataset, "hash") is None
    assert _cached_model_report(tmp_path / "missing.pt", config, small_dataset, "hash") is None
    # A readable model built with other settings, or from other data, is not reused either.
    assert _cached_model_report(small_model_path, config, small_dataset, "hash") is None
