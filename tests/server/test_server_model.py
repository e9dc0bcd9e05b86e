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
    huge = error_of(backend, "model.fit_scan", arrays={"scan": (scan * 1e30).astype(np.float32)})
    assert huge.code == ErrorCode.FACEFORGE_ERROR and "not a plausible head" in str(huge)
    centimetres = error_of(backend, "model.fit_scan", arrays={"scan": scan * 100})
    assert "'cm'" in str(centimetres)
    # bad parameters are the caller's error, never an internal one
    assert error_of(backend, "model.sample", {"seed": 2**70}).code == ErrorCode.INVALID_PARAMS
    empty = error_of(
        backend, "model.decode", arrays={"w_id": np.zeros((0, small_model.rank_identity), np.float32)}
    )
    assert empty.code == ErrorCode.INVALID_PARAMS and "empty" in str(empty)


def test_face_rig_matches_the_python_api(backend, small_model, small_model_path):
    import torch
    from faceforge.model import rig

    backend.call("model.load", {"path": str(small_model_path)}, timeout=120)
    out = backend.call("model.face", {"seed": 3, "radius": 0.9}, timeout=120)
    arrays, names = out["arrays"], out["names"]
    assert names == rig.key_names(small_model) and "neutral" not in names and "jawOpen" in names
    z_id = rig.sample_identity(small_model, 3, 0.9)
    np.testing.assert_allclose(arrays["z_id"][0], z_id, atol=1e-6)
    w_id = rig.identity_codes(small_model, z_id[None])
    neutral = small_model.decode(w_id, small_model.neutral_expression)[0].numpy()
    np.testing.assert_allclose(arrays["neutral"][0], neutral, atol=1e-6)
    jaw = small_model.decode(w_id, small_model.expression_code("jawOpen"))[0].numpy()
    np.testing.assert_allclose(arrays["keys"][0, names.index("jawOpen")], jaw, atol=1e-6)
    assert arrays["keys"].shape == (1, len(names), 4521, 3)

    # Sliders replace the leading latent dimensions; a batch of z_id gives a batch of rigs.
    slid = backend.call("model.face", {"seed": 3}, arrays={"leading": np.array([2.0, -1.0])}, timeout=60)
    assert slid["arrays"]["z_id"][0, :2].tolist() == [2.0, -1.0]
    batch = backend.call("model.face", arrays={"z_id": np.stack([z_id, -z_id])}, timeout=60)["arrays"]
    np.testing.assert_allclose(batch["neutral"][0], neutral, atol=1e-6)
    assert batch["keys"].shape[0] == 2
    with torch.no_grad():
        assert not np.allclose(batch["neutral"][1], neutral, atol=1e-4)


def test_random_expression_weights_reproduce_the_sample(backend, small_model, small_model_path):
    from faceforge.model import rig

    backend.call("model.load", {"path": str(small_model_path)}, timeout=120)
    z_id = rig.sample_identity(small_model, 1)[None]
    out = backend.call("model.expression_weights", {"seed": 5}, arrays={"z_id": z_id}, timeout=120)
    values = out["arrays"]["values"]
    assert values.shape == (len(rig.key_names(small_model)),)
    assert values.min() >= 0.0 and values.max() <= 1.0
    # The mix of keys with these values is the exact face of the mixed code; it approximates the sample.
    mixed = backend.call("model.mix", arrays={"z_id": z_id, "values": values}, timeout=60)["arrays"]
    rms = np.sqrt(np.mean(np.sum((mixed["vertices"] - out["arrays"]["vertices"]) ** 2, axis=1))) * 1e3
    assert abs(rms - out["rms_mm"]) < 1e-2
    neutral = backend.call("model.face", arrays={"z_id": z_id}, timeout=60)["arrays"]["neutral"][0]
    moved = np.sqrt(np.mean(np.sum((out["arrays"]["vertices"] - neutral) ** 2, axis=1))) * 1e3
    assert out["rms_mm"] < moved  # better than leaving the face neutral


def test_mix_is_linear_in_the_key_values(backend, small_model, small_model_path):
    from faceforge.model import rig

    backend.call("model.load", {"path": str(small_model_path)}, timeout=120)
    z_id = rig.sample_identity(small_model, 2)[None]
    face = backend.call("model.face", arrays={"z_id": z_id}, timeout=60)
    names, arrays = face["names"], face["arrays"]
    values = np.zeros(len(names), np.float32)
    values[names.index("jawOpen")] = 0.5
    values[names.index("mouthSmileLeft")] = 1.0
    mixed = backend.call("model.mix", arrays={"z_id": z_id, "values": values}, timeout=60)["arrays"]
    neutral, keys = arrays["neutral"][0], arrays["keys"][0]
    expected = neutral + np.tensordot(values, keys - neutral, axes=1)
    np.testing.assert_allclose(mixed["vertices"], expected, atol=2e-6)


