"""SRVF shape space, Motion3DGAN, S2D-Dec and the motion model file."""

from __future__ import annotations

import numpy as np
import pytest
from faceforge.animate import dense, gan
from faceforge.animate import shape_space as ss
from faceforge.errors import FaceForgeError


def random_sphere_points(rng, n, shape=(29, 12)):
    points = rng.normal(size=(n, *shape))
    return np.stack([p / np.sqrt(ss.inner(p, p)) for p in points])


def test_srvf_decode_inverts_encode():
    rng = np.random.default_rng(0)
    curve = np.cumsum(rng.normal(size=(30, 12)), axis=0)
    q, start, length = ss.encode(curve)
    assert q.shape == (29, 12) and ss.inner(q, q) == pytest.approx(1.0)
    np.testing.assert_allclose(ss.decode(q, start, length), curve, atol=1e-10)
    # A still curve encodes with length 0 and decodes to its start.
    still = np.ones((30, 12))
    np.testing.assert_allclose(ss.decode(*ss.encode(still)), still)


def test_log_and_exp_are_inverse_and_safe_at_the_extremes():
    rng = np.random.default_rng(1)
    mu, q = random_sphere_points(rng, 2)
    v = ss.log_map(mu, q)
    assert abs(ss.inner(v, mu)) < 1e-10  # tangent
    np.testing.assert_allclose(ss.exp_map(mu, v), q, atol=1e-9)
    w = ss.project_tangent(mu, rng.normal(size=mu.shape))
    w *= 2.0 / np.sqrt(ss.inner(w, w))  # |w| = 2 < pi
    np.testing.assert_allclose(ss.log_map(mu, ss.exp_map(mu, w)), w, atol=1e-9)
    assert np.all(np.isfinite(ss.log_map(mu, mu))) and np.allclose(ss.log_map(mu, mu), 0.0)
    assert np.all(np.isfinite(ss.log_map(mu, -mu)))
    near = ss.exp_map(mu, 1e-9 * w)
    assert np.all(np.isfinite(ss.log_map(mu, near)))
    np.testing.assert_allclose(ss.exp_map(mu, np.zeros_like(mu)), mu)


def test_karcher_mean_of_symmetric_points_is_their_centre():
    rng = np.random.default_rng(2)
    (mu,) = random_sphere_points(rng, 1)
    directions = [ss.project_tangent(mu, rng.normal(size=mu.shape)) for _ in range(3)]
    directions = [0.4 * d / np.sqrt(ss.inner(d, d)) for d in directions]
    points = np.stack([ss.exp_map(mu, s * d) for d in directions for s in (1.0, -1.0)])
    np.testing.assert_allclose(ss.karcher_mean(points), mu, atol=1e-6)
    half = ss.geodesic(points[0], points[1], 0.5)
    np.testing.assert_allclose(half, mu, atol=1e-9)


def test_arc_length_resampling_gives_uniform_speed():
    t = np.linspace(0.0, 1.0, 50) ** 3  # slow start, fast end
    curve = np.stack([t, 2 * t], axis=1)
    out = ss.resample_arc_length(curve, 30)
    steps = np.linalg.norm(np.diff(out, axis=0), axis=1)
    np.testing.assert_allclose(steps, steps.mean(), rtol=1e-3)
    with pytest.raises(FaceForgeError):
        ss.normalize_clip(np.zeros((3, 68, 3)))


def test_clip_normalization_keeps_the_motion_local_and_its_size():
    """A jaw drop moves only the jaw landmarks once normalized; per-frame centring would move all."""
    rng = np.random.default_rng(0)
    neutral = rng.normal(0.0, 0.05, (68, 3))
    frames = np.repeat(neutral[None], 5, axis=0)
    frames[:, 48:68, 1] -= np.linspace(0.0, 0.02, 5)[:, None]  # the mouth falls 2 cm
    normalized, centroid, scale = ss.normalize_clip(frames)
    motion = (normalized - normalized[:1]) * scale
    np.testing.assert_allclose(motion, frames - frames[:1], atol=1e-12)
    np.testing.assert_allclose(centroid, neutral.mean(axis=0))
    assert np.abs(motion[:, :48]).max() == 0.0


