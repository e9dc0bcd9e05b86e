"""Shape-targeting FEM on a regular hex lattice (Generalized Physical Face Model, Eq. 2-3).

Energy (units: J, with the shear modulus mu in Pa and volumes in m^3):

    E(x) = sum_e mu V_e / 8 sum_q || F_eq(x) - R*_e A_e ||_F^2,    R*_e = polar(Fbar_e A_e^T)

with 8 Gauss points q per hex, F_eq = X_e^T B_q the deformation gradient at q (X_e the element's
8 x 3 node positions, B_q the 8 x 3 shape-function gradients), and one rotation per element (Eq. 3)
that minimizes the element's energy: sum_q ||F_q - R A||^2 = const - 2 tr(R^T sum_q F_q A^T), so
R* = polar(Fbar A^T) with Fbar the mean of F_q. (Not polar(F): that minimizes ||F - R||, and the
two differ whenever A is not a multiple of the identity.)

Because every element of a regular lattice has the same B_q, the quadratic part is
sum_e (mu V_e / 8) X_e^T K0 X_e with one 8 x 8 matrix K0 = sum_q B_q B_q^T: the global matrix L
depends neither on A nor on the bones' pose and is the same for x, y and z.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "HexQuadrature",
    "assemble_laplacian",
    "deformation_gradients",
    "element_energy_terms",
    "optimal_rotations",
    "polar_rotation",
]

_G = 1.0 / np.sqrt(3.0)
_CORNERS = np.array([[i, j, k] for k in (0, 1) for j in (0, 1) for i in (0, 1)], dtype=np.float64)


class HexQuadrature:
    """Shape-function gradients of a trilinear hex of edge ``h`` at its 8 Gauss points.

    Attributes:
        B: ``(8 q, 8 a, 3)`` d N_a / d X at Gauss point q (1/m).
        B_sum: ``(8, 3)`` sum over q of B (used by the right-hand side).
        K0: ``(8, 8)`` sum_q B_q B_q^T.
    """

    def __init__(self, h: float) -> None:
        g = 0.5 + 0.5 * np.array([-_G, _G])
        points = np.array([[a, b, c] for c in g for b in g for a in g])  # (8, 3) in [0, 1]^3
        B = np.zeros((8, 8, 3))
        for q, t in enumerate(points):
            for a, c in enumerate(_CORNERS):
                f = np.where(c == 1, t, 1.0 - t)  # 1D factors
                df = np.where(c == 1, 1.0, -1.0)
                B[q, a] = [df[0] * f[1] * f[2], f[0] * df[1] * f[2], f[0] * f[1] * df[2]]
        self.h = float(h)
        self.points = points
        self.B = B / h
        self.B_sum = self.B.sum(axis=0)
        self.K0 = np.einsum("qai,qbi->ab", self.B, self.B)


def assemble_laplacian(
    elements: np.ndarray, weights: np.ndarray, quad: HexQuadrature, n_nodes: int
) -> sp.csr_matrix:
    """``L (N, N)`` = sum_e w_e S_e^T K0 S_e, with ``w_e`` = mu V_e / 8 (J m^-2 per unit F^2).

    ``E(x) = sum_d x_d^T L x_d - 2 sum_d x_d^T b_d + const`` for each coordinate column d.
    """
    rows = np.repeat(elements, 8, axis=1).ravel()
    cols = np.tile(elements, (1, 8)).ravel()
    vals = (weights[:, None] * quad.K0.ravel()[None]).ravel()
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_nodes, n_nodes))


def deformation_gradients(x: np.ndarray, elements: np.ndarray, quad: HexQuadrature) -> np.ndarray:
    """``(E, 8 q, 3, 3)`` deformation gradients F_eq = X_e^T B_q of node positions ``x (N, 3)``."""
    X = x[elements]  # (E, 8, 3)
    return np.einsum("eai,qaj->eqij", X, quad.B, optimize=True)


def polar_rotation(M: np.ndarray, device: str = "cpu") -> np.ndarray:
    """``(..., 3, 3)`` rotation closest to each ``M`` (the R of M = R S, det R = +1). Stacks of
    matrices take the batched Newton iteration on ``device="cuda"``
    (:func:`~faceforge.physics.kernels.torch_polar`), else Warp's compiled kernel; torch's batched
    SVD otherwise."""
    if M.ndim == 3 and len(M) > 64:
        from faceforge.physics.kernels import polar_rotations_compiled, torch_polar

        if device == "cuda":
            Mt = torch.from_numpy(np.ascontiguousarray(M, dtype=np.float64)).to(device)
            return torch_polar(Mt).cpu().numpy()
        R = polar_rotations_compiled(M)
        if R is not None:
            return R
    t = torch.from_numpy(np.ascontiguousarray(M))
    U, _, Vh = torch.linalg.svd(t)
    det = torch.linalg.det(U @ Vh)
    D = torch.ones(t.shape[:-1], dtype=t.dtype)
    D[..., 2] = torch.sign(det)
    D[..., 2][det == 0] = 1.0
    return ((U * D[..., None, :]) @ Vh).numpy()


def optimal_rotations(F_mean: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``(E, 3, 3)`` R*_e = argmin_R sum_q ||F_eq - R A_e||^2 = polar(Fbar_e A_e^T)."""
    return polar_rotation(F_mean @ np.swapaxes(A, -1, -2))


def element_energy_terms(
    x: np.ndarray, elements: np.ndarray, weights: np.ndarray, A: np.ndarray, quad: HexQuadrature
) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy, gradient and targets at node positions ``x (N, 3)``.

    Returns:
        ``(E, grad (N, 3), P (E, 3, 3))``: the energy in J, its gradient in N (J/m), and the
        per-element targets P_e = R*_e A_e.
    """
    F = deformation_gradients(x, elements, quad)
    R = optimal_rotations(F.mean(axis=1), A)
    P = R @ A
    diff = F - P[:, None]
    energy = float(np.einsum("e,eqij,eqij->", weights, diff, diff, optimize=True))
    g_el = 2.0 * weights[:, None, None] * np.einsum("eqij,qaj->eai", diff, quad.B, optimize=True)
    grad = np.zeros_like(x)
    np.add.at(grad, elements.ravel(), g_el.reshape(-1, 3))
    return energy, grad, P


def rhs_from_targets(
    P: np.ndarray, elements: np.ndarray, weights: np.ndarray, quad: HexQuadrature, n: int
) -> np.ndarray:
    """``b (N, 3)`` with ``E = sum_d x_d^T L x_d - 2 x_d^T b_d + c`` for fixed targets ``P (E, 3, 3)``."""
    b_el = weights[:, None, None] * np.einsum("aj,eij->eai", quad.B_sum, P, optimize=True)
    b = np.zeros((n, 3))
    np.add.at(b, elements.ravel(), b_el.reshape(-1, 3))
    return b
