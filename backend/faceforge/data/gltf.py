"""Binary glTF 2.0 (GLB) with morph targets: a character and its shape keys for any DCC or engine.

One mesh, one primitive: ``POSITION`` (float32), ``NORMAL``, ``uint32`` indices, and one morph
target per key with its ``POSITION`` offsets; the key names go in ``mesh.extras.targetNames``
(the convention Blender, three.js and Unreal read). Written atomically like every FaceForge file.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceforge.data.meshio import _write
from faceforge.errors import FaceForgeError

__all__ = ["write_glb", "read_glb"]

_FLOAT, _UINT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def _normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    n = np.zeros_like(v)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    for i in range(3):
        np.add.at(n, f[:, i], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.divide(n, length, out=np.zeros_like(n), where=length > 0)
    n[length[:, 0] == 0] = (0.0, 0.0, 1.0)
    return n


def write_glb(
    path: str | Path,
    vertices: np.ndarray,
    faces: np.ndarray,
    deltas: np.ndarray | None = None,
    names: Sequence[str] = (),
    mesh_name: str = "character",
) -> None:
    """Write a mesh with morph targets.

    Args:
        path: the ``.glb`` file.
        vertices: ``(V, 3)`` positions (written as given: glTF reads them as metres, Y up).
        faces: ``(F, 3)`` triangles.
        deltas: ``(K, V, 3)`` morph target offsets, or None.
        names: ``K`` target names.
    """
    v = np.asarray(vertices, dtype=np.float32)
    f = np.asarray(faces, dtype=np.uint32)
    d = np.zeros((0, len(v), 3), np.float32) if deltas is None else np.asarray(deltas, dtype=np.float32)
    if d.shape[1:] != v.shape or len(names) != len(d):
        raise FaceForgeError(f"{len(names)} names and deltas of shape {d.shape} for {len(v)} vertices")
    if not (np.isfinite(v).all() and np.isfinite(d).all()):
        raise FaceForgeError("refusing to write non-finite positions or offsets")
    blobs: list[bytes] = []
    views: list[dict] = []
    accessors: list[dict] = []

    def add(array: np.ndarray, kind: str, component: int, target: int | None, bounds: bool) -> int:
        data = array.tobytes()
        offset = sum(len(b) for b in blobs)
        blobs.append(data + b"\0" * (-len(data) % 4))
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        acc = {"bufferView": len(views) - 1, "componentType": component, "count": len(array), "type": kind}
        if bounds:
            acc["min"] = array.min(axis=0).tolist()
            acc["max"] = array.max(axis=0).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    position = add(v, "VEC3", _FLOAT, _ARRAY_BUFFER, True)
    normal = add(
        _normals(v.astype(np.float64), f.astype(np.int64)).astype(np.float32),
        "VEC3",
        _FLOAT,
        _ARRAY_BUFFER,
        False,
    )
    indices = add(f.reshape(-1), "SCALAR", _UINT, _ELEMENT_ARRAY_BUFFER, False)
    targets = [{"POSITION": add(k, "VEC3", _FLOAT, _ARRAY_BUFFER, True)} for k in d]
    primitive = {"attributes": {"POSITION": position, "NORMAL": normal}, "indices": indices, "mode": 4}
    mesh: dict = {"name": mesh_name, "primitives": [primitive]}
    if len(d):
        primitive["targets"] = targets
        mesh["weights"] = [0.0] * len(d)
        mesh["extras"] = {"targetNames": list(names)}
    binary = b"".join(blobs)
    doc = {
        "asset": {"version": "2.0", "generator": "FaceForge"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": mesh_name, "mesh": 0}],
        "meshes": [mesh],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": views,
        "accessors": accessors,
    }
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    out = struct.pack("<4sII", b"glTF", 2, total)
    out += struct.pack("<I4s", len(text), b"JSON") + text
    out += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    _write(path, out)


def read_glb(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read back what :func:`write_glb` wrote: vertices, faces, deltas ``(K, V, 3)``, names."""
    data = Path(path).read_bytes()
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2 or total != len(data):
        raise FaceForgeError(f"{path} is not a glTF 2.0 binary file")
    n_json, _ = struct.unpack_from("<I4s", data, 12)
    doc = json.loads(data[20 : 20 + n_json])
    n_bin, _ = struct.unpack_from("<I4s", data, 20 + n_json)
    binary = data[28 + n_json : 28 + n_json + n_bin]

    def get(index: int) -> np.ndarray:
        acc = doc["accessors"][index]
        view = doc["bufferViews"][acc["bufferView"]]
        dtype = np.float32 if acc["componentType"] == _FLOAT else np.uint32
        width = {"VEC3": 3, "SCALAR": 1}[acc["type"]]
        raw = np.frombuffer(binary, dtype, acc["count"] * width, view["byteOffset"])
        return raw.reshape(acc["count"], width) if width > 1 else raw

    prim = doc["meshes"][0]["primitives"][0]
    v = get(prim["attributes"]["POSITION"])
    f = get(prim["indices"]).reshape(-1, 3).astype(np.int64)
    d = (
        np.stack([get(t["POSITION"]) for t in prim.get("targets", [])])
        if prim.get("targets")
        else np.zeros((0,) + v.shape, np.float32)
    )
    names = doc["meshes"][0].get("extras", {}).get("targetNames", [])
    return v, f, d, list(names)