@pytest.fixture(scope="module")
def tiny_gan(small_dataset):
    curves, labels, _ = gan.landmark_curves(small_dataset)
    model, history = gan.train_motion3dgan(curves, labels, gan.Motion3DGANConfig.tiny())
    return model, history


@pytest.mark.anny
def test_motion3dgan_generates_reproducible_motions_on_the_sphere(tiny_gan):
    model, history = tiny_gan
    assert len(model.labels) == 12 and np.all(np.isfinite(history["critic_loss"]))
    q = model.generate_srvf("high_smile", 4, seed=3)
    assert np.allclose([ss.inner(x, x) for x in q], 1.0, atol=1e-4)
    a, b = model.generate("high_smile", 2, seed=3), model.generate("high_smile", 2, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 30, 68, 3) and np.all(a[:, 0] == 0.0)
    assert not np.allclose(a, model.generate("high_smile", 2, seed=4))
    path = model.interpolate("high_smile", "mouth_open", 5, seed_a=3, seed_b=1)
    np.testing.assert_allclose(path[0], a[0], atol=1e-6)
    np.testing.assert_allclose(path[-1], model.generate("mouth_open", 1, seed=1)[0], atol=1e-6)
    # Every generated motion's apex lies the label's mean apex distance away (not its curve length).
    for label in ("high_smile", "mouth_open"):
        apex = np.linalg.norm(model.generate(label, 3, seed=5)[:, -1].reshape(3, -1), axis=1)
        np.testing.assert_allclose(apex, float(model.reaches[model.labels.index(label)]), rtol=1e-5)
    clone = gan.Motion3DGAN.from_payload(model.to_payload())
    np.testing.assert_array_equal(clone.generate("eyebrow", 1, seed=7), model.generate("eyebrow", 1, seed=7))
    with pytest.raises(FaceForgeError, match="unknown motion label"):
        model.generate("dancing")


def test_motion_amplitudes_compare_apex_and_locality_per_label():
    from faceforge.animate.evaluation import motion_amplitudes

    ramp = np.linspace(0.0, 1.0, 30)[:, None, None]
    mouth = np.zeros((30, 68, 3))
    mouth[:, 48:68, 1] = -0.02 * ramp[:, :, 0]  # the mouth opens, nothing else moves
    smeared = mouth.copy()
    smeared[:, 36:48, 1] = 0.01 * ramp[:, :, 0]  # ... and the eyes go up by half as much
    real = np.stack([mouth, mouth])
    figures = motion_amplitudes(real, ["mouth_open", "mouth_open"], {"mouth_open": 0.5 * smeared[None]}, 2.0)
    row = figures["mouth_open"]
    assert row["real_peak_mm"] == pytest.approx(40.0) and row["peak_ratio"] == pytest.approx(0.5)
    assert row["real_eye_to_mouth"] == 0.0
    assert row["generated_eye_to_mouth"] == pytest.approx(12 / 22 * 0.5)  # 12 of 22 eye landmarks move


@pytest.mark.anny
def test_classifier_and_frechet_distance(small_dataset):
    curves, labels, _ = gan.landmark_curves(small_dataset)
    motion = gan.motion_curves(curves)
    names = sorted(set(labels))
    ids = np.array([names.index(lab) for lab in labels])
    classifier = gan.train_classifier(motion, ids, len(names), epochs=15)
    assert gan.classifier_accuracy(classifier, motion, ids) > 0.5  # well above chance (1/12)
    features = gan.classifier_features(classifier, motion)
    assert gan.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    assert gan.frechet_distance(features, features + 1.0) > 1.0


@pytest.fixture(scope="module")
def head(small_dataset):
    return np.asarray(small_dataset.vertices[0, 0], np.float64), np.asarray(small_dataset.faces)


