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
    # The leading identity components are recovered; the last ones, which move the face by
    # fractions of a millimetre on this tiny dataset, are left to the prior.
    lead = max(1, len(fit["w_id"]) // 2)
    np.testing.assert_allclose(
        fit["w_id"][:lead], codes["w_id"][1][:lead], atol=0.05 * np.abs(codes["w_id"][1]).max()
    )
    missing = run("model", "sample", "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path))
    assert missing.returncode == 1 and "faceforge model build" in missing.stderr


def test_model_errors_are_one_line(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a model")
    result = run("model", "info", str(broken))
    assert result.returncode == 1 and "not a FaceForge model file" in result.stderr
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


def test_fit_refuses_absurd_sizes_names_the_units_and_never_overwrites(small_model_path, tmp_path):
    from faceforge.data.meshio import read_mesh, write_obj

    model = ["--model", str(small_model_path)]
    faces_dir = tmp_path / "faces"
    assert run("model", "sample", *model, "--n", "1", "--out", str(faces_dir)).returncode == 0
    again = run("model", "sample", *model, "--n", "1", "--seed", "3", "--out", str(faces_dir))
    assert (
        again.returncode == 1 and "already holds face_000.obj" in again.stderr and "--force" in again.stderr
    )
    before = (faces_dir / "face_000.obj").read_bytes()
    assert (faces_dir / "face_000.obj").read_bytes() == before  # refused: nothing replaced
    forced = run("model", "sample", *model, "--n", "1", "--seed", "3", "--out", str(faces_dir), "--force")
    assert forced.returncode == 0 and (faces_dir / "face_000.obj").read_bytes() != before
    assert not list(tmp_path.glob(".*partial*"))  # no staging folder left behind
    vertices, faces = read_mesh(faces_dir / "face_000.obj")
    for name, scale in (("huge", 1e30), ("cm", 100.0)):
        write_obj(tmp_path / f"{name}.obj", vertices * scale, faces)
    huge = run("model", "fit", str(tmp_path / "huge.obj"), *model, "--no-flows", "--json")
    assert huge.returncode == 1 and "not a plausible head" in huge.stderr and huge.stdout == ""
    assert not (tmp_path / "huge_fit.obj").exists()
    wrong_units = run("model", "fit", str(tmp_path / "cm.obj"), *model, "--no-flows")
    assert wrong_units.returncode == 1 and "'cm'" in wrong_units.stderr
    fitted = run("model", "fit", str(tmp_path / "cm.obj"), *model, "--no-flows", "--units", "cm", "--json")
    assert fitted.returncode == 0, fitted.stderr
    assert json.loads(fitted.stdout)["error_mm"] < 1.0  # the fit is in mm whatever the scan's units
    scan = tmp_path / "cm.obj"
    original = scan.read_bytes()
    over_input = run("model", "fit", str(scan), *model, "--no-flows", "--units", "cm", "--out", str(scan))
    assert (
        over_input.returncode == 1 and "over the input" in over_input.stderr and scan.read_bytes() == original
    )
    exists = run("model", "fit", str(scan), *model, "--no-flows", "--units", "cm")
    assert exists.returncode == 1 and "exists: pass --force" in exists.stderr
    assert run("model", "fit", str(scan), *model, "--no-flows", "--units", "cm", "--force").returncode == 0
