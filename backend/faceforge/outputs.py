"""Where commands write: never over one of their inputs, never over an existing file unless asked
(``--force``), never half-written.

- :func:`write_atomic` writes one file under a temporary name beside it, then renames it;
- :func:`check_output` refuses an output path that is an input, or that exists without ``force``;
- :func:`staged_outputs` writes a command's files into a hidden folder beside their destination and
  moves them into place only when all were written: a command that fails or is killed half-way leaves
  the destination as it was (its staging folder is removed on failure; after a kill it is a hidden
  ``.<name>.partial-<pid>`` folder, never a mix of old and new files).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from faceforge.errors import FaceForgeError

__all__ = ["check_folder", "check_output", "staged_outputs", "write_atomic"]


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` through a temporary name beside it and a rename:
    a reader sees the old file or the new one, never a part; a failure leaves no temporary file.

    Raises:
        FaceForgeError: the file cannot be written (the OS's reason).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError as error:
        raise FaceForgeError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_output(
    path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), force: bool = False
) -> Path:
    """``path`` if a command may write it.

    Raises:
        FaceForgeError: ``path`` is one of ``inputs`` (never replaced, even with ``force``), or it
            exists and ``force`` is off.
    """
    path = Path(path)
    for source in inputs:
        if _same(path, Path(source)) or path.resolve() == Path(source).resolve():
            raise FaceForgeError(
                f"refusing to write the output over the input {source}: choose another --out"
            )
    if path.exists() and not force:
        raise FaceForgeError(f"{path} exists: pass --force to replace it, or choose another --out")
    return path


def check_folder(folder: str | os.PathLike, names: Iterable[str], force: bool = False) -> Path:
    """``folder`` if the files ``names`` may be written into it (call it before long work).

    Raises:
        FaceForgeError: ``folder`` is a file, or holds some of ``names`` and ``force`` is off.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FaceForgeError(f"{folder} is a file, not a folder: choose another --out")
    existing = [n for n in names if (folder / n).exists()]
    if existing and not force:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise FaceForgeError(
            f"{folder} already holds {shown}: pass --force to replace, or choose another --out"
        )
    return folder


@contextlib.contextmanager
def staged_outputs(folder: str | os.PathLike, names: Iterable[str], force: bool = False) -> Iterator[Path]:
    """Stage the files ``names`` of ``folder``: yields a hidden folder beside it to write them in;
    on success each is moved into ``folder`` (created), replacing an existing file only with
    ``force``, which is checked before any work starts.

    Raises:
        FaceForgeError: ``folder`` is a file, or holds some of ``names`` and ``force`` is off.
    """
    folder = Path(folder)
    names = list(names)
    check_folder(folder, names, force)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        missing = [n for n in names if not (staging / n).is_file()]
        if missing:
            raise FaceForgeError(f"internal: outputs {missing[:3]} were not written")
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
