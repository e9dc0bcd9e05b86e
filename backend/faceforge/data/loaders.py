"""Load face meshes users bring (a folder of scans, FaceWarehouse, CoMA) as a :class:`FaceDataset`.

Every loader reads meshes with :func:`faceforge.data.meshio.read_mesh` (file vertex order kept,
polygons fan-triangulated), takes the faces of the first mesh it reads and requires every other mesh
to have the same vertex count and identical faces. Coordinates are multiplied by ``unit_scale`` to
give metres (e.g. ``0.001`` for millimetre scans) and stored as float32. Unusable input raises
:class:`~faceforge.errors.DataError` naming the offending file or folder.

Layouts:

* a folder of meshes: ``folder/*.obj|*.ply``, one identity per file (:func:`load_mesh_folder`);
* FaceWarehouse: ``root/Tester_k/Blendshape/shape_j.obj`` (:func:`load_facewarehouse`);
* CoMA: ``root/<subject>/<expression>/*.ply`` frame sequences (:func:`load_coma`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceforge.data.dataset import Clip, FaceDataset, MeshClips
from faceforge.data.meshio import MESH_SUFFIXES, read_mesh
from faceforge.errors import DataError
from faceforge.progress import ProgressCallback, report

__all__ = [
    "DATASET_FORMATS",
    "detect_format",
    "load_coma",
    "load_dataset",
    "load_facewarehouse",
    "load_mesh_folder",
    "natural_key",
]

#: The layouts :func:`load_dataset` understands (besides ``"auto"``).
DATASET_FORMATS = ("folder", "facewarehouse", "coma")

PathLike = str | os.PathLike

_TESTER = re.compile(r"Tester_(\d+)")
_SHAPE = re.compile(r"shape_(\d+)\.obj", re.IGNORECASE)
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``"frame2" < "frame10"``, ``"Tester_9" < "Tester_10"``.

    Text parts compare case-insensitively; the name itself breaks ties.
    """
    parts = _DIGITS.split(name)  # text, digits, text, digits, ..., text
    return tuple(int(part) if i % 2 else part.lower() for i, part in enumerate(parts)) + (name,)


def load_mesh_folder(
    folder: PathLike, *, unit_scale: float = 1.0, progress: ProgressCallback | None = None
) -> FaceDataset:
    """Load every ``.obj``/``.ply`` file of a folder as one identity with one expression, ``"scan"``.

    Files are taken in natural order of their names (``"2.obj"`` before ``"10.obj"``); hidden files
    and subfolders are ignored.

    Args:
        folder: the folder of mesh files, all in one topology.
        unit_scale: factor from the file units to metres (``0.001`` for millimetres).
        progress: optional ``progress(done, total, message)`` callback per file.

    Returns:
        A dataset with ``vertices`` ``(I, 1, V, 3)`` float32 in metres, ``faces`` ``(F, 3)`` int64
        of the first file, ``identity_names`` the file stems (the full file name where two files share
        a stem) and ``source="folder"``.

    Raises:
        DataError: the folder is missing or holds no meshes, or a file is unreadable, non-finite or
            of another topology than the first.
    """
    root = _existing_folder(folder)
    files = [path for path in _entries(root) if path.suffix.lower() in MESH_SUFFIXES and path.is_file()]
    if not files:
        raise DataError(f"no .obj or .ply meshes found in folder {root}")
    topology = _Topology(unit_scale)
    vertices: np.ndarray | None = None
    for i, path in enumerate(files):
        report(progress, i, len(files), path.name)
        mesh = topology.read(path)
        if vertices is None:
            vertices = np.empty((len(files), 1, len(mesh), 3), dtype=np.float32)
        vertices[i, 0] = mesh
    report(progress, len(files), len(files), "done")
    stems = [path.stem for path in files]
    names = [path.name if stems.count(path.stem) > 1 else path.stem for path in files]
    return FaceDataset(
        faces=topology.faces,
        identity_names=names,
        expression_names=["scan"],
        vertices=vertices,
        source="folder",
    )


