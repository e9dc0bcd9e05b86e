"""The backend service the Blender add-on talks to: ``faceforge serve`` over stdin/stdout.

Modules:
    protocol: the wire format (JSON lines), error codes, request parsing.
    arrays: the per-session directory and the checked ``.npz`` files that carry arrays.
    registry: the method table, parameter schemas and the context methods run in.
    service: the stdio loop (reader, one job at a time on a worker thread, progress, cancel).
    methods: the methods themselves, one module per area.
    bench: ``faceforge bench serve``.

This package's ``__init__`` imports only the standard library, so that :func:`serve` can tell a user
which dependency their interpreter lacks instead of failing with a traceback.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["REQUIRED_MODULES", "EXIT_MISSING_DEPENDENCY", "missing_modules", "serve"]

REQUIRED_MODULES = ("numpy", "torch")
EXIT_MISSING_DEPENDENCY = 3


def missing_modules(names: tuple[str, ...] = REQUIRED_MODULES) -> list[str]:
    """The modules among ``names`` that this interpreter cannot import."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def serve(
    max_array_bytes: int | None = None,
    session_parent: str | None = None,
    log_level: str = "INFO",
    device: str = "auto",
) -> int:
    """Run ``faceforge serve``; returns the exit code (3 with a one-line fix when a dependency is missing)."""
    missing = missing_modules()
    if missing:
        print(
            f"faceforge serve: error: {', '.join(missing)} not installed in {sys.executable}. "
            f"Install FaceForge with its dependencies into this interpreter "
            f"(`{sys.executable} -m pip install -e <FaceForge checkout>`; "
            "torch: `pip install torch==2.13.0`), "
            "or choose the Python of your FaceForge environment as the backend interpreter.",
            file=sys.stderr,
        )
        return EXIT_MISSING_DEPENDENCY
    from faceforge.errors import FaceForgeError
    from faceforge.server.arrays import DEFAULT_MAX_ARRAY_BYTES
    from faceforge.server.service import detect_runtime, serve_stdio

    try:
        runtime = detect_runtime(device)
    except FaceForgeError as error:
        print(f"faceforge serve: error: {error}", file=sys.stderr)
        return 2
    return serve_stdio(
        runtime=runtime,
        max_array_bytes=DEFAULT_MAX_ARRAY_BYTES if max_array_bytes is None else max_array_bytes,
        session_parent=session_parent,
        log_level=log_level,
    )
