"""Simulation-free actuation from a target expression (Generalized Physical Face Model, Sec. 4.1).

Given only the target skin, a deformation phi of the whole material space is chosen first and the
physical inputs are read off it:

1. phi extends the skin's deformation into the volume smoothly: its displacement u = phi - X
   minimizes the lattice Dirichlet energy u^T L u (the simulator's own matrix) plus a stiff fit of the
   embedded skin to the target, with the skull fixed (Eq. 7).
2. The jaw transform {R_jaw, t_jaw} is the Procrustes fit of the jaw bone points before and after
   that map (Sec. 4.1), and phi is solved again with the jaw nodes moved rigidly (Eq. 8).
3. A = R_phi^T grad(phi) per element (Eq. 10): the symmetric stretch of the polar decomposition of
   phi's mean deformation gradient in the element. With this A the stress of phi vanishes, so the
   simulation reproduces phi up to the discretization (one A per element against eight Gauss points).

Paralysis blends A toward the identity by a per-element weight (Fig. 7).
"""

from __future__ import annotations

import numpy as np

from faceforge.data.geometry import rigid_align
from faceforge.errors import FaceForgeError
from faceforge.physics.fem import polar_rotation
from faceforge.physics.solver import FaceSolver
from faceforge.physics.torch_ops import _Factor

__all__ = ["Actuation", "ActuationFitter", "blend_paralysis"]


class Actuation:
    """Physical inputs for one target: ``A (E, 3, 3)``, jaw ``rotation (3, 3)``, ``translation (3,)``,
    and the extension ``phi (N, 3)`` they came from."""

    def __init__(self, A: np.ndarray, rotation: np.ndarray, translation: np.ndarray, phi: np.ndarray) -> None:
        self.A = A
        self.rotation = rotation
        self.translation = translation
        self.phi = phi


def blend_paralysis(A: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``(1 - w) A + w I`` per element: ``weight (E,)`` in [0, 1], 1 = fully paralysed."""
    w = np.clip(np.asarray(weight, dtype=np.float64), 0.0, 1.0)[:, None, None]
    return (1.0 - w) * A + w * np.eye(3)[None]


class ActuationFitter:
    """Factorizations for :meth:`__call__`, built once per rest shape.

    Args:
        solver: the :class:`FaceSolver` of the material space (its L and constraint sets).
        skin_weight: weight of the skin fit relative to the mean diagonal of L (stiff by default).
    """

    def __init__(self, solver: FaceSolver, skin_weight: float = 10.0) -> None:
        m = solver.material
        self.solver = solver
        L = solver.L
        Ws = m.W_skin
        self.alpha = skin_weight * float(L.diagonal().mean())
        M = (L + self.alpha * (Ws.T @ Ws)).tocsr()
        n = m.n_nodes
        skull = np.zeros(n, dtype=bool)
        skull[m.skull_nodes] = True
        self.free1 = np.flatnonzero(~skull)
        self.skull = np.flatnonzero(skull)
        self.M = M
        self.factor1 = _Factor(M[self.free1][:, self.free1], solver.device)
        self.factor2 = _Factor(M[solver.free][:, solver.free], solver.device)
        self.M_free_fixed = M[solver.free][:, solver.fixed].tocsr()

    def __call__(self, target_skin: np.ndarray) -> Actuation:
        """Actuation for ``target_skin (S, 3)``: the simulated skin vertices' target positions (m)."""
        s = self.solver
        m = s.material
        target_skin = np.asarray(target_skin, dtype=np.float64)
        if target_skin.shape != (len(m.skin_vertices), 3) or not np.isfinite(target_skin).all():
            raise FaceForgeError(f"the target skin must be a finite ({len(m.skin_vertices)}, 3) array")
        # Smooth in the displacement u = phi - X (not in phi): the identity map costs nothing, so a
        # rest target gives phi = X exactly and free surfaces (mouth lining, borders) do not shrink.
        rhs = self.alpha * (m.W_skin.T @ (target_skin - m.W_skin @ m.nodes))
        u = np.zeros_like(m.nodes)
        f1 = self.free1
        u[f1] = self.factor1.solve(rhs[f1])  # skull displacement is zero
        R, t = rigid_align(m.jaw_points, m.W_jaw @ (m.nodes + u))
        is_jaw = np.isin(s.fixed, m.jaw_nodes)
        u[s.fixed] = 0.0
        jaw_nodes = s.fixed[is_jaw]
        u[jaw_nodes] = m.nodes[jaw_nodes] @ R.T + t - m.nodes[jaw_nodes]
        f2 = s.free
        u[f2] = self.factor2.solve(rhs[f2] - self.M_free_fixed @ u[s.fixed])
        x = m.nodes + u
        F = np.swapaxes((s.G_bar @ x).reshape(m.n_elements, 3, 3), 1, 2)  # mean gradient per element
        Rphi = polar_rotation(F, s.device)
        A = np.swapaxes(Rphi, 1, 2) @ F
        A = 0.5 * (A + np.swapaxes(A, 1, 2))
        return Actuation(A, R, t, x)
