"""Quasi-static solve of the actuated face (Eq. 3-4) with optional IPC lip contact.

Unknowns are the free lattice nodes; skull nodes are fixed and jaw nodes follow the jaw's rigid
transform as hard constraints (Eq. 4: trilinear interpolation reproduces rigid motions, so holding
every node of a cell that embeds a bone point keeps that bone point exactly on its bone).

Without contact the solver is the local/global iteration accelerated by L-BFGS with the constant
matrix 2 L_ff as initial Hessian (Liu, Bouaziz & Kavan 2017): L_ff is factored once per rest shape
(CHOLMOD through ``cholespy``) and each iteration costs one pass of the fused element step
(warm-started polar decompositions, :mod:`faceforge.physics.kernels`) and one solve with three
right-hand sides. On ``device="cuda"`` the energy and the solves run on the GPU. With contacts
active the step solves (2 L_ff + H_barrier) d = -g exactly by a Woodbury update on the lip
vertices (their Green's function ``W 2L^-1 W^T`` is precomputed once), every step is capped by
ipctk's collision-free step size, and Armijo backtracking runs on the total energy (elastic +
barrier - external work). Barrier stiffness starts at ipctk's suggested value and adapts as
distances shrink.

Convergence: a frame stops when the largest nodal step falls below ``tol`` (default 10 um), when an
iteration lowers the energy by less than ``rtol`` (default 1e-4) of its value, or after
``max_iterations``; the result reports iterations, final energy, gradient norm and whether it
converged.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from faceforge import device as device_policy
from faceforge.errors import FaceForgeError
from faceforge.physics.contact import MouthCollisions
from faceforge.physics.fem import HexQuadrature, assemble_laplacian, polar_rotation
from faceforge.physics.kernels import ShapeTargetKernel, TorchShapeTargets, element_step
from faceforge.physics.material import MaterialSpace
from faceforge.physics.torch_ops import _DeviceEnergy, _Factor

_DEBUG = bool(os.environ.get("FACEFORGE_PHYSICS_DEBUG"))

__all__ = [
    "FaceSolver",
    "PhysicsOptions",
    "SolveInfo",
    "resolve_device",
    "rigid_transform",
    "rotation_vector",
]


@dataclass
class PhysicsOptions:
    """Material and solver settings (SI units).

    Attributes:
        youngs_modulus: Pa (paper: 5 kPa). poisson: Poisson ratio (paper: 0.47; enters through mu).
        density: kg/m^3 (paper: 0.9 g/ml), for gravity.
        gravity: ``(3,)`` m/s^2 in the head's frame, or None.
        contact: resolve lip-lip and lip-teeth collisions (IPC).
        dhat: barrier activation distance (m).
        tol: convergence threshold on the largest nodal step (m).
        rtol: ... or on the relative energy decrease of the last iteration.
        max_iterations: per frame (per jaw sub-step with contact).
        history: L-BFGS memory.
        device: where the energy and the linear solves run: ``"cpu"``, ``"cuda"`` or ``"auto"``
            (the policy of :mod:`faceforge.device`: ``$FACEFORGE_DEVICE``, else CUDA when torch sees a
            GPU; a GPU that fails falls back to the CPU with a message). Contact queries
            (ipctk) and the L-BFGS bookkeeping stay on the CPU either way.
    """

    youngs_modulus: float = 5e3
    poisson: float = 0.47
    density: float = 900.0
    gravity: np.ndarray | None = None
    contact: bool = True
    dhat: float = 3e-4
    tol: float = 1e-5
    rtol: float = 1e-4
    max_iterations: int = 80
    history: int = 6
    device: str = "auto"

    @property
    def mu(self) -> float:
        return self.youngs_modulus / (2.0 * (1.0 + self.poisson))


@dataclass
class SolveInfo:
    iterations: int = 0
    converged: bool = False
    energy: float = 0.0
    gradient_norm: float = 0.0
    contacts: int = 0
    min_distance: float = float("inf")
    substeps: int = 1
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def rotation_vector(R: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix."""
    c = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(c)
    if angle < 1e-12:
        return np.zeros(3)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    s = np.sin(angle)
    if s < 1e-9:  # angle ~ pi
        vals, vecs = np.linalg.eigh(0.5 * (R + np.eye(3)))
        return vecs[:, -1] * angle
    return w / (2.0 * s) * angle


