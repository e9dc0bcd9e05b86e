"""Read and write triangle meshes as Wavefront OBJ and PLY (ASCII and binary) files.

The readers keep the file's vertex order exactly (no merging of duplicate positions, no reordering,
no removal of unused vertices) and the file's face order, so meshes of one topology read from
different files line up vertex by vertex. Polygons with more than three corners are fan-triangulated
(``(a, b, c, d)`` becomes ``(a, b, c), (a, c, d)``). Coordinates are returned as stored in the file;
unit conversion is up to the caller.

Why not trimesh (5.2.0, checked): with ``process=False`` it keeps OBJ vertex order only with
``maintain_order=True``, splits quads as ``(a, b, c), (c, d, a)``, groups a PLY's triangles before its
polygons' second triangles (face order lost), and misreads binary PLY faces of mixed sizes (it reads
every list with the first row's length). A glTF/GLB reader, when retargeting or capture need one,
belongs beside these functions so that every format keeps the same checks and messages.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceforge.errors import DataError

__all__ = ["read_mesh", "write_obj", "write_ply", "MESH_SUFFIXES"]

#: File name suffixes (lower case) that :func:`read_mesh` understands.
MESH_SUFFIXES = (".obj", ".ply")

PathLike = str | os.PathLike


def read_mesh(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a mesh from an ``.obj`` or ``.ply`` file (ASCII or binary PLY).

    Args:
        path: the mesh file; the format is chosen by its suffix (case-insensitive).

    Returns:
        ``(vertices, faces)``: ``(V, 3)`` float64 positions in the file's units, in the file's
        vertex order, and ``(F, 3)`` int64 triangle vertex indices (0-based) in the file's face
        order, polygons fan-triangulated. ``F`` is 0 for a point cloud.

    Raises:
        DataError: the file is missing, unreadable, of an unknown format, corrupt, has no vertices
            or a face refers to a vertex that does not exist. The message names the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise DataError(f"cannot read {path}: unsupported mesh format {path.suffix!r} (use .obj or .ply)")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        if suffix == ".obj":
            vertices, polygons = _parse_obj(data)
        else:
            vertices, polygons = _parse_ply(data)
        faces = _triangulate(polygons)
        _check_mesh(vertices, faces)
    except DataError as error:
        raise DataError(f"cannot read {path}: {error}") from error
    except (ValueError, TypeError, IndexError, OverflowError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: corrupt {suffix[1:].upper()} file ({error})") from error
    return vertices, faces


def write_obj(path: PathLike, vertices: np.ndarray, faces: np.ndarray | Sequence[Sequence[int]]) -> None:
    """Write a mesh as a Wavefront OBJ file (``v`` and ``f`` records only).

    Args:
        path: the file to write; missing parent folders are created.
        vertices: ``(V, 3)`` positions (written in their own units). float32 positions are written
            with 9 significant digits, others with 17, so reading them back (and casting float32
            input back to float32) is exact.
        faces: ``(F, K)`` 0-based vertex indices of polygons with ``K >= 3`` corners, or a sequence
            of index sequences for polygons of mixed sizes.

    Raises:
        ValueError: the arrays have the wrong shape.
        DataError: the file cannot be written, or a vertex is not finite (nothing is written).
    """
    vertices, polygons, digits = _check_write_input(vertices, faces)
    fmt = f"%.{digits}g"
    lines = [f"# OBJ file: {len(vertices)} vertices, {len(polygons)} faces\n"]
    vertex_fmt = f"v {fmt} {fmt} {fmt}\n"
    lines.extend(vertex_fmt % tuple(v) for v in vertices.tolist())
    lines.extend("f " + " ".join(str(i + 1) for i in polygon) + "\n" for polygon in polygons)
    _write(path, "".join(lines).encode("ascii"))


def write_ply(
    path: PathLike,
    vertices: np.ndarray,
    faces: np.ndarray | Sequence[Sequence[int]],
    binary: bool = False,
) -> None:
    """Write a mesh as a PLY file, ASCII or binary little-endian.

    Args:
        path: the file to write; missing parent folders are created.
        vertices: ``(V, 3)`` positions (written in their own units). float32 positions are stored
            as ``float``, others as ``double``, so reading them back is exact.
        faces: ``(F, K)`` 0-based vertex indices of polygons with ``K >= 3`` corners, or a sequence
            of index sequences for polygons of mixed sizes (at most 255 corners each).
        binary: write ``binary_little_endian`` instead of ``ascii``.

    Raises:
        ValueError: the arrays have the wrong shape.
        DataError: the file cannot be written, or a vertex is not finite (nothing is written).
    """
    vertices, polygons, digits = _check_write_input(vertices, faces)
    if any(len(polygon) > 255 for polygon in polygons):
        raise ValueError("PLY faces are written with a uchar corner count: at most 255 corners")
    scalar = "float" if digits == 9 else "double"
    header = (
        "ply\n"
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0\n"
        f"element vertex {len(vertices)}\n"
        f"property {scalar} x\nproperty {scalar} y\nproperty {scalar} z\n"
        f"element face {len(polygons)}\n"
        "property list uchar int vertex_indices\n"
        "end_header\n"
    ).encode("ascii")
    if binary:
        body = vertices.astype("<f4" if scalar == "float" else "<f8").tobytes()
        sizes = {len(polygon) for polygon in polygons}
        if len(sizes) == 1:
            (k,) = sizes
            rows = np.zeros(len(polygons), dtype=[("n", "u1"), ("i", "<i4", (k,))])
            rows["n"] = k
            rows["i"] = np.asarray(polygons, dtype=np.int64)
            body += rows.tobytes()
        else:
            body += b"".join(
                np.uint8(len(polygon)).tobytes() + np.asarray(polygon, dtype="<i4").tobytes()
                for polygon in polygons
            )
    else:
        fmt = f"%.{digits}g"
        vertex_fmt = f"{fmt} {fmt} {fmt}\n"
        text = "".join(vertex_fmt % tuple(v) for v in vertices.tolist())
        text += "".join(f"{len(p)} " + " ".join(map(str, p)) + "\n" for p in polygons)
        body = text.encode("ascii")
    _write(path, header + body)


# --- writing helpers -------------------------------------------------------------------------------


def _check_write_input(
    vertices: np.ndarray, faces: np.ndarray | Sequence[Sequence[int]]
) -> tuple[np.ndarray, list[list[int]], int]:
    """Validate writer input; return the vertices, the polygons as lists and the digits to write."""
    array = np.asarray(vertices)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {array.shape}")
    digits = 9 if array.dtype == np.float32 else 17
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array).all(axis=1)).sum())
        raise DataError(f"refusing to write a mesh with {bad} non-finite (NaN or infinite) vertices")
    if isinstance(faces, np.ndarray):
        if faces.ndim != 2 or (len(faces) and faces.shape[1] < 3):
            raise ValueError(f"faces must have shape (F, K) with K >= 3, got {faces.shape}")
        polygons = faces.astype(np.int64).tolist()
    else:
        polygons = [[int(i) for i in polygon] for polygon in faces]
    for polygon in polygons:
        if len(polygon) < 3:
            raise ValueError(f"a face needs at least 3 corners, got {polygon}")
        if min(polygon) < 0 or max(polygon) >= len(array):
            raise ValueError(f"face {polygon} refers to a vertex outside 0..{len(array) - 1}")
    return array, polygons, digits


def _write(path: PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename: never a half-written mesh."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as error:
        raise DataError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        tmp.unlink(missing_ok=True)


# --- reading helpers -------------------------------------------------------------------------------

# A parsed polygon list: either an (F, K) int64 array (all polygons with K corners) or a list of
# 1-D int64 arrays (polygons of mixed sizes), in file order.
Polygons = np.ndarray | list[np.ndarray]


def _check_mesh(vertices: np.ndarray, faces: np.ndarray) -> None:
    if len(vertices) == 0:
        raise DataError("the file has no vertices")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        bad = int(faces.min()) if faces.min() < 0 else int(faces.max())
        raise DataError(f"a face refers to vertex {bad}, but there are {len(vertices)} vertices")


def _triangulate(polygons: Polygons) -> np.ndarray:
    """Fan-triangulate polygons into ``(F, 3)`` int64 triangles, polygon by polygon in order."""
    if isinstance(polygons, np.ndarray):
        if polygons.ndim != 2 or len(polygons) == 0:
            return np.zeros((0, 3), dtype=np.int64)
        k = polygons.shape[1]
        if k < 3:
            raise DataError(f"faces with {k} corners (need at least 3)")
        if k == 3:
            return polygons.astype(np.int64)
        fan = np.empty((len(polygons), k - 2, 3), dtype=np.int64)
        fan[:, :, 0] = polygons[:, :1]
        fan[:, :, 1] = polygons[:, 1:-1]
        fan[:, :, 2] = polygons[:, 2:]
        return fan.reshape(-1, 3)
    triangles: list[np.ndarray] = []
    for polygon in polygons:
        if len(polygon) < 3:
            raise DataError(f"a face with {len(polygon)} corners (need at least 3)")
        fan = np.empty((len(polygon) - 2, 3), dtype=np.int64)
        fan[:, 0] = polygon[0]
        fan[:, 1] = polygon[1:-1]
        fan[:, 2] = polygon[2:]
        triangles.append(fan)
    if not triangles:
        return np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(triangles)


def _parse_obj(data: bytes) -> tuple[np.ndarray, Polygons]:
    """Parse the ``v`` and ``f`` records of an OBJ file (other records are ignored)."""
    # latin-1 never fails; the records that matter are ASCII, anything else fails to parse below.
    text = data.decode("latin-1")
    if "\\\n" in text or "\\\r\n" in text:  # line continuations
        text = text.replace("\\\r\n", " ").replace("\\\n", " ")
    lines = text.splitlines()
    # Fast path: records start at the line start with "v " / "f " and faces use positive indices.
    vertex_lines = [line for line in lines if line[:2] == "v "]
    face_lines = [line for line in lines if line[:2] == "f "]
    unusual = any(mark in text for mark in ("\n ", "\n\t", "\r ", "\r\t", "v\t", "f\t")) or text[:1] in " \t"
    if unusual or any("-" in line for line in face_lines):
        vertex_lines, face_lines = [], []
        face_bases: list[int] = []  # vertices defined before each face (for negative indices)
        for line in lines:
            record = line.lstrip()
            key = record[:2]
            if key in ("v ", "v\t"):
                vertex_lines.append(record)
            elif key in ("f ", "f\t"):
                face_lines.append(record)
                face_bases.append(len(vertex_lines))
        bases = np.array(face_bases, dtype=np.int64)
    else:
        bases = np.full(len(face_lines), len(vertex_lines), dtype=np.int64)
    return _obj_vertices(vertex_lines), _obj_faces(face_lines, bases)


def _obj_vertices(lines: list[str]) -> np.ndarray:
    """``(V, 3)`` float64 from ``v x y z [w | r g b]`` lines."""
    rows = [line.split() for line in lines]
    if any(len(row) < 4 for row in rows):
        raise DataError("a vertex ('v' record) needs 3 coordinates")
    try:
        if all(len(row) == 4 for row in rows):
            coordinates = " ".join(line[2:] for line in lines).split()
            return np.array(coordinates, dtype=np.float64).reshape(-1, 3)
        return np.array([row[1:4] for row in rows], dtype=np.float64).reshape(-1, 3)
    except ValueError as error:
        raise DataError(f"a vertex coordinate is not a number ({error})") from error


def _obj_faces(lines: list[str], bases: np.ndarray) -> Polygons:
    """Polygons (0-based) from ``f i[/t[/n]] ...`` lines; ``bases``: vertices defined before each."""
    rows = [line.split() for line in lines]
    if any(len(row) < 4 for row in rows):
        raise DataError("a face ('f' record) needs at least 3 corners")
    # keep the vertex index of "v/vt/vn" corners
    indices = np.array([token.partition("/")[0] for row in rows for token in row[1:]], dtype=np.int64)
    sizes = {len(row) - 1 for row in rows}
    if len(sizes) <= 1:
        k = sizes.pop() if sizes else 3
        return _obj_indices(indices.reshape(-1, k), bases[:, None])
    ends = np.cumsum([len(row) - 1 for row in rows])
    return [
        _obj_indices(polygon, base)
        for polygon, base in zip(np.split(indices, ends[:-1]), bases.tolist(), strict=True)
    ]


def _obj_indices(indices: np.ndarray, base: np.ndarray | int) -> np.ndarray:
    """OBJ vertex references (1-based, or negative: relative to ``base``) -> 0-based indices."""
    if np.any(indices == 0):
        raise DataError("OBJ vertex indices start at 1, got 0")
    return np.where(indices > 0, indices - 1, indices + base)


_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_PLY_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}


class _PlyProperty:
    """One property of a PLY element: a scalar (``count_type`` None) or a list."""

    def __init__(self, name: str, value_type: str, count_type: str | None = None) -> None:
        self.name = name
        self.value_type = value_type
        self.count_type = count_type

    @property
    def is_list(self) -> bool:
        return self.count_type is not None


class _PlyElement:
    def __init__(self, name: str, count: int) -> None:
        self.name = name
        self.count = count
        self.properties: list[_PlyProperty] = []
        # property name -> (count,) array for scalars; (count, K) array or list of arrays for lists
        self.data: dict[str, np.ndarray | list[np.ndarray]] = {}


def _ply_type(name: str) -> str:
    if name not in _PLY_TYPES:
        raise DataError(f"unknown PLY property type {name!r}")
    return _PLY_TYPES[name]


def _parse_ply_header(data: bytes) -> tuple[str | None, list[_PlyElement], int]:
    """Return the byte order (``None`` for ASCII), the elements and the offset of the body."""
    if not (data.startswith(b"ply\n") or data.startswith(b"ply\r")):
        raise DataError("not a PLY file (it does not start with 'ply')")
    end = data.find(b"end_header")
    if end < 0:
        raise DataError("the PLY header has no 'end_header'")
    body = end + len(b"end_header")
    if data[body : body + 2] == b"\r\n":
        body += 2
    elif data[body : body + 1] in (b"\n", b"\r"):
        body += 1
    else:
        raise DataError("'end_header' is not followed by a line break")
    byte_order: str | None = None
    has_format = False
    elements: list[_PlyElement] = []
    for line in data[:end].decode("latin-1").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            if words[1] not in _PLY_FORMATS:
                raise DataError(f"unknown PLY format {words[1]!r}")
            byte_order = _PLY_FORMATS[words[1]]
            has_format = True
        elif words[0] == "element" and len(words) == 3:
            count = int(words[2])
            if count < 0:
                raise DataError(f"negative element count in {line!r}")
            elements.append(_PlyElement(words[1], count))
        elif words[0] == "property" and elements and len(words) == 3:
            elements[-1].properties.append(_PlyProperty(words[2], _ply_type(words[1])))
        elif words[0] == "property" and elements and len(words) == 5 and words[1] == "list":
            prop = _PlyProperty(words[4], _ply_type(words[3]), _ply_type(words[2]))
            if prop.count_type.startswith("f"):
                raise DataError(f"a PLY list count must be an integer type: {line!r}")
            elements[-1].properties.append(prop)
        else:
            raise DataError(f"malformed PLY header line {line!r}")
    if not has_format:
        raise DataError("the PLY header has no 'format' line")
    return byte_order, elements, body


def _parse_ply(data: bytes) -> tuple[np.ndarray, Polygons]:
    """Parse the ``vertex`` (x, y, z) and ``face`` (vertex index lists) elements of a PLY file."""
    byte_order, elements, offset = _parse_ply_header(data)
    if byte_order is None:
        values = np.array(data[offset:].split(), dtype=np.float64)
        position = 0
        for element in elements:
            position = _read_ascii_element(element, values, position)
    else:
        for element in elements:
            offset = _read_binary_element(element, data, offset, byte_order)

    by_name = {element.name: element for element in elements}
    vertex = by_name.get("vertex")
    if vertex is None or not all(axis in vertex.data for axis in "xyz"):
        raise DataError("the PLY file has no 'vertex' element with x, y, z properties")
    vertices = np.stack([np.asarray(vertex.data[axis], dtype=np.float64) for axis in "xyz"], axis=1)
    face = by_name.get("face")
    if face is None:
        return vertices, np.zeros((0, 3), dtype=np.int64)
    lists = [prop.name for prop in face.properties if prop.is_list]
    names = [name for name in ("vertex_indices", "vertex_index") if name in lists] or lists
    if not names:
        raise DataError("the PLY 'face' element has no vertex index list")
    polygons = face.data[names[0]]
    if isinstance(polygons, np.ndarray):
        return vertices, _as_indices(polygons)
    return vertices, [_as_indices(polygon) for polygon in polygons]


def _as_indices(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.array_equal(values, np.floor(values)):
            raise DataError("a face vertex index is not an integer")
    return values.astype(np.int64)


def _read_ascii_element(element: _PlyElement, values: np.ndarray, position: int) -> int:
    """Read ``element`` from the flat token values at ``position``; return the next position."""
    props = element.properties
    count = element.count
    if count == 0 or not props:
        for prop in props:
            element.data[prop.name] = np.zeros((0, 0) if prop.is_list else 0, dtype=np.float64)
        return position
    # Fast path: every row is laid out like the first one (same list lengths).
    layout: list[tuple[int, int]] = []  # per property: (column, length); length -1 for scalars
    column = 0
    for prop in props:
        if prop.is_list:
            if position + column >= len(values):
                raise DataError(f"the PLY file ends inside element {element.name!r}")
            length = _list_length(values[position + column])
            layout.append((column + 1, length))
            column += 1 + length
        else:
            layout.append((column, -1))
            column += 1
    end = position + count * column
    if end <= len(values):
        table = values[position:end].reshape(count, column)
        if all(np.all(table[:, col - 1] == length) for col, length in layout if length >= 0):
            for prop, (col, length) in zip(props, layout, strict=True):
                element.data[prop.name] = table[:, col] if length < 0 else table[:, col : col + length]
            return end
    # Slow path: rows of different lengths, read one by one.
    flat = values[position:].tolist()
    columns: list[list] = [[] for _ in props]
    index = 0
    try:
        for _ in range(count):
            for prop, column_values in zip(props, columns, strict=True):
                if prop.is_list:
                    length = _list_length(flat[index])
                    column_values.append(np.array(flat[index + 1 : index + 1 + length]))
                    if len(column_values[-1]) != length:
                        raise IndexError
                    index += 1 + length
                else:
                    column_values.append(flat[index])
                    index += 1
    except IndexError as error:
        raise DataError(f"the PLY file ends inside element {element.name!r}") from error
    for prop, column_values in zip(props, columns, strict=True):
        element.data[prop.name] = column_values if prop.is_list else np.array(column_values)
    return position + index


def _list_length(value: float) -> int:
    if value < 0 or value != int(value):
        raise DataError(f"invalid PLY list length {value}")
    return int(value)


def _read_binary_element(element: _PlyElement, data: bytes, offset: int, order: str) -> int:
    """Read ``element`` from the binary body at byte ``offset``; return the next offset."""
    props = element.properties
    count = element.count
    if count == 0 or not props:
        for prop in props:
            element.data[prop.name] = np.zeros((0, 0) if prop.is_list else 0, dtype=order + "f8")
        return offset
    # Fast path: a structured dtype with the list lengths of the first row.
    fields: list[tuple] = []
    lengths: list[int] = []
    position = offset
    for i, prop in enumerate(props):
        if prop.is_list:
            count_dtype = np.dtype(order + prop.count_type)
            if position + count_dtype.itemsize > len(data):
                raise DataError(f"the PLY file ends inside element {element.name!r}")
            length = int(np.frombuffer(data, count_dtype, 1, position)[0])
            if length < 0:
                raise DataError(f"invalid PLY list length {length}")
            fields.append((f"c{i}", count_dtype))
            fields.append((f"p{i}", order + prop.value_type, (length,)))
            lengths.append(length)
            position += count_dtype.itemsize + length * np.dtype(prop.value_type).itemsize
        else:
            fields.append((f"p{i}", order + prop.value_type))
            lengths.append(-1)
            position += np.dtype(prop.value_type).itemsize
    row = np.dtype(fields)
    end = offset + count * row.itemsize
    if end <= len(data):
        table = np.frombuffer(data, row, count, offset)
        if all(np.all(table[f"c{i}"] == n) for i, n in enumerate(lengths) if n >= 0):
            for i, prop in enumerate(props):
                column = table[f"p{i}"]
                if prop.is_list:
                    column = column.reshape(count, lengths[i])
                element.data[prop.name] = column
            return end
    # Slow path: rows of different lengths, read one by one.
    columns: list[list] = [[] for _ in props]
    position = offset
    try:
        for _ in range(count):
            for prop, column_values in zip(props, columns, strict=True):
                if prop.is_list:
                    count_dtype = np.dtype(order + prop.count_type)
                    length = int(np.frombuffer(data, count_dtype, 1, position)[0])
                    if length < 0:
                        raise DataError(f"invalid PLY list length {length}")
                    position += count_dtype.itemsize
                    value_dtype = np.dtype(order + prop.value_type)
                    column_values.append(np.frombuffer(data, value_dtype, length, position))
                    position += length * value_dtype.itemsize
                else:
                    value_dtype = np.dtype(order + prop.value_type)
                    column_values.append(np.frombuffer(data, value_dtype, 1, position)[0])
                    position += value_dtype.itemsize
    except ValueError as error:  # np.frombuffer past the end of the data
        raise DataError(f"the PLY file ends inside element {element.name!r}") from error
    for prop, column_values in zip(props, columns, strict=True):
        element.data[prop.name] = column_values if prop.is_list else np.array(column_values)
    return position
