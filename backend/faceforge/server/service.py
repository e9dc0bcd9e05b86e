"""The stdio service: read requests line by line, run one job at a time, write protocol lines.

Threads:

- the reader (the caller of :meth:`Service.run`) reads stdin, parses and validates each request and
  answers at once: errors, immediate methods (``ping``, ``version``, ``cancel``, ``shutdown``), and
  ``BACKEND_BUSY`` when a job is already running; a job method is handed to
- the worker thread, which reads the request's arrays, runs the method with a
  :class:`~faceforge.server.registry.Context` whose ``progress`` sends notifications and returns
  ``False`` once the job is cancelled, writes result arrays and sends the response.

Writes to the protocol stream go through one lock. :func:`serve_stdio` keeps stdout for protocol
lines only: it moves the real stdout to a private descriptor and points descriptor 1 (and
``sys.stdout``) at stderr, so a stray ``print`` or a C library's output lands in the log instead of
corrupting the protocol. The session directory is removed on exit, also on SIGTERM.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import queue
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from faceforge import __version__
from faceforge.errors import Cancelled, DataError, FaceForgeError
from faceforge.server.arrays import DEFAULT_MAX_ARRAY_BYTES, SessionDir, read_arrays, write_arrays
from faceforge.server.protocol import (
    MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    ErrorCode,
    Request,
    RpcError,
    encode,
    error_response,
    parse_request,
    progress_message,
    response,
)
from faceforge.server.registry import Context, MethodSpec, Registry

__all__ = ["Service", "detect_runtime", "error_from_exception", "serve_stdio"]

log = logging.getLogger("faceforge.server")


def detect_runtime(device: str = "auto") -> dict[str, Any]:
    """Interpreter, torch version and compute device.

    Args:
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``, resolved by :func:`faceforge.device.resolve_device`
            (``"auto"``: ``$FACEFORGE_DEVICE`` if set, else ``"cuda"`` when torch sees a GPU).

    Raises:
        FaceForgeError: ``"cuda"`` asked for but torch sees no GPU, or an unknown device.
    """
    import torch

    from faceforge.device import resolve_device

    cuda = resolve_device(device) == "cuda"
    return {
        "device": "cuda" if cuda else "cpu",
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
    }


def error_from_exception(error: BaseException) -> RpcError:
    """The typed protocol error for an exception raised by a method."""
    if isinstance(error, RpcError):
        return error
    if isinstance(error, Cancelled):
        return RpcError(ErrorCode.CANCELLED, str(error) or "cancelled")
    if isinstance(error, DataError):
        return RpcError(ErrorCode.DATA_ERROR, str(error))
    if isinstance(error, FaceForgeError):
        return RpcError(ErrorCode.FACEFORGE_ERROR, str(error))
    detail = str(error) or type(error).__name__
    return RpcError(
        ErrorCode.INTERNAL_ERROR,
        f"internal error in the backend: {type(error).__name__}: {detail}",
        {
            "type": type(error).__name__,
            "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        },
    )


def _non_finite(value: Any, place: str) -> str | None:
    """The place of the first NaN or infinity in a result (arrays, floats, dicts, lists), or None."""
    if isinstance(value, np.ndarray):
        return place if value.dtype.kind in "fc" and not np.isfinite(value).all() else None
    if isinstance(value, (float, np.floating)):
        return None if math.isfinite(value) else place
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := _non_finite(v, f"{place}.{k}"))), None)
    if isinstance(value, (list, tuple)):
        return next((p for i, v in enumerate(value) if (p := _non_finite(v, f"{place}[{i}]"))), None)
    return None


def _require_finite(result: Any, method: str) -> None:
    """Every result that leaves the backend is finite, or the call fails (``DATA_ERROR``)."""
    place = _non_finite(result, "result")
    if place is not None:
        raise DataError(
            f"{method} produced a non-finite value (NaN or infinity) in {place}: the input is outside "
            "what it handles (check its scale, units and values)"
        )


@dataclass
class _Job:
    request: Request
    spec: MethodSpec
    kwargs: dict[str, Any]
    arrays: Any
    cancel: threading.Event = field(default_factory=threading.Event)


class Service:
    """Serve requests read from a binary stream, writing protocol lines to ``output``.

    Args:
        registry: the method table.
        session: the session directory for array files (the caller removes it).
        output: binary stream for protocol lines (flushed after each line).
        runtime: device and versions for the handshake (default: :func:`detect_runtime`).
        max_array_bytes: size limit of the arrays of one request or result.
        progress_interval: minimum seconds between progress notifications of a job.
    """

    def __init__(
        self,
        registry: Registry,
        session: SessionDir,
        output: BinaryIO,
        *,
        runtime: dict[str, Any] | None = None,
        max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES,
        progress_interval: float = 0.05,
    ) -> None:
        self.registry = registry
        self.session = session
        self._runtime = runtime if runtime is not None else detect_runtime()
        # Methods put their tensors on this device (``model.load`` maps the model there).
        self.state: dict[str, Any] = {"device": self._runtime.get("device", "cpu")}
        self.max_array_bytes = int(max_array_bytes)
        self.progress_interval = progress_interval
        self._output = output
        self._write_lock = threading.Lock()
        self._job_lock = threading.Lock()
        self._job: _Job | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="faceforge-job", daemon=True)
        self._worker.start()

    # -- ServiceControl ---------------------------------------------------------------------------

    @property
    def running(self) -> int | str | None:
        """Id of the running job, or ``None``."""
        job = self._job
        return None if job is None else job.request.id

    @property
    def stopping(self) -> bool:
        """True after ``shutdown``, end of input or a closed output."""
        return self._stop.is_set()

    def info(self) -> dict[str, Any]:
        """The handshake (the result of ``version``)."""
        return {
            "protocol": PROTOCOL_VERSION,
            "backend": __version__,
            "device": self._runtime.get("device", "cpu"),
            "runtime": self._runtime,
            "pid": os.getpid(),
            "session_dir": str(self.session.path),
            "methods": self.registry.names(),
            "unavailable": dict(self.registry.unavailable),
            "limits": {"max_line_bytes": MAX_LINE_BYTES, "max_array_bytes": self.max_array_bytes},
        }

    def cancel(self, target: int | str | None = None) -> dict[str, Any]:
        """Ask job ``target`` (default: the running one) to stop at its next step."""
        with self._job_lock:
            job = self._job
            hit = job is not None and (target is None or job.request.id == target)
            if hit:
                job.cancel.set()
        if hit:
            log.info("job %r %s: cancel requested", job.request.id, job.spec.name)
        return {"cancelled": hit, "running": None if job is None else job.request.id}

    def request_shutdown(self) -> None:
        """Cancel the running job and stop reading requests after the current line."""
        log.info("shutdown requested")
        self._stop.set()
        self.cancel(None)

    # -- output -----------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Write one protocol line (a result that JSON cannot hold becomes an INTERNAL_ERROR)."""
        try:
            data = encode(message)
        except (TypeError, ValueError) as error:
            log.error("request %r: message is not JSON (%s): %.300r", message.get("id"), error, message)
            if "progress" in message:
                return
            data = encode(
                error_response(
                    message.get("id"),
                    RpcError(
                        ErrorCode.INTERNAL_ERROR, f"the backend produced an answer JSON cannot hold: {error}"
                    ),
                )
            )
        with self._write_lock:
            try:
                self._output.write(data)
                self._output.flush()
            except (OSError, ValueError) as error:  # the client closed our stdout
                if not self._stop.is_set():
                    log.warning("cannot write to the client (%s); stopping", error)
                self._stop.set()

    # -- input ------------------------------------------------------------------------------------

    def run(self, stream: BinaryIO) -> None:
        """Serve lines from ``stream`` until ``shutdown``, end of input or a closed output.

        Empty lines are ignored; a line over :data:`MAX_LINE_BYTES` is skipped with a PARSE_ERROR.
        """
        while not self._stop.is_set():
            line = stream.readline(MAX_LINE_BYTES + 1)
            if not line:
                log.info("end of input: the client closed the connection")
                break
            if len(line) > MAX_LINE_BYTES:
                while not line.endswith(b"\n"):  # skip the rest of the long line
                    line = stream.readline(1 << 16)
                    if not line:
                        break
                self.send(
                    error_response(
                        None, RpcError(ErrorCode.PARSE_ERROR, f"line longer than {MAX_LINE_BYTES} bytes")
                    )
                )
                continue
            if line.strip():
                self.handle_line(line)

    def handle_line(self, line: bytes) -> None:
        """Answer or dispatch one request line; never raises for any input."""
        try:
            request = parse_request(line)
        except RpcError as error:
            self.send(error_response(error.request_id, error))
            return
        try:
            spec = self.registry.get(request.method)
            kwargs, arrays = self.registry.validate_params(spec, request.params)
            if spec.immediate:
                context = Context(request.id, self.session, self.state, self, self.registry)
                result = spec.function(context, **kwargs)
                self.send(response(request.id, result))
            else:
                self._submit(_Job(request, spec, kwargs, arrays))
        except Exception as error:  # every failure becomes a typed error line
            rpc_error = error_from_exception(error)
            if rpc_error.code == ErrorCode.INTERNAL_ERROR:
                log.error(
                    "request %r %s failed:\n%s", request.id, request.method, rpc_error.data["traceback"]
                )
            self.send(error_response(request.id, rpc_error))

    def _submit(self, job: _Job) -> None:
        with self._job_lock:
            if self._stop.is_set():
                raise RpcError(ErrorCode.CANCELLED, "the backend is shutting down")
            if self._job is not None:
                running = self._job
                raise RpcError(
                    ErrorCode.BACKEND_BUSY,
                    f"busy with job {running.request.id!r} ({running.spec.name}); wait for it or cancel it",
                    {"running": running.request.id, "method": running.spec.name},
                )
            self._job = job
        self._jobs.put(job)

    # -- worker -----------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            message = self._run(job)
            with self._job_lock:
                self._job = None  # free before answering: the client may send the next job at once
            try:
                self.send(message)
            except Exception:  # the worker must outlive any single answer
                log.exception("job %r: cannot send the answer", job.request.id)

    def _run(self, job: _Job) -> dict[str, Any]:
        request_id, name = job.request.id, job.spec.name

        def sink(done: int, total: int, message: str) -> None:
            self.send(progress_message(request_id, done, total, message))

        context = Context(
            request_id,
            self.session,
            self.state,
            self,
            self.registry,
            cancel_event=job.cancel,
            progress_sink=sink,
            progress_interval=self.progress_interval,
            max_array_bytes=self.max_array_bytes,
        )
        log.info("job %r %s: started", request_id, name)
        started = time.perf_counter()
        try:
            if job.cancel.is_set():  # cancelled while queued
                raise RpcError(ErrorCode.CANCELLED, "cancelled before it started")
            arrays = {}
            if job.spec.arrays or job.arrays is not None:
                arrays = read_arrays(self.session, job.arrays, job.spec.arrays, self.max_array_bytes)
            loaded = time.perf_counter()
            result = job.spec.function(context, **job.kwargs, **arrays)
            _require_finite(result, name)
            computed = time.perf_counter()
            result = self._store_arrays(request_id, result)
            stored = time.perf_counter()
        except BaseException as error:  # a job never takes the worker down
            rpc_error = error_from_exception(error)
            seconds = time.perf_counter() - started
            if rpc_error.code == ErrorCode.INTERNAL_ERROR:
                log.error(
                    "job %r %s: failed after %.2f s:\n%s",
                    request_id,
                    name,
                    seconds,
                    rpc_error.data["traceback"],
                )
            else:
                log.info(
                    "job %r %s: %s after %.2f s: %s",
                    request_id,
                    name,
                    rpc_error.code.name,
                    seconds,
                    rpc_error,
                )
            return error_response(request_id, rpc_error)
        log.info("job %r %s: done in %.3f s", request_id, name, stored - started)
        timing = {"read_s": loaded - started, "run_s": computed - loaded, "write_s": stored - computed}
        return response(request_id, result, {k: round(v, 6) for k, v in timing.items()})

    def _store_arrays(self, request_id: int | str, result: Any) -> Any:
        """Move the top-level arrays of a dict result into an .npz; its path becomes ``"arrays"``."""
        if not isinstance(result, dict):
            return result
        arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
        if not arrays:
            return result
        if "arrays" in result:
            raise TypeError("a result with arrays cannot also have a member named 'arrays'")
        stem = f"result-{request_id}" if isinstance(request_id, int) else "result"
        path = write_arrays(self.session, arrays, stem, self.max_array_bytes)
        return {**{k: v for k, v in result.items() if k not in arrays}, "arrays": str(path)}

    def close(self, grace: float = 5.0) -> bool:
        """Stop: cancel the running job and wait up to ``grace`` seconds for the worker.

        Returns:
            True when the worker stopped (False: a job ignored the cancel request).
        """
        self._stop.set()
        self.cancel(None)
        self._jobs.put(None)
        self._worker.join(grace)
        if self._worker.is_alive():
            log.warning("job %r did not stop within %.1f s of the cancel request", self.running, grace)
            return False
        return True


