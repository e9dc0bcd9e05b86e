"""Client of the FaceForge backend process: start, handshake, calls with progress, cancel, supervision.

Blender's Python cannot host torch, so the add-on starts ``<python> -m faceforge serve`` with the
interpreter chosen in the preferences and talks to it over stdin/stdout, one JSON object per line
(see "Backend protocol" in the README). This module uses only the standard library and numpy: it
imports without ``bpy`` and never imports torch or the backend.

Typical use::

    client = BackendClient(python, log_path=log_file)
    info = client.start()                       # handshake: protocol check, device, methods
    result = client.call("data.build", {"out": folder, "small": True}, progress=print)
    aligned = client.call("data.rigid_align", arrays={"source": a, "target": b})["arrays"]["aligned"]
    client.shutdown()                           # shutdown request -> terminate -> kill

:meth:`BackendClient.start` (and a restart inside :meth:`BackendClient.submit`) blocks until the
handshake, about 2 s while the backend imports torch: in the UI, start the backend from a thread or
a modal operator and watch :attr:`BackendClient.alive`.

In a modal operator, :meth:`BackendClient.submit` returns a :class:`PendingCall` at once; poll it from
the TIMER event (:meth:`PendingCall.poll` never blocks) and call :meth:`PendingCall.cancel` on ESC.
Progress callbacks passed to :meth:`PendingCall.result` run in the thread that waits, never in the
reader thread, so they may touch ``bpy`` when that thread is Blender's main thread.

Supervision: a reader thread notices when the backend's stdout closes (crash, kill, exit) and fails
every call in flight with :class:`BackendUnavailable`, whose message ends with the tail of the
backend's stderr. Stderr goes to a log file (``log_path``) and to a ring buffer. The next call
restarts a dead backend, at most ``max_restarts`` times per ``restart_window`` seconds; a live
backend is never started twice.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .backend_call import PendingCall
from .backend_errors import (
    PROTOCOL_VERSION,
    BackendCallError,
    BackendCancelled,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ErrorCode,
)
from .backend_process import (
    _FIX_INTERPRETER,
    _child_env,
    _describe_exit,
    _Process,
    _resolve_interpreter,
    check_interpreter,
    explain_startup_failure,
)

__all__ = [
    "PROTOCOL_VERSION",
    "ErrorCode",
    "BackendError",
    "BackendUnavailable",
    "BackendTimeout",
    "BackendCallError",
    "BackendCancelled",
    "PendingCall",
    "BackendClient",
    "check_interpreter",
]

CLIENT_NAME = "faceforge-addon"


class BackendClient:
    """Start and supervise ``<python> -m faceforge serve`` and call its methods.

    Args:
        python: the backend interpreter (path, or a program name on the PATH).
        log_path: file that receives the backend's stderr (appended); ``None``: ring buffer only.
        env: extra environment variables for the backend.
        serve_args: extra ``faceforge serve`` options, e.g. ``["--max-array-mb", "64"]``.
        startup_timeout: seconds to wait for the handshake (the backend imports torch first).
        shutdown_timeout: seconds each shutdown step (request, terminate) may take.
        max_restarts: automatic restarts allowed within ``restart_window`` seconds.
        restart_window: see ``max_restarts``.
        auto_restart: restart a dead backend on the next call (within the limit).
        stderr_lines: size of the stderr ring buffer.
    """

    def __init__(
        self,
        python: str,
        *,
        log_path: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        serve_args: list[str] | tuple[str, ...] = (),
        startup_timeout: float = 120.0,
        shutdown_timeout: float = 5.0,
        max_restarts: int = 3,
        restart_window: float = 60.0,
        auto_restart: bool = True,
        stderr_lines: int = 200,
    ) -> None:
        self.python = python
        self.log_path = None if log_path is None else Path(log_path)
        self.env = dict(env or {})
        self.serve_args = list(serve_args)
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.auto_restart = auto_restart
        self.stderr_lines = stderr_lines
        self.handshake: dict[str, Any] | None = None
        self.restart_count = 0
        self.last_shutdown: str | None = None  # "request", "terminate" or "kill"
        self._process: _Process | None = None
        self._last_failure = ""
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[PendingCall, _Process]] = {}
        self._lock = threading.Lock()  # _pending and _process
        self._write_lock = threading.Lock()
        self._start_lock = threading.RLock()  # start, restart, shutdown
        self._restarts: collections.deque[float] = collections.deque()

    def __enter__(self) -> BackendClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- state ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the backend process runs (handshake done or not)."""
        process = self._process
        return process is not None and process.running()

    @property
    def alive(self) -> bool:
        """True while the backend runs and has answered the handshake."""
        return self.running and self.handshake is not None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def session_dir(self) -> Path:
        """The backend's session directory (from the handshake)."""
        if self.handshake is None:
            raise BackendUnavailable("the backend is not running")
        return Path(self.handshake["session_dir"])

    def stderr_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines the current (or last) backend wrote to stderr."""
        return "" if self._process is None else self._process.tail(lines)

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Start the backend and do the handshake; returns the handshake.

        Raises:
            BackendError: a backend is already running (it is never started twice).
            BackendUnavailable: the interpreter is missing, lacks torch or FaceForge, the backend
                exits or does not answer in time (the message says how to fix it).
        """
        with self._start_lock:
            if self.running:
                raise BackendError(f"the FaceForge backend is already running (pid {self.pid})")
            python = _resolve_interpreter(self.python)
            command = [python, "-m", "faceforge", "serve", *self.serve_args]
            options: dict[str, Any] = {}
            if sys.platform == "win32":
                options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
            else:
                options["start_new_session"] = True  # Ctrl-C in Blender's terminal must not kill it
            try:
                popen = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=_child_env(self.env),
                    **options,
                )
            except OSError as error:
                raise BackendUnavailable(f"Cannot start {python}: {error}. {_FIX_INTERPRETER}.") from error
            process = _Process(popen, self.stderr_lines, self.log_path)
            process.stderr_reader = threading.Thread(
                target=process.read_stderr, name=f"faceforge-stderr-{popen.pid}", daemon=True
            )
            process.reader = threading.Thread(
                target=self._read_stdout, args=(process,), name=f"faceforge-reader-{popen.pid}", daemon=True
            )
            with self._lock:
                self._process = process
                self.handshake = None
            process.stderr_reader.start()
            process.reader.start()
            try:
                self.handshake = self._handshake(process, python)
                process.session_dir = str(self.handshake["session_dir"])
            except BaseException as error:
                self._stop_process(process, polite=False)
                process.stopped_by_client = False  # a failed start counts against the restart limit
                self._last_failure = str(error).split("\n", 1)[0]
                raise
            return self.handshake

    def _handshake(self, process: _Process, python: str) -> dict[str, Any]:
        pending = self._send(process, "version", {"client": CLIENT_NAME})
        try:
            info = pending.result(timeout=self.startup_timeout)
        except BackendUnavailable as error:
            message = explain_startup_failure(python, error.returncode, error.stderr_tail)
            raise BackendUnavailable(
                _with_tail(message, error.stderr_tail), error.returncode, error.stderr_tail
            ) from None
        except BackendTimeout:
            tail = process.tail()
            raise BackendUnavailable(
                _with_tail(
                    f"The FaceForge backend ({python}) did not answer within {self.startup_timeout:g} s.",
                    tail,
                ),
                None,
                tail,
            ) from None
        except BackendCallError as error:
            raise BackendUnavailable(
                f"The FaceForge backend refused the handshake ({error}); the add-on and the backend "
                "are different versions: install the same FaceForge version in both."
            ) from None
        if not isinstance(info, dict) or info.get("protocol") != PROTOCOL_VERSION:
            found = info.get("protocol") if isinstance(info, dict) else info
            raise BackendUnavailable(
                f"The FaceForge backend speaks protocol {found!r}, this add-on speaks {PROTOCOL_VERSION}: "
                "install the same FaceForge version in both."
            )
        if not os.path.isdir(str(info.get("session_dir", ""))):
            raise BackendUnavailable(
                f"The backend's session directory {info.get('session_dir')!r} is not accessible."
            )
        return info

    def ensure_running(self) -> dict[str, Any]:
        """Start the backend if it is not running, restarting a dead one within the rate limit.

        Raises:
            BackendUnavailable: the backend cannot start, or it died too often recently.
        """
        with self._start_lock:
            if self.alive:
                return self.handshake  # type: ignore[return-value]
            if self._process is not None and not self._process.stopped_by_client:  # it died: a restart
                now = time.monotonic()
                while self._restarts and now - self._restarts[0] > self.restart_window:
                    self._restarts.popleft()
                if len(self._restarts) >= self.max_restarts:
                    raise BackendUnavailable(
                        f"The FaceForge backend stopped {len(self._restarts) + 1} times within "
                        f"{self.restart_window:g} s, so it is not restarted automatically. Last failure: "
                        f"{self._last_failure or 'unknown'}",
                        stderr_tail=self.stderr_tail(),
                    )
                self._restarts.append(now)
                self.restart_count += 1
                if self.running:  # started but never finished its handshake
                    self._stop_process(self._process, polite=False)
            return self.start()

    def restart(self) -> dict[str, Any]:
        """Shut the backend down (if running) and start a fresh one; returns the handshake."""
        with self._start_lock:
            self.shutdown()
            return self.start()

    def shutdown(self, timeout: float | None = None) -> int | None:
        """Stop the backend: ``shutdown`` request, then terminate, then kill; returns its exit code.

        Each step waits up to ``timeout`` (default ``shutdown_timeout``) seconds. The session directory
        is removed if the backend could not do it itself. Calls in flight fail with BackendUnavailable.
        """
        with self._start_lock:
            process = self._process
            if process is None:
                return None
            code = self._stop_process(process, polite=True, timeout=timeout)
            self.handshake = None
            return code

    def _stop_process(self, process: _Process, polite: bool, timeout: float | None = None) -> int | None:
        timeout = self.shutdown_timeout if timeout is None else timeout
        popen = process.popen
        if popen.poll() is None and not process.exit_message:
            process.exit_message = "was shut down"
        process.stopped_by_client = True
        steps = [("request", None), ("terminate", popen.terminate), ("kill", popen.kill)]
        for name, action in steps if polite else steps[1:]:
            if popen.poll() is not None:
                break
            try:
                if name == "request":
                    self._request_exit(process)
                else:
                    action()
            except OSError:
                pass
            try:
                popen.wait(timeout if name != "kill" else None)
                self.last_shutdown = name
                break
            except subprocess.TimeoutExpired:
                continue
        for thread in (process.reader, process.stderr_reader):
            if thread is not None and thread is not threading.current_thread():
                thread.join(2.0)
        for stream in (popen.stdin, popen.stdout, popen.stderr):
            try:
                stream.close()
            except OSError:
                pass
        process.remove_session_dir()
        self._fail_pending(process, BackendUnavailable("the FaceForge backend was shut down"))
        return popen.returncode

    def _request_exit(self, process: _Process) -> None:
        try:
            self._send(process, "shutdown", {})
        except BackendError:
            pass
        try:
            process.popen.stdin.close()  # end of input also makes the backend exit
        except OSError:
            pass

    # -- calls ------------------------------------------------------------------------------------

    def submit(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        arrays: dict[str, np.ndarray] | None = None,
    ) -> PendingCall:
        """Send a request and return at once; see :class:`PendingCall`.

        ``arrays`` are written to one ``.npz`` in the session directory (deleted once answered).
        A dead backend is restarted first when ``auto_restart`` is on.

        Raises:
            BackendUnavailable: the backend is not running and cannot be (re)started.
        """
        if self.auto_restart:
            self.ensure_running()
        elif not self.alive:
            raise BackendUnavailable(
                _with_tail(f"The FaceForge backend is not running: {self._last_failure}", self.stderr_tail())
            )
        process = self._process
        assert process is not None
        return self._send(process, method, params or {}, arrays)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        arrays: dict[str, np.ndarray] | None = None,
        timeout: float | None = None,
        progress: Any = None,
    ) -> Any:
        """Call ``method`` and wait for its result; see :meth:`submit` and :meth:`PendingCall.result`."""
        return self.submit(method, params, arrays=arrays).result(timeout=timeout, progress=progress)

    def ping(self, timeout: float = 5.0) -> float:
        """Round-trip time of a ``ping`` in seconds."""
        started = time.perf_counter()
        self.call("ping", timeout=timeout)
        return time.perf_counter() - started

    def cancel(self, call_id: int | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Ask the backend to stop job ``call_id`` (default: the running job) at its next step.

        Returns the backend's answer, ``{"cancelled": bool, "running": id}``; never starts a backend.
        """
        process = self._process
        if process is None or not process.running():
            return {"cancelled": False, "running": None}
        try:
            params = {} if call_id is None else {"id": call_id}
            return self._send(process, "cancel", params).result(timeout=timeout)
        except BackendUnavailable:
            return {"cancelled": False, "running": None}

    def _send(
        self,
        process: _Process,
        method: str,
        params: dict[str, Any],
        arrays: dict[str, np.ndarray] | None = None,
    ) -> PendingCall:
        call_id = next(self._ids)
        input_file = None
        if arrays:
            if self.handshake is None:
                raise BackendUnavailable("the backend has no session directory yet")
            input_file = Path(self.handshake["session_dir"]) / f"request-{call_id}.npz"
            try:
                with open(input_file, "wb") as handle:
                    np.savez(handle, **arrays)
            except OSError as error:
                input_file.unlink(missing_ok=True)
                raise BackendUnavailable(
                    f"Cannot write arrays to the backend's session directory: {error}"
                ) from error
            params = {**params, "arrays": str(input_file)}
        line = json.dumps(
            {"v": PROTOCOL_VERSION, "id": call_id, "method": method, "params": params},
            separators=(",", ":"),
            allow_nan=False,
        ).encode("utf-8")
        pending = PendingCall(self, call_id, method, input_file)
        with self._lock:
            if process.closed.is_set():
                pending._settle(("error", self._dead_error(process, method)))
                return pending
            self._pending[call_id] = (pending, process)
        try:
            with self._write_lock:
                process.popen.stdin.write(line + b"\n")
                process.popen.stdin.flush()
        except (OSError, ValueError):  # broken pipe: the reader thread reports the exit
            if process.reader is not None and process.reader is not threading.current_thread():
                process.reader.join(5.0)
            with self._lock:
                self._pending.pop(call_id, None)
            pending._settle(("error", self._dead_error(process, method)))
        return pending

    def _watchdog(self, pending: PendingCall) -> None:
        """Ping the backend while ``pending`` is silent; a backend that does not answer is killed
        (a restart follows on the next call) and the call fails with a clear error."""
        from .backend_call import PING_SECONDS

        process = self._process
        if process is None or pending.done():
            return
        try:
            self._send(process, "ping", {}).result(timeout=PING_SECONDS)
            return
        except BackendTimeout:
            pass
        except BackendUnavailable:
            return  # it died: the reader thread settles every call with the exit
        self._last_failure = f"it stopped answering (no reply to a ping within {PING_SECONDS:g} s)"
        pending._settle((
            "error",
            BackendUnavailable(
                f"The FaceForge backend stopped answering while running {pending.method} (no reply to "
                f"a ping within {PING_SECONDS:g} s): it was stopped and starts again on the next call."
            ),
        ))  # fmt: skip
        self._stop_process(process, polite=False, timeout=1.0)
        self.handshake = None

    def _abandon(self, pending: PendingCall) -> None:
        """Forget a call that timed out; a job is asked to cancel."""
        with self._lock:
            entry = self._pending.pop(pending.id, None)
        if entry is not None and pending.method not in ("cancel", "ping", "version", "shutdown"):
            try:
                self.cancel(pending.id, timeout=1.0)
            except BackendError:
                pass

    # -- reader thread ----------------------------------------------------------------------------

    def _read_stdout(self, process: _Process) -> None:
        stdout = process.popen.stdout
        try:
            for raw in iter(stdout.readline, b""):
                try:
                    message = json.loads(raw)
                except ValueError:
                    process.stderr.append(f"[faceforge client] ignored a non-protocol line: {raw[:200]!r}")
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        except (OSError, ValueError):
            pass
        finally:
            self._on_exit(process)

    def _dispatch(self, message: dict[str, Any]) -> None:
        call_id = message.get("id")
        with self._lock:
            entry = self._pending.get(call_id) if isinstance(call_id, int) else None
            if entry is not None and "progress" not in message:
                del self._pending[call_id]
        if entry is None:
            if "error" in message and call_id is None:
                process = self._process
                if process is not None:
                    process.stderr.append(f"[faceforge client] backend error without id: {message['error']}")
            return
        pending = entry[0]
        if "progress" in message:
            pending._on_progress(message["progress"])
        else:
            pending._on_message(message)

    def _on_exit(self, process: _Process) -> None:
        """The backend's stdout closed: wait for the process, then fail its calls in flight."""
        try:
            process.popen.wait(5.0)
        except subprocess.TimeoutExpired:  # stdout closed but the process lives on: stop it
            process.popen.kill()
            process.popen.wait()
        if process.stderr_reader is not None:
            process.stderr_reader.join(2.0)  # the tail must hold the last words
        process.closed.set()
        process.remove_session_dir()
        if not process.exit_message:
            process.exit_message = _describe_exit(process.popen.returncode)
            self._last_failure = f"the backend (pid {process.pid}) {process.exit_message}"
        with self._lock:
            entries = [entry for entry in self._pending.items() if entry[1][1] is process]
            for call_id, _ in entries:
                del self._pending[call_id]
        for _, (pending, _) in entries:
            pending._on_failure(self._dead_error(process, pending.method))

    def _dead_error(self, process: _Process, method: str) -> BackendUnavailable:
        returncode = process.popen.poll()
        tail = process.tail()
        how = process.exit_message or _describe_exit(returncode)
        message = f"The FaceForge backend (pid {process.pid}) {how} while running {method}."
        return BackendUnavailable(_with_tail(message, tail), returncode, tail)

    def _fail_pending(self, process: _Process, error: BackendError) -> None:
        with self._lock:
            entries = [(k, v) for k, v in self._pending.items() if v[1] is process]
            for call_id, _ in entries:
                del self._pending[call_id]
        for _, (pending, _) in entries:
            pending._on_failure(error)


def _with_tail(message: str, tail: str) -> str:
    if not tail.strip():
        return message
    return f"{message}\nLast lines of the backend log:\n{tail}"
