"""Tests of the mesh readers/writers and the loaders of user face data (folder, FaceWarehouse, CoMA)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from faceforge.data.dataset import FaceDataset, MeshClips
from faceforge.data.loaders import (
    detect_format,
    load_coma,
    load_dataset,
    load_facewarehouse,
    load_mesh_folder,
    natural_key,
)
from faceforge.data.meshio import read_mesh, write_obj, write_ply
from faceforge.errors import Cancelled, DataError

TET_V = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
TET_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def tet(i: int = 0, e: int = 0, t: int = 0) -> np.ndarray:
    """A tetrahedron moved by identity ``i`` (x), expression ``e`` (y) and frame ``t`` (z)."""
    return TET_V + np.array([0.1 * i, 0.01 * e, 0.001 * t]) + 0.25 * np.arange(4)[:, None]


def write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray = TET_F) -> Path:
    if path.suffix == ".obj":
        write_obj(path, vertices, faces)
    else:
        write_ply(path, vertices, faces, binary=path.stem.endswith("b"))
    return path


def write_nonfinite(
    path: Path, vertices: np.ndarray, faces: np.ndarray = TET_F, binary: bool = False
) -> Path:
    """A mesh file with NaN or infinite coordinates (FaceForge's writers refuse to make one): the
    finite vertices written, then the non-finite values patched into the file's bytes."""
    finite = np.where(np.isfinite(vertices), vertices, 12345.0).astype(vertices.dtype)
    if path.suffix == ".obj":
        write_obj(path, finite, faces)
        lines = path.read_text().splitlines(keepends=True)
        rows = [i for i, line in enumerate(lines) if line.startswith("v ")]
        for v, c in zip(*np.nonzero(~np.isfinite(vertices)), strict=True):
            parts = lines[rows[v]].split()
            parts[1 + c] = str(vertices[v, c])
            lines[rows[v]] = " ".join(parts) + "\n"
        path.write_text("".join(lines))
        return path
    write_ply(path, finite, faces, binary=binary)
    data = path.read_bytes()
    if not binary:
        path.write_bytes(data.replace(b"12345", b"nan"))
        return path
    start = data.index(b"end_header\n") + len(b"end_header\n")
    body = np.frombuffer(data[start:], dtype=np.uint8).copy()
    scalar = np.dtype("<f4" if vertices.dtype == np.float32 else "<f8")
    coords = body[: vertices.size * scalar.itemsize].view(scalar).reshape(-1, 3)
    coords[~np.isfinite(vertices)] = vertices[~np.isfinite(vertices)]
    path.write_bytes(data[:start] + body.tobytes())
    return path


# --- meshio ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["m.obj", "m.ply", "mb.ply"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_exact(tmp_path, name, dtype):
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(7, 3)).astype(dtype)
    faces = rng.integers(0, 7, size=(5, 3))
    if name == "mb.ply":
        write_ply(tmp_path / name, vertices, faces, binary=True)
    else:
        write_mesh(tmp_path / name, vertices, faces)
    v, f = read_mesh(tmp_path / name)
    assert v.dtype == np.float64 and v.shape == (7, 3)
    assert f.dtype == np.int64 and f.shape == (5, 3)
    np.testing.assert_array_equal(v.astype(dtype), vertices)
    np.testing.assert_array_equal(f, faces)


def test_binary_ply_is_binary(tmp_path):
    write_ply(tmp_path / "b.ply", TET_V, TET_F, binary=True)
    data = (tmp_path / "b.ply").read_bytes()
    assert b"format binary_little_endian 1.0" in data
    header_end = data.index(b"end_header\n") + len(b"end_header\n")
    assert len(data) - header_end == 4 * 3 * 8 + 4 * (1 + 3 * 4)