def _claim_stdout() -> BinaryIO:
    """Keep the real stdout for protocol lines; send everything else written there to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def serve_stdio(
    max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES,
    session_parent: str | None = None,
    log_level: str = "INFO",
    runtime: dict[str, Any] | None = None,
) -> int:
    """Run the service on this process's stdin/stdout until ``shutdown`` or end of input.

    ``runtime`` is :func:`detect_runtime`'s answer (detected here when None).

    Returns:
        The process exit code (0).
    """
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    output = _claim_stdout()
    runtime = runtime if runtime is not None else detect_runtime()
    registry = Registry.discover()
    session = SessionDir(session_parent)
    stopped = True
    try:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        service = Service(registry, session, output, runtime=runtime, max_array_bytes=max_array_bytes)
        log.info(
            "faceforge serve %s: pid %d, protocol %d, device %s, %d methods, session dir %s",
            __version__,
            os.getpid(),
            PROTOCOL_VERSION,
            runtime["device"],
            len(registry),
            session.path,
        )
        try:
            service.run(sys.stdin.buffer)
        finally:
            stopped = service.close()
    finally:
        session.close()
        log.info("faceforge serve: exit, session dir removed")
    if not stopped:  # a job that ignores cancellation must not keep the process alive
        logging.shutdown()
        os._exit(0)
    return 0
