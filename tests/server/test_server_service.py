"""The real backend (``python -m faceforge serve``) driven by the add-on's client, as Blender would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from faceforge.server.protocol import ErrorCode

REPO_ROOT = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX signals")


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def rotated(points: np.ndarray) -> np.ndarray:
    c, s = np.cos(0.3), np.sin(0.3)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return (points @ rotation.T + [0.1, 0.2, -0.3]).astype(points.dtype)


# -- `faceforge serve` on its own -----------------------------------------------------------------


def test_serve_answers_version_ping_and_malformed_lines_on_stdio():
    lines = [
        {"v": 1, "id": 1, "method": "version"},
        {"v": 1, "id": 2, "method": "ping"},
        "this is not json",
        {"v": 1, "id": 3, "method": "model.teleport"},
        {"v": 1, "id": 4, "method": "ping", "params": {"loud": True}},
        {"v": 7, "id": 5, "method": "ping"},
    ]
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    done = subprocess.run(
        [sys.executable, "-m", "faceforge", "serve"], input=text, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr  # end of input is a clean exit
    replies = [json.loads(line) for line in done.stdout.splitlines()]  # stdout holds protocol lines only
    assert [r["id"] for r in replies] == [1, 2, None, 3, 4, 5]
    assert replies[0]["result"]["protocol"] == 1 and replies[0]["result"]["device"] in ("cpu", "cuda")
    assert replies[1]["result"]["pong"] is True
    codes = [r["error"]["code"] for r in replies[2:]]
    assert codes == [
        ErrorCode.PARSE_ERROR,
        ErrorCode.METHOD_NOT_FOUND,
        ErrorCode.INVALID_PARAMS,
        ErrorCode.INVALID_REQUEST,
    ]
    session = replies[0]["result"]["session_dir"]
    assert not os.path.exists(session), "the session directory is removed at exit"
    assert "faceforge serve" in done.stderr  # logs go to stderr


# -- handshake and round trips --------------------------------------------------------------------


def test_handshake_reports_versions_device_methods_and_session_dir(backend):
    info = backend.handshake
    assert info["protocol"] == 1 and info["backend"]
    assert info["device"] in ("cpu", "cuda") and info["runtime"]["torch"]
    assert {"ping", "version", "cancel", "shutdown", "data.build", "data.rigid_align"} <= set(info["methods"])
    assert Path(info["session_dir"]).is_dir() and info["pid"] == backend.pid
    assert backend.call("ping", timeout=10) == {"pong": True, "busy": None}
    assert backend.ping() < 5.0


def test_array_round_trip_through_the_session_dir(backend):
    source = np.random.default_rng(0).standard_normal((2000, 3)).astype(np.float32)
    pending = backend.submit("data.rigid_align", arrays={"source": source, "target": rotated(source)})
    result = pending.result(timeout=60)
    aligned = result["arrays"]["aligned"]
    assert aligned.dtype == np.float32 and aligned.shape == (2000, 3)
    np.testing.assert_allclose(aligned, rotated(source), atol=1e-5)
    assert result["rms_before"] > 0.1 and result["rms_after"] < 1e-5
    assert set(pending.timing) == {"read_s", "run_s", "write_s"}
    assert list(backend.session_dir.iterdir()) == [], "request and result files are deleted once read"


def bad_call(client, method, params=None, arrays=None):
    with pytest.raises(client_module(client).BackendCallError) as caught:
        client.call(method, params, arrays=arrays, timeout=60)
    return caught.value


def client_module(client):
    return sys.modules[type(client).__module__]


def test_unknown_methods_and_bad_params_are_typed_errors(backend):
    assert bad_call(backend, "model.teleport").code == ErrorCode.METHOD_NOT_FOUND
    error = bad_call(backend, "data.build", {"seed": "zero"})
    assert error.code == ErrorCode.INVALID_PARAMS and error.data["param"] == "seed"
    error = bad_call(backend, "data.info", {"dir": "relative/path"})
    assert error.code == ErrorCode.INVALID_PARAMS and error.data["param"] == "dir"
    error = bad_call(backend, "data.info", {"dir": str(REPO_ROOT)})
    assert error.code == ErrorCode.DATA_ERROR and "manifest.json" in str(error)
    assert backend.call("ping", timeout=10)["pong"]


@pytest.mark.parametrize(
    ("arrays", "reason"),
    [
        ({"source": np.zeros((50, 3), np.int64), "target": np.zeros((50, 3), np.float32)}, "dtype"),
        ({"source": np.zeros((50, 2), np.float32), "target": np.zeros((50, 2), np.float32)}, "shape"),
        ({"source": np.zeros((50, 3), np.float32), "target": np.zeros((49, 3), np.float32)}, "shape"),
        (
            {"source": np.full((50, 3), np.nan, np.float32), "target": np.zeros((50, 3), np.float32)},
            "non_finite",
        ),
        ({"source": np.zeros((50, 3), np.float32)}, "required"),
        ({"source": np.array([{}] * 3), "target": np.zeros((3, 3), np.float32)}, "dtype"),
    ],
)
def test_bad_arrays_are_refused_with_a_reason(backend, arrays, reason):
    error = bad_call(backend, "data.rigid_align", arrays=arrays)
    assert error.code == ErrorCode.INVALID_PARAMS
    assert error.data["reason"] == reason


def test_array_paths_outside_the_session_dir_are_refused(backend, tmp_path):
    outside = tmp_path / "points.npz"
    np.savez(outside, source=np.zeros((5, 3), np.float32), target=np.zeros((5, 3), np.float32))
    link = backend.session_dir / "link.npz"
    link.symlink_to(outside)
    try:
        for path in (str(outside), str(link), "../" + outside.name, "/etc/hostname"):
            error = bad_call(backend, "data.rigid_align", {"arrays": path})
            assert error.code == ErrorCode.INVALID_PARAMS
            assert error.data["reason"] == "outside_session", path
    finally:
        link.unlink()


def test_oversized_arrays_are_refused(fresh_backend):
    client = fresh_backend(serve_args=["--max-array-mb", "1"])
    assert client.handshake["limits"]["max_array_bytes"] == 2**20
    big = np.zeros((50_000, 3), np.float32)
    error = bad_call(client, "data.rigid_align", arrays={"source": big, "target": big})
    assert error.code == ErrorCode.INVALID_PARAMS and error.data["reason"] == "too_large"
    small = np.random.default_rng(1).standard_normal((100, 3)).astype(np.float32)
    assert client.call("data.rigid_align", arrays={"source": small, "target": small})["rms_after"] < 1e-5


# -- supervision ----------------------------------------------------------------------------------


@posix_only
def test_a_backend_killed_mid_request_is_reported_then_restarted(bc, fresh_backend, tmp_path):
    client = fresh_backend()
    first_pid = client.pid
    first_session = client.session_dir
    os.kill(first_pid, signal.SIGSTOP)  # hold the backend so the request is surely in flight
    pending = client.submit("ping")
    time.sleep(0.1)
    assert not pending.done()
    os.kill(first_pid, signal.SIGKILL)
    with pytest.raises(bc.BackendUnavailable) as caught:
        pending.result(timeout=30)
    message = str(caught.value)
    assert "SIGKILL" in message and "while running ping" in message
    assert "faceforge serve" in caught.value.stderr_tail and "faceforge serve" in message  # the log tail
    assert "faceforge serve" in (tmp_path / "backend.log").read_text()
    assert not first_session.exists(), "the client removes the session dir a killed backend left"
    assert client.call("ping", timeout=30)["pong"]  # restarted on the next call
    assert client.pid != first_pid and client.restart_count == 1


@posix_only
def test_a_hung_backend_fails_the_call_within_the_watchdog_and_restarts(bc, fresh_backend, monkeypatch):
    """A backend that stops answering (SIGSTOP) must not hang a call without a time limit: after a
    silence the client pings it, kills it when the ping goes unanswered, and starts a new one."""
    calls = sys.modules[bc.PendingCall.__module__]
    monkeypatch.setattr(calls, "WATCH_SECONDS", 1.0)
    monkeypatch.setattr(calls, "PING_SECONDS", 1.0)
    client = fresh_backend()
    first_pid = client.pid
    os.kill(first_pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(bc.BackendUnavailable, match="stopped answering while running model.info"):
        client.call("model.info")  # no timeout: only the watchdog can end this wait
    assert time.monotonic() - started < 20
    wait_until(lambda: not client.running)
    assert client.call("ping", timeout=30)["pong"] and client.pid != first_pid


@posix_only
def test_restarts_are_rate_limited_and_a_live_backend_is_not_started_twice(bc, fresh_backend):
    client = fresh_backend(max_restarts=1, restart_window=600)
    with pytest.raises(bc.BackendError, match="already running"):
        client.start()
    for attempt in range(2):
        os.kill(client.pid, signal.SIGKILL)
        wait_until(lambda: not client.running)
        if attempt == 0:
            assert client.call("ping", timeout=30)["pong"]
    with pytest.raises(bc.BackendUnavailable, match="not restarted automatically") as caught:
        client.call("ping", timeout=30)
    assert "SIGKILL" in str(caught.value)
    client.restart()  # an explicit restart is always allowed
    assert client.call("ping", timeout=30)["pong"]


def test_shutdown_is_polite_first(fresh_backend):
    client = fresh_backend()
    session = client.session_dir
    assert client.shutdown() == 0
    assert client.last_shutdown == "request" and not client.running
    assert not session.exists()
    client.shutdown()  # idempotent


@posix_only
def test_shutdown_escalates_to_kill_when_the_backend_hangs(fresh_backend):
    client = fresh_backend()
    session = client.session_dir
    os.kill(client.pid, signal.SIGSTOP)  # neither the request nor SIGTERM can be handled now
    assert client.shutdown(timeout=0.5) == -signal.SIGKILL
    assert client.last_shutdown == "kill"
    assert not session.exists()


@posix_only
def test_sigterm_removes_the_session_dir(fresh_backend):
    client = fresh_backend()
    session = client.session_dir
    os.kill(client.pid, signal.SIGTERM)
    wait_until(lambda: not client.running)
    assert client._process.popen.returncode == 128 + signal.SIGTERM
    assert not session.exists()


# -- interpreters that cannot run the backend -----------------------------------------------------


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A fresh virtual environment without FaceForge, numpy or torch."""
    target = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True, timeout=120)
    python = target / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    assert python.exists()
    return str(python)


