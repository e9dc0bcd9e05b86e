"""Helpers the command groups share: printing, Blender's output, the default dataset and model."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from faceforge.errors import FaceForgeError
from faceforge.store import (
    default_model_path,
    ensure_dataset,
)

_DEVICE_HELP = "where the physics solves run (auto: a CUDA GPU when torch sees one)"


def _print(payload: dict, as_json: bool, lines: Sequence[str]) -> None:
    if as_json:
        try:  # strict JSON: a NaN or infinity is an error, never the invalid token `NaN`
            text = json.dumps(payload, indent=2, allow_nan=False)
        except ValueError as error:
            message = f"the result holds a non-finite number and cannot be reported: {error}"
            raise FaceForgeError(message) from error
        print(text)
    else:
        print("\n".join(lines))


@contextlib.contextmanager
def _blender_output_to_stderr(enabled: bool) -> Iterator[None]:
    """Send what Blender prints to the process's stdout to stderr instead (for ``--json``)."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _ensure_dataset(data: str | None, small: bool, quiet: bool) -> Path:
    """The dataset directory to use, building the default (or small) one if it is missing."""
    from faceforge.progress import TerminalProgress

    if data:
        return Path(data)
    bar = TerminalProgress("faceforge data build", enabled=not quiet)
    try:
        return ensure_dataset(None, small, progress=bar)
    finally:
        bar.close()


def _model_from_args(args: argparse.Namespace):  # noqa: ANN202
    from faceforge.model import load_model

    path = Path(args.model) if args.model else default_model_path("all", args.small)
    if not path.is_file():
        raise FaceForgeError(
            f"no model at {path}: build one with `faceforge model build{' --small' if args.small else ''}`"
        )
    return load_model(path), path
