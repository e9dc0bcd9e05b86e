"""Hypothesis fuzzing of the message parser and the service loop: no input crashes them."""

from __future__ import annotations

import io
import json

import pytest
from faceforge.server.arrays import SessionDir
from faceforge.server.methods import core
from faceforge.server.protocol import ErrorCode, Request, RpcError, parse_request
from faceforge.server.registry import Registry
from faceforge.server.service import Service
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LINE_ERRORS = {ErrorCode.PARSE_ERROR, ErrorCode.INVALID_REQUEST}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
# Objects that look like requests: the right keys with any values, plus stray keys.
request_like = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 1, 1, 0, 2, "1", True, None, 1.0]),
        "id": st.one_of(
            st.integers(), st.text(max_size=200), st.booleans(), st.none(), st.floats(allow_nan=False)
        ),
        "method": st.one_of(
            st.sampled_from(["ping", "version", "cancel", "data.build", ""]), st.text(), st.integers()
        ),
        "params": st.one_of(st.dictionaries(st.text(max_size=8), json_values, max_size=4), json_values),
        "extra": json_values,
    },
)
lines = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")),
    json_values.map(lambda value: json.dumps(value).encode()),
    request_like.map(lambda message: json.dumps(message).encode()),
)


def check_parse(line: bytes) -> None:
    try:
        request = parse_request(line)
    except RpcError as error:
        assert error.code in LINE_ERRORS
        assert error.request_id is None or isinstance(error.request_id, int | str)
        assert error.message
        return
    assert isinstance(request, Request)
    assert isinstance(request.method, str) and request.method
    assert isinstance(request.params, dict)
    assert isinstance(request.id, int | str) and not isinstance(request.id, bool)


@given(lines)
@settings(max_examples=300, deadline=None)
def test_the_parser_never_crashes_and_every_bad_line_is_typed(line):
    check_parse(line)


@given(request_like)
@settings(max_examples=200, deadline=None)
def test_request_shaped_objects_parse_or_are_invalid_requests(message):
    check_parse(json.dumps(message).encode())


@given(st.binary(min_size=1, max_size=64), st.integers(0, 60))
@settings(max_examples=200, deadline=None)
def test_damaged_valid_requests_are_typed_errors(noise, position):
    line = bytearray(b'{"v": 1, "id": 12, "method": "ping", "params": {}}')
    line[position : position + len(noise)] = noise
    check_parse(bytes(line))


@pytest.fixture(scope="module")
def service_and_output():
    output = io.BytesIO()
    with SessionDir() as session:
        service = Service(Registry.from_modules([core]), session, output, runtime={"device": "cpu"})
        yield service, output
        service.close()


@given(line=lines)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_service_answers_every_line_with_one_result_or_typed_error(service_and_output, line):
    service, output = service_and_output
    output.seek(0)
    output.truncate()
    service.handle_line(line)
    written = output.getvalue()
    assert written.endswith(b"\n") and written.count(b"\n") == 1, written
    reply = json.loads(written)
    assert reply["v"] == 1 and "id" in reply
    assert ("result" in reply) != ("error" in reply)
    if "error" in reply:
        assert reply["error"]["code"] in {int(code) for code in ErrorCode}
        assert reply["error"]["code"] != ErrorCode.INTERNAL_ERROR, reply
