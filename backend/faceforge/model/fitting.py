"""Fit the face model to a scan in correspondence (BabyFlow Sec. 4.5, Eq. 20-22).

1. Procrustes: rotate and translate the scan onto the model's mean face (weighted).
2. Alternating optimisation of the bilinear codes, starting from the mean identity and the
   neutral expression: with one code fixed the model is linear in the other, so each half-step
   is a ridge solve with the Gaussian prior of Eq. 22. Plain alternation converges slowly
   (identity and expression codes are coupled), so joint Levenberg-Marquardt steps on both
   codes finish the job; the scan is re-aligned to the current fit between rounds. This is the
   fit of the model without flows.
3. With flows, L-BFGS on both latent codes ``z_id, z_ex`` minimising
   ``gamma1 * E_verts + gamma2 * E_prior`` with the standard normal prior of the latent space.

``E_verts`` is the weighted mean squared per-vertex distance in mm^2 and ``E_prior`` the mean
squared standardised code, so ``gamma2 / gamma1`` reads as "how many mm^2 of error one
standard deviation of code is worth". Vertices with weight 0 or NaN coordinates are ignored
(partial scans).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from faceforge.data.geometry import apply_rigid, rigid_align
from faceforge.errors import FaceForgeError
from faceforge.model.face_model import FaceModel
from faceforge.model.trust import fit_trust
from faceforge.progress import ProgressCallback, report

__all__ = ["FitResult", "fit_scan"]


@dataclass
class FitResult:
    """The result of :func:`fit_scan`.

    Attributes:
        w_id, w_ex: bilinear codes ``(r_id,)``, ``(r_ex,)``.
        z_id, z_ex: latent codes (``None`` for a fit without flows).
        vertices: ``(V, 3)`` fitted face in the scan's frame, metres.
        rotation, translation: the rigid map from the scan's frame to the model's.
        error_mm: weighted mean per-vertex distance between fit and scan, millimetres.
        per_vertex_error_mm: ``(V,)`` distances (NaN where the scan has no data).
        trust: whether the scan lies in the model's space (:func:`faceforge.model.trust.fit_trust`:
            residual per region, identity log-likelihood, the regions over their limits).
    """

    w_id: np.ndarray
    w_ex: np.ndarray
    z_id: np.ndarray | None
    z_ex: np.ndarray | None
    vertices: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    error_mm: float
    per_vertex_error_mm: np.ndarray
    trust: dict | None = None


def _ridge(
    a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, rho: float
) -> torch.Tensor:
    """argmin_w  sum_v weight_v |a_v w - b_v|^2 (mm^2) / sum(weight) + rho * mean((w - mean)^2 / var)."""
    d = a.shape[-1]
    wa = a * weight[:, None, None]
    wa, a, b = wa.reshape(-1, wa.shape[-1]), a.reshape(-1, a.shape[-1]), b.reshape(-1)
    lhs = (wa.T @ a) * (1e6 / weight.sum()) + torch.diag(rho / (d * var))
    rhs = (wa.T @ b) * (1e6 / weight.sum()) + rho * mean / (d * var)
    return torch.linalg.solve(lhs.double(), rhs.double()).float()


def _checked_scan(
    n: int, scan: np.ndarray, weights: np.ndarray | None, prior_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """The scan ``(V, 3)`` as float64 and the ``(V,)`` float64 weights, 0 where the scan has NaNs.

    Raises:
        FaceForgeError: wrong shape, bad weights, fewer than 3 usable vertices, bad ``prior_weight``.
    """
    scan = np.asarray(scan, dtype=np.float64)
    if scan.shape != (n, 3):
        raise FaceForgeError(f"the scan must have shape ({n}, 3) in the model's topology, got {scan.shape}")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise FaceForgeError(f"weights must be {n} finite non-negative numbers")
    w = np.where(np.isfinite(scan).all(axis=1), w, 0.0)
    if (w > 0).sum() < 3:
        raise FaceForgeError("the scan has fewer than 3 usable vertices")
    if not 0.0 <= prior_weight < 1.0:
        raise FaceForgeError(f"prior_weight must lie in [0, 1), got {prior_weight}")
    return scan, w


#: Scale factors to metres of the units a scan may come in, for the size check's advice.
UNIT_SCALES = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254}

#: A scan's size (RMS distance of its vertices from their centroid) may differ from the model's mean
#: face by at most this factor either way: heads from infants to adults span well under 2x.
SIZE_TOLERANCE = 3.0


def check_head_size(scan: np.ndarray, weights: np.ndarray, reference: np.ndarray) -> None:
    """Refuse a scan ``(V, 3)`` whose size is implausible for a head in metres next to the model's
    mean face ``reference (V, 3)`` (only vertices with weight > 0 count), naming the units that fit.

    Raises:
        FaceForgeError: with the size ratio and the ``--units`` that would make it a head.
    """
    used = weights > 0

    def size(points: np.ndarray) -> float:
        return float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean()))

    ratio = size(scan[used]) / max(size(reference[used]), 1e-12)
    if 1.0 / SIZE_TOLERANCE <= ratio <= SIZE_TOLERANCE:
        return
    if not np.isfinite(ratio) or ratio == 0.0:
        raise FaceForgeError("the scan has no extent (all its usable vertices coincide) or overflows")
    unit = min(UNIT_SCALES, key=lambda u: abs(np.log(ratio * UNIT_SCALES[u])))
    fits = 1.0 / SIZE_TOLERANCE <= ratio * UNIT_SCALES[unit] <= SIZE_TOLERANCE
    advice = f": if it is in {unit}, give units {unit!r}" if fits and unit != "m" else ""
    raise FaceForgeError(
        f"the scan is {ratio:.3g} times the size of the model's face in metres, not a plausible head"
        f"{advice} (FaceForge works in metres)"
    )


def _model_frame_offsets(
    model: FaceModel, clean: np.ndarray, rotation: np.ndarray, translation: np.ndarray
) -> torch.Tensor:
    """``(V, 3)`` float32 scan points mapped into the model's frame, minus the mean face (metres)."""
    mean_v = model.mean.reshape(model.n_vertices, 3)
    aligned = apply_rigid(clean, rotation, translation)
    return torch.as_tensor(aligned, dtype=torch.float32, device=model.device) - mean_v


