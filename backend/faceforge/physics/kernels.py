"""Compiled per-element kernels (NVIDIA Warp, which FaceForge already has through anny).

The rotation step of the shape-targeting solve is one 3 x 3 polar decomposition per element per
iteration; numpy's batched SVD costs ~5 us per matrix, Warp's ``svd3`` kernel compiled for the CPU
about 1 us (and runs on the GPU when the arrays live there). The first call compiles the module
(seconds) and caches it under ``~/.cache/warp``; without Warp the torch SVD is used.
"""

from __future__ import annotations

import contextlib
import functools
import sys

import numpy as np

__all__ = ["polar_rotations_compiled"]


@functools.lru_cache(maxsize=1)
def _kernel():  # noqa: ANN202 - (warp module, kernel) or None
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout belongs to the protocol/JSON output
            import warp as wp

            wp.config.quiet = True
            wp.init()
    except Exception:  # noqa: BLE001 - any failure means: use the torch path
        return None

    @wp.kernel
    def polar(M: wp.array(dtype=wp.mat33d), R: wp.array(dtype=wp.mat33d)):  # noqa: ANN202
        i = wp.tid()
        U = wp.mat33d()
        s = wp.vec3d()
        V = wp.mat33d()
        wp.svd3(M[i], U, s, V)
        Q = U * wp.transpose(V)
        if wp.determinant(Q) < wp.float64(0.0):
            # flip the singular vector of the smallest singular value: the closest proper rotation
            k = 0
            if s[1] < s[k]:
                k = 1
            if s[2] < s[k]:
                k = 2
            D = wp.identity(n=3, dtype=wp.float64)
            D[k, k] = wp.float64(-1.0)
            Q = U * D * wp.transpose(V)
        R[i] = Q

    return wp, polar


def polar_rotations_compiled(M: np.ndarray) -> np.ndarray | None:
    """``(E, 3, 3)`` rotations R of M = R S (det R = +1), or None when Warp is unavailable."""
    k = _kernel()
    if k is None:
        return None
    wp, polar = k
    M = np.ascontiguousarray(M, dtype=np.float64)
    with contextlib.redirect_stdout(sys.stderr):
        Mw = wp.array(M, dtype=wp.mat33d, device="cpu")
        Rw = wp.empty(len(M), dtype=wp.mat33d, device="cpu")
        wp.launch(polar, dim=len(M), inputs=[Mw, Rw], device="cpu")
        return Rw.numpy()
