"""A call to the backend in flight: :class:`PendingCall`, made by :meth:`BackendClient.submit`."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend_errors import BackendError, BackendTimeout, _call_error

if TYPE_CHECKING:
    from .backend_client import BackendClient


#: Seconds without any message about a call before the backend is pinged (a busy backend answers a
#: ping at once: it is handled beside the running job); one that does not answer is stopped.
WATCH_SECONDS = 15.0
PING_SECONDS = 5.0

# Calls the watchdog never pings for (they are the pings and controls themselves).
_CONTROL = ("ping", "version", "cancel", "shutdown")


class PendingCall:
    """A request in flight: its progress, its outcome, and a way to cancel it.

    Created by :meth:`BackendClient.submit`. ``done()`` and ``poll()`` never block.
    """

    def __init__(self, client: BackendClient, call_id: int, method: str, input_file: Path | None) -> None:
        self.id = call_id
        self.method = method
        self.latest_progress: dict[str, Any] | None = None
        self.timing: dict[str, float] | None = None
        self._client = client
        self._input_file = input_file
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._finished = threading.Event()
        self._outcome: tuple[str, Any] | None = None
        self._abandoned = False

    # -- reader thread side -----------------------------------------------------------------------

    def _on_progress(self, progress: Any) -> None:
        if isinstance(progress, dict):
            self.latest_progress = progress
            self._events.put(("progress", progress))

    def _on_message(self, message: dict[str, Any]) -> None:
        timing = message.get("timing")
        self.timing = timing if isinstance(timing, dict) else None
        if "error" in message:
            self._settle(("error", _call_error(self.method, message["error"])))
        else:
            self._settle(("result", message.get("result")))

    def _on_failure(self, error: BackendError) -> None:
        self._settle(("error", error))

    def _settle(self, outcome: tuple[str, Any]) -> None:
        if self._finished.is_set():
            return
        if self._input_file is not None:
            self._input_file.unlink(missing_ok=True)
        self._events.put(("final", outcome))
        self._finished.set()

    # -- caller side ------------------------------------------------------------------------------

    def done(self) -> bool:
        """True once the backend answered (or failed)."""
        return self._finished.is_set()

    def poll(self) -> list[dict[str, Any]]:
        """Progress notifications received since the last poll (non-blocking); see :meth:`done`."""
        updates = []
        while self._outcome is None:
            try:
                kind, payload = self._events.get_nowait()
            except queue.Empty:
                break
            if kind == "progress":
                updates.append(payload)
            else:
                self._outcome = payload
        return updates

    def result(self, timeout: float | None = None, progress: Any = None) -> Any:
        """Wait for the answer and return the result (arrays loaded into ``result["arrays"]``).

        Args:
            timeout: seconds to wait; ``None`` waits until the backend answers or dies.
            progress: ``callback(done, total, message)`` run in this thread for each notification;
                returning ``False`` cancels the job.

        Raises:
            BackendCancelled: the job was cancelled.
            BackendCallError: the backend answered with an error.
            BackendUnavailable: the backend stopped before answering, or stopped answering (after
                :data:`WATCH_SECONDS` of silence it is pinged; one that does not answer within
                :data:`PING_SECONDS` is killed and restarts on the next call).
            BackendTimeout: no answer within ``timeout`` (the job is asked to cancel).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._outcome is None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait = WATCH_SECONDS if remaining is None else min(remaining, WATCH_SECONDS)
            try:
                kind, payload = self._events.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    self._client._abandon(self)
                    raise BackendTimeout(
                        f"the backend did not answer {self.method} within {timeout:g} s"
                    ) from None
                if self.method not in _CONTROL:  # silence: is the backend still alive?
                    self._client._watchdog(self)
                continue
            if kind == "final":
                self._outcome = payload
            elif progress is not None:
                keep_going = progress(
                    int(payload.get("done", 0)), int(payload.get("total", 0)), payload.get("message", "")
                )
                if keep_going is False:
                    self.cancel()
        kind, value = self._outcome
        if kind == "error":
            raise value
        if isinstance(value, dict) and isinstance(value.get("arrays"), str):
            value = {**value, "arrays": _load_arrays(Path(value["arrays"]))}
            self._outcome = ("result", value)
        return value

    def cancel(self) -> bool:
        """Ask the backend to stop this job at its next step; True if it was running."""
        if self.done():
            return False
        return bool(self._client.cancel(self.id).get("cancelled"))


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read a result ``.npz`` into memory and delete it."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as error:
        raise BackendError(f"cannot read the backend's result arrays {path}: {error}") from error
    path.unlink(missing_ok=True)
    return arrays