def test_a_missing_interpreter_says_how_to_fix_it(bc, tmp_path):
    for python in ("", str(tmp_path / "no-such-python")):
        with pytest.raises(bc.BackendUnavailable, match="preferences"):
            bc.BackendClient(python).start()


def test_an_interpreter_without_faceforge_says_how_to_fix_it(bc, bare_python):
    client = bc.BackendClient(bare_python)
    with pytest.raises(bc.BackendUnavailable) as caught:
        client.start()
    message = str(caught.value)
    assert "FaceForge is not installed in" in message and "pip install" in message
    assert not client.running
    assert bc.check_interpreter(bare_python).startswith("FaceForge is not installed")


def test_an_interpreter_without_torch_says_how_to_fix_it(bc, bare_python):
    client = bc.BackendClient(bare_python, env={"PYTHONPATH": str(REPO_ROOT / "backend")})
    with pytest.raises(bc.BackendUnavailable) as caught:
        client.start()
    message = str(caught.value)
    assert "torch" in message and "not installed in" in message and "pip install" in message
    assert caught.value.returncode == 3


def test_the_probe_accepts_this_interpreter(bc):
    assert bc.check_interpreter(sys.executable) is None


# -- long jobs (anny) -----------------------------------------------------------------------------


@pytest.mark.anny
def test_cancel_stops_a_running_build_and_ping_is_answered_meanwhile(bc, fresh_backend, tmp_path):
    client = fresh_backend()
    pid = client.pid
    out = tmp_path / "dataset"
    progress = []
    started = threading.Event()

    def on_progress(done, total, message):
        progress.append((done, total, message))
        started.set()

    outcome = []

    def wait_for_job():
        try:
            outcome.append(job.result(300, on_progress))
        except bc.BackendError as error:
            outcome.append(error)

    job = client.submit("data.build", {"out": str(out), "small": True})
    waiter = threading.Thread(target=wait_for_job)
    waiter.start()
    assert started.wait(120), "no progress notification"
    assert client.call("ping", timeout=10) == {"pong": True, "busy": job.id}  # answered during the job
    busy = bad_call(client, "data.build", {"out": str(tmp_path / "other"), "small": True})
    assert busy.code == ErrorCode.BACKEND_BUSY and busy.data["running"] == job.id
    assert not job.done()
    assert client.cancel(job.id) == {"cancelled": True, "running": job.id}
    waiter.join(120)
    assert not waiter.is_alive() and job.done()
    assert isinstance(outcome[0], bc.BackendCancelled) and outcome[0].code == ErrorCode.CANCELLED
    assert progress[0][1] > 1 and progress[-1][0] < progress[-1][1], "stopped before the end"
    assert not out.exists(), "a cancelled build leaves nothing behind"
    assert client.pid == pid and client.call("ping", timeout=10) == {"pong": True, "busy": None}


