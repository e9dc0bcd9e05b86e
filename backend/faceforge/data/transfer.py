"""Deformation transfer of expressions between meshes in correspondence (Sumner & Popovic 2004).

The per-triangle deformation gradients of a source expression (template neutral -> template
expression) are applied to the target's own rest triangles, and the target vertices are found
by a sparse least-squares Poisson solve: ``min_x sum_f a_f |grad_f(x) - Q_f P_f|^2`` with the
target's FEM gradient operator. The system matrix depends only on the target neutral, so it is
factorised once per identity and every expression is a back-substitution. A jaw opening
therefore opens an infant's small jaw by an infant-sized amount: the identity-aware
cross-age transfer BabyFlow performs (Sec. 4.3), followed by its intensity factor
(Eq. 7: ``X_e = X_s + delta * D``).

Every connected component of the target must be pinned: vertices held in place (skull,
neck base), or, for a floating part such as the tongue, root vertices carried rigidly by a
carrier region (the jaw). A single anchor vertex is not enough: it leaves rotations free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from faceforge.data.geometry import (
    apply_rigid,
    connected_components,
    gradient_operator,
    inverse_2x2,
    rigid_align,
)
from faceforge.errors import FaceForgeError

__all__ = ["CarriedPart", "DeformationTransfer", "deformation_gradients"]


def _frames(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(..., F, 3, 3)`` Sumner frames ``[e1, e2, n / sqrt(|n|)]`` (columns) per triangle."""
    v0 = vertices[..., faces[:, 0], :]
    e1 = vertices[..., faces[:, 1], :] - v0
    e2 = vertices[..., faces[:, 2], :] - v0
    n = np.cross(e1, e2)
    n = n / np.sqrt(np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-300))
    return np.stack([e1, e2, n], axis=-1)


