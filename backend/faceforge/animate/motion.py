"""From a generated motion to an animator's take: timing, apex hold, release, and shape-key values.

A Motion3DGAN motion is 30 samples from neutral to apex, equally spaced in arc length. A take
plays it over any number of frames, may hold the apex and release back to neutral, and is baked
onto a face's expression shape keys by sparse bounded least squares (values in [0, 1]), frame by
frame.
"""

from __future__ import annotations

import numpy as np

from faceforge.errors import FaceForgeError

__all__ = ["envelope", "project_to_keys", "retime"]


def retime(curve: np.ndarray, n_frames: int) -> np.ndarray:
    """Resample ``curve (S, ...)`` to ``n_frames`` samples by linear interpolation in time
    (first and last samples kept)."""
    curve = np.asarray(curve)
    if n_frames < 2:
        raise FaceForgeError(f"a motion needs at least 2 frames, got {n_frames}")
    if len(curve) < 2:
        raise FaceForgeError("a motion needs at least 2 samples to retime")
    source = np.linspace(0.0, 1.0, len(curve))
    target = np.linspace(0.0, 1.0, n_frames)
    index = np.clip(np.searchsorted(source, target, side="right") - 1, 0, len(curve) - 2)
    t = (target - source[index]) / (source[index + 1] - source[index])
    t = t.reshape(-1, *([1] * (curve.ndim - 1)))
    return ((1.0 - t) * curve[index] + t * curve[index + 1]).astype(curve.dtype)


def envelope(
    motion: np.ndarray,
    onset_frames: int,
    hold_frames: int = 0,
    release_frames: int = 0,
    intensity: float = 1.0,
) -> np.ndarray:
    """A take's frames: the neutral -> apex ``motion (S, ...)`` (displacements from neutral) played over
    ``onset_frames``, the apex held ``hold_frames``, then played backwards over ``release_frames``,
    all scaled by ``intensity``.

    Returns:
        ``(onset + hold + release, ...)`` displacements.
    """
    if onset_frames < 2 or hold_frames < 0 or release_frames < 0:
        raise FaceForgeError(
            f"onset needs >= 2 frames and hold/release >= 0 frames, "
            f"got {onset_frames}/{hold_frames}/{release_frames}"
        )
    if not np.isfinite(intensity) or intensity < 0:
        raise FaceForgeError(f"intensity must be a finite number >= 0, got {intensity}")
    parts = [retime(motion, onset_frames)]
    if hold_frames:
        parts.append(np.repeat(parts[0][-1:], hold_frames, axis=0))
    if release_frames:
        parts.append(retime(motion[::-1], release_frames + 1)[1:])
    return (np.concatenate(parts) * intensity).astype(np.float32)


def project_to_keys(
    key_displacements: np.ndarray,
    frame_displacements: np.ndarray,
    bounds: tuple[float, float] = (0.0, 1.0),
    weights: np.ndarray | None = None,
    sparsity: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """Shape-key values that best reproduce each frame's displacement, using few keys.

    Per frame, two bounded least-squares solves (values in ``bounds``) on the ``E x E`` normal
    matrix (same minimisers as on the ``3V`` rows): first with an L1 penalty ``sparsity`` and a
    small ridge, both relative to the mean diagonal of the normal matrix, which picks the keys the
    frame uses; then without any penalty on those keys only, so the values kept are not shrunk
    (the relaxed lasso). Without the first step, keys that barely move the mesh (eyeLookIn/Out move
    the head's skin by 0.07 mm) or that cancel each other (eyeLookUp + eyeLookDown) took arbitrary
    values: every take had them at 1.0.

    Args:
        key_displacements: ``(E, V, 3)`` each key's displacement from the basis (metres).
        frame_displacements: ``(T, V, 3)`` each frame's displacement from the basis (metres).
        bounds: value range of the keys, from 0 (a key the first step leaves out stays at 0).
        weights: optional ``(V,)`` non-negative vertex weights.
        sparsity: L1 weight of the key-choosing step (0: every key may be used).

    Returns:
        ``values (T, E)`` and the per-frame RMS residual ``(T,)`` in millimetres.
    """
    from scipy.optimize import lsq_linear

    keys = np.asarray(key_displacements, dtype=np.float64)
    frames = np.asarray(frame_displacements, dtype=np.float64)
    if keys.ndim != 3 or frames.ndim != 3 or keys.shape[1:] != frames.shape[1:] or keys.shape[2] != 3:
        raise FaceForgeError(
            f"keys (E, V, 3) and frames (T, V, 3) must share V, got {keys.shape} and {frames.shape}"
        )
    if not (np.all(np.isfinite(keys)) and np.all(np.isfinite(frames))):
        raise FaceForgeError("key and frame displacements must be finite")
    if bounds[0] != 0.0 or not bounds[1] > 0.0:
        raise FaceForgeError(f"key values range from 0 to a positive bound, got {bounds}")
    w = np.ones(keys.shape[1]) if weights is None else np.asarray(weights, dtype=np.float64)
    sqrt_w = np.sqrt(np.repeat(w, 3))
    a = keys.reshape(len(keys), -1).T * sqrt_w[:, None]  # (3V, E)
    b = frames.reshape(len(frames), -1).T * sqrt_w[:, None]  # (3V, T)
    gram = a.T @ a
    scale = max(float(np.trace(gram)) / len(gram), 1e-30)
    moment = a.T @ b  # (E, T)
    # |A v - b|^2 + c = |L^T v - L^-1 A^T b|^2 for gram = L L^T; a linear term l^T v shifts the rhs.
    choose = np.linalg.cholesky(gram + 1e-4 * scale * np.eye(len(gram)))
    chosen_rhs = np.linalg.solve(choose, moment - 0.5 * sparsity * scale)
    values = np.zeros((len(frames), len(keys)))
    for t in range(len(frames)):
        first = lsq_linear(choose.T, chosen_rhs[:, t], bounds=bounds, method="bvls").x
        used = np.flatnonzero(first > 1e-6 * bounds[1])
        if len(used) == 0:
            continue  # the neutral face: every key at 0
        sub = gram[np.ix_(used, used)]
        sub[np.diag_indices_from(sub)] += 1e-12 * scale  # keys may still be dependent
        factor = np.linalg.cholesky(sub)
        rhs = np.linalg.solve(factor, moment[used, t])
        solution = lsq_linear(factor.T, rhs, bounds=bounds, method="bvls")
        values[t, used] = np.clip(solution.x, *bounds)
    residual = np.tensordot(values, keys, axes=1) - frames  # (T, V, 3), unweighted
    rms_mm = np.sqrt(np.mean(np.sum(residual**2, axis=2), axis=1)) * 1e3
    return values.astype(np.float32), rms_mm.astype(np.float32)