@pytest.mark.anny
@posix_only
def test_a_backend_killed_during_a_build_reports_its_log_and_recovers(bc, fresh_backend, tmp_path):
    client = fresh_backend()
    job = client.submit("data.build", {"out": str(tmp_path / "dataset"), "small": True})
    wait_until(lambda: job.latest_progress is not None, timeout=120)
    os.kill(client.pid, signal.SIGKILL)
    with pytest.raises(bc.BackendUnavailable) as caught:
        job.result(timeout=60)
    assert "while running data.build" in str(caught.value)
    assert "data.build: started" in caught.value.stderr_tail
    assert client.call("ping", timeout=60)["pong"] and client.restart_count == 1


@pytest.mark.anny
def test_dataset_methods_on_a_built_dataset(backend, small_dataset_dir, small_dataset):
    progress = []
    manifest = backend.call(
        "data.build",
        {"out": str(small_dataset_dir), "small": True},
        timeout=120,
        progress=lambda *p: progress.append(p),
    )  # same settings: the existing build is returned as it is
    assert (
        manifest["content_hash"]
        == json.loads((small_dataset_dir / "manifest.json").read_text())["content_hash"]
    )
    info = backend.call("data.info", {"dir": str(small_dataset_dir)}, timeout=60)
    assert info["summary"]["n_identities"] == small_dataset.n_identities
    assert info["expression_names"] == small_dataset.expression_names
    loaded = backend.call(
        "data.load",
        {"dir": str(small_dataset_dir), "identities": [0, -1], "expressions": ["neutral", "jawOpen"]},
        timeout=60,
    )
    vertices = loaded["arrays"]["vertices"]
    assert vertices.shape == (2, 2, small_dataset.n_vertices, 3) and vertices.dtype == np.float32
    jaw = small_dataset.expression_names.index("jawOpen")
    np.testing.assert_array_equal(vertices[1, 1], small_dataset.mesh(small_dataset.n_identities - 1, jaw))
    assert loaded["arrays"]["faces"].dtype == np.int32 and loaded["expressions"] == [0, jaw]
    error = bad_call(backend, "data.load", {"dir": str(small_dataset_dir), "expressions": ["smirk?"]})
    assert error.code == ErrorCode.INVALID_PARAMS and error.data["param"] == "expressions"
