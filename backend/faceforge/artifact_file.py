"""FaceForge's torch artifact files (face models, motion models): written atomically, checked on load.

A file is a torch zip of one payload dict. Saving adds ``tensor_digests``: the SHA-256 of every tensor
in the payload (dtype, shape and bytes), keyed by its place (``state/core``). Loading refuses, with one
line naming the file and what is wrong: a missing or empty file, a zip whose entry CRCs do not match
(the archive's own check, which torch's reader skips), a payload that is not the expected kind or
format version, and any tensor whose digest differs from the stored one (a flipped byte in a tensor
would otherwise load and give a 48 m face). Torch's own error text (its advice to retry with
``weights_only=False``, which would allow arbitrary code) is never passed on.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch

from faceforge.errors import FaceForgeError

__all__ = ["load_artifact", "save_artifact", "tensor_digests"]


def _tensors(value: object, place: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a nested payload of dicts, lists and tuples, with its place."""
    if isinstance(value, torch.Tensor):
        yield place, value
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            if place == "" and key == "tensor_digests":
                continue
            yield from _tensors(value[key], f"{place}/{key}" if place else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{place}/{i}")


def tensor_digests(payload: dict) -> dict[str, str]:
    """``{place: sha256 hex}`` of every tensor in ``payload`` (over dtype, shape and contents)."""
    out = {}
    for place, tensor in _tensors(payload):
        t = tensor.detach().cpu().contiguous()
        h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        out[place] = h.hexdigest()
    return out


def save_artifact(payload: dict, path: str | os.PathLike) -> Path:
    """Write ``payload`` with its tensor digests to ``path``: a temporary file in the same folder,
    renamed over ``path`` only once complete (a crash leaves the old file or none, never half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save({**payload, "tensor_digests": tensor_digests(payload)}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_artifact(
    path: str | os.PathLike,
    kind: str,
    version: int,
    what: str,
    rebuild: str,
    map_location: str | torch.device = "cpu",
) -> dict:
    """Read and check a file written by :func:`save_artifact`.

    Args:
        kind: the payload's ``format`` (``"faceforge-model"``); version: its ``format_version``.
        what: the file's kind for messages ("model file"); rebuild: the command that makes a new one.

    Raises:
        FaceForgeError: missing, empty, damaged (CRC or tensor digest), foreign or other-version file.
    """
    path = Path(path)
    if not path.is_file():
        raise FaceForgeError(f"no {what} at {path}: build one with `{rebuild}`")
    size = path.stat().st_size
    if size == 0:
        raise FaceForgeError(
            f"{path} is empty (0 bytes), not a FaceForge {what}: rebuild it with `{rebuild}`"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            bad_entry = archive.testzip()
    # A damaged header may also claim encryption (RuntimeError) or an unknown compression method
    # (NotImplementedError): both are damage, not a program error.
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as error:
        raise FaceForgeError(
            f"{path} is not a FaceForge {what} ({size} bytes, not a readable archive: {type(error).__name__})"
        ) from error
    if bad_entry is not None:
        raise FaceForgeError(
            f"{path} is damaged: its entry {bad_entry!r} fails its checksum; rebuild it with `{rebuild}`"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types; its text may advise weights_only=False
        raise FaceForgeError(
            f"{path} is not a readable FaceForge {what} ({type(error).__name__} while unpickling its payload)"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != kind:
        raise FaceForgeError(f"{path} is not a FaceForge {what}")
    if payload.get("format_version") != version:
        raise FaceForgeError(
            f"{path} has {what} format {payload.get('format_version')}, this FaceForge reads {version}: "
            f"rebuild it with `{rebuild}`"
        )
    stored = payload.get("tensor_digests")
    if not isinstance(stored, dict):
        raise FaceForgeError(f"{path} carries no tensor checksums; rebuild it with `{rebuild}`")
    actual = tensor_digests(payload)
    changed = sorted(p for p in set(actual) | set(stored) if actual.get(p) != stored.get(p))
    if changed:
        raise FaceForgeError(
            f"{path} is damaged: tensor {changed[0]!r} does not match its stored checksum"
            + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else "")
            + f"; rebuild it with `{rebuild}`"
        )
    return payload