@pytest.mark.parametrize("name", ["q.obj", "q.ply", "qb.ply"])
def test_polygons_fan_triangulated_in_file_order(tmp_path, name):
    vertices = np.arange(24, dtype=np.float64).reshape(8, 3)
    polygons = [[0, 1, 2, 3], [4, 5, 6], [1, 4, 5, 6, 7]]  # quad, triangle, pentagon
    if name == "qb.ply":
        write_ply(tmp_path / name, vertices, polygons, binary=True)
    elif name == "q.ply":
        write_ply(tmp_path / name, vertices, polygons)
    else:
        write_obj(tmp_path / name, vertices, polygons)
    v, f = read_mesh(tmp_path / name)
    np.testing.assert_array_equal(v, vertices)
    expected = [[0, 1, 2], [0, 2, 3], [4, 5, 6], [1, 4, 5], [1, 5, 6], [1, 6, 7]]
    assert f.tolist() == expected


@pytest.mark.parametrize("binary", [False, True])
def test_all_quads_fan_triangulated(tmp_path, binary):
    vertices = np.zeros((6, 3))
    quads = np.array([[0, 1, 4, 3], [1, 2, 5, 4]])
    write_ply(tmp_path / "grid.ply", vertices, quads, binary=binary)
    assert read_mesh(tmp_path / "grid.ply")[1].tolist() == [[0, 1, 4], [0, 4, 3], [1, 2, 5], [1, 5, 4]]


def test_obj_keeps_vertex_order_duplicates_and_unused_vertices(tmp_path):
    text = (
        "# comment\nmtllib x.mtl\no face\n"
        "v 0 0 0\nv 1 0 0\nv 0 0 0\nv 0 1 0 1.0\nv 5 5 5 0.1 0.2 0.3\n"
        "vt 0 0\nvt 1 0\nvn 0 0 1\ns off\nusemtl skin\n"
        "f 1/1/1 2/2/1 4/1/1\nf 3//1 2//1 4//1\nf -3 -4 -2\n"
    )
    (tmp_path / "m.obj").write_text(text)
    v, f = read_mesh(tmp_path / "m.obj")
    assert v.tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0], [5, 5, 5]]
    assert f.tolist() == [[0, 1, 3], [2, 1, 3], [2, 1, 3]]


def test_ply_big_endian_with_extra_properties_and_elements(tmp_path):
    header = (
        b"ply\nformat binary_big_endian 1.0\ncomment made by hand\n"
        b"element vertex 3\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\n"
        b"element face 1\nproperty uchar flags\nproperty list uint short vertex_indices\n"
        b"element edge 1\nproperty int vertex1\nproperty int vertex2\nend_header\r\n"
    )
    body = b"".join(struct.pack(">fffB", *xyz, 200) for xyz in [(1, 2, 3), (4, 5, 6), (7, 8, 9)])
    body += struct.pack(">BIhhh", 1, 3, 2, 1, 0) + struct.pack(">ii", 0, 1)
    (tmp_path / "be.ply").write_bytes(header + body)
    v, f = read_mesh(tmp_path / "be.ply")
    assert v.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert f.tolist() == [[2, 1, 0]]


