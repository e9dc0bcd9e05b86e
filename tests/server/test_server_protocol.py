"""The protocol pieces in-process: parsing, error codes, parameter schemas, the registry, array files."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import types

import numpy as np
import pytest
from faceforge.errors import Cancelled, DataError, FaceForgeError
from faceforge.server.arrays import ArraySpec, SessionDir, read_arrays, write_arrays
from faceforge.server.methods import core
from faceforge.server.protocol import (
    MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    ErrorCode,
    Request,
    RpcError,
    encode,
    parse_request,
)
from faceforge.server.registry import Param, Registry, method
from faceforge.server.service import Service, error_from_exception


def test_the_add_on_client_knows_the_same_codes_and_version(bc):
    assert {c.name: int(c) for c in bc.ErrorCode} == {c.name: int(c) for c in ErrorCode}
    assert bc.PROTOCOL_VERSION == PROTOCOL_VERSION


def test_a_request_parses_with_and_without_params():
    assert parse_request(b'{"v": 1, "id": 3, "method": "ping"}\n') == Request(3, "ping", {})
    request = parse_request('{"v":1,"id":"a-1","method":"data.build","params":{"small":true}}')
    assert request == Request("a-1", "data.build", {"small": True})


@pytest.mark.parametrize(
    ("line", "code", "echo"),
    [
        (b"", ErrorCode.PARSE_ERROR, None),
        (b"not json", ErrorCode.PARSE_ERROR, None),
        (b"\xff\xfe{}", ErrorCode.PARSE_ERROR, None),
        (b'{"v": 1, "id": 1, "method": "ping", "params": {"x": NaN}}', ErrorCode.PARSE_ERROR, None),
        (b'{"v": 1, "id": 1, "method": "ping", "params": {"x": 1e999}}', ErrorCode.PARSE_ERROR, None),
        (b"[" * 100_000 + b"]" * 100_000, ErrorCode.PARSE_ERROR, None),
        (b"[1, 2]", ErrorCode.INVALID_REQUEST, None),
        (b'{"v": 1, "method": "ping"}', ErrorCode.INVALID_REQUEST, None),
        (b'{"v": 1, "id": true, "method": "ping"}', ErrorCode.INVALID_REQUEST, None),
        (b'{"v": 1, "id": 1.5, "method": "ping"}', ErrorCode.INVALID_REQUEST, None),
        (b'{"id": 4, "method": "ping"}', ErrorCode.INVALID_REQUEST, 4),
        (b'{"v": 2, "id": 4, "method": "ping"}', ErrorCode.INVALID_REQUEST, 4),
        (b'{"v": 1, "id": 5, "method": ""}', ErrorCode.INVALID_REQUEST, 5),
        (b'{"v": 1, "id": 5, "method": 7}', ErrorCode.INVALID_REQUEST, 5),
        (b'{"v": 1, "id": 6, "method": "ping", "params": [1]}', ErrorCode.INVALID_REQUEST, 6),
        (b'{"v": 1, "id": 7, "method": "ping", "extra": 0}', ErrorCode.INVALID_REQUEST, 7),
    ],
)
def test_bad_lines_give_typed_errors_with_the_id_when_readable(line, code, echo):
    with pytest.raises(RpcError) as caught:
        parse_request(line)
    assert caught.value.code == code
    assert caught.value.request_id == echo


def test_an_overlong_line_is_a_parse_error():
    with pytest.raises(RpcError) as caught:
        parse_request(b" " * (MAX_LINE_BYTES + 1))
    assert caught.value.code == ErrorCode.PARSE_ERROR


def test_encode_writes_one_strict_json_line():
    line = encode({"v": 1, "id": 1, "result": {"x": np.float32(0.5), "n": np.int64(3), "ok": np.bool_(True)}})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"v": 1, "id": 1, "result": {"x": 0.5, "n": 3, "ok": True}}
    with pytest.raises(ValueError):
        encode({"result": float("nan")})


def _raising_methods() -> types.ModuleType:
    """A method module whose methods fail the ways real methods do: a user error, bad data, a
    cancel, a specific protocol code, and bugs (ValueError, KeyError, ZeroDivisionError)."""
    module = types.ModuleType("faceforge_test_failing_methods")
    failures = {
        "fail.user": lambda: FaceForgeError("the scan has no faces"),
        "fail.data": lambda: DataError("scan.obj line 3: text in a number"),
        "fail.cancelled": lambda: Cancelled("stopped at step 4"),
        "fail.missing": lambda: RpcError(ErrorCode.MODEL_MISSING, "no model"),
        "fail.valueerror": lambda: ValueError("operands could not be broadcast"),
        "fail.keyerror": lambda: KeyError("jawOpen"),
        "fail.zerodivision": lambda: ZeroDivisionError("division by zero"),
    }
    for name, make in failures.items():

        def fail(ctx, _make=make) -> dict:
            raise _make()

        fail.__module__ = module.__name__
        setattr(module, name.replace(".", "_"), method(name)(fail))
    return module


def test_each_failure_reaches_the_wire_with_its_code_and_bugs_are_internal_errors():
    names = ["user", "data", "cancelled", "missing", "valueerror", "keyerror", "zerodivision"]
    requests = [{"v": 1, "id": k, "method": f"fail.{name}"} for k, name in enumerate(names)]
    replies = {r["id"]: r for r in _converse(requests, Registry.from_modules([_raising_methods(), core]))}
    codes = {name: replies[k]["error"]["code"] for k, name in enumerate(names)}
    # JSON-RPC's own numbers for the standard codes, FaceForge's for the rest: what the add-on reads.
    assert codes == {
        "user": ErrorCode.FACEFORGE_ERROR,
        "data": ErrorCode.DATA_ERROR,
        "cancelled": ErrorCode.CANCELLED,
        "missing": ErrorCode.MODEL_MISSING,
        "valueerror": -32603,
        "keyerror": -32603,
        "zerodivision": -32603,
    }
    assert replies[1]["error"]["message"] == "scan.obj line 3: text in a number"
    # A user error is one line for the user, no traceback; a bug carries its traceback.
    assert "data" not in replies[0]["error"] or "traceback" not in (replies[0]["error"]["data"] or {})
    for k in (4, 5, 6):
        error = replies[k]["error"]
        assert error["message"].startswith("internal error in the backend:")
        assert "Traceback" in error["data"]["traceback"] and "raise _make()" in error["data"]["traceback"]


def test_a_non_finite_result_is_an_error_never_a_success():
    """Whatever a method computes, NaN or infinity never leaves the backend as a result."""
    module = types.ModuleType("faceforge_test_nan_methods")
    results = {
        "nan.array": lambda: {"vertices": np.array([[0.0, np.nan, 1.0]])},
        "nan.scalar": lambda: {"error_mm": float("inf")},
        "nan.nested": lambda: {"summary": {"v2v": [1.0, float("nan")]}},
        "nan.none": lambda: {"vertices": np.zeros((2, 3)), "error_mm": 0.5},
    }
    for name, make in results.items():

        def answer(ctx, _make=make) -> dict:
            return _make()

        answer.__module__ = module.__name__
        setattr(module, name.replace(".", "_"), method(name)(answer))
    requests = [{"v": 1, "id": k, "method": name} for k, name in enumerate(results)]
    replies = {r["id"]: r for r in _converse(requests, Registry.from_modules([module, core]))}
    for k, place in enumerate(("result.vertices", "result.error_mm", "result.summary.v2v[1]")):
        error = replies[k]["error"]
        assert error["code"] == ErrorCode.DATA_ERROR and place in error["message"], error
    assert "result" in replies[3]


def test_internal_errors_carry_the_traceback():
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError as error:
        rpc = error_from_exception(error)
    assert rpc.data["type"] == "ZeroDivisionError"
    assert "1 / 0" in rpc.data["traceback"]


def test_params_are_checked_against_the_schema():
    registry = Registry.discover()
    spec = registry.get("data.build")
    kwargs, arrays = registry.validate_params(spec, {"small": True, "seed": 3})
    assert kwargs == {"out": None, "small": True, "seed": 3, "force": False} and arrays is None
    for params, name in [
        ({"small": 1}, "small"),  # an integer is not a boolean
        ({"seed": True}, "seed"),  # nor a boolean an integer
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"out": 3}, "out"),
        ({"colour": "red"}, "colour"),
        ({"arrays": "x.npz"}, "arrays"),  # data.build takes no arrays
    ]:
        with pytest.raises(RpcError) as caught:
            registry.validate_params(spec, params)
        assert caught.value.code == ErrorCode.INVALID_PARAMS
        assert caught.value.data["param"] == name
    assert Param(float).check("x", 2) == 2.0 and isinstance(Param(float).check("x", 2), float)
    with pytest.raises(RpcError):
        Param(list, items=int).check("x", [1, "2"])


def test_unknown_methods_are_method_not_found():
    with pytest.raises(RpcError) as caught:
        Registry.discover().get("model.teleport")
    assert caught.value.code == ErrorCode.METHOD_NOT_FOUND
    assert "ping" in caught.value.data["methods"]


def test_discovery_finds_every_method_module():
    names = Registry.discover().names()
    assert {"ping", "version", "cancel", "shutdown", "data.build", "data.info", "data.load"} <= set(names)
    assert all(not name.startswith("_") for name in names)


def test_a_method_module_registers_its_own_decorated_functions_only():
    module = types.ModuleType("faceforge_test_extra_methods")

    def reflect(ctx, text: str) -> dict:
        """Return the text."""
        return {"text": text}

    reflect.__module__ = module.__name__
    module.reflect = method("extra.reflect", params={"text": Param(str)})(reflect)
    module.ping = core.ping  # re-exported from another module: not registered twice
    registry = Registry.from_modules([module, core])
    assert "extra.reflect" in registry and registry.names().count("ping") == 1
    assert registry.get("extra.reflect").doc == "Return the text."
    assert registry.describe()["extra.reflect"]["params"]["text"]["type"] == "string"
    with pytest.raises(ValueError, match="defined twice"):
        Registry.from_modules([core, core])


@pytest.mark.parametrize("name", ["Ping", "data..build", "data.", "1x", "model decode"])
def test_method_names_are_dotted_lowercase_words(name):
    with pytest.raises(ValueError):
        method(name)


def test_immediate_methods_cannot_take_arrays():
    with pytest.raises(ValueError):
        method("x.y", immediate=True, arrays={"a": ArraySpec("float32", (3,))})


# -- arrays ---------------------------------------------------------------------------------------

SPECS = {
    "source": ArraySpec(("float32", "float64"), ("N", 3)),
    "target": ArraySpec("float32", ("N", 3)),
    "weights": ArraySpec("float32", ("N",), required=False),
}


@pytest.fixture
def session():
    with SessionDir() as directory:
        yield directory
    assert directory.closed


def _write(path, **arrays):
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return str(path)


def test_session_dir_is_private_and_removed(session):
    assert session.path.is_dir()
    assert (session.path.stat().st_mode & 0o777) == 0o700
    path = write_arrays(session, {"a": np.ones((2, 3), np.float32)}, stem="result-1")
    assert path.parent == session.path and path.suffix == ".npz"
    assert read_arrays(session, path.name, {"a": ArraySpec("float32", (2, 3))})["a"].sum() == 6


def test_valid_arrays_round_trip(session):
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    arrays = read_arrays(session, _write(session.path / "in.npz", source=a, target=a), SPECS)
    assert set(arrays) == {"source", "target"}
    np.testing.assert_array_equal(arrays["target"], a)


@pytest.mark.parametrize(
    ("arrays", "reason", "name"),
    [
        ({"source": np.zeros((4, 3), np.int64), "target": np.zeros((4, 3), np.float32)}, "dtype", "source"),
        ({"source": np.zeros((4, 3), np.float32), "target": np.zeros((4, 3), np.float64)}, "dtype", "target"),
        ({"source": np.zeros((4, 2), np.float32), "target": np.zeros((4, 2), np.float32)}, "shape", "source"),
        ({"source": np.zeros((4, 3), np.float32), "target": np.zeros((5, 3), np.float32)}, "shape", "target"),
        ({"source": np.zeros(12, np.float32), "target": np.zeros((4, 3), np.float32)}, "shape", "source"),
        (
            {"source": np.full((4, 3), np.nan, np.float32), "target": np.zeros((4, 3), np.float32)},
            "non_finite",
            "source",
        ),
        (
            {"source": np.zeros((4, 3), np.float32), "target": np.full((4, 3), np.inf, np.float32)},
            "non_finite",
            "target",
        ),
        ({"source": np.zeros((0, 3), np.float32), "target": np.zeros((0, 3), np.float32)}, "shape", "source"),
        ({"source": np.zeros((4, 3), np.float32)}, "required", "target"),
        (
            {"source": np.zeros((4, 3)), "target": np.zeros((4, 3), np.float32), "extra": np.zeros(1)},
            "unexpected",
            "extra",
        ),
        (
            {"source": np.array([None] * 3, dtype=object), "target": np.zeros((4, 3), np.float32)},
            "dtype",
            "source",
        ),
    ],
)
def test_refused_arrays_name_the_array_and_the_reason(session, arrays, reason, name):
    path = _write(session.path / "in.npz", **arrays)
    with pytest.raises(RpcError) as caught:
        read_arrays(session, path, SPECS)
    assert caught.value.code == ErrorCode.INVALID_PARAMS
    assert caught.value.data["reason"] == reason
    assert caught.value.data["array"] == name


def test_paths_outside_the_session_dir_are_refused(session, tmp_path):
    a = np.zeros((4, 3), np.float32)
    outside = _write(tmp_path / "outside.npz", source=a, target=a)
    (session.path / "link.npz").symlink_to(outside)
    for value in (outside, "link.npz", "../" + os.path.basename(outside), str(session.path), "/etc/passwd"):
        with pytest.raises(RpcError) as caught:
            read_arrays(session, value, SPECS)
        assert caught.value.data["reason"] == "outside_session", value
    for value, reason in ((3, "not_a_path"), ("", "not_a_path"), ("nothing.npz", "missing")):
        with pytest.raises(RpcError) as caught:
            read_arrays(session, value, SPECS)
        assert caught.value.data["reason"] == reason


def test_oversized_and_corrupt_files_are_refused(session):
    a = np.zeros((1000, 3), np.float32)
    path = _write(session.path / "big.npz", source=a, target=a)
    with pytest.raises(RpcError) as caught:
        read_arrays(session, path, SPECS, max_bytes=20_000)
    assert caught.value.data["reason"] == "too_large"
    # A compressed file that inflates beyond the limit is refused before it is inflated.
    bomb = session.path / "bomb.npz"
    np.savez_compressed(bomb, source=np.zeros((100_000, 3), np.float32), target=a)
    assert bomb.stat().st_size < 20_000
    with pytest.raises(RpcError) as caught:
        read_arrays(session, str(bomb), SPECS, max_bytes=20_000)
    assert caught.value.data["reason"] == "too_large"
    (session.path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(RpcError) as caught:
        read_arrays(session, "junk.npz", SPECS)
    assert caught.value.data["reason"] == "unreadable"
    with pytest.raises(RpcError) as caught:
        write_arrays(session, {"a": np.zeros(10_000)}, max_bytes=1000)
    assert caught.value.code == ErrorCode.FACEFORGE_ERROR


# -- the service loop, in-process -----------------------------------------------------------------


def _serve(lines: list[bytes], registry: Registry | None = None) -> list[dict]:
    output = io.BytesIO()
    with SessionDir() as session:
        service = Service(
            registry or Registry.from_modules([core]), session, output, runtime={"device": "cpu"}
        )
        service.run(io.BytesIO(b"".join(lines)))
        service.close()
    return [json.loads(line) for line in output.getvalue().splitlines()]


def _converse(requests: list[dict], registry: Registry, timeout: float = 20.0) -> list[dict]:
    """Send each request through a pipe and wait for its answer before the next (as the add-on
    does), then shut down; returns every reply line."""
    output = io.BytesIO()
    read_fd, write_fd = os.pipe()
    with SessionDir() as session, os.fdopen(read_fd, "rb") as stream, os.fdopen(write_fd, "wb") as feed:
        service = Service(registry, session, output, runtime={"device": "cpu"})
        loop = threading.Thread(target=service.run, args=(stream,), daemon=True)
        loop.start()

        def replies() -> list[dict]:
            return [json.loads(line) for line in output.getvalue().splitlines()]

        for request in requests + [{"v": 1, "id": "bye", "method": "shutdown"}]:
            feed.write(json.dumps(request).encode() + b"\n")
            feed.flush()
            deadline = time.monotonic() + timeout
            while not any(r.get("id") == request["id"] and "progress" not in r for r in replies()):
                assert time.monotonic() < deadline, f"no answer to {request}"
                time.sleep(0.01)
        loop.join(timeout)
        service.close()
    return replies()


def test_the_loop_answers_every_line_and_stops_on_shutdown():
    replies = _serve(
        [
            b'{"v":1,"id":1,"method":"ping"}\n',
            b"\n",  # blank lines are ignored
            b"{oops\n",
            b"x" * (MAX_LINE_BYTES + 10) + b"\n",  # skipped whole, the next line still parses
            b'{"v":1,"id":2,"method":"version","params":{"client":"test"}}\n',
            b'{"v":1,"id":3,"method":"shutdown"}\n',
            b'{"v":1,"id":4,"method":"ping"}\n',  # after shutdown: not read
        ]
    )
    assert [r["id"] for r in replies] == [1, None, None, 2, 3]
    assert replies[0]["result"] == {"pong": True, "busy": None}
    assert [r["error"]["code"] for r in replies[1:3]] == [ErrorCode.PARSE_ERROR] * 2
    assert replies[3]["result"]["protocol"] == PROTOCOL_VERSION
    assert replies[3]["result"]["methods"] == ["cancel", "ping", "shutdown", "version"]
    assert replies[4]["result"] == {"ok": True}


def test_cancel_without_a_job_says_so():
    replies = _serve([b'{"v":1,"id":1,"method":"cancel","params":{"id":9}}\n'])
    assert replies[0]["result"] == {"cancelled": False, "running": None}
