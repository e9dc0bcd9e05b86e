"""The add-on's one backend client and what it has loaded (module state, never on bpy data).

The interpreter comes from the add-on preferences, else from the ``FACEFORGE_BACKEND_PYTHON``
environment variable (headless jobs and tests register the add-on without preferences). A change
of interpreter or device restarts the backend on the next call.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import bpy

from .backend_client import BackendClient, BackendError, BackendUnavailable
from .preferences import get_preferences

ENV_PYTHON = "FACEFORGE_BACKEND_PYTHON"
ENV_DEVICE = "FACEFORGE_DEVICE"
ENV_CACHE = "FACEFORGE_CACHE"

_client: BackendClient | None = None
_client_key: tuple[str, str, str] | None = None
_loaded_model: str | None = None  # the path (or "default") of the model the backend holds
_model_info: dict | None = None
_starting: threading.Thread | None = None
_start_error: str = ""


def settings(context=None) -> tuple[str, str, str, str]:
    """``(python, device, log file, data folder)`` from the preferences or the environment (an empty
    data folder: the backend's own default, ``$FACEFORGE_CACHE`` or ``~/.cache/faceforge``)."""
    prefs = get_preferences(context)
    python = (prefs.backend_python if prefs else "") or os.environ.get(ENV_PYTHON, "")
    device = (prefs.device if prefs else "") or os.environ.get(ENV_DEVICE, "auto")
    log = (prefs.log_file if prefs else "") or str(Path(tempfile.gettempdir()) / "faceforge-backend.log")
    data = bpy.path.abspath(prefs.data_dir) if prefs and prefs.data_dir else ""
    python = bpy.path.abspath(python) if python.startswith("//") else python
    return python, device, bpy.path.abspath(log), data


def client(context=None) -> BackendClient:
    """The client for the current settings (created, not started, when the settings change)."""
    global _client, _client_key
    key = settings(context)
    if _client is None or _client_key != key:
        stop()
        python, device, log, data = key
        env = {ENV_CACHE: data} if data else None  # where the backend builds and caches models
        _client = BackendClient(python, log_path=log, env=env, serve_args=["--device", device])
        _client_key = key
    return _client


def ensure_started(context=None) -> BackendClient:
    """The running client; starts the backend (blocks ~2 s while it imports torch) if needed."""
    backend = client(context)
    if not backend.alive:
        _forget_model()
        backend.ensure_running()
    return backend


def start_async(context=None) -> None:
    """Start the backend in a thread so the UI stays responsive; see :func:`status`."""
    global _starting, _start_error
    backend = client(context)
    if backend.alive or (_starting is not None and _starting.is_alive()):
        return
    _start_error = ""

    def run() -> None:
        global _start_error
        try:
            _forget_model()
            backend.ensure_running()
        except BackendError as error:
            _start_error = str(error)

    _starting = threading.Thread(target=run, name="faceforge-backend-start", daemon=True)
    _starting.start()


def starting() -> bool:
    return _starting is not None and _starting.is_alive()


def status() -> tuple[str, str]:
    """``(state, text)`` for the Backend panel: state is RUNNING, STARTING, ERROR or STOPPED."""
    if starting():
        return "STARTING", "Starting the backend..."
    if _client is not None and _client.alive:
        handshake = _client.handshake or {}
        return "RUNNING", f"Running on {handshake.get('device', '?')} (pid {_client.pid})"
    if _start_error:
        return "ERROR", _start_error
    return "STOPPED", "Not running"


def stop() -> None:
    """Shut the backend down (request, then terminate, then kill)."""
    global _client
    if _client is not None:
        _client.shutdown()
    _forget_model()


def _forget_model() -> None:
    global _loaded_model, _model_info
    _loaded_model = None
    _model_info = None


def wanted_model(context=None) -> str | None:
    """The absolute model path the scene asks for (scene, then preferences), or None for the default."""
    context = context or bpy.context
    path = context.scene.faceforge.model_path if getattr(context, "scene", None) else ""
    if not path:
        prefs = get_preferences(context)
        path = prefs.model_path if prefs else ""
    return bpy.path.abspath(path) if path else None


def model_request(context=None) -> tuple[str, dict] | None:
    """The ``model.load`` call needed before model methods, or None when it is loaded already."""
    path = wanted_model(context)
    if _client is not None and _client.alive and _loaded_model == (path or "default"):
        return None
    return ("model.load", {} if path is None else {"path": path})


def model_loaded(path: str | None, info: dict) -> None:
    """Record that the backend now holds the model at ``path`` (None: the default)."""
    global _loaded_model, _model_info
    _loaded_model = path or "default"
    _model_info = info


def model_info() -> dict | None:
    """The loaded model's description (``model.load``'s answer), or None."""
    return _model_info if _client is not None and _client.alive else None


__all__ = [
    "BackendError",
    "BackendUnavailable",
    "client",
    "ensure_started",
    "model_info",
    "model_loaded",
    "model_request",
    "settings",
    "start_async",
    "status",
    "stop",
    "wanted_model",
]
