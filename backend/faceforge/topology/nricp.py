"""Optimal-step non-rigid ICP (Amberg, Romdhani & Vetter 2007) with landmarks, masks and normals.

Every template vertex ``i`` carries an affine map ``X_i`` (4 x 3); the deformed vertex is
``[v_i, 1] X_i``. For a stiffness ``alpha`` the energy

    E(X) = alpha^2 |(M (x) G) X|^2 + |W (D X - U)|^2 + beta^2 |D_L X - U_L|^2

(``M`` the edge-vertex incidence, ``G = diag(1, 1, 1, gamma)``, ``U`` the closest character points,
``W`` the data weights, ``D_L``/``U_L`` the landmarks) is quadratic, so each step is one sparse
solve. ``alpha`` falls along a schedule: stiff steps place the head, soft steps fit the details.
Data weights are the template's region weights times 0 where the closest point is too far or its
normal disagrees by more than 60 degrees (the inside of the mouth or an eye socket is never
matched to the outside of a lip or lid). Coordinates are scaled by the template's size so that
``gamma = 1`` balances rotation and translation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from faceforge.data.geometry import edge_list
from faceforge.progress import ProgressCallback, report
from faceforge.topology.surface import Surface, vertex_normals

__all__ = ["NonRigidICP", "RegistrationResult"]

#: Stiffness schedule (dimensionless, see the module docstring) and iterations per step.
STIFFNESS = (50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5)
ITERATIONS_PER_STEP = 3


@dataclass
class RegistrationResult:
    """Registered template vertices and how well they fit.

    Attributes:
        vertices: ``(V, 3)`` registered positions (input frame).
        distances: ``(V,)`` distance of each vertex to the target surface (input units).
        weights: ``(V,)`` data weights of the last step (0 = not matched).
    """

    vertices: np.ndarray
    distances: np.ndarray
    weights: np.ndarray


class NonRigidICP:
    """Register a template mesh onto a target surface.

    Args:
        vertices: ``(V, 3)`` template start positions (already aligned to the target).
        faces: ``(F, 3)`` template triangles (only these vertices' edges regularise).
        weights: ``(V,)`` region data weights in [0, 1].
        unit: length that scales coordinates to about 1 (the template's size).
        max_distance: matches farther than this (input units) are ignored.
        gamma: weight of the translation column in the stiffness term.
    """

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        weights: np.ndarray,
        unit: float,
        max_distance: float,
        gamma: float = 1.0,
    ) -> None:
        self.unit = float(unit)
        self.v = np.asarray(vertices, np.float64) / self.unit
        self.faces = np.asarray(faces, np.int64)
        self.region_weights = np.asarray(weights, np.float64)
        self.max_distance = max_distance / self.unit
        n = len(self.v)
        edges = edge_list(self.faces)
        m = sp.csr_matrix(
            (np.r_[-np.ones(len(edges)), np.ones(len(edges))],
             (np.r_[np.arange(len(edges)), np.arange(len(edges))], np.r_[edges[:, 0], edges[:, 1]])),
            shape=(len(edges), n),
        )  # fmt: skip
        self._stiff = sp.kron(m, sp.diags([1.0, 1.0, 1.0, gamma])).tocsr()  # (4E, 4n)
        rows = np.repeat(np.arange(n), 4)
        cols = np.arange(4 * n)
        values = np.c_[self.v, np.ones(n)].reshape(-1)
        self._d = sp.csr_matrix((values, (rows, cols)), shape=(n, 4 * n))
        self.x = np.tile(np.r_[np.eye(3), np.zeros((1, 3))], (n, 1))  # (4n, 3) identity maps

    def deformed(self) -> np.ndarray:
        """``(V, 3)`` current positions (input units)."""
        return (self._d @ self.x) * self.unit

    def _matches(self, surface: Surface, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hit = surface.closest(current * self.unit)
        target = surface.points(hit) / self.unit
        normals_t = vertex_normals(current, self.faces)
        normals_c = surface.normals(hit)
        agree = (normals_t * normals_c).sum(1) > 0.5
        near = hit.distances / self.unit < self.max_distance
        return target, self.region_weights * agree * near

    def run(
        self,
        surface: Surface,
        landmark_vertices: np.ndarray | None = None,
        landmark_targets: np.ndarray | None = None,
        landmark_weight: float = 1.0,
        stiffness: Sequence[float] = STIFFNESS,
        iterations: int = ITERATIONS_PER_STEP,
        progress: ProgressCallback | None = None,
    ) -> RegistrationResult:
        """Run the stiffness schedule against ``surface`` (input units).

        Args:
            surface: the target.
            landmark_vertices: ``(L,)`` template vertex indices with known targets.
            landmark_targets: ``(L, 3)`` their positions on the target (NaN rows are skipped).
            landmark_weight: ``beta`` relative to one data vertex, scaled by ``V / L``.
            progress: ``progress(done, total, message)``; returning False cancels.
        """
        n = len(self.v)
        d_l = u_l = None
        if landmark_vertices is not None and landmark_targets is not None:
            ok = np.isfinite(landmark_targets).all(1)
            idx = np.asarray(landmark_vertices)[ok]
            d_l = self._d[idx]
            u_l = np.asarray(landmark_targets)[ok] / self.unit
            beta0 = landmark_weight * np.sqrt(n / max(len(idx), 1))
        total = len(stiffness) * iterations
        step = 0
        weights = np.zeros(n)
        for k, alpha in enumerate(stiffness):
            beta = 0.0 if d_l is None else beta0 * (1.0 - 0.8 * k / max(len(stiffness) - 1, 1))
            for _ in range(iterations):
                current = self._d @ self.x
                target, weights = self._matches(surface, current)
                w = sp.diags(weights)
                blocks = [alpha * self._stiff, w @ self._d]
                rhs = [np.zeros((self._stiff.shape[0], 3)), weights[:, None] * target]
                if d_l is not None:
                    blocks.append(beta * d_l)
                    rhs.append(beta * u_l)
                a = sp.vstack(blocks).tocsr()
                b = np.vstack(rhs)
                lhs = (a.T @ a).tocsc()
                self.x = spla.splu(lhs).solve(np.asarray(a.T @ b))
                step += 1
                report(progress, step, total, f"non-rigid ICP, stiffness {alpha:g}")
        final = self.deformed()
        hit = surface.closest(final)
        return RegistrationResult(vertices=final, distances=hit.distances, weights=weights)
