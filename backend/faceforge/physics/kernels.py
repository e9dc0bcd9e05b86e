"""Compiled per-element kernels (NVIDIA Warp, which FaceForge already has through anny).

The rotation step of the shape-targeting solve is one 3 x 3 polar decomposition per element per
iteration. It runs here as Higham's scaled Newton iteration X <- (z X + X^-T / z) / 2 with
z = |det X|^(-1/3) (quadratic convergence to the orthogonal factor, which keeps the sign of det X),
warm-started from the element's rotation of the previous call: polar(M) = R0 polar(R0^T M), and
R0^T M is close to symmetric positive definite, so a few iterations reach machine precision.
Elements whose M is (nearly) singular or inverted take Warp's ``svd3`` with the sign fix instead.

:class:`ShapeTargetKernel` fuses the whole element loop of the energy: rotation, target
P = R* A, the element energy and the right-hand side 8 w P^T, reading and writing each element once.
On the CPU a launch runs on one thread; the element range is split over the cores with one launch per
thread (ctypes releases the GIL). With CUDA available the kernel runs on the GPU and only the
per-iteration arrays cross the bus. The first call compiles the module (seconds, cached under
``~/.cache/warp``). Without Warp, :class:`TorchShapeTargets` runs the same step batched in torch on a
CUDA device, and the solver's numpy reference path serves the CPU (:func:`element_step` picks).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = [
    "ShapeTargetKernel",
    "TorchShapeTargets",
    "element_step",
    "polar_rotations_compiled",
    "torch_polar",
    "warp_device",
]


@functools.lru_cache(maxsize=1)
def _kernels():  # noqa: ANN202 - (warp module, polar kernel, fused kernel) or None
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout belongs to the protocol/JSON output
            import warp as wp

            wp.config.quiet = True
            wp.init()
    except Exception:  # noqa: BLE001 - any failure means: use the torch path
        return None

    @wp.func
    def closest_rotation(M: wp.mat33d, R0: wp.mat33d) -> wp.mat33d:
        X = wp.transpose(R0) * M
        scale = wp.ddot(X, X)
        d = wp.determinant(X)
        if d > wp.float64(1e-9) * scale * wp.sqrt(scale):
            for _k in range(30):
                z = wp.pow(d, wp.float64(-1.0) / wp.float64(3.0))
                Xn = wp.float64(0.5) * (z * X + wp.transpose(wp.inverse(X)) / z)
                delta = Xn - X
                X = Xn
                d = wp.determinant(X)
                if wp.ddot(delta, delta) < wp.float64(1e-26):
                    break
            return R0 * X
        # (nearly) singular or inverted: the SVD, flipping the smallest singular direction
        U = wp.mat33d()
        s = wp.vec3d()
        V = wp.mat33d()
        wp.svd3(M, U, s, V)
        Q = U * wp.transpose(V)
        if wp.determinant(Q) < wp.float64(0.0):
            k = 0
            if s[1] < s[k]:
                k = 1
            if s[2] < s[k]:
                k = 2
            D = wp.identity(n=3, dtype=wp.float64)
            D[k, k] = wp.float64(-1.0)
            Q = U * D * wp.transpose(V)
        return Q

    @wp.kernel
    def polar(M: wp.array(dtype=wp.mat33d), R: wp.array(dtype=wp.mat33d)):  # noqa: ANN202
        i = wp.tid()
        R[i] = closest_rotation(M[i], R[i])

    @wp.kernel
    def shape_targets(  # noqa: ANN202
        FT: wp.array(dtype=wp.mat33d),
        A: wp.array(dtype=wp.mat33d),
        w: wp.array(dtype=wp.float64),
        R: wp.array(dtype=wp.mat33d),
        PT: wp.array(dtype=wp.mat33d),
        energy: wp.array(dtype=wp.float64),
    ):
        i = wp.tid()
        F = wp.transpose(FT[i])
        Ai = A[i]
        Ri = closest_rotation(F * wp.transpose(Ai), R[i])
        R[i] = Ri
        P = Ri * Ai
        wi = w[i]
        energy[i] = wi * (wp.float64(8.0) * wp.ddot(Ai, Ai) - wp.float64(16.0) * wp.ddot(P, F))
        PT[i] = wp.float64(8.0) * wi * wp.transpose(P)

    return wp, polar, shape_targets


def warp_device(prefer_cuda: bool = True) -> str | None:
    """The Warp device the kernels can run on (``"cuda:0"`` when Warp sees a GPU and it is wanted,
    else ``"cpu"``), or None without Warp. Which device is *wanted* is
    :mod:`faceforge.device`'s decision; :func:`element_step` asks with the solver's device."""
    k = _kernels()
    if k is None:
        return None
    wp = k[0]
    if prefer_cuda and wp.is_cuda_available():
        return "cuda:0"
    return "cpu"


def _threads() -> int:
    return max(1, min(os.cpu_count() or 1, 16))


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="faceforge-kernel")


def _launch_split(wp, kernel, n: int, arrays: list, device: str) -> None:  # noqa: ANN001
    """Launch ``kernel`` over ``n`` elements; on the CPU one slice per core, in parallel."""
    chunks = _threads() if device == "cpu" and n >= 4096 else 1
    if chunks == 1:
        wp.launch(kernel, dim=n, inputs=arrays, device=device)
        return
    bounds = np.linspace(0, n, chunks + 1).astype(int)

    def run(k: int) -> None:
        a, b = int(bounds[k]), int(bounds[k + 1])
        wp.launch(kernel, dim=b - a, inputs=[x[a:b] for x in arrays], device=device)

    list(_pool().map(run, range(chunks)))


def polar_rotations_compiled(M: np.ndarray, R0: np.ndarray | None = None) -> np.ndarray | None:
    """``(E, 3, 3)`` rotations R of M = R S (det R = +1), or None when Warp is unavailable.

    Args:
        M: ``(E, 3, 3)`` matrices. R0: ``(E, 3, 3)`` rotations to start from (identity by default).
    """
    k = _kernels()
    if k is None:
        return None
    wp, polar, _ = k
    M = np.ascontiguousarray(M, dtype=np.float64)
    R0 = np.broadcast_to(np.eye(3), M.shape) if R0 is None else R0
    with contextlib.redirect_stdout(sys.stderr):
        Mw = wp.array(M, dtype=wp.mat33d, device="cpu")
        Rw = wp.array(np.ascontiguousarray(R0, dtype=np.float64), dtype=wp.mat33d, device="cpu")
        _launch_split(wp, polar, len(M), [Mw, Rw], "cpu")
        return Rw.numpy()


class ShapeTargetKernel:
    """The fused element step of the shape-targeting energy, with per-element rotation warm starts.

    Args:
        weights: ``(E,)`` element weights w_e = mu V_e / 8.
        device: a Warp device (see :func:`warp_device`).

    After :meth:`set_actuation`, call with ``FT (E, 3, 3)`` (row j of element e holds column j of its
    mean deformation gradient Fbar_e, the layout of ``G_bar @ x``); returns
    ``(energy_terms (E,), PT8 (E, 3, 3))`` with energy_e = w_e <P_e, 8 P_e - 16 Fbar_e> and
    PT8_e = 8 w_e P_e^T, P_e = R*_e A_e, R*_e = polar(Fbar_e A_e^T). The rotations found are kept as
    the next call's starting points.
    """

    def __init__(self, weights: np.ndarray, device: str = "cpu") -> None:
        k = _kernels()
        if k is None:
            raise RuntimeError("Warp is not available")
        self._wp, _, self._kernel = k
        wp = self._wp
        self.device = device
        self.n = len(weights)
        with contextlib.redirect_stdout(sys.stderr):
            w = np.ascontiguousarray(weights, dtype=np.float64)
            self._w = wp.array(w, dtype=wp.float64, device=device)
            self._R = wp.array(np.tile(np.eye(3), (self.n, 1, 1)), dtype=wp.mat33d, device=device)
            self._PT = wp.empty(self.n, dtype=wp.mat33d, device=device)
            self._e = wp.empty(self.n, dtype=wp.float64, device=device)
        self._A = None

    def set_actuation(self, A: np.ndarray) -> None:
        """Upload the actuations ``A (E, 3, 3)`` the following calls use."""
        with contextlib.redirect_stdout(sys.stderr):
            A = np.ascontiguousarray(A, dtype=np.float64)
            self._A = self._wp.array(A, dtype=self._wp.mat33d, device=self.device)

    def __call__(self, FT: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Energy terms and right-hand side for ``FT``; the arrays are valid until the next call."""
        if self._A is None:
            raise RuntimeError("set_actuation() first")
        wp = self._wp
        with contextlib.redirect_stdout(sys.stderr):
            F = wp.array(np.ascontiguousarray(FT, dtype=np.float64), dtype=wp.mat33d, device=self.device)
            arrays = [F, self._A, self._w, self._R, self._PT, self._e]
            _launch_split(wp, self._kernel, self.n, arrays, self.device)
            return self._e.numpy(), self._PT.numpy()


