"""Arrays between the add-on and the backend: ``.npz`` files in a session directory the backend owns.

Bulk data never travels in a JSON line. The client writes a request's arrays into one ``.npz`` in
the session directory the handshake reports and passes its path as the ``"arrays"`` parameter; the
backend answers with the path of a ``.npz`` it wrote there. The backend creates the directory at
start (mode 0700) and removes it at exit. It reads only files that resolve (symlinks followed) to a
place inside it, and checks every input array against the method's :class:`ArraySpec`: dtype, shape
(with named dimensions shared between arrays), finiteness and a total size limit.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.server.protocol import ErrorCode, RpcError

__all__ = [
    "DEFAULT_MAX_ARRAY_BYTES",
    "ArraySpec",
    "SessionDir",
    "array_error",
    "read_arrays",
    "write_arrays",
]

DEFAULT_MAX_ARRAY_BYTES = 1 << 30
_SESSION_PREFIX = "faceforge-session-"
_STEM = re.compile(r"[A-Za-z0-9_.-]{1,64}")

Dim = int | str | None


def array_error(reason: str, message: str, name: str | None = None, **extra: Any) -> RpcError:
    """An ``INVALID_PARAMS`` error about an input array; ``data["reason"]`` says what was wrong.

    Reasons: ``not_a_path``, ``outside_session``, ``missing``, ``unreadable``, ``too_large``,
    ``dtype``, ``shape``, ``non_finite``, ``unexpected``, ``required``.
    """
    data: dict[str, Any] = {"reason": reason, **extra}
    if name is not None:
        data["array"] = name
    return RpcError(ErrorCode.INVALID_PARAMS, message, data)


@dataclass(frozen=True)
class ArraySpec:
    """What a method accepts for one input array.

    Attributes:
        dtype: accepted dtype name(s), e.g. ``"float32"`` or ``("float32", "float64")``; no casting.
        shape: one entry per axis: an int (that size), a str (a named size that must agree across
            the method's arrays, e.g. ``"N"``) or ``None`` (any size).
        finite: refuse NaN and infinity (float dtypes).
        required: the request must include this array.
        doc: one line for the method's documentation.
    """

    dtype: str | tuple[str, ...]
    shape: tuple[Dim, ...]
    finite: bool = True
    required: bool = True
    doc: str = ""

    @property
    def dtypes(self) -> tuple[np.dtype, ...]:
        names = (self.dtype,) if isinstance(self.dtype, str) else self.dtype
        return tuple(np.dtype(name) for name in names)

    def describe(self) -> str:
        dims = ", ".join("*" if d is None else str(d) for d in self.shape)
        return f"{'|'.join(d.name for d in self.dtypes)} ({dims})"


class SessionDir:
    """The per-session temporary directory for array files (see the module docstring).

    Args:
        parent: where to create it (default: the system temporary directory).
    """

    def __init__(self, parent: str | os.PathLike | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=_SESSION_PREFIX, dir=parent)).resolve()
        self._counter = itertools.count(1)

    def __enter__(self) -> SessionDir:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return not self.path.exists()

    def close(self) -> None:
        """Remove the directory and everything in it."""
        shutil.rmtree(self.path, ignore_errors=True)

    def resolve(self, value: Any, name: str = "arrays") -> Path:
        """The real path of an existing file inside the directory named by ``value``.

        ``value`` is a path string, absolute or relative to the directory. Symlinks are resolved
        before the check, so a link inside that points outside is refused too.

        Raises:
            RpcError: ``INVALID_PARAMS`` with reason ``not_a_path``, ``outside_session`` or ``missing``.
        """
        if not isinstance(value, str) or not value or "\x00" in value:
            raise array_error("not_a_path", f'"{name}" must be the path of an .npz file in the session dir')
        try:
            resolved = (self.path / value).resolve(strict=False)
        except (OSError, RuntimeError) as error:  # symlink loops
            raise array_error("not_a_path", f"cannot resolve {value!r}: {error}") from None
        if not resolved.is_relative_to(self.path) or resolved == self.path:
            raise array_error(
                "outside_session",
                f"{value!r} is outside the session directory {self.path}; arrays must be written there",
            )
        if not resolved.is_file():
            raise array_error("missing", f"no array file {value!r} in the session directory")
        return resolved

    def new_path(self, stem: str) -> Path:
        """A fresh ``<stem>-<n>.npz`` path in the directory (the file is not created)."""
        if not _STEM.fullmatch(stem):
            stem = "arrays"
        return self.path / f"{stem}-{next(self._counter)}.npz"


def _check_shape(name: str, array: np.ndarray, spec: ArraySpec, sizes: dict[str, int]) -> None:
    expected = spec.shape
    wrong = array.ndim != len(expected)
    for axis, (size, want) in enumerate(zip(array.shape, expected, strict=False)):
        if wrong:
            break
        if isinstance(want, int) and size != want:
            wrong = True
        elif isinstance(want, str):
            if sizes.setdefault(want, size) != size:
                raise array_error(
                    "shape",
                    f"array {name!r} has {size} along axis {axis} but {want} = {sizes[want]} elsewhere",
                    name,
                    shape=list(array.shape),
                )
    if not wrong and 0 in array.shape:  # every method needs at least one row, vertex, frame...
        raise array_error(
            "shape",
            f"array {name!r} is empty (shape {tuple(array.shape)}): it needs at least one entry per axis",
            name,
            shape=list(array.shape),
        )
    if wrong:
        raise array_error(
            "shape",
            f"array {name!r} has shape {tuple(array.shape)}, expected {spec.describe()}",
            name,
            shape=list(array.shape),
            expected=list(expected),
        )


def read_arrays(
    session: SessionDir,
    value: Any,
    specs: Mapping[str, ArraySpec],
    max_bytes: int = DEFAULT_MAX_ARRAY_BYTES,
) -> dict[str, np.ndarray]:
    """Read and check the arrays of one request.

    Args:
        session: the session directory.
        value: the request's ``"arrays"`` parameter: path of an ``.npz`` in the session directory,
            or ``None`` when the request has no arrays.
        specs: array name -> what the method accepts.
        max_bytes: limit on the total uncompressed size of the file's arrays.

    Returns:
        Array name -> array in memory (the file can be deleted afterwards).

    Raises:
        RpcError: ``INVALID_PARAMS``; ``data["reason"]`` names the check that failed (see
            :func:`array_error`) and ``data["array"]`` the array.
    """
    arrays: dict[str, np.ndarray] = {}
    if value is not None:
        path = session.resolve(value)
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
        except (OSError, zipfile.BadZipFile) as error:
            raise array_error("unreadable", f"{path.name} is not an .npz file: {error}") from None
        total = sum(member.file_size for member in members)
        if total > max_bytes or path.stat().st_size > max_bytes:
            raise array_error(
                "too_large",
                f"{path.name} holds {total / 2**20:.1f} MiB of arrays; the limit is "
                f"{max_bytes / 2**20:.1f} MiB",
                size=total,
                limit=max_bytes,
            )
        try:
            with np.load(path, allow_pickle=False) as npz:
                for name in npz.files:
                    if name not in specs:
                        raise array_error(
                            "unexpected", f"unexpected array {name!r}; accepted: {sorted(specs)}", name
                        )
                    try:
                        arrays[name] = npz[name]
                    except ValueError as error:  # object arrays need pickle
                        raise array_error("dtype", f"array {name!r}: {error}", name) from None
        except RpcError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise array_error("unreadable", f"cannot read {path.name}: {error}") from None
    sizes: dict[str, int] = {}
    for name, spec in specs.items():
        if name not in arrays:
            if spec.required:
                raise array_error("required", f"array {name!r} ({spec.describe()}) is required", name)
            continue
        array = arrays[name]
        if array.dtype not in spec.dtypes:
            raise array_error(
                "dtype",
                f"array {name!r} has dtype {array.dtype}, expected {spec.describe()}",
                name,
                dtype=str(array.dtype),
            )
        _check_shape(name, array, spec, sizes)
        if spec.finite and array.dtype.kind in "fc":
            bad = ~np.isfinite(array)
            if bad.any():
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                raise array_error(
                    "non_finite",
                    f"array {name!r} has {int(bad.sum())} NaN or infinite values (first at {first})",
                    name,
                    count=int(bad.sum()),
                )
    return arrays


def write_arrays(
    session: SessionDir,
    arrays: Mapping[str, np.ndarray],
    stem: str = "result",
    max_bytes: int = DEFAULT_MAX_ARRAY_BYTES,
) -> Path:
    """Write ``arrays`` to a new uncompressed ``.npz`` in the session directory; return its path.

    The file appears under its final name only once complete.

    Raises:
        RpcError: ``FACEFORGE_ERROR`` when the arrays exceed ``max_bytes`` (ask for less data).
        TypeError: a value that is not a numeric array.
    """
    total = 0
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biufc":
            raise TypeError(f"result array {name!r} is not a numeric numpy array")
        total += array.nbytes
    if total > max_bytes:
        raise RpcError(
            ErrorCode.FACEFORGE_ERROR,
            f"the result holds {total / 2**20:.1f} MiB of arrays, over the limit of "
            f"{max_bytes / 2**20:.1f} MiB: ask for less data at once",
            {"reason": "too_large", "size": total, "limit": max_bytes},
        )
    path = session.new_path(stem)
    partial = path.with_suffix(".partial")
    try:
        with open(partial, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