def load_facewarehouse(
    root: PathLike,
    *,
    unit_scale: float = 1.0,
    max_shapes: int | None = None,
    progress: ProgressCallback | None = None,
) -> FaceDataset:
    """Load the FaceWarehouse blendshape meshes ``root/Tester_k/Blendshape/shape_j.obj``.

    Testers are the identities, in natural order (``Tester_2`` before ``Tester_10``); the shapes are
    the expressions in numeric order of ``j`` (``shape_0`` is the neutral face).

    Args:
        root: the folder holding the ``Tester_k`` folders.
        unit_scale: factor from the file units to metres.
        max_shapes: load only the first ``max_shapes`` shapes (in numeric order) of every tester.
        progress: optional ``progress(done, total, message)`` callback per file.

    Returns:
        A dataset with ``vertices`` ``(I, E, V, 3)`` float32 in metres, ``identity_names``
        ``"Tester_k"``, ``expression_names`` ``"neutral"`` for ``shape_0`` and ``"shape_j"`` for the
        others, and ``source="facewarehouse"``.

    Raises:
        DataError: no testers, a tester without a Blendshape folder or with another set of shapes
            than the first tester (the message names the tester), or a bad mesh file.
    """
    base = _existing_folder(root)
    valid = isinstance(max_shapes, int | np.integer) and not isinstance(max_shapes, bool) and max_shapes >= 1
    if max_shapes is not None and not valid:
        raise DataError(f"max_shapes must be a positive integer or None, got {max_shapes!r}")
    testers = [path for path in _entries(base) if _TESTER.fullmatch(path.name) and path.is_dir()]
    if not testers:
        raise DataError(f"no FaceWarehouse testers (Tester_k/Blendshape/shape_j.obj) found in folder {base}")
    shape_files: list[dict[int, Path]] = []
    for tester in testers:
        blendshape = tester / "Blendshape"
        if not blendshape.is_dir():
            raise DataError(f"FaceWarehouse tester {tester.name} has no Blendshape folder: {blendshape}")
        shapes = {}
        for path in _entries(blendshape):
            match = _SHAPE.fullmatch(path.name)
            if match and path.is_file():
                shapes[int(match.group(1))] = path
        if not shapes:
            raise DataError(f"no shape_j.obj meshes found in folder {blendshape} (tester {tester.name})")
        keep = sorted(shapes)[:max_shapes]
        shape_files.append({j: shapes[j] for j in keep})
    reference = list(shape_files[0])
    for tester, shapes in zip(testers, shape_files, strict=True):
        if list(shapes) != reference:
            missing = ", ".join(f"shape_{j}.obj" for j in sorted(set(reference) - set(shapes)))
            extra = ", ".join(f"shape_{j}.obj" for j in sorted(set(shapes) - set(reference)))
            detail = "; ".join(
                text for text in (missing and f"missing {missing}", extra and f"extra {extra}") if text
            )
            raise DataError(
                f"FaceWarehouse tester {tester.name} does not have the same shapes as "
                f"{testers[0].name}: {detail} (in {tester / 'Blendshape'})"
            )
    topology = _Topology(unit_scale)
    total = len(testers) * len(reference)
    vertices: np.ndarray | None = None
    for i, shapes in enumerate(shape_files):
        for e, path in enumerate(shapes.values()):
            report(progress, i * len(reference) + e, total, f"{testers[i].name}/{path.name}")
            mesh = topology.read(path)
            if vertices is None:
                vertices = np.empty((len(testers), len(reference), len(mesh), 3), dtype=np.float32)
            vertices[i, e] = mesh
    report(progress, total, total, "done")
    return FaceDataset(
        faces=topology.faces,
        identity_names=[tester.name for tester in testers],
        expression_names=["neutral" if j == 0 else f"shape_{j}" for j in reference],
        vertices=vertices,
        source="facewarehouse",
    )


def load_coma(
    root: PathLike, *, unit_scale: float = 1.0, progress: ProgressCallback | None = None
) -> FaceDataset:
    """Load CoMA sequences ``root/<subject>/<expression>/*.ply`` as dynamic clips.

    Subjects are the identities, in natural order; each expression folder of a subject is one clip
    whose frames are its ``.ply`` files in natural order (``bareteeth.000002.ply`` before
    ``bareteeth.000010.ply``). Hidden entries and loose files next to the folders are ignored.

    Args:
        root: the folder holding the subject folders.
        unit_scale: factor from the file units to metres (CoMA meshes are in metres: ``1.0``).
        progress: optional ``progress(done, total, message)`` callback per file.

    Returns:
        A dataset with ``vertices=None``, ``identity_names`` the subjects, ``expression_names`` the
        naturally sorted union of expression folder names, ``clips`` a :class:`MeshClips` of
        :class:`Clip` (``identity`` the subject index, ``label`` the expression, ``frames``
        ``(T, V, 3)`` float32 in metres, ``name`` ``"subject/expression"``), ordered by subject and
        then expression, and ``source="coma"``.

    Raises:
        DataError: no subject folders, a subject without expression folders, an expression folder
            without ``.ply`` files (the message names the folder), or a bad mesh file.
    """
    base = _existing_folder(root)
    subjects = [path for path in _entries(base) if path.is_dir()]
    if not subjects:
        raise DataError(f"no CoMA subject folders (<subject>/<expression>/*.ply) found in folder {base}")
    plan: list[tuple[int, str, list[Path]]] = []
    for s, subject in enumerate(subjects):
        expressions = [path for path in _entries(subject) if path.is_dir()]
        if not expressions:
            raise DataError(f"no CoMA expression folders (<expression>/*.ply) found in folder {subject}")
        for expression in expressions:
            frames = [
                path for path in _entries(expression) if path.suffix.lower() == ".ply" and path.is_file()
            ]
            if not frames:
                raise DataError(f"no .ply meshes found in folder {expression}")
            plan.append((s, expression.name, frames))
    topology = _Topology(unit_scale)
    total = sum(len(frames) for _, _, frames in plan)
    done = 0
    clips = []
    for s, label, frame_paths in plan:
        name = f"{subjects[s].name}/{label}"
        frames: np.ndarray | None = None
        for t, path in enumerate(frame_paths):
            report(progress, done, total, f"{name}/{path.name}")
            mesh = topology.read(path)
            if frames is None:
                frames = np.empty((len(frame_paths), len(mesh), 3), dtype=np.float32)
            frames[t] = mesh
            done += 1
        clips.append(Clip(identity=s, label=label, frames=frames, name=name))
    report(progress, total, total, "done")
    return FaceDataset(
        faces=topology.faces,
        identity_names=[subject.name for subject in subjects],
        expression_names=sorted({label for _, label, _ in plan}, key=natural_key),
        vertices=None,
        clips=MeshClips(clips),
        source="coma",
    )