def deformation_gradients(rest: np.ndarray, deformed: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-triangle deformation gradients ``Q_f`` with ``Q_f [e1 e2 n] = [e1' e2' n']``.

    Args:
        rest: ``(V, 3)`` rest positions.
        deformed: ``(..., V, 3)`` deformed positions (any leading batch shape).
        faces: ``(F, 3)`` triangles.

    Returns:
        ``(..., F, 3, 3)`` float64.
    """
    inv_rest = np.linalg.inv(_frames(np.asarray(rest, np.float64), faces))
    return _frames(np.asarray(deformed, np.float64), faces) @ inv_rest


@dataclass(frozen=True)
class CarriedPart:
    """A floating component (e.g. the tongue) carried by a pinned region (e.g. the jaw).

    The Poisson solve fixes a floating component up to a translation. That translation is
    taken from the carrier: the part's root centroid follows the carrier's rigid motion plus
    the source's own root motion relative to its carrier, scaled by the part's size (so a
    tongue that sticks out in the source sticks out proportionally in the target).

    Attributes:
        vertices: all vertex indices of the part.
        roots: vertex indices whose centroid anchors the part (e.g. the tongue root).
        carrier: vertex indices of a pinned region whose rigid motion carries the part.
    """

    vertices: np.ndarray
    roots: np.ndarray
    carrier: np.ndarray

    def size(self, positions: np.ndarray) -> float:
        """RMS distance of the part's vertices to their centroid (units of ``positions``)."""
        p = positions[self.vertices]
        return float(np.sqrt(((p - p.mean(axis=0)) ** 2).sum(axis=1).mean()))

    def relative_root_motion(self, rest: np.ndarray, deformed: np.ndarray) -> np.ndarray:
        """Root-centroid motion not explained by the carrier, in the carrier frame, per part size.

        Args:
            rest: ``(V, 3)`` source rest positions.
            deformed: ``(K, V, 3)`` source deformed positions.

        Returns:
            ``(K, 3)`` dimensionless offsets for :meth:`DeformationTransfer.transfer`.
        """
        centre = rest[self.roots].mean(axis=0)
        out = np.empty((len(deformed), 3))
        for k, d in enumerate(deformed):
            rotation, translation = rigid_align(rest[self.carrier], d[self.carrier])
            moved = d[self.roots].mean(axis=0) - apply_rigid(centre, rotation, translation)
            out[k] = rotation.T @ moved
        return out / self.size(rest)


class DeformationTransfer:
    """Deformation transfer onto one target neutral mesh, prefactored.

    Args:
        target_rest: ``(V, 3)`` target neutral positions (metres).
        faces: ``(F, 3)`` triangles shared by source and target.
        held: indices of vertices that keep their rest position.
        carried: floating parts carried by a pinned region.

    Raises:
        FaceForgeError: when a connected component has no held or root vertex.
    """

    def __init__(
        self,
        target_rest: np.ndarray,
        faces: np.ndarray,
        held: np.ndarray,
        carried: Sequence[CarriedPart] = (),
    ) -> None:
        self.rest = np.asarray(target_rest, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.held = np.unique(np.asarray(held, dtype=np.int64))
        self.carried = list(carried)
        n = len(self.rest)
        constrained = np.zeros(n, dtype=bool)
        constrained[self.held] = True
        for part in self.carried:
            constrained[part.roots[0]] = True  # removes the null space; translation set later
        labels = connected_components(self.faces, n)
        unpinned = np.setdiff1d(np.unique(labels), np.unique(labels[constrained]))
        if len(unpinned):
            sizes = [int((labels == c).sum()) for c in unpinned]
            raise FaceForgeError(
                f"{len(unpinned)} connected component(s) of sizes {sizes} have no held or carried "
                "vertex; deformation transfer would leave them floating"
            )
        self.constrained = np.flatnonzero(constrained)
        self.free = np.flatnonzero(~constrained)
        grad = gradient_operator(self.rest, self.faces)
        area = (
            np.linalg.norm(
                np.cross(
                    self.rest[self.faces[:, 1]] - self.rest[self.faces[:, 0]],
                    self.rest[self.faces[:, 2]] - self.rest[self.faces[:, 0]],
                ),
                axis=1,
            )
            * 0.5
        )
        weight = sp.diags(np.repeat(area, 3))
        self._grad_t_w = (grad.T @ weight).tocsr()  # (V, 3F)
        stiffness = (self._grad_t_w @ grad).tocsc()
        self._k_free = stiffness[self.free][:, self.free].tocsc()
        self._k_fc = stiffness[self.free][:, self.constrained].tocsc()
        self._solver = spla.splu(self._k_free)
        # Target rest edges and the gradients of the barycentric hat functions (pseudo-inverse).
        e1 = self.rest[self.faces[:, 1]] - self.rest[self.faces[:, 0]]
        e2 = self.rest[self.faces[:, 2]] - self.rest[self.faces[:, 0]]
        self._edges = np.stack([e1, e2], axis=2)  # (F, 3, 2)
        gram = np.einsum("fdi,fdj->fij", self._edges, self._edges)
        gram[np.abs(np.linalg.det(gram)) < 1e-30] = np.eye(2)
        pinv = np.einsum("fij,fdj->fid", inverse_2x2(gram), self._edges)  # (F, 2, 3)
        # Q e_i then the hat-function gradients: target gradient = Q @ (edges @ pinv), so the
        # product (F, 3, 3) is made once here instead of per expression.
        self._edge_map = np.einsum("fdi,fia->fda", self._edges, pinv)

    def _solve(self, rhs: np.ndarray, constrained_values: np.ndarray) -> np.ndarray:
        """Solve for all vertices of ``k`` expressions. rhs ``(V, 3k)``, values ``(C, 3k)``."""
        b = rhs[self.free] - self._k_fc @ constrained_values
        out = np.empty_like(rhs)
        out[self.free] = self._solver.solve(b)
        out[self.constrained] = constrained_values
        return out

    def transfer(
        self,
        source_gradients: np.ndarray,
        intensity: float = 1.0,
        carried_motion: np.ndarray | None = None,
    ) -> np.ndarray:
        """Apply source deformation gradients to the target.

        Args:
            source_gradients: ``(F, 3, 3)`` or ``(K, F, 3, 3)`` from :func:`deformation_gradients`.
            intensity: BabyFlow's ``delta`` (Eq. 7) scaling the transferred displacement.
            carried_motion: ``(K, n_parts, 3)`` from :meth:`CarriedPart.relative_root_motion`
                (zero if omitted: parts move rigidly with their carrier).

        Returns:
            ``(V, 3)`` or ``(K, V, 3)`` float64 target positions.
        """
        q = np.asarray(source_gradients, dtype=np.float64)
        single = q.ndim == 3
        if single:
            q = q[None]
        k = q.shape[0]
        # Deformed target edges Q_f e_i and the per-axis gradient they imply on the triangle,
        # laid out (F, 3 axes, K, 3 coords) as the right-hand side's rows 3f + a, columns 3e + c.
        target_grad = np.einsum("kfcd,fda->fakc", q, self._edge_map, optimize=True)
        rhs = self._grad_t_w @ np.ascontiguousarray(target_grad).reshape(-1, 3 * k)  # (V, 3k)
        values = np.tile(self.rest[self.constrained], (1, k))  # columns 3e + c
        x = self._solve(rhs, values).reshape(len(self.rest), k, 3).transpose(1, 0, 2).copy()
        if carried_motion is None:
            carried_motion = np.zeros((k, len(self.carried), 3))
        carried_motion = np.asarray(carried_motion, dtype=np.float64).reshape(k, len(self.carried), 3)
        for p, part in enumerate(self.carried):
            centre = self.rest[part.roots].mean(axis=0)
            size = part.size(self.rest)
            for e in range(k):
                rotation, translation = rigid_align(self.rest[part.carrier], x[e, part.carrier])
                target = apply_rigid(centre + size * carried_motion[e, p], rotation, translation)
                x[e, part.vertices] += target - x[e, part.roots].mean(axis=0)
        out = self.rest[None] + intensity * (x - self.rest[None])
        return out[0] if single else out
