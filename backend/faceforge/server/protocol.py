"""The wire format of the backend protocol: one JSON object per line, parsed and validated here.

Messages (UTF-8 JSON, one per line, ``"v"`` is the protocol version):

- request: ``{"v": 1, "id": 7, "method": "data.build", "params": {...}}`` (``params`` optional);
- response: ``{"v": 1, "id": 7, "result": ...}`` or
  ``{"v": 1, "id": 7, "error": {"code": -32602, "message": "...", "data": {...}}}``;
- progress notification while a job runs: ``{"v": 1, "id": 7, "progress": {"done", "total", "message"}}``.

A line that cannot be read as a request is answered with ``"id": null`` unless its id could be read.
Nothing here touches streams or threads; :mod:`faceforge.server.service` does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_LINE_BYTES",
    "MAX_ID_LENGTH",
    "ErrorCode",
    "RpcError",
    "Request",
    "parse_request",
    "response",
    "error_response",
    "progress_message",
    "encode",
]

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1 << 20  # requests carry settings; bulk data travels as .npz files
MAX_ID_LENGTH = 128
_MAX_METHOD_LENGTH = 128


class ErrorCode(IntEnum):
    """Error codes: JSON-RPC 2.0's own numbers plus FaceForge's in its server-error range."""

    PARSE_ERROR = -32700
    """The line is not UTF-8 JSON (or too long, or nested too deeply)."""
    INVALID_REQUEST = -32600
    """JSON, but not a request of this protocol version (missing or wrong fields, wrong ``v``)."""
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    """Unknown, missing or mistyped parameters, or an input array that is refused (see ``data``)."""
    INTERNAL_ERROR = -32603
    """A bug: ``data`` holds the exception type and the backend traceback."""
    FACEFORGE_ERROR = -32000
    """A valid request FaceForge cannot carry out: bad settings, an unusable output folder."""
    MODEL_MISSING = -32001
    """The method needs a face model and none is loaded or the model file does not exist."""
    CANCELLED = -32002
    """The job was cancelled (``cancel``, ``shutdown``) and stopped at its next step."""
    BACKEND_BUSY = -32003
    """Another job is running; ``data`` holds its id. Wait for it or cancel it."""
    DATA_ERROR = -32004
    """Input data is unusable: unreadable, empty, NaN, or of mixed topology."""


class RpcError(Exception):
    """An error to send back as ``{"error": {"code", "message", "data"}}``.

    Methods raise it for failures with a specific code (e.g. ``ErrorCode.MODEL_MISSING``); the
    parser raises it with ``request_id`` set when it could read the id of a bad request.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        data: dict[str, Any] | None = None,
        request_id: int | str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.data = data
        self.request_id = request_id

    def to_json(self) -> dict[str, Any]:
        """The ``error`` member of a response."""
        payload: dict[str, Any] = {"code": int(self.code), "message": self.message}
        if self.data is not None:
            payload["data"] = self.data
        return payload


@dataclass(frozen=True)
class Request:
    """A parsed request: its id (int or string), the method name and the parameter object."""

    id: int | str
    method: str
    params: dict[str, Any] = field(default_factory=dict)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) < value < 2**53
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def parse_request(line: bytes | str) -> Request:
    """Parse one protocol line into a :class:`Request`.

    Args:
        line: the raw line, with or without its trailing newline.

    Raises:
        RpcError: ``PARSE_ERROR`` when the line is not UTF-8 JSON (or longer than
            :data:`MAX_LINE_BYTES`, or nested too deeply), ``INVALID_REQUEST`` when it is JSON but not
            a request of this protocol version. ``request_id`` is set whenever the id was readable.
    """
    if len(line) > MAX_LINE_BYTES:
        raise RpcError(ErrorCode.PARSE_ERROR, f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        message = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise RpcError(ErrorCode.PARSE_ERROR, "JSON nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, huge integers, NaN
        raise RpcError(ErrorCode.PARSE_ERROR, f"not a JSON line: {error}") from None
    if not isinstance(message, dict):
        raise RpcError(ErrorCode.INVALID_REQUEST, f"a request is a JSON object, got {type(message).__name__}")
    echo = message.get("id")
    if not _valid_id(echo):
        raise RpcError(
            ErrorCode.INVALID_REQUEST,
            f'"id" must be an integer or a string of 1-{MAX_ID_LENGTH} characters',
        )
    version = message.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise RpcError(
            ErrorCode.INVALID_REQUEST,
            f'unsupported protocol version "v": {_short(version)}; this backend speaks {PROTOCOL_VERSION}',
            {"supported": [PROTOCOL_VERSION]},
            request_id=echo,
        )
    method = message.get("method")
    if not isinstance(method, str) or not 0 < len(method) <= _MAX_METHOD_LENGTH:
        raise RpcError(ErrorCode.INVALID_REQUEST, '"method" must be a non-empty string', request_id=echo)
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(ErrorCode.INVALID_REQUEST, '"params" must be a JSON object', request_id=echo)
    extra = sorted(set(message) - {"v", "id", "method", "params"})
    if extra:
        raise RpcError(
            ErrorCode.INVALID_REQUEST, f"unknown request members: {_short(extra)}", request_id=echo
        )
    return Request(echo, method, params)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def response(request_id: int | str, result: Any, timing: dict[str, float] | None = None) -> dict[str, Any]:
    """A success response; ``timing`` (seconds) reports where a job's time went."""
    message: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": request_id, "result": result}
    if timing is not None:
        message["timing"] = timing
    return message


def error_response(request_id: int | str | None, error: RpcError) -> dict[str, Any]:
    """An error response (``request_id`` is ``None`` when the request's id was unreadable)."""
    return {"v": PROTOCOL_VERSION, "id": request_id, "error": error.to_json()}


def progress_message(request_id: int | str, done: int, total: int, message: str = "") -> dict[str, Any]:
    """A progress notification of the running job ``request_id``."""
    return {
        "v": PROTOCOL_VERSION,
        "id": request_id,
        "progress": {"done": int(done), "total": int(total), "message": str(message)},
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        if not math.isfinite(value):
            raise ValueError(f"non-finite number {value!r} in a message")
        return float(value)
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line: compact ASCII JSON and a newline.

    Raises:
        ValueError: NaN or infinity in the message (strict JSON has neither).
        TypeError: a value that JSON cannot hold.
    """
    text = json.dumps(message, separators=(",", ":"), allow_nan=False, default=_json_default)
    return text.encode("ascii") + b"\n"
