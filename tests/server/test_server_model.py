"""The face model methods of the backend service, through the add-on's client."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from faceforge.server.protocol import ErrorCode

pytestmark = pytest.mark.anny


def error_of(client, method, params=None, arrays=None):
    module = sys.modules[type(client).__module__]
    with pytest.raises(module.BackendCallError) as caught:
        client.call(method, params, arrays=arrays, timeout=120)
    return caught.value


def test_model_methods_need_a_loaded_model(backend, tmp_path):
    assert error_of(backend, "model.info").code == ErrorCode.MODEL_MISSING
    error = error_of(backend, "model.load", {"path": str(tmp_path / "nothing.pt")})
    assert error.code == ErrorCode.MODEL_MISSING and "faceforge model build" in str(error)


def test_load_sample_decode_and_fit(backend, small_model, small_model_path):
    info = backend.call("model.load", {"path": str(small_model_path)}, timeout=120)
    assert info["n_vertices"] == 4521 and info["rank_identity"] == small_model.rank_identity
    assert backend.call("model.info", timeout=30)["topology_hash"] == small_model.topology_hash()

    sampled = backend.call("model.sample", {"n": 3, "seed": 7}, timeout=120)
    arrays = sampled["arrays"]
    local = small_model.sample(3, seed=7)
    np.testing.assert_allclose(arrays["vertices"], local["vertices"].numpy(), atol=1e-6)
    assert arrays["faces"].shape == (8990, 3)

    decoded = backend.call(
        "model.decode", {"expression": "jawOpen"}, arrays={"w_id": arrays["w_id"]}, timeout=60
    )
    expected = small_model.decode(local["w_id"], small_model.expression_code("jawOpen")).numpy()
    np.testing.assert_allclose(decoded["arrays"]["vertices"], expected, atol=1e-6)
    bad = error_of(backend, "model.decode", arrays={"w_id": np.zeros((2, 3), np.float32)})
    assert bad.code == ErrorCode.INVALID_PARAMS

    steps = []
    scan = arrays["vertices"][0]
    fitted = backend.call(
        "model.fit_scan",
        {"use_flows": False, "prior_weight": 1e-4},
        arrays={"scan": scan},
        timeout=120,
        progress=lambda done, total, message: steps.append((done, total)),
    )
    assert fitted["error_mm"] < 0.5 and fitted["arrays"]["vertices"].shape == (4521, 3)
    assert steps and steps[-1][0] == steps[-1][1]
    wrong = error_of(backend, "model.fit_scan", arrays={"scan": np.zeros((10, 3), np.float32)})
    assert wrong.code == ErrorCode.INVALID_PARAMS and wrong.data["reason"] == "topology"
