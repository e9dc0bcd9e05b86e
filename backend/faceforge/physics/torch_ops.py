"""The torch side of the quasi-static solve: the factored system matrix and the energy on a device.

:class:`_Factor` factors the constant SPD matrix 2 L_ff once per rest shape (CHOLMOD through
``cholespy``) and solves with it on the CPU or a CUDA device; :class:`_DeviceEnergy` evaluates
:meth:`faceforge.physics.solver.FaceSolver.energy` with torch sparse products and the batched element
step (:class:`~faceforge.physics.kernels.TorchShapeTargets`) on a device.
"""

from __future__ import annotations

import warnings
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch

from faceforge.physics.kernels import TorchShapeTargets
from faceforge.physics.material_space import MaterialSpace

__all__ = ["RestOperators"]


class RestOperators(Protocol):
    """What the device energy reads of a :class:`~faceforge.physics.solver.FaceSolver`."""

    material: MaterialSpace
    weights: np.ndarray
    L: sp.csr_matrix
    G_bar: sp.csr_matrix
    G_bar_T: sp.csr_matrix


class _Factor:
    """A factored SPD matrix (CHOLMOD via cholespy) that solves (n, k) right-hand sides.

    On ``device="cuda"`` CHOLMOD still factors on the CPU; cholespy then solves on the GPU (its
    triangular solves, analysed once), and numpy right-hand sides are moved there and back."""

    def __init__(self, M: sp.spmatrix, device: str = "cpu") -> None:
        from cholespy import CholeskySolverD, MatrixType

        M = sp.coo_matrix(M)
        self.n = M.shape[0]
        self.device = device
        self._solver = CholeskySolverD(
            self.n,
            torch.from_numpy(M.row.astype(np.int32)).to(device),
            torch.from_numpy(M.col.astype(np.int32)).to(device),
            torch.from_numpy(M.data.astype(np.float64)).to(device),
            MatrixType.COO,
        )

    def solve_tensor(self, b: torch.Tensor) -> torch.Tensor:
        """Solve for a contiguous ``(n, k)`` float64 tensor on this factor's device."""
        if b.shape[1] > 128:  # cholespy's GPU solve takes at most 128 right-hand sides at once
            blocks = [b[:, k : k + 128].contiguous() for k in range(0, b.shape[1], 128)]
            return torch.cat([self.solve_tensor(block) for block in blocks], 1)
        x = torch.zeros_like(b)
        self._solver.solve(b, x)
        return x

    def solve(self, b: np.ndarray) -> np.ndarray:
        b = np.ascontiguousarray(b, dtype=np.float64)
        flat = b.ndim == 1
        bt = torch.from_numpy(b[:, None] if flat else b).to(self.device).contiguous()
        out = self.solve_tensor(bt).cpu().numpy()
        return out[:, 0] if flat else out


class _DeviceEnergy:
    """The energy and gradient of :meth:`~faceforge.physics.solver.FaceSolver.energy` evaluated on a
    CUDA device (torch sparse products and the batched element step); node positions go up and the
    gradient comes back."""

    def __init__(self, solver: RestOperators, device: str) -> None:
        def csr(M: sp.spmatrix) -> torch.Tensor:
            M = sp.csr_matrix(M)
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                return torch.sparse_csr_tensor(
                    torch.from_numpy(M.indptr.astype(np.int64)),
                    torch.from_numpy(M.indices.astype(np.int64)),
                    torch.from_numpy(M.data.astype(np.float64)),
                    size=M.shape,
                    device=device,
                    check_invariants=False,  # built from a valid scipy CSR
                )

        self.device = device
        self.n_elements = solver.material.n_elements
        self.G_bar = csr(solver.G_bar)
        self.G_bar_T = csr(solver.G_bar_T)
        self.L = csr(solver.L)
        self.step = TorchShapeTargets(solver.weights, device)
        self._A: np.ndarray | None = None

    def __call__(self, x: np.ndarray, A: np.ndarray, external: np.ndarray) -> tuple[float, np.ndarray]:
        if self._A is not A:
            self.step.set_actuation(A)
            self._A = A
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(self.device)
        ext = torch.from_numpy(np.ascontiguousarray(external, dtype=np.float64)).to(self.device)
        FT = (self.G_bar @ xt).reshape(self.n_elements, 3, 3)
        Lx = self.L @ xt
        terms, PT8 = self.step.terms(FT)
        b = self.G_bar_T @ PT8.reshape(-1, 3)
        e = (xt * Lx).sum() + terms.sum() - (ext * xt).sum()
        g = 2.0 * (Lx - b) - ext
        return float(e), g.cpu().numpy()