@pytest.mark.anny
def test_decimation_keeps_original_vertices_and_upsampling_is_barycentric(head):
    vertices, faces = head
    hierarchy = dense.build_hierarchy(vertices, faces, (4, 4))
    assert [len(v) for v in hierarchy.vertices] == [4521, 1130, 282]
    for level, kept in enumerate(hierarchy.kept):
        np.testing.assert_array_equal(hierarchy.vertices[level + 1], hierarchy.vertices[level][kept])
        up = hierarchy.up[level]
        assert up.min() >= 0.0
        np.testing.assert_allclose(np.asarray(up.sum(axis=1)).ravel(), 1.0)
        upsampled = up @ hierarchy.vertices[level + 1]
        np.testing.assert_allclose(upsampled[kept], hierarchy.vertices[level][kept])
        assert hierarchy.faces[level + 1].max() < len(kept)
    spiral = hierarchy.spirals[0]
    assert spiral.shape == (4521, 9) and np.all(spiral[:, 0] == np.arange(4521))
    ring = {int(w) for f in faces if 0 in f for w in f} - {0}
    assert ring <= set(spiral[0].tolist())


@pytest.mark.anny
def test_s2d_learns_and_round_trips(small_dataset):
    train, test = small_dataset.split("train"), small_dataset.split("test")
    model, history = dense.train_s2d(small_dataset, train, dense.S2DConfig.tiny())
    assert history["loss"][-1] < history["loss"][0]
    landmarks, target = dense.training_pairs(small_dataset, train, 0)
    error = np.linalg.norm(model.decode(landmarks) - target, axis=-1).mean()
    assert error < 0.9 * np.linalg.norm(target, axis=-1).mean()  # clearly better than no motion
    clone = dense.S2DModel.from_payload(model.to_payload())
    np.testing.assert_array_equal(clone.decode(landmarks[:5]), model.decode(landmarks[:5]))
    assert dense.evaluate(model, small_dataset, test)["mean_mm"] > 0
    with pytest.raises(FaceForgeError):
        model.decode(np.zeros((2, 10, 3)))


def test_pca_baseline_recovers_a_linear_model():
    rng = np.random.default_rng(3)
    basis = rng.normal(size=(5, 300))
    data = (rng.normal(size=(200, 5)) @ basis).reshape(200, 100, 3)
    landmarks = np.arange(0, 100, 3)[:34]
    baseline = dense.PCABaseline.fit(data, landmarks, n_components=5, ridge=1e-9)
    np.testing.assert_allclose(baseline.predict(data[:10, landmarks]), data[:10], atol=1e-4)


@pytest.mark.anny
def test_motion_model_file_takes_and_transfers(small_motion_model_path, small_dataset, tmp_path):
    from faceforge.animate.bundle import load_motion_model

    model = load_motion_model(small_motion_model_path)
    neutral = np.asarray(small_dataset.vertices[3, 0])
    motion = model.landmark_motion("high_smile", seed=2)
    take = model.take(neutral, motion, onset_frames=20, hold_frames=4, release_frames=6)
    assert take.shape == (30, 4521, 3) and np.abs(take[0]).max() < 1e-3
    blended = model.landmark_motion("high_smile", 2, "mouth_open", 1, blend=0.5)
    assert blended.shape == (30, 68, 3) and not np.allclose(blended, motion)
    clip = next(c for c in small_dataset.clips if c.identity == 3)
    moved = model.transfer(np.asarray(clip.frames), neutral)
    assert moved.shape == (len(clip.frames), 4521, 3)
    with pytest.raises(FaceForgeError, match="68 landmarks"):
        model.transfer(np.zeros((4, 10, 3)), neutral)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"nope")
    with pytest.raises(FaceForgeError, match="not a readable"):
        load_motion_model(broken)