def detect_format(path: PathLike) -> str:
    """Guess the layout of a dataset folder: one of :data:`DATASET_FORMATS`.

    ``"facewarehouse"`` if it has a ``Tester_k/Blendshape`` folder, else ``"coma"`` if a subfolder
    has a subfolder with ``.ply`` files, else ``"folder"`` (a folder of mesh files).

    Raises:
        DataError: ``path`` is not an existing folder.
    """
    base = _existing_folder(path)
    folders = [entry for entry in _entries(base) if entry.is_dir()]
    if any(_TESTER.fullmatch(entry.name) and (entry / "Blendshape").is_dir() for entry in folders):
        return "facewarehouse"
    for folder in folders:
        for sub in _entries(folder):
            if sub.is_dir() and any(f.suffix.lower() == ".ply" and f.is_file() for f in _entries(sub)):
                return "coma"
    return "folder"


def load_dataset(
    path: PathLike,
    format: str = "auto",
    *,
    unit_scale: float = 1.0,
    progress: ProgressCallback | None = None,
) -> FaceDataset:
    """Load a dataset folder in one of :data:`DATASET_FORMATS`, or the one :func:`detect_format` finds.

    Args:
        path: the dataset folder.
        format: ``"auto"``, ``"folder"``, ``"facewarehouse"`` or ``"coma"``.
        unit_scale: factor from the file units to metres.
        progress: optional ``progress(done, total, message)`` callback per file.

    Returns:
        The :class:`FaceDataset` of the matching loader (coordinates in metres, float32).

    Raises:
        DataError: an unknown format, or any error of the loader.
    """
    name = format.lower()
    if name == "auto":
        name = detect_format(path)
    loaders: dict[str, Callable[..., FaceDataset]] = {
        "folder": load_mesh_folder,
        "facewarehouse": load_facewarehouse,
        "coma": load_coma,
    }
    if name not in loaders:
        raise DataError(
            f"unknown dataset format {format!r}; use 'auto' or one of {', '.join(DATASET_FORMATS)}"
        )
    return loaders[name](path, unit_scale=unit_scale, progress=progress)


# --- helpers ---------------------------------------------------------------------------------------


class _Topology:
    """Reads meshes, checks them against the first one read and converts them to float32 metres."""

    def __init__(self, unit_scale: float) -> None:
        try:
            scale = float(unit_scale)
        except (TypeError, ValueError) as error:
            raise DataError(f"unit_scale must be a number, got {unit_scale!r}") from error
        if not np.isfinite(scale) or scale <= 0:
            raise DataError(f"unit_scale must be a positive finite number, got {unit_scale!r}")
        self.scale = scale
        self.faces = np.zeros((0, 3), dtype=np.int64)
        self.first: Path | None = None
        self.n_vertices = 0

    def read(self, path: Path) -> np.ndarray:
        """``(V, 3)`` float32 vertices of ``path`` in metres."""
        vertices, faces = read_mesh(path)
        finite = np.isfinite(vertices).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise DataError(
                f"{path} has NaN or infinite coordinates at {len(bad)} vertices (first: vertex {bad[0]})"
            )
        if self.first is None:
            self.first, self.faces, self.n_vertices = path, faces, len(vertices)
        elif len(vertices) != self.n_vertices:
            raise DataError(
                f"mixed topologies: {path} has {len(vertices)} vertices but {self.first} "
                f"has {self.n_vertices}"
            )
        elif faces.shape != self.faces.shape or not np.array_equal(faces, self.faces):
            raise DataError(
                f"mixed topologies: {path} ({len(vertices)} vertices, {len(faces)} triangles) has other "
                f"faces than {self.first} ({self.n_vertices} vertices, {len(self.faces)} triangles)"
            )
        return (vertices * self.scale).astype(np.float32)


def _existing_folder(path: PathLike) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise DataError(f"folder {folder} does not exist")
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    return folder


def _entries(folder: Path) -> list[Path]:
    """Entries of ``folder`` in natural order of their names, without hidden ones and ``__MACOSX``."""
    try:
        names = os.listdir(folder)
    except OSError as error:
        raise DataError(f"cannot list folder {folder}: {error.strerror or error}") from error
    visible = [name for name in names if not name.startswith(".") and name != "__MACOSX"]
    return [folder / name for name in sorted(visible, key=natural_key)]
