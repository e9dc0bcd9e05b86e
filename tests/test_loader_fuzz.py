"""Hypothesis fuzzing of the file loaders: whatever bytes a file holds, reading it either succeeds or
raises FaceForge's own error with a message; never another exception, never a NaN success."""

from __future__ import annotations

import json

import numpy as np
import torch
from faceforge.artifact_file import load_artifact, save_artifact
from faceforge.data.build import FORMAT_VERSION, read_manifest
from faceforge.data.meshio import read_mesh, write_obj, write_ply
from faceforge.errors import FaceForgeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

TETRA = (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32), np.array([[0, 1, 2], [0, 1, 3]]))


def _mutated(data: st.DataObject, original: bytes) -> bytes:
    """A valid file cut short, with bytes overwritten, inserted, or replaced by noise."""
    b = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["cut", "flip", "insert", "noise"]))
        at = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if kind == "cut":
            del b[at:]
        elif kind == "flip" and b:
            b[at] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            b[at:at] = data.draw(st.binary(max_size=16))
        else:
            b = bytearray(data.draw(st.binary(max_size=64)))
    return bytes(b)


def _valid_mesh_bytes(tmp_path, suffix: str, binary: bool = False) -> bytes:
    path = tmp_path / f"valid{suffix}"
    (write_obj if suffix == ".obj" else write_ply)(
        path, *TETRA, **({"binary": binary} if suffix == ".ply" else {})
    )
    return path.read_bytes()


def _read_or_refuse(path) -> None:
    try:
        vertices, faces = read_mesh(path)
    except FaceForgeError as error:
        assert str(error)
        return
    assert vertices.ndim == 2 and vertices.shape[1] == 3
    assert faces.ndim == 2 and (len(faces) == 0 or (faces.min() >= 0 and faces.max() < len(vertices)))


@FUZZ
@given(data=st.data())
def test_mesh_files_read_or_refuse_cleanly(tmp_path, data):
    suffix, binary = data.draw(st.sampled_from([(".obj", False), (".ply", False), (".ply", True)]))
    original = _valid_mesh_bytes(tmp_path, suffix, binary)
    path = tmp_path / f"fuzzed{suffix}"
    path.write_bytes(_mutated(data, original))
    _read_or_refuse(path)


@FUZZ
@given(data=st.data())
def test_artifact_files_load_intact_or_refuse_cleanly(tmp_path, data):
    path = tmp_path / "model.pt"
    payload = {"format": "faceforge-test", "format_version": 1, "state": {"w": torch.arange(12.0)}}
    save_artifact(payload, path)
    path.write_bytes(_mutated(data, path.read_bytes()))
    try:
        loaded = load_artifact(path, "faceforge-test", 1, "test file", "rebuild")
    except FaceForgeError as error:
        assert "weights_only" not in str(error)
        return
    assert torch.equal(loaded["state"]["w"], torch.arange(12.0))  # loaded means intact


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@FUZZ
@given(
    manifest=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"format_version": st.sampled_from([FORMAT_VERSION, 0, "1"])}, optional={"x": json_values}
        ),
    ),
    garbage=st.booleans(),
)
def test_dataset_manifests_read_or_refuse_cleanly(tmp_path, manifest, garbage):
    (tmp_path / "manifest.json").write_text("{not json" if garbage else json.dumps(manifest))
    try:
        read = read_manifest(tmp_path)
    except FaceForgeError as error:
        assert str(error)
        return
    assert isinstance(read, dict) and read.get("format_version") == FORMAT_VERSION