def _cofactor(X):  # noqa: ANN001, ANN202 - torch (..., 3, 3) -> (..., 3, 3)
    """Cofactor matrix (det X) X^-T, from cross products of the columns."""
    import torch

    c0, c1, c2 = X[..., :, 0], X[..., :, 1], X[..., :, 2]
    columns = [torch.cross(c1, c2, dim=-1), torch.cross(c2, c0, dim=-1), torch.cross(c0, c1, dim=-1)]
    return torch.stack(columns, -1)


def torch_polar(M, R0=None, iterations: int = 12):  # noqa: ANN001, ANN201 - torch tensors
    """``(E, 3, 3)`` rotations of ``M`` (torch, any device): the scaled Newton iteration of
    :func:`polar_rotations_compiled` run batched, warm-started from ``R0``; (nearly) singular or
    inverted matrices by SVD with the sign fix."""
    import torch

    X = M if R0 is None else R0.transpose(-1, -2) @ M
    scale = (X * X).sum(dim=(-1, -2))
    det = torch.linalg.det(X)
    good = det > 1e-9 * scale * scale.sqrt()
    Xg = torch.where(good[:, None, None], X, torch.eye(3, dtype=X.dtype, device=X.device))
    for _ in range(iterations):
        C = _cofactor(Xg)
        d = (Xg[..., :, 0] * C[..., :, 0]).sum(-1)  # det by the first column's cofactors
        z = d.abs().pow(-1.0 / 3.0)[:, None, None]
        Xn = 0.5 * (z * Xg + C / (d[:, None, None] * z))
        delta = float((Xn - Xg).abs().max())
        Xg = Xn
        if delta < 1e-13:
            break
    R = Xg if R0 is None else R0 @ Xg
    if not bool(good.all()):
        bad = ~good
        U, _, Vh = torch.linalg.svd(M[bad])
        D = torch.ones(U.shape[:-1], dtype=M.dtype, device=M.device)
        D[:, 2] = torch.sign(torch.linalg.det(U @ Vh))
        R[bad] = (U * D[:, None, :]) @ Vh
    return R


