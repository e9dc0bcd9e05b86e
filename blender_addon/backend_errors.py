"""The backend's protocol version and the errors a call to it can end in.

Standard library only, like the rest of the client (see ``backend_client.py``).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

PROTOCOL_VERSION = 1


class ErrorCode(IntEnum):
    """The backend's error codes (the same numbers as ``faceforge.server.protocol.ErrorCode``)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    FACEFORGE_ERROR = -32000
    MODEL_MISSING = -32001
    CANCELLED = -32002
    BACKEND_BUSY = -32003
    DATA_ERROR = -32004


class BackendError(Exception):
    """Any failure talking to the backend; ``str(error)`` is a message for the user."""


class BackendUnavailable(BackendError):
    """The backend cannot be started, or it stopped (crash, kill, exit).

    Attributes:
        returncode: the process's exit code if it exited (negative: killed by that signal).
        stderr_tail: the last lines the backend wrote to stderr.
    """

    def __init__(self, message: str, returncode: int | None = None, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class BackendTimeout(BackendError):
    """A call got no answer in time (a job is then asked to cancel)."""


class BackendCallError(BackendError):
    """The backend answered a call with an error.

    Attributes:
        code: an :class:`ErrorCode` (or the raw number if unknown).
        data: the error's ``data`` member (e.g. ``reason``/``array`` for refused arrays).
        method: the method called.
    """

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        try:
            self.code: ErrorCode | int = ErrorCode(code)
        except ValueError:
            self.code = code
        self.data = data
        self.method = method

    @property
    def traceback(self) -> str:
        """The backend's traceback of an INTERNAL_ERROR ("" otherwise)."""
        return self.data.get("traceback", "") if isinstance(self.data, dict) else ""


class BackendCancelled(BackendCallError):
    """The job was cancelled and stopped at its next step."""


def _call_error(method: str, error: Any) -> BackendCallError:
    if not isinstance(error, dict):
        return BackendCallError(
            method, ErrorCode.INTERNAL_ERROR, f"malformed error from the backend: {error!r}"
        )
    code = error.get("code", ErrorCode.INTERNAL_ERROR)
    message = str(error.get("message", "unknown error"))
    cls = BackendCancelled if code == ErrorCode.CANCELLED else BackendCallError
    return cls(method, code, message, error.get("data"))
