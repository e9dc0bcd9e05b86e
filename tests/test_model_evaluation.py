"""`faceforge eval model`: PCA baselines, Gaussianity statistics, distortion and the whole protocol.

The protocol runs on a synthetic dataset that is exactly bilinear (identity x expression, mirror
symmetric so that augmentation adds nothing), so the answers are known: the bilinear model fits a
held-out face to the noise level, a PCA with fewer components than the data's rank cannot.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from faceforge.data.dataset import FaceDataset
from faceforge.data.geometry import apply_rigid, rigid_align
from faceforge.model.evaluation import (
    METHODS,
    build_pca_model,
    evaluate_models,
    fit_pca,
    fitting_summary,
    format_report,
    gaussianity_statistics,
    held_out_faces,
    mesh_distortion,
    nearest_face_distance,
    pca_baselines,
)
from scipy.spatial.transform import Rotation


# -- fast unit tests on synthetic data ----------------------------------------------------------
def synthetic_faces(n=12, n_v=60, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_v, 3)) * 0.05
    return (base + rng.normal(size=(n, n_v, 3)) * 0.004).astype(np.float32)


def test_pca_reproduces_a_training_face_after_a_rigid_motion():
    faces = synthetic_faces()
    model = build_pca_model(faces, n_components=100)
    assert model.n_components == len(faces) - 1
    np.testing.assert_allclose(model.components @ model.components.T, np.eye(model.n_components), atol=1e-8)
    assert model.explained == pytest.approx(1.0, abs=1e-6)
    rotation = Rotation.from_rotvec([0.03, -0.05, 0.02]).as_matrix()
    scan = apply_rigid(faces[3].astype(np.float64), rotation, np.array([0.004, -0.002, 0.003]))
    fitted, errors = fit_pca(model, scan, prior_weight=1e-9)
    assert errors.shape == (faces.shape[1],)
    assert errors.max() < 1e-3  # mm
    np.testing.assert_allclose(fitted, scan, atol=1e-6)


def test_pca_prior_pulls_the_fit_to_the_mean_face():
    faces = synthetic_faces(seed=1)
    model = build_pca_model(faces, n_components=5)
    assert model.n_components == 5 and np.all(np.diff(model.variances) <= 0)
    scan = faces[0].astype(np.float64)
    weak = fit_pca(model, scan, prior_weight=1e-6)[1].mean()
    strong_fit, strong = fit_pca(model, scan, prior_weight=1.0 - 1e-12)
    assert weak < strong.mean()
    mean_face = model.mean.reshape(-1, 3)
    rotation, translation = rigid_align(strong_fit, mean_face)
    np.testing.assert_allclose(apply_rigid(strong_fit, rotation, translation), mean_face, atol=1e-6)
    with pytest.raises(Exception, match="prior_weight"):
        fit_pca(model, scan, prior_weight=1.0)


def test_randomized_and_exact_pca_agree():
    rng = np.random.default_rng(2)
    basis = rng.normal(size=(8, 90)) * np.geomspace(1.0, 0.05, 8)[:, None]
    x = (rng.normal(size=(600, 8)) @ basis * 1e-3).reshape(600, 30, 3)
    exact = build_pca_model(x, 6)
    randomized = build_pca_model(np.concatenate([x, x]), 6)  # > 1000 faces: randomized SVD
    overlap = np.abs(np.sum(exact.components * randomized.components, axis=1))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-4)


def test_gaussianity_statistics_tell_gaussian_from_skewed_codes():
    rng = np.random.default_rng(0)
    gaussian = gaussianity_statistics(rng.normal(size=(3000, 6)))
    skewed = gaussianity_statistics(rng.exponential(size=(3000, 6)))
    assert gaussian["test"] == "normaltest" and gaussian["dims"] == 6 and gaussian["n"] == 3000
    assert gaussian["mean_abs_skew"] < 0.15 and gaussian["mean_abs_excess_kurtosis"] < 0.3
    assert gaussian["fraction_rejected"] <= 0.5
    assert skewed["mean_abs_skew"] > 1.5 and skewed["mean_abs_excess_kurtosis"] > 3.0
    assert skewed["fraction_rejected"] == 1.0
    assert len(skewed["skew"]) == 6 and all(s > 1.0 for s in skewed["skew"])
    small = gaussianity_statistics(rng.normal(size=(12, 3)))
    assert small["test"] == "shapiro" and 0.0 <= small["fraction_rejected"] <= 1.0
    constant = gaussianity_statistics(np.ones((30, 2)))
    assert constant["skew"] == [None, None] and constant["mean_abs_skew"] is None
    assert gaussianity_statistics(rng.normal(size=(2, 2)))["fraction_rejected"] is None


def test_mesh_distortion_measures_strain_and_flips():
    reference = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float64)
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    scaled = reference * 2.0
    flipped = reference.copy()
    flipped[3] = [-1.0, -1.0, 0.0]  # folds the second triangle over
    out = mesh_distortion(np.stack([reference, scaled, flipped]), reference, faces)
    np.testing.assert_allclose(out["edge_strain"][:2], [0.0, math.log(2.0)], atol=1e-12)
    np.testing.assert_allclose(out["flipped_fraction"], [0.0, 0.0, 0.5])


def test_nearest_face_distance_finds_the_closest_mesh():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(4, 5, 20, 3)) * 0.01  # (rows, faces per row, V, 3)
    samples = bank[[2, 0], [3, 1]] + 0.0001  # 0.1 mm off two bank faces along each axis
    distances = nearest_face_distance(samples, bank, candidates=3)
    np.testing.assert_allclose(distances, np.sqrt(3) * 0.1, rtol=1e-5)
    only_first = nearest_face_distance(samples[:1], bank, rows=np.array([0, 1]))
    assert only_first[0] > 1.0


# -- on the small anny dataset ------------------------------------------------------------------
@pytest.mark.anny
def test_held_out_faces_are_seeded_per_identity(small_dataset):
    ids = small_dataset.split("test")
    faces = held_out_faces(small_dataset, ids, per_identity=6, clip_apex=2, seed=0)
    assert len(faces) == 6 * len(ids) and faces.scans.shape == (len(faces), small_dataset.n_vertices, 3)
    assert sum("/clip:" in label for label in faces.labels) == 2 * len(ids)
    assert not any(label.endswith("/neutral") for label in faces.labels)
    again = held_out_faces(small_dataset, ids[::-1][:1], per_identity=6, clip_apex=2, seed=0)
    last = faces.identities == ids[::-1][0]
    np.testing.assert_array_equal(again.scans, faces.scans[last])
    moved = np.linalg.norm(faces.scans - faces.canonical, axis=2).mean(axis=1)
    assert np.all(moved > 0) and np.all(moved < 0.02)


# -- known answers on an exactly bilinear synthetic dataset ---------------------------------------
def _symmetric_field(rng, half, scale):
    field = rng.normal(size=(half, 3)) * scale
    mirrored = field * [-1.0, 1.0, 1.0]
    return np.concatenate([field, mirrored])


def bilinear_dataset(n_id=20, n_ex=7, half=40, r_id=3, r_ex=3, noise_mm=0.0, adults_only=False, seed=0):
    """Faces x(i, e) = T + u_i A + v_e B + (u_i x v_e) C: identity-mode rank 1 + r_id, expression-mode
    rank 1 + r_ex, so (1 + r_id)(1 + r_ex) affine dimensions; vertex k mirrors vertex k + half."""
    rng = np.random.default_rng(seed)
    half_template = rng.uniform([0.005, -0.05, -0.05], [0.06, 0.05, 0.05], size=(half, 3))
    template = np.concatenate([half_template, half_template * [-1.0, 1.0, 1.0]])
    n_v = 2 * half
    A = np.stack([_symmetric_field(rng, half, 0.003) for _ in range(r_id)])
    B = np.stack([_symmetric_field(rng, half, 0.0006) for _ in range(r_ex)])
    C = np.stack([[_symmetric_field(rng, half, 0.0003) for _ in range(r_ex)] for _ in range(r_id)])
    u = rng.normal(size=(n_id, r_id))
    v = np.concatenate([np.zeros((1, r_ex)), rng.normal(size=(n_ex - 1, r_ex))])  # expression 0: neutral
    x = (
        template[None, None]
        + np.einsum("ia,avc->ivc", u, A)[:, None]
        + np.einsum("eb,bvc->evc", v, B)[None]
        + np.einsum("ia,eb,abvc->ievc", u, v, C)
    )
    x += rng.normal(size=x.shape) * noise_mm * 1e-3
    ids = np.arange(n_id)
    n_train = n_id - 4
    return FaceDataset(
        faces=np.array([rng.choice(n_v, 3, replace=False) for _ in range(3 * n_v)]),
        identity_names=[f"id{i}" for i in ids],
        expression_names=["neutral"] + [f"expression{k}" for k in range(1, n_ex)],
        vertices=x.astype(np.float32),
        mirror=np.concatenate([np.arange(half, n_v), np.arange(half)]),
        regions={"mouth": np.arange(0, 10), "eyes": np.arange(10, 20), "nose": np.arange(20, 30)},
        splits={"train": ids[:n_train], "val": ids[n_train : n_train + 2], "test": ids[n_train + 2 :]},
        identity_info=[{"age_years": 30.0 if adults_only or i % 2 else 1.0} for i in ids],
        source="synthetic bilinear",
    )


def test_a_pca_with_the_data_rank_fits_exactly_and_one_fewer_cannot():
    data = bilinear_dataset()
    train, test = data.split("train"), data.split("test")
    full_rank = (1 + 3) * (1 + 3) - 1  # affine dimensions of the bilinear faces around their mean
    models = {k: pca_baselines(data, train, k) for k in (full_rank, full_rank - 1)}
    scans = [data.mesh(int(i), e).astype(np.float64) for i in test for e in (0, 3, 6)]
    errors = {}
    for k, baselines in models.items():
        tensor_pca = baselines["tensor_pca"]
        assert tensor_pca.n_components == k and tensor_pca.n_train == len(train) * data.n_expressions
        errors[k] = np.array([fit_pca(tensor_pca, s, prior_weight=1e-12)[1].mean() for s in scans])
    assert errors[full_rank].max() < 1e-4  # mm: the held-out faces lie in the training span (float32)
    assert errors[full_rank - 1].mean() > 1e-3  # one dimension short: off by the smallest mode
    assert errors[full_rank - 1].mean() > 30 * errors[full_rank].max()
    # BabyFM-style: one face per identity, so at most n_train - 1 components
    babyfm = models[full_rank]["babyfm_pca"]
    assert babyfm.n_train == len(train) and babyfm.n_components == min(full_rank, len(train) - 1)


class _Ranks:
    rank_identity, rank_expression = 2, 3


def test_fitting_summary_known_answers():
    faces = synthetic_faces(n=8, n_v=6)
    models = {"babyfm_pca": build_pca_model(faces, 5), "tensor_pca": build_pca_model(faces, 7),
              "bilinear": _Ranks()}  # fmt: skip
    # two test faces, six vertices: method m has error (m + 1) mm on face 0 and 3 (m + 1) mm on face 1,
    # except on vertex 0 (the mouth) where it is 0
    per_vertex = {}
    for k, m in enumerate(METHODS):
        errors = np.array([[1.0] * 6, [3.0] * 6]) * (k + 1)
        errors[:, 0] = 0.0
        per_vertex[m] = errors
    out = fitting_summary(per_vertex, {"mouth": np.array([0]), "nose": np.array([4, 5])}, models)
    for k, m in enumerate(METHODS):
        face_means = np.array([5 / 6, 15 / 6]) * (k + 1)
        assert out["fit_error_mm"][m] == pytest.approx(face_means.mean())
        assert out["fit_error_std_mm"][m] == pytest.approx(face_means.std())
        assert out["per_face_error_mm"][m] == pytest.approx(list(face_means))
        assert out["per_region_mm"]["mouth"][m] == 0.0
        assert out["per_region_mm"]["nose"][m] == pytest.approx(2.0 * (k + 1))
    assert "eyes" not in out["per_region_mm"]  # a region the dataset lacks is left out
    assert out["ratio_flow_vs_pca"] == pytest.approx(4 / 1)
    assert out["ratio_flow_vs_tensor_pca"] == pytest.approx(4 / 2)
    assert out["ratio_bilinear_vs_pca"] == pytest.approx(3 / 1)
    assert out["ranks"]["bilinear_total"] == 5 and out["ranks"]["babyfm_pca"] == 5
    assert out["ranks"]["tensor_pca"] == 7 and out["ranks"]["tensor_pca_train_faces"] == 8


def test_report_shows_the_results_not_constants():
    """Every figure of the report comes from the results it is given (here: made-up numbers)."""
    errors = dict(zip(METHODS, (2.0, 1.6, 0.9, 0.5), strict=True))
    population = {
        "skipped": False, "n_test_faces": 12, "n_test_identities": 2, "n_train_identities": 9,
        "ranks": {"babyfm_pca": 8, "tensor_pca": 11, "rank_identity": 4, "rank_expression": 7},
        "fit_error_mm": errors, "fit_error_std_mm": dict.fromkeys(METHODS, 0.125),
        "per_region_mm": {"mouth": dict.fromkeys(METHODS, 1.234)},
        "prior_weights": dict.fromkeys(METHODS, 0.05), "ratio_flow_vs_pca": 0.25,
        "ratio_flow_vs_tensor_pca": 0.5 / 1.6, "notes": ["a note"], "plots": {},
        "latent_gaussianity": {s: {"n_codes": 30, "dims": 4, "before_flow": {
            "mean_abs_skew": 1.5, "mean_abs_excess_kurtosis": 2.25, "fraction_rejected": 0.75, "test": "t"},
            "after_flow": {"mean_abs_skew": 0.125, "mean_abs_excess_kurtosis": 0.5, "fraction_rejected": 0.0,
                           "test": "t"}} for s in ("identity", "expression")},
        "samples": {"n": 3, **{k: {"nearest_train_mm": {"mean": 4.5, "std": 0.5},
                                   "to_mean_face_mm": {"mean": 7.0}, "edge_strain": {"mean": 0.0123},
                                   "flipped_fraction": {"mean": 0.01}}
                               for k in ("with_flows", "without_flows", "reference_test_faces")}},
        "out_of_distribution": {
            "n_faces": 6, "n_identities": 1, "fit_error_mm": dict.fromkeys(METHODS, 0.75),
            "fit_error_std_mm": dict.fromkeys(METHODS, 0.0625),
            "ratio_ood_vs_test": dict.fromkeys(METHODS, 1.5),
            "identity_log_likelihood": {"test": {"mean": -12.5}, "ood_test": {"mean": -37.5}},
        },
    }  # fmt: skip
    paper = {"babyflow_mm": 1.111, "babyfm_mm": 2.222, "ratio": 0.33}
    report = format_report(
        {"all": population, "infant": {"skipped": True, "note": "no infants"}, "paper": paper}
    )
    rows = {line.split(" | ")[1]: line for line in report.splitlines() if line.startswith("| all ages |")}
    assert "| 2.000 ± 0.125 | 1.234 | – | – | 1.00 |" in rows["BabyFM-style PCA (1 face / identity)"]
    assert "| 4 × 7 | 0.05 | 0.500 ± 0.125 | 1.234 | – | – | 0.25 |" in rows["bilinear + flows (BabyFlow)"]
    assert rows["bilinear + flows (BabyFlow)"].endswith("| 0.750 ± 0.062 | 1.50 |")  # out of distribution
    assert "6 faces of 1 `ood_test` identities" in report and "-12.5 (test) vs -37.5 nats" in report
    assert (
        "| 1.600 ± 0.125 |" in rows["PCA of the full id x expr tensor"]
        and "| 0.80 |" in rows["PCA of the full id x expr tensor"]
    )
    assert "2.222 → 1.111" in report and "**0.25** (paper 0.33)" in report and "**0.31**" in report
    assert "| infant (< 3 y) | skipped: no infants |" in report and "note: a note" in report
    assert "1.50 → 0.12 | 2.25 → 0.50 | 75% → 0% (t)" in report
    assert "| 4.500 ± 0.500 | 7.000 | 0.0123 | 1.000% |" in report


@pytest.mark.slow
def test_evaluate_models_finds_the_known_winner(tmp_path, monkeypatch):
    """On exactly bilinear faces (0.01 mm noise) the bilinear fits reach the noise level; linear PCAs
    with the same number of components (8 < 15, the data's rank) cannot. No infant has a model
    (all identities are adults): that population is skipped and "all" is the protocol's."""
    import faceforge.data.build as data_build

    data = bilinear_dataset(n_id=16, noise_mm=0.01, adults_only=True)
    monkeypatch.setenv("FACEFORGE_CACHE", str(tmp_path / "cache"))  # never reuse a user's model
    monkeypatch.setattr(data_build, "load_built_dataset", lambda directory: data)
    monkeypatch.setattr(data_build, "read_manifest", lambda directory: {"content_hash": "synthetic"})
    results = evaluate_models(tmp_path / "data", tmp_path / "out", small=True, seed=0, quiet=True)
    assert results["infant"]["skipped"] is True and results["protocol_population"] == "all"
    r = results["all"]
    errors = r["fit_error_mm"]
    assert errors["bilinear"] < 0.05 and errors["bilinear_flow"] < 0.05  # mm: the noise level
    best_bilinear = max(errors["bilinear"], errors["bilinear_flow"])
    assert min(errors["babyfm_pca"], errors["tensor_pca"]) > max(0.3, 10 * best_bilinear)
    assert min(errors, key=errors.get) in ("bilinear", "bilinear_flow")
    assert r["ratio_flow_vs_pca"] < 0.1 and results["ratio_flow_vs_pca"] == r["ratio_flow_vs_pca"]
    assert (r["ranks"]["rank_identity"], r["ranks"]["rank_expression"]) == (4, 4)  # 1 + r_id, 1 + r_ex
    curve = r["prior_selection_val_mm"]["bilinear"]  # validation error per prior weight
    assert r["prior_weights"]["bilinear"] == 1e-3  # exact data: the weakest prior of the grid fits best
    assert min(curve, key=curve.get) == "0.001" and curve["0.1"] > curve["0.001"]
    for space in ("identity", "expression"):
        assert r["latent_gaussianity"][space]["reproduction_mismatch"] < 1e-3
    assert r["n_test_faces"] == 2 * 2  # small: 2 faces for each of the 2 test identities
    assert (
        json.loads((tmp_path / "out" / "results.json").read_text())["fit_error_mm"] == results["fit_error_mm"]
    )
    assert all(Path(p).is_file() for p in r["plots"].values())
    report = format_report(results)
    assert f"{errors['bilinear_flow']:.3f} ±" in report
