"""The BabyFlow face model: bilinear basis, flows, API, fitting and the model file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from faceforge.errors import Cancelled, FaceForgeError
from faceforge.model import FlowTrainingConfig, ModelBuildConfig, build_model, fit_scan, load_model
from faceforge.model.bilinear import (
    augment_identities,
    expression_mirror_permutation,
    geometric_mirror_map,
    hosvd,
    mirror_shapes,
)
from faceforge.model.flows import RealNVP, _hutchinson_frobenius, train_flow
from faceforge.model.flows import jacobian_frobenius as flow_jacobian


# -- bilinear basis and augmentation (synthetic, fast) ------------------------------------------
def bilinear_tensor(n_id=12, n_ex=9, n_v=40, r_id=3, r_ex=4, seed=0):
    rng = np.random.default_rng(seed)
    core = rng.normal(size=(n_v * 3, r_id, r_ex))
    a, e = rng.normal(size=(n_id, r_id)), rng.normal(size=(n_ex, r_ex))
    return np.einsum("vij,ai,ej->aev", core, a, e).astype(np.float32) + rng.normal(size=n_v * 3).astype(
        np.float32
    )


def test_hosvd_reconstructs_an_exactly_bilinear_tensor():
    t = bilinear_tensor()
    basis = hosvd(t, 4, 5)  # one more than the true ranks: the centring adds one per mode
    recon = np.stack([basis.decode(basis.identity_factor[i], basis.expression_factor) for i in range(len(t))])
    np.testing.assert_allclose(recon, t, atol=1e-3)
    assert basis.rank_identity == 4 and basis.rank_expression == 5


def test_hosvd_factors_span_the_same_subspaces_as_tensorly():
    from tensorly.decomposition import partial_tucker

    t = bilinear_tensor(seed=1)
    centred = t - t.mean(axis=(0, 1))
    basis = hosvd(t, 4, 5)
    (_, factors), _ = partial_tucker(centred.astype(np.float64), rank=[4, 5], modes=[0, 1], n_iter_max=1)
    for ours, theirs in zip((basis.identity_factor, basis.expression_factor), factors, strict=True):
        singular = np.linalg.svd(ours.T.astype(np.float64) @ theirs, compute_uv=False)
        np.testing.assert_allclose(singular, 1.0, atol=1e-4)  # principal angles ~ 0


def test_variance_fractions_choose_ranks():
    t = bilinear_tensor(n_id=20, r_id=6)
    assert hosvd(t, 0.5, 0.5).rank_identity < hosvd(t, 0.999, 0.5).rank_identity


def test_mirroring_is_an_involution_and_swaps_sides():
    verts = np.random.default_rng(0).normal(size=(10, 3))
    verts = np.concatenate([verts, verts * [-1, 1, 1]])
    mirror = geometric_mirror_map(verts)
    np.testing.assert_array_equal(mirror[mirror], np.arange(20))
    np.testing.assert_allclose(mirror_shapes(mirror_shapes(verts, mirror), mirror), verts, atol=1e-6)
    perm = expression_mirror_permutation(["neutral", "eyeBlinkLeft", "eyeBlinkRight", "jawOpen"])
    np.testing.assert_array_equal(perm, [0, 2, 1, 3])
    tensor = np.stack([np.stack([verts] * 4)] * 2).astype(np.float32)
    assert augment_identities(tensor, mirror, perm).shape == (6, 4, 20, 3)


# -- flows ----------------------------------------------------------------------------------------
def test_realnvp_is_exactly_invertible_and_its_density_is_normalised():
    torch.manual_seed(0)
    flow = RealNVP(4, n_layers=6, hidden=16, mean=torch.ones(4), std=torch.full((4,), 2.0))
    for p in flow.parameters():  # a non-trivial map
        torch.nn.init.normal_(p, std=0.3)
    w = torch.randn(64, 4, dtype=torch.float32) * 2 + 1
    z, logdet = flow(w)
    torch.testing.assert_close(flow.inverse(z), w, atol=1e-5, rtol=1e-5)
    jac = torch.func.vmap(torch.func.jacrev(lambda x: flow(x[None])[0][0]))(w)
    torch.testing.assert_close(logdet, torch.linalg.slogdet(jac)[1], atol=1e-4, rtol=1e-4)


def test_hutchinson_jacobian_penalty_matches_the_exact_frobenius_norm():
    torch.manual_seed(1)
    flow = RealNVP(6, n_layers=6, hidden=16)
    for layer in flow.layers:  # a non-trivial map: the output layers start at zero
        torch.nn.init.normal_(layer.nets.weights[-1], std=0.3)
    w = torch.randn(32, 6)
    exact = flow_jacobian(flow, w, exact=True)
    assert exact.shape == (32,)
    estimates = torch.stack([flow_jacobian(flow, w) for _ in range(400)])
    # E[estimate^2] = mean ||J||_F^2; 400 probes of 32 samples give ~1% noise.
    torch.testing.assert_close(estimates.pow(2).mean(), exact.pow(2).mean(), rtol=0.03, atol=0)
    u = flow.standardize(w)
    probe = torch.randn_like(u)
    _, jvp = torch.func.jvp(lambda x: flow.couplings(x)[0], (u,), (probe,))
    _, _, estimate = _hutchinson_frobenius(flow, u, probe)
    torch.testing.assert_close(estimate, jvp.pow(2).sum(-1).mean().sqrt(), rtol=5e-3, atol=0)


def test_flow_training_gaussianises_a_skewed_distribution():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 4))
    x[:, 1] = x[:, 1] * 0.3 + 0.9 * x[:, 0] ** 2
    flow, history = train_flow(x[:1000], x[1000:], FlowTrainingConfig(max_epochs=40, patience=40, seed=0))
    z = flow(torch.from_numpy(x).float())[0].detach().numpy()
    from scipy.stats import skew

    assert abs(skew(z[:, 1])) < 0.5 * abs(skew(x[:, 1]))
    assert history["best_val_nll"] < history["val_nll"][0]


def test_flow_training_can_be_cancelled():
    x = np.random.default_rng(0).normal(size=(100, 3))
    with pytest.raises(Cancelled):
        train_flow(x[:80], x[80:], FlowTrainingConfig(max_epochs=50), progress=lambda d, t, m: d < 3)


# -- the model API on the small anny dataset ------------------------------------------------------
pytestmark_anny = pytest.mark.anny


@pytestmark_anny
def test_decode_and_sample_shapes_and_seeds(small_model):
    m = small_model
    s = m.sample(5, seed=3)
    assert s["vertices"].shape == (5, m.n_vertices, 3) and s["w_id"].shape == (5, m.rank_identity)
    torch.testing.assert_close(m.sample(5, seed=3)["vertices"], s["vertices"])
    assert not torch.allclose(m.sample(5, seed=4)["vertices"], s["vertices"])
    torch.testing.assert_close(m.decode(s["w_id"], s["w_ex"]), s["vertices"])
    heads = s["vertices"][:, :, 2].amax(1) - s["vertices"][:, :, 2].amin(1)
    assert torch.all((heads > 0.1) & (heads < 0.5))  # human heads, in metres


@pytestmark_anny
def test_radius_projection_puts_latents_on_the_chi_square_shell(small_model):
    from scipy.stats import chi2

    s = small_model.sample(8, seed=0, radius=0.95)
    for z in (s["z_id"], s["z_ex"]):
        np.testing.assert_allclose((z**2).sum(1).numpy(), chi2.ppf(0.95, z.shape[1]), rtol=1e-4)


@pytestmark_anny
def test_encode_decode_inversion_is_exact(small_model):
    s = small_model.sample(6, seed=1)
    z_id, z_ex = small_model.encode(s["w_id"], s["w_ex"])
    w_id, w_ex = small_model.to_bilinear(z_id, z_ex)
    torch.testing.assert_close(w_id, s["w_id"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w_ex, s["w_ex"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(z_id, s["z_id"], atol=1e-4, rtol=1e-4)


@pytestmark_anny
def test_editing_operations(small_model):
    m = small_model
    a, b = m.sample(1, seed=1), m.sample(1, seed=2)
    path = m.interpolate((a["z_id"], a["z_ex"]), (b["z_id"], b["z_ex"]), steps=5, mode="joint")
    torch.testing.assert_close(path[0], a["vertices"][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(path[-1], b["vertices"][0], atol=1e-5, rtol=1e-4)
    only_ex = m.interpolate((a["z_id"], a["z_ex"]), (b["z_id"], b["z_ex"]), steps=3, mode="expression")
    torch.testing.assert_close(only_ex[-1], m.decode(a["w_id"], b["w_ex"])[0], atol=1e-5, rtol=1e-4)
    neutral = m.neutralize(a["w_id"])
    torch.testing.assert_close(neutral, m.decode(a["w_id"], m.expression_code("neutral")))
    moved = m.transfer_expression(m.expression_code("jawOpen"), a["w_id"])
    half = m.cross_age_transfer(m.expression_code("jawOpen"), a["w_id"], intensity=0.5)
    torch.testing.assert_close(half, 0.5 * (neutral + moved), atol=1e-6, rtol=1e-5)
    assert torch.isfinite(m.log_prob(a["w_id"], a["w_ex"])).all()
    far = m.log_prob(a["w_id"] * 5, a["w_ex"] * 5)
    assert (far < m.log_prob(a["w_id"], a["w_ex"])).all()


@pytestmark_anny
@pytest.mark.parametrize("use_flows", [False, True])
@pytest.mark.xfail(
    strict=True,
    reason="known: on the small model of the coverage dataset this sample's bilinear fit stops in a "
    "local minimum 0.16 mm off even with no prior and no rigid motion (more LM iterations or rounds "
    "do not help); the start (mean identity, neutral expression) needs a better initialisation",
)
def test_fitting_recovers_a_known_face(small_model, use_flows):
    m = small_model
    s = m.sample(1, seed=1, radius=0.5)
    truth = s["vertices"][0].numpy()
    rot = np.array([[0.9950042, -0.0998334, 0.0], [0.0998334, 0.9950042, 0.0], [0.0, 0.0, 1.0]])
    scan = truth @ rot.T + [0.01, -0.02, 0.03]  # the scan arrives rotated and moved
    result = fit_scan(m, scan, use_flows=use_flows, prior_weight=1e-4)
    assert result.error_mm < 0.05
    np.testing.assert_allclose(result.rotation @ rot, np.eye(3), atol=1e-3)
    # The codes: w_id (x) w_ex is what the bilinear model identifies (codes trade a common scale).
    outer = np.outer(result.w_id, result.w_ex)
    true_outer = np.outer(s["w_id"][0].numpy(), s["w_ex"][0].numpy())
    np.testing.assert_allclose(outer, true_outer, atol=2e-3 * np.abs(true_outer).max())


@pytestmark_anny
def test_fitting_handles_partial_scans_and_cancel(small_model):
    m = small_model
    scan = m.sample(1, seed=6)["vertices"][0].numpy().astype(np.float64)
    weights = np.ones(m.n_vertices)
    weights[: m.n_vertices // 2] = 0.0
    scan[:10] = np.nan
    result = fit_scan(m, scan, weights, use_flows=False, prior_weight=1e-4)
    assert np.isnan(result.per_vertex_error_mm[:10]).all() and result.error_mm < 0.1
    with pytest.raises(Cancelled):
        fit_scan(m, scan, progress=lambda done, total, msg: False)
    with pytest.raises(FaceForgeError, match="shape"):
        fit_scan(m, scan[:-1])


@pytestmark_anny
def test_model_file_round_trip_and_damage(small_model, small_model_path, tmp_path):
    loaded = load_model(small_model_path)
    s = small_model.sample(2, seed=0)
    torch.testing.assert_close(loaded.decode(s["w_id"], s["w_ex"]), s["vertices"])
    info = loaded.info()
    assert info["units"] == "metres" and info["n_vertices"] == 4521 and len(info["expression_names"]) == 82
    assert len(info["topology_hash"]) == 16 and info["landmark_sets"] == {"ibug68": 68, "babyfm23": 23}
    broken = tmp_path / "broken.pt"
    broken.write_bytes(small_model_path.read_bytes()[:1000])
    with pytest.raises(FaceForgeError, match="not a FaceForge model file"):
        load_model(broken)
    # 64 bytes inverted a third of the way in: the archive's checksum catches it
    data = bytearray(small_model_path.read_bytes())
    third = len(data) // 3
    data[third : third + 64] = bytes(255 - b for b in data[third : third + 64])
    broken.write_bytes(bytes(data))
    with pytest.raises(FaceForgeError, match="is damaged"):
        load_model(broken)
    # a tensor changed and the archive rewritten with fresh checksums: the tensor checksum catches it
    payload = torch.load(small_model_path, weights_only=True)
    payload["state"]["core"] = payload["state"]["core"] * 1.001
    torch.save(payload, broken)
    with pytest.raises(FaceForgeError, match="tensor 'state/core' does not match its stored checksum"):
        load_model(broken)
    broken.write_bytes(b"")
    with pytest.raises(FaceForgeError, match=r"is empty \(0 bytes\)") as empty:
        load_model(broken)
    assert "weights_only" not in str(empty.value)
    with pytest.raises(FaceForgeError, match="no model file"):
        load_model(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(FaceForgeError, match="not a FaceForge model"):
        load_model(other)


@pytestmark_anny
def test_infant_model_and_cancelled_build(small_dataset):
    config = ModelBuildConfig(
        population="infant", flow=FlowTrainingConfig(max_epochs=3), expression_samples=50
    )
    model, report = build_model(small_dataset, config)
    assert model.metadata["population"] == "infant" and report["n_train_identities"] >= 2
    assert model.metadata["train_age_years"][1] < 3.0
    with pytest.raises(Cancelled):
        build_model(small_dataset, config, progress=lambda d, t, m: d < 1)