class TorchShapeTargets:
    """:class:`ShapeTargetKernel`'s element step in torch (batched), for a CUDA device without Warp."""

    def __init__(self, weights: np.ndarray, device: str = "cuda") -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.n = len(weights)
        self._w = torch.as_tensor(np.asarray(weights, dtype=np.float64), device=self.device)
        self._R = torch.eye(3, dtype=torch.float64, device=self.device).repeat(self.n, 1, 1)
        self._A = None

    def set_actuation(self, A: np.ndarray) -> None:
        self._A = self._torch.as_tensor(np.asarray(A, dtype=np.float64), device=self.device)

    def terms(self, FT):  # noqa: ANN001, ANN201 - torch (E, 3, 3) on this device -> (terms, PT8)
        """Energy terms ``(E,)`` and ``8 w P^T (E, 3, 3)`` as tensors on this device."""
        if self._A is None:
            raise RuntimeError("set_actuation() first")
        F = FT.transpose(1, 2)
        A = self._A
        self._R = torch_polar(F @ A.transpose(1, 2), self._R)
        P = self._R @ A
        w = self._w
        terms = w * (8.0 * (A * A).sum(dim=(1, 2)) - 16.0 * (P * F).sum(dim=(1, 2)))
        return terms, (8.0 * w)[:, None, None] * P.transpose(1, 2)

    def __call__(self, FT: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        FT_d = self._torch.as_tensor(np.ascontiguousarray(FT, dtype=np.float64), device=self.device)
        terms, PT8 = self.terms(FT_d)
        return terms.cpu().numpy(), PT8.contiguous().cpu().numpy()


def element_step(weights: np.ndarray, device: str = "cpu") -> ShapeTargetKernel | TorchShapeTargets | None:
    """The fastest element step on ``device`` (the solver's resolved ``"cpu"`` or ``"cuda"``, see
    :func:`faceforge.device.resolve_device`): on ``"cpu"`` Warp's CPU kernel, else None (the caller's
    numpy reference path); on ``"cuda"`` Warp's CUDA kernel, else torch on the GPU. Never a GPU for
    ``"cpu"``, even when one is present."""
    if device == "cpu":
        return None if warp_device(prefer_cuda=False) is None else ShapeTargetKernel(weights, "cpu")
    if device != "cuda":
        raise ValueError(f"element_step runs on 'cpu' or 'cuda', got {device!r}")
    if warp_device(prefer_cuda=True) == "cuda:0":
        return ShapeTargetKernel(weights, "cuda:0")
    return TorchShapeTargets(weights, "cuda")
