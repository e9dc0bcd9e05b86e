"""Dynamic neutral -> apex expression clips as ARKit weight curves.

Each clip of a CoMA label starts at the neutral face (all weights 0) and reaches the label's
apex combination. Timing varies per clip so that one label has many different motions: length
(10-80 frames), onset (a still lead-in), an ease-in/ease-out profile of random steepness,
per-action delays (actions of one expression do not start together), apex intensity, an
optional overshoot that settles back, and small smooth noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ClipTiming", "sample_clip_weights"]


@dataclass(frozen=True)
class ClipTiming:
    """Ranges of the random timing parameters of :func:`sample_clip_weights`.

    Attributes:
        min_frames, max_frames: clip length range (inclusive), frames.
        max_onset: largest still lead-in, as a fraction of the clip.
        max_delay: largest per-action start delay, as a fraction of the clip.
        intensity: apex intensity scale range.
        overshoot_probability: chance that a clip overshoots its apex and settles back.
        max_overshoot: largest overshoot, as a fraction of the apex weight.
        noise_std: standard deviation of the smooth weight noise.
    """

    min_frames: int = 10
    max_frames: int = 80
    max_onset: float = 0.2
    max_delay: float = 0.25
    intensity: tuple[float, float] = (0.7, 1.0)
    overshoot_probability: float = 0.3
    max_overshoot: float = 0.15
    noise_std: float = 0.01


def _ease(u: np.ndarray, steepness: float) -> np.ndarray:
    """Monotone ease-in/ease-out from 0 to 1 on ``u`` in [0, 1] (steepness >= 1)."""
    u = np.clip(u, 0.0, 1.0)
    a = u**steepness
    return a / (a + (1.0 - u) ** steepness)


def sample_clip_weights(
    apex: np.ndarray, rng: np.random.Generator, timing: ClipTiming = ClipTiming()
) -> np.ndarray:
    """One neutral -> apex clip.

    Args:
        apex: ``(K,)`` apex blendshape weights in [0, 1].
        rng: the random generator (seeded by the caller).
        timing: ranges of the timing parameters.

    Returns:
        ``(T, K)`` float32 weights in [0, 1]; row 0 is all zeros (neutral).
    """
    apex = np.asarray(apex, dtype=np.float64)
    n_frames = int(rng.integers(timing.min_frames, timing.max_frames + 1))
    u = np.linspace(0.0, 1.0, n_frames)
    onset = rng.uniform(0.0, timing.max_onset)
    active = np.flatnonzero(apex > 0)
    delays = rng.uniform(0.0, timing.max_delay, size=len(apex))
    steepness = rng.uniform(1.5, 4.0)
    scale = rng.uniform(*timing.intensity)
    overshoot = rng.uniform(0.0, timing.max_overshoot) if rng.random() < timing.overshoot_probability else 0.0
    weights = np.zeros((n_frames, len(apex)))
    apex_time = rng.uniform(0.5, 0.95)  # when the apex is reached; the rest of the clip holds it
    for k in active:
        start = onset + delays[k]
        rise_end = max(start + 0.15, apex_time)
        s = (u - start) / (rise_end - start)
        curve = _ease(s, steepness)
        if overshoot > 0:
            # A bump that peaks just after the rise and decays by the end of the clip.
            bump = np.exp(-0.5 * ((u - rise_end) / 0.07) ** 2) * (u > start)
            curve = curve + overshoot * bump
        weights[:, k] = scale * apex[k] * curve
    if timing.noise_std > 0 and n_frames > 2:
        noise = rng.normal(0.0, timing.noise_std, size=weights.shape)
        kernel = np.array([0.25, 0.5, 0.25])
        for k in active:
            weights[:, k] += np.convolve(noise[:, k], kernel, mode="same") * (weights[:, k] > 0)
    weights[0] = 0.0
    return np.clip(weights, 0.0, 1.0).astype(np.float32)
