"""Square-root velocity functions (SRVF) of landmark motions and their unit hypersphere (Eq. 1, 4).

A motion is a curve ``x: [0, 1] -> R^D`` (D = 68 x 3 landmark coordinates). Its SRVF is
``q(t) = x'(t) / sqrt(|x'(t)|)``; ``|q|^2 = |x'|``, so under the L2([0, 1]) inner product
``<a, b> = (1 / S) sum_{s, d} a_sd b_sd`` the squared norm of ``q`` is the curve's length. Scaled to
norm 1, every motion is a point of the unit hypersphere; shapes of motions compare by geodesic
distance there, and the log/exp maps at the Karcher mean give a flat (tangent) space to learn in.

Discretisation: a curve sampled at ``n`` equally spaced times has its velocity on the ``n - 1``
intervals (forward differences, spacing ``1 / (n - 1)``); decoding integrates those exactly, so
``decode(encode(x)) == x`` up to floating point. A clip is centred and scaled by its neutral frame
(:func:`normalize_clip`), no rotation.
"""

from __future__ import annotations

import numpy as np
import torch

from faceforge.errors import FaceForgeError

__all__ = [
    "N_SAMPLES",
    "decode",
    "encode",
    "exp_map",
    "exp_map_torch",
    "geodesic",
    "inner",
    "karcher_mean",
    "log_map",
    "normalize_clip",
    "project_tangent",
    "project_tangent_torch",
    "resample_arc_length",
]

N_SAMPLES = 30
_EPS = 1e-12


def normalize_clip(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre and scale a clip by its first (neutral) frame: every frame minus that frame's
    centroid, divided by that frame's Frobenius norm (one similarity for the whole clip).

    One transform for all frames keeps the motion as it is, only resized. Normalizing each frame by
    its own centroid and norm (as the authors' code does) turns a jaw drop into the eyes moving up
    (the centroid falls) and shrinks large expressions (the norm grows): on FaceForge's dataset it
    gave mouth_open 3.4 mm of eye-region motion instead of 0.55 mm and cut its apex from 22.6 mm to
    15.7 mm, which the generator then learned.

    Args:
        landmarks: ``(T, L, 3)`` positions, frame 0 neutral.

    Returns:
        ``normalized (T, L, 3)``, the neutral centroid ``(3,)`` and its Frobenius norm (input units).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[2] != 3 or not np.all(np.isfinite(landmarks)):
        raise FaceForgeError(f"landmarks must be finite (T, L, 3), got {landmarks.shape}")
    centroid = landmarks[0].mean(axis=0)
    scale = float(np.linalg.norm(landmarks[0] - centroid))
    if scale < _EPS:
        raise FaceForgeError("the neutral frame has all its landmarks at one point")
    return (landmarks - centroid) / scale, centroid, scale


def resample_arc_length(curve: np.ndarray, n: int = N_SAMPLES) -> np.ndarray:
    """``(n, D)`` samples of ``curve (T, D)`` equally spaced in arc length (uniform speed).

    A curve that does not move (zero length) is resampled uniformly in time.
    """
    curve = np.asarray(curve, dtype=np.float64)
    if curve.ndim != 2 or len(curve) < 2:
        raise FaceForgeError(f"a curve needs shape (T >= 2, D), got {curve.shape}")
    steps = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    cumulative = np.concatenate([[0.0], np.cumsum(steps)])
    if cumulative[-1] < _EPS:
        cumulative = np.linspace(0.0, 1.0, len(curve))
    else:
        cumulative /= cumulative[-1]
    # Strictly increasing parameter (still segments get a tiny share) so interpolation is defined.
    cumulative = cumulative + np.linspace(0.0, 1e-9, len(curve))
    cumulative /= cumulative[-1]
    target = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(target, cumulative, curve[:, d]) for d in range(curve.shape[1])], axis=1)


def inner(a: np.ndarray, b: np.ndarray) -> float:
    """L2([0, 1]) inner product of two SRVFs ``(S, D)``: ``sum(a * b) / S``."""
    return float(np.sum(np.asarray(a) * np.asarray(b)) / len(a))