def test_takes_move_the_landmarks_exactly_and_the_correction_stays_local(
    small_motion_model_path, small_dataset
):
    from faceforge.animate.bundle import load_motion_model
    from faceforge.animate.dense import CORRECTION_REACH
    from faceforge.animate.gan import to_face
    from faceforge.animate.motion import envelope

    model = load_motion_model(small_motion_model_path)
    neutral = np.asarray(small_dataset.vertices[3, 0], dtype=np.float64)
    motion = model.landmark_motion("eyebrow", seed=1)
    frames = envelope(to_face(motion, neutral[model.landmarks]), 12, 0, 0, 1.0).astype(np.float32)
    take = model.take(neutral.astype(np.float32), motion, onset_frames=12)
    # The landmarks move exactly as the generated motion says (the decoder alone smooths them).
    np.testing.assert_allclose(take[:, model.landmarks], frames, atol=1e-6)
    raw = model.s2d.decode(frames)
    assert np.abs(raw[:, model.landmarks] - frames).max() > 1e-4
    weights = model.s2d.correction_weights()
    np.testing.assert_allclose(weights[model.landmarks], np.eye(len(model.landmarks)), atol=1e-9)
    # Bounded: a convex mix of the residuals, so no vertex overshoots them.
    assert weights.min() >= 0.0 and weights.sum(axis=1).max() <= 1.0 + 1e-9
    residual = frames - raw[:, model.landmarks]
    correction = take - raw
    assert np.linalg.norm(correction, axis=2).max() <= np.linalg.norm(residual, axis=2).max() + 1e-6
    # Reach is measured on the decoder's template, the mesh the weights were made on.
    template = np.asarray(model.s2d.hierarchy.vertices[0], dtype=np.float64)
    far = (
        np.linalg.norm(template[:, None] - template[model.landmarks][None], axis=2).min(axis=1)
        > CORRECTION_REACH
    )
    assert far.sum() > 300 and np.abs(weights[far]).max() == 0.0  # the back of the head keeps still
    assert np.abs(take[:, far] - raw[:, far]).max() == 0.0


class _Rest:
    """The do-nothing decoder: every expression predicted as the neutral face."""

    def decode(self, landmark_disp: np.ndarray) -> np.ndarray:
        return np.zeros((len(landmark_disp), self.n_vertices, 3), np.float32)


@pytest.mark.slow
@pytest.mark.anny
def test_eval_animate_small_runs_every_stage_and_beats_the_trivial_answers(small_dataset, small_dataset_dir):
    """``faceforge eval animate --small`` as a user runs it (~70 s): both decoders beat predicting the
    neutral face, the classifier beats chance on real clips, and every stage is timed."""
    import json
    import subprocess
    import sys

    from faceforge.animate.evaluation import STAGES, format_table

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "faceforge",
            "eval",
            "animate",
            "--small",
            "--data",
            str(small_dataset_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert list(result["stage_seconds"]) == list(STAGES)
    test = np.sort(small_dataset.split("test"))
    rest = _Rest()
    rest.n_vertices = small_dataset.n_vertices
    static = np.arange(1, small_dataset.n_expressions)
    assert result["s2d_expression"]["held_out"] == [
        small_dataset.expression_names[int(e)] for e in static[::4]
    ]
    trivial_identity = dense.evaluate(rest, small_dataset, test)["mean_mm"]
    trivial_expression = dense.evaluate(rest, small_dataset, test, static[::4])["mean_mm"]
    # the small configuration's S2D-Dec is weak (0.67 mm against 0.89 for the neutral face); PCA
    # fitting recovers the linear blendshape data well (0.25 mm)
    for part, trivial in (("s2d_identity", trivial_identity), ("s2d_expression", trivial_expression)):
        assert result[part]["s2d"]["mean_mm"] < trivial
        assert result[part]["pca"]["mean_mm"] < 0.8 * trivial
    n_labels = len(set(gan.landmark_curves(small_dataset)[1]))
    assert result["accuracy"]["gt"] > 2.0 / n_labels  # chance is 1 / n_labels
    assert result["n_generated_per_label"] == max(10, -(-result["n_test_clips"] // n_labels))
    assert all(value >= 0.0 for value in result["fid"].values())
    table = "\n".join(format_table(result))
    assert "| held-out identities |" in table and "| Motion3DGAN |" in table


@pytest.mark.anny
def test_eval_takes_compares_dense_takes_with_real_clips(small_motion_model_path, small_dataset_dir, capsys):
    import json

    from faceforge.cli import main

    args = ["eval", "takes", "--data", str(small_dataset_dir), "--motion", str(small_motion_model_path)]
    assert main([*args, "--seeds", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result) == 12
    for row in result.values():
        assert row["n_clips"] >= 1 and row["n_takes"] == 2  # 2 test identities, 1 seed
        assert row["real_peak_mm"] > 0.5 and row["take_peak_mm"] > 0.0
        assert row["peak_ratio"] == pytest.approx(row["take_peak_mm"] / row["real_peak_mm"], rel=1e-6)
    # The real clips are local: mouth labels barely move the eyes (the measure must see that).
    assert result["mouth_open"]["real_eye_to_mouth"] < 0.3
    assert result["eyebrow"]["real_eye_to_mouth"] > 1.0