def test_cross_age_transfer_uses_the_age_groups(backend, small_model, small_model_path):
    backend.call("model.load", {"path": str(small_model_path)}, timeout=120)
    groups = small_model.metadata["age_groups"]
    assert "infant" in groups and "adult" in groups
    values = np.zeros(len(small_model.expression_names) - 1, np.float32)
    values[small_model.expression_names.index("jawOpen") - 1] = 1.0
    infant = backend.call("model.mix", {"age_group": "infant"}, arrays={"values": values}, timeout=60)
    adult = backend.call("model.mix", {"age_group": "adult"}, arrays={"values": values}, timeout=60)
    span = [np.ptp(x["arrays"]["vertices"][:, 1]) for x in (infant, adult)]
    assert span[0] < span[1]  # an infant's head is smaller than an adult's
    missing = error_of(backend, "model.mix", {"age_group": "martian"}, arrays={"values": values})
    assert "no age group" in str(missing)


def test_rig_scan_neutralizes_and_rigs_a_scan(backend, small_model, small_model_path):
    from faceforge.model import rig

    backend.call("model.load", {"path": str(small_model_path)}, timeout=120)
    z_id = rig.sample_identity(small_model, 4)[None]
    face = backend.call("model.face", arrays={"z_id": z_id}, timeout=60)
    names, arrays = face["names"], face["arrays"]
    scan = arrays["keys"][0, names.index("jawOpen")]
    out = backend.call("model.rig_scan", {"use_flows": False}, arrays={"scan": scan}, timeout=120)
    result = out["arrays"]
    # The basis is the scan without its expression: nearer the true neutral than the scan is (the
    # fit splits an open jaw between identity and expression codes, so not all of it comes off).
    to_neutral = np.linalg.norm(result["neutral"] - arrays["neutral"][0], axis=1).mean() * 1e3
    to_scan = np.linalg.norm(scan - arrays["neutral"][0], axis=1).mean() * 1e3
    assert to_neutral < 0.6 * to_scan
    assert result["keys"].shape == (len(names), 4521, 3) and out["error_mm"] < 2.0
    # The keys at the returned values move the basis back towards the scan.
    rebuilt = result["neutral"] + np.tensordot(result["values"], result["keys"] - result["neutral"], axes=1)
    before = np.linalg.norm(result["neutral"] - scan, axis=1).mean()
    assert np.linalg.norm(rebuilt - scan, axis=1).mean() < before
    wrong = error_of(backend, "model.rig_scan", arrays={"scan": np.zeros((7, 3), np.float32)})
    assert wrong.data["reason"] == "topology"


def test_model_build_reports_progress_can_be_cancelled_and_loads_the_model(bc, tmp_path, anny_head):
    env = {"FACEFORGE_CACHE": str(tmp_path)}
    client = bc.BackendClient(sys.executable, log_path=tmp_path / "log", env=env)
    client.start()
    try:
        model_file = tmp_path / "models" / "babyflow-all-small.pt"
        pending = client.submit("model.build", {"small": True})
        while not pending.poll() and not pending.done():
            pass
        pending.cancel()
        with pytest.raises(bc.BackendCancelled):
            pending.result(timeout=300)
        assert not model_file.exists()

        messages = []
        result = client.call(
            "model.build", {"small": True}, timeout=600, progress=lambda d, t, m: messages.append(m)
        )
        assert result["path"] == str(model_file) and model_file.is_file() and not result["cached"]
        assert any(m.startswith("dataset:") for m in messages)
        assert any(m.startswith("model") for m in messages)
        assert result["info"]["n_vertices"] == 4521
        assert client.call("model.info", timeout=30)["path"] == str(model_file)
        groups = client.call("model.age_groups", timeout=30)
        assert groups["names"][0] == "infant" and groups["arrays"]["z_id"].shape[0] == len(groups["names"])
        again = client.call("model.build", {"small": True, "load": False}, timeout=600)
        assert again["cached"]
    finally:
        client.shutdown()


def test_animate_take_bakes_a_generated_motion_on_given_keys(backend, small_model, small_motion_model_path):
    from faceforge.model import rig

    z_id = rig.sample_identity(small_model, 5)[None]
    neutral, keys = rig.expression_rig(small_model, rig.identity_codes(small_model, z_id))
    arrays = {"neutral": neutral[0], "keys": keys[0] - neutral[0][None]}
    params = {"path": str(small_motion_model_path), "label": "mouth_open", "seed": 1, "onset_frames": 10,
              "hold_frames": 3, "release_frames": 5, "exact": True}  # fmt: skip
    out = backend.call("animate.take", params, arrays=arrays, timeout=300)
    values, rms = out["arrays"]["values"], out["arrays"]["rms_mm"]
    assert values.shape == (18, keys.shape[1]) and rms.shape == (18,)
    assert out["arrays"]["residual"].shape == (18, 4521, 3)
    assert values.min() >= 0.0 and values.max() <= 1.0 and np.abs(values[0]).max() < 1e-6
    missing = error_of(backend, "animate.take", {**params, "path": "/nonexistent/motion.pt"}, arrays)
    assert missing.code == ErrorCode.MODEL_MISSING and "faceforge animate build" in str(missing)
    wrong = error_of(backend, "animate.take", {**params, "label": "dancing"}, arrays)
    assert "unknown motion label" in str(wrong)