def encode(curve: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """SRVF of a curve sampled at ``n`` equal times.

    Returns:
        ``q (n - 1, D)`` on the unit sphere, the start point ``(D,)`` and the length (the factor
        that :func:`decode` needs to give the curve back).
    """
    curve = np.asarray(curve, dtype=np.float64)
    if curve.ndim != 2 or len(curve) < 2:
        raise FaceForgeError(f"a curve needs shape (n >= 2, D), got {curve.shape}")
    velocity = np.diff(curve, axis=0) * (len(curve) - 1)  # spacing 1 / (n - 1)
    speed = np.linalg.norm(velocity, axis=1, keepdims=True)
    q = velocity / np.sqrt(np.maximum(speed, _EPS))
    length = inner(q, q)  # = mean speed = curve length on [0, 1]
    if length < _EPS:
        # A still curve: any unit direction encodes it with length 0.
        q = np.zeros_like(q)
        q[:, 0] = 1.0
        return q, curve[0].copy(), 0.0
    return q / np.sqrt(length), curve[0].copy(), float(length)


def decode(q: np.ndarray, start: np.ndarray, length: float) -> np.ndarray:
    """The curve ``(S + 1, D)`` of an SRVF ``q (S, D)``: ``start + integral of q |q|``, with ``q``
    rescaled so that the curve has ``length``."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.sqrt(max(inner(q, q), _EPS)) * np.sqrt(max(length, 0.0))
    velocity = q * np.linalg.norm(q, axis=1, keepdims=True)
    steps = velocity / len(q)
    return np.concatenate([np.asarray(start, dtype=np.float64)[None], start + np.cumsum(steps, axis=0)])


def project_tangent(mu: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Component of ``v`` in the tangent space of the unit sphere at ``mu``."""
    return v - inner(v, mu) * mu


def log_map(mu: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Tangent vector at ``mu`` pointing to ``q`` with length the geodesic distance ``theta``.

    Safe near ``theta = 0`` (``theta / sin theta -> 1``) and near ``pi`` (where the direction is
    undefined, the residual direction is used; exactly antipodal points give 0).
    """
    cos_theta = float(np.clip(inner(mu, q), -1.0, 1.0))
    theta = float(np.arccos(cos_theta))
    w = q - cos_theta * mu
    norm = np.sqrt(max(inner(w, w), 0.0))
    if norm < 1e-12:
        return np.zeros_like(q)
    return theta * w / norm


def exp_map(mu: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The point at geodesic distance ``|v|`` from ``mu`` in direction ``v`` (tangent at ``mu``)."""
    norm = np.sqrt(max(inner(v, v), 0.0))
    sinc = 1.0 - norm**2 / 6.0 if norm < 1e-4 else np.sin(norm) / norm
    point = np.cos(norm) * mu + sinc * v
    return point / np.sqrt(max(inner(point, point), _EPS))


def geodesic(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """The point at fraction ``t`` of the great-circle arc from ``q0`` to ``q1``."""
    return exp_map(q0, t * log_map(q0, q1))


def karcher_mean(qs: np.ndarray, iterations: int = 100, tol: float = 1e-8, step: float = 1.0) -> np.ndarray:
    """Karcher (intrinsic) mean of points ``(N, S, D)`` on the sphere, by gradient descent:
    ``mu <- exp_mu(step * mean_i log_mu(q_i))`` from the normalized extrinsic mean."""
    qs = np.asarray(qs, dtype=np.float64)
    if qs.ndim != 3 or len(qs) < 1:
        raise FaceForgeError(f"karcher_mean needs points (N, S, D), got {qs.shape}")
    mu = qs.mean(axis=0)
    mu = mu / np.sqrt(inner(mu, mu)) if inner(mu, mu) > _EPS else qs[0]
    for _ in range(iterations):
        gradient = np.mean([log_map(mu, q) for q in qs], axis=0)
        if np.sqrt(inner(gradient, gradient)) < tol:
            break
        mu = exp_map(mu, step * gradient)
    return mu


def project_tangent_torch(mu: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Batched :func:`project_tangent`: ``mu (S, D)``, ``v (B, S, D)``."""
    s = mu.shape[0]
    return v - (torch.sum(v * mu, dim=(1, 2), keepdim=True) / s) * mu


def exp_map_torch(mu: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Batched :func:`exp_map` with a smooth sinc: ``mu (S, D)``, ``v (B, S, D)`` tangent."""
    s = mu.shape[0]
    norm = torch.sqrt(torch.clamp(torch.sum(v * v, dim=(1, 2), keepdim=True) / s, min=0.0))
    small = norm < 1e-4
    sinc = torch.where(
        small, 1.0 - norm**2 / 6.0, torch.sin(norm) / torch.where(small, torch.ones_like(norm), norm)
    )
    return torch.cos(norm) * mu + sinc * v
