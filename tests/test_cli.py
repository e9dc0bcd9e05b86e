"""The ``faceforge`` command line, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.anny


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "faceforge", *args], capture_output=True, text=True, timeout=600
    )


def test_data_build_small_json_writes_a_manifest(tmp_path):
    out = tmp_path / "ds"
    result = run("data", "build", "--small", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (out / "manifest.json").is_file()
    assert summary["sizes"]["n_identities"] == 12 + 4  # with 4 out-of-distribution identities
    assert summary["content_hash"] == json.loads((out / "manifest.json").read_text())["content_hash"]
    info = run("data", "info", str(out), "--json", "--verify")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["summary"]["n_expressions"] == 82
    stats = run("data", "stats", str(out), "--json")
    assert json.loads(stats.stdout)["unexplained_by_shared_offset"] > 0


def test_errors_are_one_clear_line(tmp_path):
    result = run("data", "info", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("faceforge: error:") and "no manifest.json" in result.stderr
    assert "Traceback" not in result.stderr