def rigid_transform(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (Rodrigues)."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    k = rotvec / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def resolve_device(device: str = "auto") -> str:
    """``"cpu"`` or ``"cuda"`` for a requested device (see :attr:`PhysicsOptions.device`), by the
    policy of :mod:`faceforge.device`."""
    return device_policy.resolve_device(device, what="physics device")


class FaceSolver:
    """Everything that depends only on the rest shape: weights, L, its factor, the contact setup.

    Args:
        material: the :class:`MaterialSpace`.
        options: :class:`PhysicsOptions`.
        jaw_scale: scale of the jaw bone about its centroid (bone reshaping, Fig. 8); 1 = as is.
    """

    def __init__(
        self, material: MaterialSpace, options: PhysicsOptions | None = None, jaw_scale: float = 1.0
    ) -> None:
        self.material = material
        self.options = options or PhysicsOptions()
        self.quad = HexQuadrature(material.resolution)
        n = material.n_nodes
        self.weights = self.options.mu * material.volumes / 8.0
        self.L = assemble_laplacian(material.elements, self.weights, self.quad, n)
        constrained = np.zeros(n, dtype=bool)
        constrained[material.skull_nodes] = True
        constrained[material.jaw_nodes] = True
        self.free = np.flatnonzero(~constrained)
        self.fixed = np.flatnonzero(constrained)
        self.L_ff = self.L[self.free][:, self.free].tocsr()
        self.device = resolve_device(self.options.device)
        try:
            self.factor = _Factor(2.0 * self.L_ff, self.device)
        except (RuntimeError, ValueError) as exc:
            if self.device == "cpu":
                raise
            # "auto" found a GPU the solver cannot use (driver, memory): solve on the CPU instead
            self.device = device_policy.cpu_fallback(self.options.device, exc)
            self.factor = _Factor(2.0 * self.L_ff, self.device)
        ne = material.n_elements
        # Fbar as one sparse product: row (e, j) of G_bar holds B_sum[a, j] / 8 at node a of e,
        # so (G_bar @ x)[(e, j), i] = Fbar_e[i, j]; its transpose scatters the right-hand side.
        cols = np.repeat(material.elements, 3, axis=0)  # (3E, 8): rows (e, j)
        vals = np.tile((self.quad.B_sum / 8.0).T, (ne, 1))  # (3E, 8)
        self.G_bar = sp.csr_matrix(
            (vals.ravel(), (np.repeat(np.arange(3 * ne), 8), cols.ravel())), shape=(3 * ne, n)
        )
        self.G_bar_T = self.G_bar.T.tocsr()
        self.jaw_centre = material.jaw_points.mean(axis=0)
        self.jaw_scale = float(jaw_scale)
        self.external = np.zeros((n, 3))
        if self.options.gravity is not None:
            self.set_gravity(np.asarray(self.options.gravity, dtype=np.float64))
        self._kernel: ShapeTargetKernel | TorchShapeTargets | None | bool = False
        self._kernel_A: np.ndarray | None = None
        self._device_energy = _DeviceEnergy(self, self.device) if self.device != "cpu" else None
        self.collisions: MouthCollisions | None = None
        if self.options.contact:
            self._setup_contact()

    # --- loads ------------------------------------------------------------------------------------
    def node_masses(self) -> np.ndarray:
        """``(N,)`` lumped masses (kg): each element's mass split over its 8 nodes."""
        m = np.zeros(self.material.n_nodes)
        np.add.at(
            m,
            self.material.elements.ravel(),
            np.repeat(self.options.density * self.material.volumes / 8.0, 8),
        )
        return m

    def set_gravity(self, g: np.ndarray | None) -> None:
        """Body force m g on every node (``g`` in m/s^2 in the head's frame; None removes it)."""
        self._gravity = (
            np.zeros((self.material.n_nodes, 3)) if g is None else self.node_masses()[:, None] * g[None]
        )
        self.external = self._gravity + getattr(self, "_point_forces", 0.0)

    def set_skin_force(self, force: np.ndarray | None) -> None:
        """External force on the skin: ``(S, 3)`` newtons per simulated skin vertex (None removes)."""
        if force is None:
            self._point_forces = np.zeros((self.material.n_nodes, 3))
        else:
            self._point_forces = self.material.W_skin.T @ np.asarray(force, dtype=np.float64)
        self.external = getattr(self, "_gravity", 0.0) + self._point_forces

    # --- constraints ------------------------------------------------------------------------------
    def bone_positions(self, jaw_rotation: np.ndarray, jaw_translation: np.ndarray) -> np.ndarray:
        """``(N_fixed, 3)`` constrained node positions: skull at rest, jaw (scaled) moved rigidly."""
        m = self.material
        x = m.nodes[self.fixed].copy()
        is_jaw = np.isin(self.fixed, m.jaw_nodes)
        X = m.nodes[self.fixed[is_jaw]]
        X = self.jaw_centre + self.jaw_scale * (X - self.jaw_centre)
        x[is_jaw] = X @ jaw_rotation.T + jaw_translation
        return x

    # --- contact ---------------------------------------------------------------------------------
    def _setup_contact(self) -> None:
        m = self.material
        row_of = {int(v): i for i, v in enumerate(m.skin_vertices)}
        lip_vertices = np.unique(m.lip_faces)
        rows = np.array([row_of[int(v)] for v in lip_vertices])
        W_lip = m.W_skin[rows]
        remap = {int(v): i for i, v in enumerate(lip_vertices)}
        faces = np.vectorize(remap.__getitem__)(m.lip_faces)
        self.lip_vertices = lip_vertices
        self.collisions = MouthCollisions(
            W_lip, faces, m.teeth_vertices, m.teeth_faces, m.teeth_jaw, self.options.dhat
        )
        # W_f: the lip embedding on free nodes; its Green's function under 2 L_ff for the Woodbury step
        self.W_f = W_lip[:, self.free].tocsr()
        self.W_c = W_lip[:, self.fixed].tocsr()
        used = np.unique(self.W_f.indices)
        if len(used) == 0:
            self.green = np.zeros((W_lip.shape[0], W_lip.shape[0]))
            self.KinvWt_T = np.zeros((W_lip.shape[0], len(self.free)))
        else:
            KinvWt = self.factor.solve(self.W_f.T.toarray())  # (n_free, m)
            self.green = np.asarray(self.W_f @ KinvWt)  # (m, m)
            # row k: the free nodes' response to a unit force on lip vertex k (rows gather fast)
            self.KinvWt_T = np.ascontiguousarray(KinvWt.T)
        rest = self.collisions.positions(m.nodes, self.collisions.teeth(np.eye(3), np.zeros(3)))
        self.collisions.rebuild_mesh(rest)
        # Primitives (nearly) touching at rest -- a decoded face whose lips meet at the corners -- are
        # glued there: they may not collide with each other. Everything else must be outside every
        # barrier at rest: dhat is kept below half the closest remaining rest gap (and above 10 um).
        self.glued_pairs = self.collisions.exclude_rest_contacts(rest, 2e-5)
        c = self.collisions.collisions(rest)
        if len(c):
            gap = self.collisions.min_distance(rest, c)
            self.collisions.dhat = max(min(self.collisions.dhat, 0.5 * gap), 1e-5)
        self.rest_gap = self.collisions.min_distance(rest, self.collisions.collisions(rest))
        diag = np.linalg.norm(rest.max(axis=0) - rest.min(axis=0))
        self._bbox_diagonal = float(diag)

    # --- energy --------------------------------------------------------------------------------
    def energy(self, x: np.ndarray, A: np.ndarray) -> tuple[float, np.ndarray]:
        """Elastic energy (J) minus external work, and its gradient ``(N, 3)`` (N), at nodes ``x``.

        With P_e = R*_e A_e and sum_q F_eq = 8 Fbar_e:
        E = sum_d x_d^T L x_d - 16 sum_e w_e <P_e, Fbar_e> + 8 sum_e w_e ||P_e||^2, and
        grad = 2 (L x - b(P)) (R* is optimal, so its variation does not enter the gradient).
        """
        if self._device_energy is not None:
            return self._device_energy(x, A, self.external)
        ne = self.material.n_elements
        FT = (self.G_bar @ x).reshape(ne, 3, 3)  # FT[e] = Fbar_e^T
        Lx = self.L @ x
        e = float(np.einsum("nd,nd->", x, Lx))
        kernel = self._element_kernel()
        if kernel is not None:
            if self._kernel_A is not A:
                kernel.set_actuation(A)
                self._kernel_A = A
            terms, PT8 = kernel(FT)
            e += float(terms.sum())
            b = self.G_bar_T @ PT8.reshape(-1, 3)
        else:
            Fbar = np.swapaxes(FT, 1, 2)
            R = polar_rotation(Fbar @ np.swapaxes(A, 1, 2))
            P = R @ A
            w = self.weights
            e += float(np.einsum("e,eij,eij->", w, P, 8.0 * P - 16.0 * Fbar, optimize=True))
            # b_e[a, i] = w_e sum_j B_sum[a, j] P_e[i, j] = 8 w_e (G_bar^T)(P_e^T)
            b = self.G_bar_T @ (8.0 * w[:, None, None] * np.swapaxes(P, 1, 2)).reshape(-1, 3)
        e -= float(np.einsum("nd,nd->", self.external, x))
        return e, 2.0 * (Lx - b) - self.external

    def _element_kernel(self) -> ShapeTargetKernel | TorchShapeTargets | None:
        """The compiled/batched element step (created on first use), or None for the numpy path."""
        if self._kernel is False:
            self._kernel = element_step(self.weights, self.device)
            self._kernel_A = None
        return self._kernel

    # --- the solve -----------------------------------------------------------------------------
    def solve(
        self,
        A: np.ndarray,
        jaw_rotation: np.ndarray | None = None,
        jaw_translation: np.ndarray | None = None,
        x0: np.ndarray | None = None,
        previous_jaw: tuple[np.ndarray, np.ndarray] | None = None,
        guess: np.ndarray | None = None,
    ) -> tuple[np.ndarray, SolveInfo]:
        """Equilibrium node positions for actuations ``A (E, 3, 3)`` and a jaw transform.

        Args:
            A: symmetric actuation per element.
            jaw_rotation, jaw_translation: the jaw's rigid transform (identity by default).
            x0: ``(N, 3)`` warm start (the previous frame); rest by default. With contact it must be
                intersection-free, with the jaw at ``previous_jaw``.
            previous_jaw: the jaw transform ``x0`` was solved with (for contact sub-steps).
            guess: ``(N, 3)`` a better starting point, e.g. the actuation's own map phi, which is
                near equilibrium by construction. Without contact the solve starts there; with
                contact it starts as far toward it from ``x0`` as stays collision-free.

        Returns:
            ``(x (N, 3), SolveInfo)``.
        """
        import time

        start = time.perf_counter()
        m = self.material
        R = np.eye(3) if jaw_rotation is None else np.asarray(jaw_rotation, dtype=np.float64)
        t = np.zeros(3) if jaw_translation is None else np.asarray(jaw_translation, dtype=np.float64)
        if A.shape != (m.n_elements, 3, 3) or not np.isfinite(A).all():
            raise FaceForgeError(f"actuations must be a finite ({m.n_elements}, 3, 3) array")
        x = m.nodes.copy() if x0 is None else np.array(x0, dtype=np.float64)
        if self.collisions is None:
            if guess is not None:
                x[:] = guess
            x[self.fixed] = self.bone_positions(R, t)
            info = self._lbfgs(x, A, contact=False)
            info.extra["jaw"] = (R, t)
        else:
            R0, t0 = previous_jaw if previous_jaw is not None else (np.eye(3), np.zeros(3))
            info = SolveInfo(iterations=0, substeps=0)
            r0, r1 = rotation_vector(R0), rotation_vector(R)
            done = 0.0
            col = self.collisions
            while True:
                # Move bones and teeth as far toward the target pose as stays collision-free, solve there.
                x_bones = x.copy()
                V0 = col.positions(
                    x, col.teeth(rigid_transform((1 - done) * r0 + done * r1), (1 - done) * t0 + done * t)
                )
                a = 1.0
                for _ in range(12):
                    Rk, tk = rigid_transform((1 - a) * r0 + a * r1), (1 - a) * t0 + a * t
                    x_bones[self.fixed] = self.bone_positions(Rk, tk)
                    if col.collision_free_step(V0, col.positions(x_bones, col.teeth(Rk, tk))) >= 1.0:
                        break
                    a = done + 0.5 * (a - done)
                else:  # no safe move: stay, let the solve pull the lips clear, then try again
                    a = done
                    Rk, tk = rigid_transform((1 - a) * r0 + a * r1), (1 - a) * t0 + a * t
                    x_bones[self.fixed] = self.bone_positions(Rk, tk)
                x[self.fixed] = x_bones[self.fixed]
                self._teeth = col.teeth(Rk, tk)
                last = a >= 1.0 or info.substeps >= 31
                if last and guess is not None:
                    self._advance_toward(x, guess)
                sub = self._lbfgs(x, A, contact=True)
                info.iterations += sub.iterations
                info.converged, info.energy, info.gradient_norm = sub.converged, sub.energy, sub.gradient_norm
                info.contacts, info.min_distance = sub.contacts, sub.min_distance
                info.substeps += 1
                done = a
                if last:
                    break
            info.extra["jaw_reached"] = bool(done >= 1.0)
            info.extra["jaw"] = (Rk, tk)
        info.seconds = time.perf_counter() - start
        return x, info

    def _advance_toward(self, x: np.ndarray, guess: np.ndarray) -> None:
        """Move the free nodes of ``x`` toward ``guess`` as far as the mouth stays collision-free."""
        col = self.collisions
        target = x.copy()
        target[self.free] = guess[self.free]
        V0 = col.positions(x, self._teeth)
        V1 = col.positions(target, self._teeth)
        alpha = 0.8 * col.collision_free_step(V0, V1)
        x[self.free] += alpha * (target[self.free] - x[self.free])

    def _total(
        self, x: np.ndarray, A: np.ndarray, contact: bool
    ) -> tuple[float, np.ndarray, object, np.ndarray]:
        e, g = self.energy(x, A)
        if not contact:
            return e, g, None, None
        col = self.collisions
        V = col.positions(x, self._teeth)
        c = col.collisions(V)
        if len(c) and col.stiffness > 0:
            e += col.potential(V, c)
        return e, g, c, V

    def _barrier_terms(self, V: np.ndarray, c) -> tuple[np.ndarray, sp.csr_matrix | None]:  # noqa: ANN001
        col = self.collisions
        if c is None or len(c) == 0 or col.stiffness == 0:
            return np.zeros((len(self.free), 3)), None
        gV, H = col.gradient_hessian(V, c)
        g = self.W_f.T @ gV[: col.m]
        return g, H

    def _newton_direction(self, g: np.ndarray, H: sp.csr_matrix) -> np.ndarray:
        """Solve (2 L_ff (x) I3 + W^T H W) d = -g by a Woodbury update on the active lip vertices."""
        col = self.collisions
        m = col.m
        Hll = H[: 3 * m][:, : 3 * m].tocsr()
        active = np.unique(Hll.nonzero()[0] // 3)
        d0 = -self.factor.solve(g)  # (n_free, 3)
        if len(active) == 0:
            return d0
        rows = (3 * active[:, None] + np.arange(3)[None]).ravel()
        Ha = Hll[rows][:, rows].toarray()  # (3a, 3a)
        Ca = np.kron(self.green[np.ix_(active, active)], np.eye(3))  # W K^-1 W^T on the active block
        u = (self.W_f[active] @ d0).ravel()  # W_a K^-1 (-g)
        y = np.linalg.solve(np.eye(len(rows)) + Ha @ Ca, Ha @ u)
        corr = self.KinvWt_T[active].T @ y.reshape(-1, 3)
        return d0 - corr

    def _lbfgs(self, x: np.ndarray, A: np.ndarray, contact: bool) -> SolveInfo:
        opts = self.options
        free = self.free
        info = SolveInfo()
        col = self.collisions if contact else None
        e, g_full, c, V = self._total(x, A, contact)
        g = g_full[free]
        if col is not None:
            if col.stiffness == 0:
                self._init_stiffness(V, g, c)
                e, g_full, c, V = self._total(x, A, contact)
                g = g_full[free]
            gb, H = self._barrier_terms(V, c)
            g = g + gb
        S: list[np.ndarray] = []
        Y: list[np.ndarray] = []
        prev_dmin = col.min_distance(V, c) if col is not None else np.inf
        for it in range(1, opts.max_iterations + 1):
            if col is not None and H is not None:
                d = self._newton_direction(g, H)
                S.clear()
                Y.clear()
            else:
                d = self._two_loop(g, S, Y)
            slope = float(np.einsum("nd,nd->", g, d))
            if slope >= 0:  # not a descent direction: fall back to the preconditioned gradient
                d = -self.factor.solve(g)
                slope = float(np.einsum("nd,nd->", g, d))
                S.clear()
                Y.clear()
            alpha, x_new, e_new, g_full_new, c_new, V_new = self._line_search(x, A, d, e, slope, V, contact)
            g_new = g_full_new[free]
            H_new = None
            if col is not None:
                gb, H_new = self._barrier_terms(V_new, c_new)
                g_new = g_new + gb
            s = alpha * d
            yv = g_new - g
            if float(np.einsum("nd,nd->", s, yv)) > 1e-30:
                S.append(s)
                Y.append(yv)
                if len(S) > opts.history:
                    S.pop(0)
                    Y.pop(0)
            x[:] = x_new
            e_before = e
            e, g, c, V, H = e_new, g_new, c_new, V_new, H_new
            step = float(np.abs(s).max())
            info.iterations = it
            if _DEBUG:
                n_contacts = len(c) if c is not None else 0
                msg = f"it {it} e {e:.6g} alpha {alpha:.3g} step {step:.3g} contacts {n_contacts}"
                print(msg, file=sys.stderr)
            if col is not None:
                dmin = col.min_distance(V, c)
                col.stiffness = float(
                    self._ipctk().update_barrier_stiffness(
                        prev_dmin, dmin, col.max_stiffness, col.stiffness, self._bbox_diagonal
                    )
                )
                prev_dmin = dmin
            decrease = (e_before - e) / max(abs(e), 1e-30)
            if step < opts.tol or 0 <= decrease < opts.rtol:
                info.converged = True
                break
        info.energy = e
        info.gradient_norm = float(np.linalg.norm(g))
        if col is not None:
            info.contacts = len(c) if c is not None else 0
            info.min_distance = col.min_distance(V, c) if c is not None else np.inf
        return info

    def _line_search(
        self,
        x: np.ndarray,
        A: np.ndarray,
        d: np.ndarray,
        e: float,
        slope: float,
        V: np.ndarray,
        contact: bool,
    ) -> tuple[float, np.ndarray, float, np.ndarray, object, np.ndarray]:
        """Armijo backtracking along ``d`` (on the free nodes), from the largest collision-free step with
        contact: ``(alpha, x_new, e_new, g_full_new, c_new, V_new)`` (the last four as :meth:`_total`)."""
        free = self.free
        col = self.collisions if contact else None
        alpha = 1.0
        if col is not None:  # the largest collision-free step along this very direction
            x_try = x.copy()
            x_try[free] += d
            ccd = col.collision_free_step(V, col.positions(x_try, self._teeth))
            alpha = 1.0 if ccd >= 1.0 else 0.9 * ccd
        for _ in range(30):
            x_new = x.copy()
            x_new[free] += alpha * d
            e_new, g_full_new, c_new, V_new = self._total(x_new, A, contact)
            if e_new <= e + 1e-4 * alpha * slope or alpha < 1e-8:
                break
            alpha *= 0.5
        return alpha, x_new, e_new, g_full_new, c_new, V_new

    @staticmethod
    def _ipctk():  # noqa: ANN205
        import ipctk

        return ipctk

    def _init_stiffness(self, V: np.ndarray, g: np.ndarray, c) -> None:  # noqa: ANN001
        col = self.collisions
        ipctk = self._ipctk()
        gb = np.zeros_like(g)
        if c is not None and len(c):
            gb = self.W_f.T @ col.unit_gradient(V, c)[: col.m]
        average_mass = float(self.L_ff.diagonal().mean()) * 2.0
        kappa, kappa_max = ipctk.initial_barrier_stiffness(
            self._bbox_diagonal, ipctk.ClampedLogBarrier(), col.dhat, average_mass, g.ravel(), gb.ravel()
        )
        col.stiffness = float(kappa)
        col.max_stiffness = float(kappa_max)

    def _two_loop(self, g: np.ndarray, S: list[np.ndarray], Y: list[np.ndarray]) -> np.ndarray:
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(S), reversed(Y), strict=True):
            rho = 1.0 / float(np.einsum("nd,nd->", y, s))
            a = rho * float(np.einsum("nd,nd->", s, q))
            alphas.append((a, rho, s, y))
            q -= a * y
        r = self.factor.solve(q)
        for a, rho, s, y in reversed(alphas):
            b = rho * float(np.einsum("nd,nd->", y, r))
            r += (a - b) * s
        return -r
