"""``faceforge bench serve``: warm round trips to ``faceforge serve`` through the add-on's own client.

What is measured (medians over warm calls, after warm-up calls):

- **ping**: ``client.call("ping")``: JSON request out, the reader thread's immediate answer back.
- **array round trip**: ``data.rigid_align`` on ``(N, 3)`` float32 ``source`` and ``target``
  (N = 50,000 by default), returning the aligned ``(N, 3)`` points. The round trip spans the
  client's ``.npz`` write, the request line, the backend's read and checks of the arrays, the
  alignment itself, the backend's ``.npz`` write, the response line, the client's read and the
  deletion of both files. **Transfer overhead** = round trip - the method's own compute time,
  which the backend measures around the function call and reports in the response's ``timing``.

The client is ``blender_addon/backend_client.py`` loaded from the source tree, so the figures are
those the add-on sees (minus Blender's own numpy). Goals: ping < 5 ms, overhead < 50 ms.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from faceforge.errors import FaceForgeError

__all__ = ["PING_GOAL_MS", "OVERHEAD_GOAL_MS", "load_client_module", "bench_serve", "format_bench"]

PING_GOAL_MS = 5.0
OVERHEAD_GOAL_MS = 50.0
_CLIENT = Path(__file__).resolve().parents[3] / "blender_addon" / "backend_client.py"


_CLIENT_PACKAGE = "faceforge_addon_client"


def load_client_module(path: Path = _CLIENT) -> ModuleType:
    """Import the add-on's ``backend_client.py`` from the source tree without bpy: its folder becomes
    a bare package (the add-on's ``__init__.py``, which needs bpy, is not run), so the client and its
    sibling modules (errors, calls, process) load with their relative imports."""
    if not path.is_file():
        raise FaceForgeError(f"`faceforge bench serve` runs from a source checkout: {path} is missing")
    if _CLIENT_PACKAGE not in sys.modules:
        spec = importlib.machinery.ModuleSpec(_CLIENT_PACKAGE, None, is_package=True)
        spec.submodule_search_locations = [str(path.parent)]
        sys.modules[_CLIENT_PACKAGE] = importlib.util.module_from_spec(spec)
    return importlib.import_module(f"{_CLIENT_PACKAGE}.{path.stem}")


def _ms(values: list[float]) -> dict[str, float]:
    array = 1e3 * np.asarray(values)
    return {"median": round(float(np.median(array)), 3), "p90": round(float(np.percentile(array, 90)), 3)}


def bench_serve(
    pings: int = 200, transfers: int = 30, n_vertices: int = 50_000, python: str | None = None
) -> dict[str, Any]:
    """Start a backend with ``python`` (default: this interpreter) and time warm round trips.

    Returns:
        A JSON-serialisable dict: handshake facts, ``ping`` and ``transfer`` timings in ms
        (median and 90th percentile), the goals and whether they are met.
    """
    client_module = load_client_module()
    client = client_module.BackendClient(python or sys.executable, startup_timeout=300.0)
    started = time.perf_counter()
    handshake = client.start()
    startup_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    source = (0.1 * rng.standard_normal((n_vertices, 3))).astype(np.float32)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    rotation = q * np.sign(np.linalg.det(q))
    target = (source @ rotation.T + np.array([0.01, -0.02, 0.03])).astype(np.float32)
    try:
        for _ in range(20):
            client.call("ping", timeout=10)
        ping_s = []
        for _ in range(pings):
            t0 = time.perf_counter()
            client.call("ping", timeout=10)
            ping_s.append(time.perf_counter() - t0)

        round_trip_s, run_s, read_s, write_s = [], [], [], []
        for k in range(3 + transfers):
            t0 = time.perf_counter()
            pending = client.submit("data.rigid_align", arrays={"source": source, "target": target})
            result = pending.result(timeout=120)
            elapsed = time.perf_counter() - t0
            aligned = result["arrays"]["aligned"]
            if aligned.shape != source.shape or result["rms_after"] > 1e-4:
                raise FaceForgeError(f"data.rigid_align gave a wrong answer: rms {result['rms_after']}")
            if k >= 3:  # the first calls warm caches and numpy's code paths
                round_trip_s.append(elapsed)
                run_s.append(pending.timing["run_s"])
                read_s.append(pending.timing["read_s"])
                write_s.append(pending.timing["write_s"])
    finally:
        client.shutdown()
    overhead_s = [total - run for total, run in zip(round_trip_s, run_s, strict=True)]
    ping = _ms(ping_s)
    overhead = _ms(overhead_s)
    return {
        "device": handshake["device"],
        "backend": handshake["backend"],
        "python": handshake["runtime"]["python"],
        "startup_s": round(startup_s, 2),
        "ping_ms": {**ping, "n": pings},
        "transfer": {
            "method": "data.rigid_align",
            "vertices": n_vertices,
            "bytes_in": int(source.nbytes + target.nbytes),
            "bytes_out": int(source.nbytes),
            "round_trip_ms": _ms(round_trip_s),
            "compute_ms": _ms(run_s),
            "backend_read_ms": _ms(read_s),
            "backend_write_ms": _ms(write_s),
            "overhead_ms": overhead,
            "n": transfers,
        },
        "goals_ms": {"ping": PING_GOAL_MS, "overhead": OVERHEAD_GOAL_MS},
        "goals_met": {
            "ping": ping["median"] < PING_GOAL_MS,
            "overhead": overhead["median"] < OVERHEAD_GOAL_MS,
        },
    }


def format_bench(payload: dict[str, Any]) -> list[str]:
    """Human-readable lines for :func:`bench_serve`'s result."""
    ping, transfer, met = payload["ping_ms"], payload["transfer"], payload["goals_met"]
    ok = {True: "met", False: "NOT met"}
    return [
        f"backend {payload['backend']} on {payload['device']}, Python {payload['python']}; "
        f"start + handshake {payload['startup_s']} s",
        f"ping round trip: median {ping['median']:.3f} ms (p90 {ping['p90']:.3f} ms, {ping['n']} calls); "
        f"goal < {PING_GOAL_MS:g} ms: {ok[met['ping']]}",
        f"{transfer['vertices']:,}-vertex round trip ({transfer['method']}, "
        f"{transfer['bytes_in'] / 2**20:.1f} MiB in, {transfer['bytes_out'] / 2**20:.1f} MiB out): "
        f"median {transfer['round_trip_ms']['median']:.2f} ms, of which compute "
        f"{transfer['compute_ms']['median']:.2f} ms",
        f"transfer overhead (round trip - compute): median {transfer['overhead_ms']['median']:.2f} ms "
        f"(p90 {transfer['overhead_ms']['p90']:.2f} ms; backend read "
        f"{transfer['backend_read_ms']['median']:.2f} ms, "
        f"write {transfer['backend_write_ms']['median']:.2f} ms); "
        f"goal < {OVERHEAD_GOAL_MS:g} ms: {ok[met['overhead']]}",
    ]
