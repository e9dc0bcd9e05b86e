"""Outputs: never over an input, never over an existing file without force, never half-written;
torch artifact files checked on load."""

from __future__ import annotations

import pytest
import torch
from faceforge.artifact_file import load_artifact, save_artifact
from faceforge.errors import FaceForgeError
from faceforge.outputs import check_output, staged_outputs, write_atomic


def test_check_output_refuses_an_input_and_an_existing_file_without_force(tmp_path):
    scan = tmp_path / "scan.obj"
    scan.write_text("v 0 0 0\n")
    with pytest.raises(FaceForgeError, match="over the input"):
        check_output(scan, inputs=[scan], force=True)
    with pytest.raises(FaceForgeError, match="over the input"):
        check_output(tmp_path / "." / "scan.obj", inputs=[str(scan)])
    with pytest.raises(FaceForgeError, match="exists: pass --force"):
        check_output(scan)
    assert check_output(scan, force=True) == scan
    assert check_output(tmp_path / "new.obj") == tmp_path / "new.obj"


def test_staged_outputs_move_in_together_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    with staged_outputs(out, ["a.txt", "b.txt"]) as staging:
        (staging / "a.txt").write_text("1")
        (staging / "b.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(FaceForgeError, match="already holds a.txt, b.txt"):
        with staged_outputs(out, ["a.txt", "b.txt"]):
            raise AssertionError("refused before any work")
    with pytest.raises(RuntimeError, match="killed half-way"):
        with staged_outputs(out, ["a.txt", "b.txt"], force=True) as staging:
            (staging / "a.txt").write_text("2")
            raise RuntimeError("killed half-way")
    assert (out / "a.txt").read_text() == "1" and (out / "b.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_artifact_files_refuse_damage_emptiness_and_other_kinds(tmp_path):
    path = tmp_path / "model.pt"
    payload = {"format": "faceforge-test", "format_version": 1, "state": {"w": torch.arange(6.0)}}
    save_artifact(payload, path)
    loaded = load_artifact(path, "faceforge-test", 1, "test file", "rebuild")
    assert torch.equal(loaded["state"]["w"], torch.arange(6.0))
    with pytest.raises(FaceForgeError, match="format 1, this FaceForge reads 2"):
        load_artifact(path, "faceforge-test", 2, "test file", "rebuild")
    with pytest.raises(FaceForgeError, match="is not a FaceForge other file"):
        load_artifact(path, "faceforge-other", 1, "other file", "rebuild")
    tampered = dict(loaded, state={"w": torch.arange(6.0) * 2})
    torch.save(tampered, path)  # fresh zip checksums, stale tensor checksums
    with pytest.raises(FaceForgeError, match="tensor 'state/w' does not match"):
        load_artifact(path, "faceforge-test", 1, "test file", "rebuild")
    torch.save({"format": "faceforge-test", "format_version": 1}, path)
    with pytest.raises(FaceForgeError, match="carries no tensor checksums"):
        load_artifact(path, "faceforge-test", 1, "test file", "rebuild")
    path.write_bytes(b"")
    with pytest.raises(FaceForgeError, match=r"empty \(0 bytes\)"):
        load_artifact(path, "faceforge-test", 1, "test file", "rebuild")
    with pytest.raises(FaceForgeError, match="no test file at"):
        load_artifact(tmp_path / "none.pt", "faceforge-test", 1, "test file", "rebuild")


def test_write_atomic_leaves_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    import os

    target = tmp_path / "results.json"
    write_atomic(target, '{"old": 1}')
    assert target.read_text() == '{"old": 1}'

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(FaceForgeError, match="cannot write .*No space left"):
        write_atomic(target, '{"new": 2}')
    monkeypatch.undo()
    assert target.read_text() == '{"old": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temporary left


def test_a_figure_that_fails_half_way_leaves_the_old_picture(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from faceforge.figures import save_figure

    target = tmp_path / "plot.png"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    save_figure(fig, target)
    before = target.read_bytes()
    assert before[:8] == b"\x89PNG\r\n\x1a\n"

    fig, ax = plt.subplots()

    def broken(*args, **kwargs):
        path = args[0]
        open(path, "wb").write(b"\x89PNG half")  # a writer killed half-way
        raise RuntimeError("renderer failed")

    fig.savefig = broken
    with pytest.raises(RuntimeError):
        save_figure(fig, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


@pytest.mark.parametrize("command", [["data", "annotate"], ["data", "render"]])
def test_data_commands_refuse_to_replace_an_existing_output_without_force(tmp_path, capsys, command):
    from faceforge.cli import main

    out = tmp_path / "existing.out"
    out.write_text("mine")
    assert main([*command, "--out", str(out)]) == 1
    assert "exists: pass --force" in capsys.readouterr().err
    assert out.read_text() == "mine"
