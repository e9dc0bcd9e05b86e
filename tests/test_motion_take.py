"""Timing and shape-key projection of takes (faceforge.animate.motion)."""

from __future__ import annotations

import numpy as np
import pytest
from faceforge.animate.motion import envelope, project_to_keys, retime
from faceforge.errors import FaceForgeError


def test_retime_keeps_the_ends_and_is_linear_in_time():
    curve = np.linspace(0.0, 1.0, 30)[:, None] ** 2
    out = retime(curve, 90)
    assert out.shape == (90, 1) and out[0, 0] == 0.0 and out[-1, 0] == pytest.approx(1.0)
    assert np.all(np.diff(out[:, 0]) >= 0)
    np.testing.assert_allclose(retime(curve, 30), curve)
    with pytest.raises(FaceForgeError):
        retime(curve, 1)


def test_envelope_holds_the_apex_and_releases_to_neutral():
    motion = np.linspace(0.0, 1.0, 30)[:, None, None] * np.ones((30, 68, 3))
    take = envelope(motion, onset_frames=12, hold_frames=5, release_frames=8, intensity=0.5)
    assert take.shape == (25, 68, 3)
    assert take[0].max() == 0.0 and take[11].min() == pytest.approx(0.5)
    np.testing.assert_allclose(take[12:17], 0.5)
    assert take[-1].max() == pytest.approx(0.0, abs=1e-7) and np.all(np.diff(take[17:, 0, 0]) <= 0)
    with pytest.raises(FaceForgeError):
        envelope(motion, onset_frames=1)
    with pytest.raises(FaceForgeError):
        envelope(motion, onset_frames=5, intensity=float("nan"))


def test_projection_recovers_bounded_key_values_and_reports_the_rest():
    rng = np.random.default_rng(0)
    keys = rng.normal(0.0, 1e-3, (20, 300, 3))
    values = rng.uniform(0.0, 1.0, (40, 20))
    values[values < 0.4] = 0.0
    frames = np.tensordot(values, keys, axes=1)
    got, rms = project_to_keys(keys, frames)
    np.testing.assert_allclose(got, values, atol=1e-4)
    assert rms.max() < 1e-5
    # Beyond the bounds: values clip at 1 and the residual says how far the keys fall short (mm).
    got, rms = project_to_keys(keys, 3.0 * frames)
    assert got.max() <= 1.0 and got.min() >= 0.0 and rms.mean() > 0.1
    with pytest.raises(FaceForgeError):
        project_to_keys(keys, frames[:, :10])


def test_projection_leaves_empty_and_cancelling_keys_at_zero():
    """Keys that barely move the mesh, or that cancel each other, must not take arbitrary values
    to chase what the keys cannot reproduce."""
    rng = np.random.default_rng(1)
    keys = rng.normal(0.0, 1e-3, (12, 300, 3))
    keys[9] = 1e-5 * rng.normal(size=(300, 3))  # a nearly empty key (eyeLookIn on a head without eyeballs)
    keys[11] = -keys[10] + 1e-5 * rng.normal(size=(300, 3))  # a pair that nearly cancels
    values = rng.uniform(0.2, 1.0, (20, 12))
    values[:, 9:] = 0.0
    frames = np.tensordot(values, keys, axes=1)
    got, rms = project_to_keys(keys, frames)
    np.testing.assert_allclose(got, values, atol=1e-4)  # exact data: exact values, no shrinkage
    noisy = frames + rng.normal(0.0, 3e-4, frames.shape)  # what no key mix reproduces
    got, rms = project_to_keys(keys, noisy)
    np.testing.assert_array_equal(got[:, 9], 0.0)
    assert got[:, 10:].max() < 0.05  # each of the pair is a real key: a little of one may help
    np.testing.assert_allclose(got[:, :9], values[:, :9], atol=0.05)
    dense, dense_rms = project_to_keys(keys, noisy, sparsity=0.0)
    assert np.abs(dense[:, 9:]).max() > 0.2  # without the key-choosing step they chase the noise
    assert rms.mean() < 1.01 * dense_rms.mean()