def _bilinear_fit(
    model: FaceModel,
    clean: np.ndarray,
    w: np.ndarray,
    weight_t: torch.Tensor,
    rho: float,
    rounds: int,
    progress: ProgressCallback | None,
    total: int,
    neutral: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Steps 1-2 of the module docstring on the scan ``clean (V, 3)`` (0 where ``w`` is 0);
    ``neutral`` keeps the neutral expression.

    Returns:
        The codes ``w_id (r_id,)``, ``w_ex (r_ex,)`` and the rigid map (rotation ``(3, 3)``,
        translation ``(3,)``) from the scan's frame to the model's.
    """
    n = model.n_vertices
    valid = w > 0
    device = model.device
    core = model.core.reshape(-1, model.rank_identity, model.rank_expression)  # (3N, r_id, r_ex)
    core_v = core.reshape(n, 3, model.rank_identity, model.rank_expression)
    mean_v = model.mean.reshape(n, 3)
    id_mean, id_var = model.identity_prior
    ex_mean, ex_var = model.expression_prior
    w_id = id_mean.clone()
    w_ex = model.neutral_expression.clone()
    target = mean_v.detach().cpu().numpy().astype(np.float64)
    rotation, translation = rigid_align(clean[valid], target[valid], w[valid])
    b = _model_frame_offsets(model, clean, rotation, translation)
    with torch.no_grad():
        for _ in range(rounds):  # alternating ridge steps from the mean identity and neutral expression
            # Batched vector-matrix products: einsum contracts the strided middle axis ~7x slower.
            w_id = _ridge(core_v @ w_ex, b, weight_t, id_mean, id_var, rho)
            if not neutral:
                w_ex = _ridge(w_id @ core_v, b, weight_t, ex_mean, ex_var, rho)
        report(progress, 1, total, "alternating least squares")
        prior = (id_mean, id_var, ex_mean, ex_var)
        aligned = torch.as_tensor(
            apply_rigid(clean, rotation, translation), dtype=torch.float32, device=device
        )
        w_id, w_ex, fix_r, fix_t = _gauss_newton(
            core_v, mean_v, aligned, weight_t, w_id, w_ex, prior, rho, fixed_expression=neutral
        )
        report(progress, 2, total, "joint bilinear and pose refinement")
        # Fold the rigid correction into the scan-to-model transform.
        rotation = fix_r.cpu().numpy() @ rotation
        translation = fix_r.cpu().numpy() @ translation + fix_t.cpu().numpy()
    return w_id, w_ex, rotation, translation


def _fit_result(
    scan: np.ndarray,
    w: np.ndarray,
    fitted_model_frame: np.ndarray,
    rotation: np.ndarray,
    translation: np.ndarray,
    codes: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None],
) -> FitResult:
    """The :class:`FitResult` of the fit ``fitted_model_frame (V, 3)`` (float64, model frame) with
    ``codes = (w_id, w_ex, z_id, z_ex)``, mapped back to the scan's frame and measured against it."""
    w_id, w_ex, z_id, z_ex = codes
    valid = w > 0
    fitted = apply_rigid(fitted_model_frame - translation, rotation.T, np.zeros(3))
    dist = np.linalg.norm(fitted - scan, axis=1) * 1e3
    per_vertex = np.where(valid, dist, np.nan)
    error = float(np.sum(np.nan_to_num(per_vertex) * w) / w.sum())
    return FitResult(
        w_id=w_id.cpu().numpy(),
        w_ex=w_ex.cpu().numpy(),
        z_id=None if z_id is None else z_id.detach().cpu().numpy().reshape(-1),
        z_ex=None if z_ex is None else z_ex.detach().cpu().numpy().reshape(-1),
        vertices=fitted.astype(np.float32),
        rotation=rotation,
        translation=translation,
        error_mm=error,
        per_vertex_error_mm=per_vertex,
    )


def fit_scan(
    model: FaceModel,
    scan: np.ndarray,
    weights: np.ndarray | None = None,
    use_flows: bool = True,
    prior_weight: float = 0.01,
    rounds: int = 2,
    refine_iterations: int = 15,
    progress: ProgressCallback | None = None,
    neutral: bool = False,
) -> FitResult:
    """Fit identity and expression codes to a scan in the model's topology.

    Args:
        model: the face model.
        scan: ``(V, 3)`` scan vertices in correspondence with the model (metres; NaN = missing).
        weights: optional ``(V,)`` non-negative per-vertex weights (0 masks a vertex out).
        use_flows: refine in the flows' latent space (BabyFlow) or stop at the bilinear fit.
        prior_weight: ``gamma2`` in [0, 1) (``gamma1 = 1 - gamma2``).
        rounds: rounds of (Procrustes re-alignment, bilinear solve).
        refine_iterations: L-BFGS iterations of the latent refinement with flows.
        progress: ``progress(done, total, message)``; returning False cancels.
        neutral: keep the neutral expression and fit the identity alone (a character's rest
            pose; a free expression would absorb identity and give the wrong identity's
            expressions). Without flows only.

    Returns:
        A :class:`FitResult`.

    Raises:
        FaceForgeError: wrong shape, no usable vertex, bad weights, a size no head has in metres
            (:func:`check_head_size`); Cancelled when cancelled.
    """
    scan, w = _checked_scan(model.n_vertices, scan, weights, prior_weight)
    check_head_size(scan, w, model.mean.reshape(-1, 3).cpu().numpy().astype(np.float64))
    rho = prior_weight / (1.0 - prior_weight)
    clean = np.where((w > 0)[:, None], scan, 0.0)
    weight_t = torch.as_tensor(w, dtype=torch.float32, device=model.device)
    total = 2 + (1 if use_flows else 0)
    if neutral and use_flows:
        raise FaceForgeError("a neutral-only fit is made without flows (use_flows=False)")
    w_id, w_ex, rotation, translation = _bilinear_fit(
        model, clean, w, weight_t, rho, rounds, progress, total, neutral
    )
    with torch.no_grad():
        b = _model_frame_offsets(model, clean, rotation, translation)
        target = model.decode(w_id, w_ex)[0].cpu().numpy().astype(np.float64)
    z_id = z_ex = None
    if use_flows:
        with torch.no_grad():
            z_id, z_ex = model.encode(w_id, w_ex)
        z_id, z_ex = _refine(model, z_id, z_ex, b, weight_t, rho, refine_iterations)
        report(progress, total, total, "latent refinement")
        with torch.no_grad():
            w_id, w_ex = (t[0] for t in model.to_bilinear(z_id, z_ex))
            target = model.decode(w_id, w_ex)[0].cpu().numpy().astype(np.float64)
    result = _fit_result(scan, w, target, rotation, translation, (w_id, w_ex, z_id, z_ex))
    result.trust = fit_trust(model, result.w_id, result.per_vertex_error_mm)
    return result


def _skew(p: torch.Tensor) -> torch.Tensor:
    """``(V, 3, 3)`` cross-product matrices ``[p]_x`` of points ``(V, 3)``."""
    zero = torch.zeros_like(p[:, 0])
    return torch.stack(
        [
            torch.stack([zero, -p[:, 2], p[:, 1]], -1),
            torch.stack([p[:, 2], zero, -p[:, 0]], -1),
            torch.stack([-p[:, 1], p[:, 0], zero], -1),
        ],
        dim=1,
    )


def _rodrigues(omega: torch.Tensor) -> torch.Tensor:
    """Rotation matrix of a rotation vector (radians)."""
    angle = torch.linalg.norm(omega)
    if float(angle) < 1e-12:
        return torch.eye(3, dtype=omega.dtype)
    k = _skew((omega / angle)[None])[0]
    return torch.eye(3, dtype=omega.dtype) + torch.sin(angle) * k + (1 - torch.cos(angle)) * (k @ k)


def _gauss_newton(
    core_v: torch.Tensor,
    mean: torch.Tensor,
    points: torch.Tensor,
    weight: torch.Tensor,
    w_id: torch.Tensor,
    w_ex: torch.Tensor,
    prior: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    rho: float,
    iterations: int = 40,
    fixed_expression: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Joint Levenberg-Marquardt on both bilinear codes and a rigid correction of the scan
    (on the identity code and the rigid correction alone with ``fixed_expression``).

    Minimises ``sum_v weight_v |x_v(w_id, w_ex) - (R p_v + t)|^2`` (mm^2, weight-normalised) plus
    the Gaussian code prior of :func:`_ridge`, with ``p`` the scan points ``(V, 3)`` and ``mean``
    the mean face ``(V, 3)``. Returns the codes and the rigid correction ``(R, t)`` of ``p``.
    """
    id_mean, id_var, ex_mean, ex_var = (q.double() for q in prior)
    n = core_v.shape[0]
    core = core_v.double().reshape(3 * n, core_v.shape[2], core_v.shape[3])  # (3N, r_id, r_ex)
    base = points.double()
    mean_flat = mean.double().reshape(-1)
    weight3 = weight.double().repeat_interleave(3)
    w_id, w_ex = w_id.double(), w_ex.double()
    r_id, r_ex = w_id.shape[0], w_ex.shape[0]
    d = r_id + r_ex
    scale = 1e6 / weight.double().sum()
    prior_diag = torch.cat([1.0 / id_var, 1.0 / ex_var, torch.zeros(6, dtype=torch.float64)]) * rho / d
    prior_mean = torch.cat([id_mean, ex_mean, torch.zeros(6, dtype=torch.float64)])
    rotation, translation = torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)

    def energy(a: torch.Tensor, e: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The energy and ``core @ e`` (the next identity Jacobian if the step is taken)."""
        j = core @ e
        x = j @ a + mean_flat
        code = torch.cat([a, e, torch.zeros(6, dtype=torch.float64)])
        value = (weight3 * (x - p.reshape(-1)) ** 2).sum() * scale + (
            prior_diag * (code - prior_mean) ** 2
        ).sum()
        return value, j

    p = base @ rotation.T + translation
    damping = 1e-3
    current, j_id = energy(w_id, w_ex, p)  # j_id: (3N, r_id)
    for _ in range(iterations):
        j_ex = w_id @ core  # (3N, r_ex); batched, not einsum (see _bilinear_fit)
        if fixed_expression:
            j_ex = torch.zeros_like(j_ex)  # the Hessian's expression block decouples
        j_rot = _skew(p).reshape(3 * n, 3)
        j_trans = -torch.eye(3, dtype=torch.float64).repeat(n, 1)
        jac = torch.cat([j_id, j_ex, j_rot, j_trans], dim=1)  # (3N, d + 6)
        resid = j_id @ w_id + mean_flat - p.reshape(-1)
        jw = jac * weight3[:, None]
        hess = jw.T @ jac * scale + torch.diag(prior_diag)
        params = torch.cat([w_id, w_ex, torch.zeros(6, dtype=torch.float64)])
        grad = jw.T @ resid * scale + prior_diag * (params - prior_mean)
        while True:
            step = torch.linalg.solve(hess + damping * torch.diag(torch.diagonal(hess) + 1e-12), -grad)
            if fixed_expression:
                step[r_id:d] = 0.0
            cand_id, cand_ex = w_id + step[:r_id], w_ex + step[r_id:d]
            step_rot = _rodrigues(step[d : d + 3])
            cand_p = p @ step_rot.T + step[d + 3 :]
            trial, cand_j_id = energy(cand_id, cand_ex, cand_p)
            if trial < current:
                damping = max(damping / 3, 1e-9)
                break
            damping *= 10
            if damping > 1e8:
                return w_id.float(), w_ex.float(), rotation, translation
        improvement = float((current - trial) / current.clamp_min(1e-12))
        w_id, w_ex, p, current, j_id = cand_id, cand_ex, cand_p, trial, cand_j_id
        rotation, translation = step_rot @ rotation, step_rot @ translation + step[d + 3 :]
        if improvement < 1e-7:
            break
    return w_id.float(), w_ex.float(), rotation, translation


def _refine(
    model: FaceModel,
    z_id: torch.Tensor,
    z_ex: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    rho: float,
    iterations: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L-BFGS on both latent codes with the standard normal prior of the flows' latent space."""
    z_id = z_id.detach().clone().reshape(-1).requires_grad_(True)
    z_ex = z_ex.detach().clone().reshape(-1).requires_grad_(True)
    optimiser = torch.optim.LBFGS([z_id, z_ex], max_iter=iterations, line_search_fn="strong_wolfe")
    d = model.rank_identity + model.rank_expression
    scale = 1e6 / weight.sum()

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        x = model.decode_latent(z_id, z_ex)[0] - model.mean.reshape(-1, 3)
        energy = (weight * ((x - target) ** 2).sum(-1)).sum() * scale + rho * (
            (z_id**2).sum() + (z_ex**2).sum()
        ) / d
        energy.backward()
        return energy

    optimiser.step(closure)
    return z_id.detach()[None], z_ex.detach()[None]