def test_ascii_ply_with_vertex_index_name_and_one_line_body(tmp_path):
    text = (
        "ply\nformat ascii 1.0\nelement vertex 4\nproperty double x\nproperty double y\n"
        "property double z\nelement face 2\nproperty list uchar int vertex_index\nend_header\n"
        "0 0 0 1 0 0 1 1 0 0 1 0 3 0 1 2 4 0 1 2 3\n"
    )
    (tmp_path / "a.ply").write_text(text)
    v, f = read_mesh(tmp_path / "a.ply")
    assert v.shape == (4, 3)
    assert f.tolist() == [[0, 1, 2], [0, 1, 2], [0, 2, 3]]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("garbage.ply", b"\x00\xff\x13 not a mesh at all"),
        ("noend.ply", b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"),
        (
            "short.ply",
            b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
            b"property float z\nend_header\n0 0 0 1 1 1\n",
        ),
        (
            "word.ply",
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
            b"property float z\nend_header\n0 zero 0\n",
        ),
        ("noxyz.ply", b"ply\nformat ascii 1.0\nelement point 1\nproperty float x\nend_header\n0\n"),
        ("bad.obj", b"v 0 0 zero\nf 1 2 3\n"),
        ("empty.obj", b"# nothing\n"),
        ("range.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n"),
        ("zero.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n"),
        ("scan.stl", b"solid x\nendsolid x\n"),
    ],
)
def test_read_mesh_corrupt_files_name_the_file(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        read_mesh(tmp_path / name)


def test_read_mesh_truncated_binary_ply(tmp_path):
    write_ply(tmp_path / "full.ply", TET_V, TET_F, binary=True)
    (tmp_path / "cut.ply").write_bytes((tmp_path / "full.ply").read_bytes()[:-5])
    with pytest.raises(DataError, match=r"cut\.ply"):
        read_mesh(tmp_path / "cut.ply")


def test_read_mesh_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.obj"):
        read_mesh(tmp_path / "nowhere.obj")


def test_natural_key():
    names = ["frame10", "Frame2", "frame1", "a", "frame02"]
    assert sorted(names, key=natural_key) == ["a", "frame1", "Frame2", "frame02", "frame10"]
    assert sorted(["Tester_10", "Tester_2", "Tester_1"], key=natural_key) == [
        "Tester_1",
        "Tester_2",
        "Tester_10",
    ]


# --- folder ----------------------------------------------------------------------------------------


def test_load_mesh_folder_natural_order_values_and_units(tmp_path):
    for i, name in [(10, "10.obj"), (2, "2.ply"), (1, "1b.ply")]:
        write_mesh(tmp_path / name, tet(i) * 1000.0)
    (tmp_path / "notes.txt").write_text("not a mesh")
    (tmp_path / "sub").mkdir()
    data = load_mesh_folder(tmp_path, unit_scale=0.001)
    assert isinstance(data, FaceDataset)
    assert data.identity_names == ["1b", "2", "10"]
    assert data.expression_names == ["scan"]
    assert data.source == "folder"
    assert data.vertices.shape == (3, 1, 4, 3) and data.vertices.dtype == np.float32
    for k, i in enumerate([1, 2, 10]):
        np.testing.assert_allclose(data.vertices[k, 0], tet(i), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(data.faces, TET_F)
    assert data.faces.dtype == np.int64
    assert len(data.clips) == 0


def test_load_mesh_folder_same_stem_keeps_both(tmp_path):
    write_mesh(tmp_path / "a.obj", tet(0))
    write_mesh(tmp_path / "a.ply", tet(1))
    assert load_mesh_folder(tmp_path).identity_names == ["a.obj", "a.ply"]


def test_mixed_vertex_counts_name_file_and_counts(tmp_path):
    write_mesh(tmp_path / "1.obj", tet(0))
    five = np.vstack([tet(1), [[2.0, 2.0, 2.0]]])
    write_mesh(tmp_path / "2.obj", five)
    with pytest.raises(DataError, match="mixed topologies") as info:
        load_mesh_folder(tmp_path)
    message = str(info.value)
    assert "2.obj" in message and "5 vertices" in message and "has 4" in message


def test_mixed_faces_name_the_file(tmp_path):
    write_mesh(tmp_path / "1.obj", tet(0))
    write_mesh(tmp_path / "2.ply", tet(1), TET_F[::-1])
    with pytest.raises(DataError, match=r"mixed topologies: .*2\.ply .*4 vertices.*other faces"):
        load_mesh_folder(tmp_path)


def test_nan_coordinates_name_the_file(tmp_path):
    write_mesh(tmp_path / "1.obj", tet(0))
    bad = tet(1)
    bad[2, 1] = np.nan
    write_nonfinite(tmp_path / "2.obj", bad)
    with pytest.raises(DataError, match=r"2\.obj has NaN or infinite"):
        load_mesh_folder(tmp_path)
    bad[2, 1] = np.inf
    write_nonfinite(tmp_path / "2.obj", bad.astype(np.float32))
    with pytest.raises(DataError, match=r"2\.obj"):
        load_mesh_folder(tmp_path)


def test_empty_folder_names_the_folder(tmp_path):
    empty = tmp_path / "empty_scans"
    empty.mkdir()
    (empty / "readme.txt").write_text("no meshes here")
    with pytest.raises(DataError, match="empty_scans"):
        load_mesh_folder(empty)
    with pytest.raises(DataError, match="empty_scans"):
        load_dataset(empty)
    with pytest.raises(DataError, match="missing_folder"):
        load_mesh_folder(tmp_path / "missing_folder")


def test_corrupt_file_in_folder_names_the_file(tmp_path):
    write_mesh(tmp_path / "1.obj", tet(0))
    (tmp_path / "2.ply").write_bytes(b"ply\nformat ascii 1.0\nthis is broken")
    with pytest.raises(DataError, match=r"2\.ply") as info:
        load_mesh_folder(tmp_path)
    assert info.value.__cause__ is not None or "end_header" in str(info.value)


def test_progress_and_cancel(tmp_path):
    for i in range(3):
        write_mesh(tmp_path / f"{i}.obj", tet(i))
    calls = []
    load_mesh_folder(tmp_path, progress=lambda done, total, message: calls.append((done, total)))
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)
    with pytest.raises(Cancelled):
        load_mesh_folder(tmp_path, progress=lambda done, total, message: done < 1)


# --- FaceWarehouse ---------------------------------------------------------------------------------


def make_facewarehouse(root: Path, testers=(1, 2, 10), shapes=(0, 1, 2, 10)) -> Path:
    for k in testers:
        for j in shapes:
            write_obj(root / f"Tester_{k}" / "Blendshape" / f"shape_{j}.obj", tet(k, j), TET_F)
    return root


def test_load_facewarehouse(tmp_path):
    root = make_facewarehouse(tmp_path / "fw")
    (root / "Tester_1" / "Blendshape" / "shape_list.txt").write_text("not a shape")
    (root / "Tester_1" / "TrainingPose").mkdir()
    data = load_facewarehouse(root, unit_scale=2.0)
    assert data.identity_names == ["Tester_1", "Tester_2", "Tester_10"]
    assert data.expression_names == ["neutral", "shape_1", "shape_2", "shape_10"]
    assert data.source == "facewarehouse"
    assert data.vertices.shape == (3, 4, 4, 3) and data.vertices.dtype == np.float32
    for a, k in enumerate([1, 2, 10]):
        for b, j in enumerate([0, 1, 2, 10]):
            np.testing.assert_allclose(data.vertices[a, b], 2.0 * tet(k, j), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(data.faces, TET_F)

    few = load_facewarehouse(root, max_shapes=2)
    assert few.expression_names == ["neutral", "shape_1"]
    assert few.vertices.shape == (3, 2, 4, 3)
    with pytest.raises(DataError, match="max_shapes"):
        load_facewarehouse(root, max_shapes=0)


def test_facewarehouse_tester_missing_shape(tmp_path):
    root = make_facewarehouse(tmp_path)
    (root / "Tester_10" / "Blendshape" / "shape_2.obj").unlink()
    with pytest.raises(DataError, match=r"Tester_10 .*missing shape_2\.obj"):
        load_facewarehouse(root)
    # only the first two shapes are compared when only they are loaded
    assert load_facewarehouse(root, max_shapes=2).n_identities == 3


def test_facewarehouse_tester_without_blendshape_folder(tmp_path):
    root = make_facewarehouse(tmp_path, testers=(1,))
    (root / "Tester_3").mkdir()
    with pytest.raises(DataError, match="Tester_3"):
        load_facewarehouse(root)


def test_facewarehouse_empty_root(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path.name)):
        load_facewarehouse(tmp_path)


def test_facewarehouse_mixed_topology(tmp_path):
    root = make_facewarehouse(tmp_path, testers=(1, 2), shapes=(0, 1))
    write_obj(root / "Tester_2" / "Blendshape" / "shape_1.obj", tet(0)[:3], [[0, 1, 2]])
    with pytest.raises(DataError, match=r"Tester_2.Blendshape.shape_1\.obj has 3 vertices .* has 4"):
        load_facewarehouse(root)


# --- CoMA ------------------------------------------------------------------------------------------


def make_coma(root: Path) -> Path:
    layout = {"FaceTalk_10": ["mouth_open", "bareteeth"], "FaceTalk_2": ["bareteeth"]}
    for s, (subject, expressions) in enumerate(layout.items()):
        for e, expression in enumerate(expressions):
            for t in (1, 2, 10):
                path = root / subject / expression / f"{expression}.{t:d}.ply"
                write_ply(path, tet(s, e, t), TET_F, binary=t == 2)
    return root


def test_load_coma(tmp_path):
    root = make_coma(tmp_path / "coma")
    (root / "README.txt").write_text("loose file")
    data = load_coma(root)
    assert data.vertices is None
    assert data.source == "coma"
    assert data.identity_names == ["FaceTalk_2", "FaceTalk_10"]
    assert data.expression_names == ["bareteeth", "mouth_open"]
    assert isinstance(data.clips, MeshClips) and len(data.clips) == 3
    assert [c.name for c in data.clips] == [
        "FaceTalk_2/bareteeth",
        "FaceTalk_10/bareteeth",
        "FaceTalk_10/mouth_open",
    ]
    assert [c.identity for c in data.clips] == [0, 1, 1]
    assert [c.label for c in data.clips] == ["bareteeth", "bareteeth", "mouth_open"]
    # FaceTalk_10 was written with s=0 and mouth_open with e=0; frames 1, 2, 10 in natural order
    clip = data.clips[2]
    assert clip.frames.shape == (3, 4, 3) and clip.frames.dtype == np.float32
    for k, t in enumerate((1, 2, 10)):
        np.testing.assert_allclose(clip.frames[k], tet(0, 0, t), rtol=0, atol=1e-6)
    np.testing.assert_allclose(data.clips[0].frames[2], tet(1, 0, 10), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(data.faces, TET_F)
    assert data.n_vertices == 4
    assert data.summary()["n_clip_frames"] == 9


def test_coma_empty_expression_folder(tmp_path):
    root = make_coma(tmp_path)
    (root / "FaceTalk_2" / "lips_up").mkdir()
    with pytest.raises(DataError, match="lips_up"):
        load_coma(root)


def test_coma_mixed_topology_and_nan(tmp_path):
    root = make_coma(tmp_path)
    bad = root / "FaceTalk_10" / "bareteeth" / "bareteeth.10.ply"
    write_ply(bad, np.vstack([tet(), tet()]), TET_F)
    with pytest.raises(DataError, match=r"bareteeth\.10\.ply has 8 vertices .* has 4"):
        load_coma(root)
    nan = tet()
    nan[0, 0] = np.nan
    write_nonfinite(bad, nan, TET_F, binary=True)
    with pytest.raises(DataError, match=r"bareteeth\.10\.ply has NaN"):
        load_coma(root)


# --- dispatch --------------------------------------------------------------------------------------


def test_load_dataset_detects_layouts(tmp_path):
    fw = make_facewarehouse(tmp_path / "fw", testers=(1, 2), shapes=(0, 1))
    coma = make_coma(tmp_path / "coma")
    folder = tmp_path / "scans"
    for i in range(2):
        write_mesh(folder / f"s{i}.ply", tet(i))
    assert [detect_format(p) for p in (fw, coma, folder)] == ["facewarehouse", "coma", "folder"]
    assert load_dataset(fw).source == "facewarehouse"
    assert load_dataset(coma).source == "coma"
    assert load_dataset(folder, unit_scale=0.5).vertices[1, 0, 0, 0] == pytest.approx(0.5 * tet(1)[0, 0])
    assert load_dataset(folder, format="FOLDER").source == "folder"
    with pytest.raises(DataError, match="unknown dataset format"):
        load_dataset(folder, format="bu3dfe")
    with pytest.raises(DataError, match="not a folder"):
        load_dataset(folder / "s0.ply")
