"""The backend process: its interpreter (checked, with a fix for the user), its environment, and
:class:`_Process`, one running backend with its stderr reader and ring buffer."""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from .backend_errors import BackendUnavailable

_SESSION_PREFIX = "faceforge-session-"
_FIX_INTERPRETER = (
    "choose the Python of your FaceForge environment (e.g. <checkout>/.venv/bin/python) as "
    "Backend Python in the FaceForge add-on preferences"
)


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "closed its output"
    if returncode < 0:
        try:
            return f"was killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _resolve_interpreter(python: str) -> str:
    if not python or not python.strip():
        raise BackendUnavailable(f"No backend Python is set: {_FIX_INTERPRETER}.")
    python = os.path.expanduser(python.strip())
    if os.sep in python or (os.altsep and os.altsep in python):
        if not os.path.isfile(python):
            raise BackendUnavailable(f"The backend Python {python} does not exist: {_FIX_INTERPRETER}.")
        if not os.access(python, os.X_OK):
            raise BackendUnavailable(f"The backend Python {python} is not executable: {_FIX_INTERPRETER}.")
        return python
    found = shutil.which(python)
    if found is None:
        raise BackendUnavailable(f"No program {python!r} on the PATH: {_FIX_INTERPRETER}.")
    return found


def explain_startup_failure(python: str, returncode: int | None, stderr_tail: str) -> str:
    """A user message, with a fix, for a backend that exited before answering the handshake."""
    own = [line for line in stderr_tail.splitlines() if line.startswith("faceforge serve: error:")]
    if own:  # the backend's own dependency check names what is missing and how to install it
        return own[-1].removeprefix("faceforge serve: error: ")
    if re.search(r"No module named '?faceforge'?($|\s)", stderr_tail, re.MULTILINE):
        return (
            f"FaceForge is not installed in {python}. Install it there "
            f"(`{python} -m pip install -e <FaceForge checkout>`), or {_FIX_INTERPRETER}."
        )
    missing = re.findall(r"No module named '([\w.]+)'", stderr_tail)
    if missing:
        package = missing[-1].split(".")[0]
        return (
            f"The backend Python {python} lacks the package {package!r} that FaceForge needs. Install "
            f"FaceForge's dependencies there (`{python} -m pip install -e <FaceForge checkout>`), "
            f"or {_FIX_INTERPRETER}."
        )
    return f"The FaceForge backend ({python}) {_describe_exit(returncode)} while starting."


def check_interpreter(python: str, timeout: float = 120.0) -> str | None:
    """Check that ``python`` can run the backend; ``None`` if it can, else a message with a fix.

    Runs ``python -c "import faceforge.server, numpy, torch"`` (a few seconds: torch loads).
    """
    try:
        python = _resolve_interpreter(python)
    except BackendUnavailable as error:
        return str(error)
    probe = "import faceforge.server, numpy, torch"
    try:
        done = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=timeout, env=_child_env(None)
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"Cannot run {python}: {error}"
    if done.returncode == 0:
        return None
    return explain_startup_failure(python, done.returncode, done.stderr)


def _child_env(overrides: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)  # Blender's own Python home must not leak into another interpreter
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides or {})
    return env


class _Process:
    """One backend process with its reader threads and stderr ring buffer."""

    def __init__(self, popen: subprocess.Popen, stderr_lines: int, log_path: Path | None) -> None:
        self.popen = popen
        self.stderr: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self.log_path = log_path
        self.reader: threading.Thread | None = None
        self.stderr_reader: threading.Thread | None = None
        self.closed = threading.Event()  # stdout reached end of file
        self.exit_message = ""
        self.stopped_by_client = False
        self.session_dir: str | None = None  # from the handshake

    def remove_session_dir(self) -> None:
        """Remove the session directory of a backend that could not (it was killed)."""
        path = self.session_dir
        if path and os.path.basename(path).startswith(_SESSION_PREFIX) and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None and not self.closed.is_set()

    def tail(self, lines: int = 20) -> str:
        return "\n".join(list(self.stderr)[-lines:])

    def read_stderr(self) -> None:
        log = None
        if self.log_path is not None:
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(self.log_path, "a", encoding="utf-8")  # closed in the finally below
                log.write(
                    f"=== FaceForge backend pid {self.pid} started {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n"
                )
                log.flush()
            except OSError as error:
                self.stderr.append(f"[faceforge client] cannot write the log {self.log_path}: {error}")
                log = None
        try:
            for raw in iter(self.popen.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.stderr.append(line)
                if log is not None:
                    log.write(line + "\n")
                    log.flush()
        except (OSError, ValueError):
            pass
        finally:
            if log is not None:
                log.close()
