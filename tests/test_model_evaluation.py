"""`faceforge eval model`: PCA baselines, Gaussianity statistics, distortion and the whole protocol."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from faceforge.data.geometry import apply_rigid, rigid_align
from faceforge.model.evaluation import (
    METHODS,
    build_pca_model,
    evaluate_models,
    fit_pca,
    format_report,
    gaussianity_statistics,
    held_out_faces,
    mesh_distortion,
    nearest_face_distance,
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


@pytest.mark.anny
@pytest.mark.slow
def test_evaluate_models_small_end_to_end(small_dataset_dir, tmp_path):
    results = evaluate_models(small_dataset_dir, tmp_path, small=True, seed=0, quiet=True)
    assert results["paper"] == {"babyflow_mm": 0.928, "babyfm_mm": 1.567, "ratio": 0.59}
    assert json.loads((tmp_path / "results.json").read_text())["fit_error_mm"] == results["fit_error_mm"]
    for population in ("infant", "all"):
        r = results[population]
        assert r["skipped"] is False
        errors = r["fit_error_mm"]
        assert set(errors) == set(METHODS) == set(r["fit_error_std_mm"]) == set(r["prior_weights"])
        assert all(math.isfinite(v) and v > 0 for v in errors.values())
        assert r["ratio_flow_vs_pca"] == pytest.approx(errors["bilinear_flow"] / errors["babyfm_pca"])
        assert r["ratio_flow_vs_tensor_pca"] == pytest.approx(errors["bilinear_flow"] / errors["tensor_pca"])
        assert r["n_test_faces"] > 0 and len(r["per_face_error_mm"]["bilinear"]) == r["n_test_faces"]
        assert set(r["per_region_mm"]) == {"mouth", "eyes", "nose"}
        assert r["ranks"]["tensor_pca"] == r["ranks"]["rank_identity"] + r["ranks"]["rank_expression"]
        for space in ("identity", "expression"):
            g = r["latent_gaussianity"][space]
            assert g["reproduction_mismatch"] < 1e-3  # the flows' training codes were reproduced
            assert g["before_flow"]["dims"] == g["after_flow"]["dims"] == g["dims"]
        for key in ("with_flows", "without_flows", "reference_test_faces"):
            assert r["samples"][key]["nearest_train_mm"]["mean"] > 0
        assert all((tmp_path / p.split("/")[-1]).is_file() for p in r["plots"].values())
    assert results["fit_error_mm"] == results["infant"]["fit_error_mm"]
    assert results["ratio_flow_vs_pca"] == results["infant"]["ratio_flow_vs_pca"]
    report = format_report(results)
    assert "BabyFM-style PCA" in report and "0.59" in report
