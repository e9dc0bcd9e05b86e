"""FaceForge's identity fitted to a character's surface, with the head's size and pose.

The model's neutral head is linear in the identity code, ``X(w) = mean + A w`` (``A`` = the core
contracted with the neutral expression), so one Gauss-Newton step of

    E(w, R, t, s) = sum_i c_i [ (n_i . (y_i - p_i))^2 + PP |y_i - p_i|^2 ] / sum c  (mm^2)
                    + rho * mean_k (w_k - mu_k)^2 / var_k,        y_i = s R X_i(w) + t

(``p_i`` the closest character point of template vertex ``i``, ``n_i`` the character's normal
there, ``c_i`` the registration weights) is a small dense solve: 25 identity components, rotation,
translation and log-scale. Point-to-plane ICP slides along the surface in a few iterations where
point-to-point needs dozens (measured on heads of known identity: closest points with ten identity
refits left the code 0.1-0.4 away from the truth and the surfaces 0.6-2.7 mm apart; this fit
recovers the code to 0.002-0.004 and the head's size to 0.1 %). The scale is free because the
alignment scales every head to the *mean* head's size: an infant's head came out 1.87 times too
large and its identity wrong; here size is explained by identity and scale together, from the
head's proportions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceforge.progress import ProgressCallback, report
from faceforge.topology.surface import Surface, vertex_normals
from faceforge.topology.template import Template

__all__ = ["SurfaceFit", "fit_identity_to_surface", "POINT_TO_POINT", "MAX_DISTANCE"]

#: Weight of the point-to-point term beside point-to-plane (keeps flat regions from drifting).
POINT_TO_POINT = 0.1
#: Matches farther than this (metres) or with normals more than 60 degrees apart do not pull.
MAX_DISTANCE = 0.01
#: Independent pieces the residual error field is read as (see :func:`posterior_code`).
ERROR_PATCHES = 25
#: Identity prior weight ``rho`` of the energy (the scan fit's default 0.01 as ``gamma2 / gamma1``).
PRIOR = 0.01 / 0.99


@dataclass
class SurfaceFit:
    """An identity with its pose on a surface: ``y = scale * rotation @ X(w_id) + translation``.

    Attributes:
        w_id: ``(r_id,)`` identity code (neutral expression).
        scale, rotation, translation: model frame -> the surface's frame.
        vertices: ``(V, 3)`` the fitted head in the surface's frame (every vertex, tongue included).
        residual_mm: weighted RMS distance of the matched template vertices to the surface
            (millimetres of the surface's frame).
        matched_fraction: weighted share of the template vertices that found a compatible match.
        iterations: Gauss-Newton iterations run.
        w_source: ``(r_id,)`` the identity to take expressions from: the posterior mean of the
            code when the surfaces' remaining distance is read as noise (see
            :func:`posterior_code`).
    """

    w_id: np.ndarray
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    vertices: np.ndarray
    residual_mm: float
    matched_fraction: float
    iterations: int
    w_source: np.ndarray


def posterior_code(
    w_fit: np.ndarray, hessian: np.ndarray, mu: np.ndarray, var: np.ndarray, noise_mm: float
) -> np.ndarray:
    """The identity code's posterior mean when the fit's residual is noise of ``noise_mm``.

    A bilinear model's expressions are not fixed by its neutral: some identity directions change
    the neutral head by 0.06 mm per prior standard deviation and ``jawOpen`` by 0.9 mm. A character
    inside the model's space (residual ~0.02 mm) pins them; a real artist's head (residual 1-2
    mm) does not, and its fitted code then carries wild expressions. The residual is read as one
    error field of ``noise_mm`` RMS (a character's difference from the model is a shape, not
    independent noise per vertex), so the data term (mean squared mm) weighs ``1 / noise^2``
    against a unit-normal prior per direction: directions that move the neutral head by more
    than the residual keep the fit, the others fall back to the mean identity.

    Args:
        w_fit: ``(r,)`` the fitted code; ``hessian``: ``(r, r)`` the data term's Gauss-Newton
            Hessian in the code at the fit (mm^2 per unit code); ``mu``, ``var``: the prior.
        noise_mm: the per-vertex noise (the fit's residual).
    """
    precision = np.diag(1.0 / var) * max(noise_mm, 1e-3) ** 2 / ERROR_PATCHES
    return np.linalg.solve(hessian + precision, hessian @ w_fit + precision @ mu)


def _skew(p: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)`` cross-product matrices of ``p (N, 3)``."""
    z = np.zeros(len(p))
    return np.stack(
        [
            np.stack([z, -p[:, 2], p[:, 1]], -1),
            np.stack([p[:, 2], z, -p[:, 0]], -1),
            np.stack([-p[:, 1], p[:, 0], z], -1),
        ],
        axis=1,
    )


def _rotation(omega: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(omega))
    if angle < 1e-15:
        return np.eye(3)
    k = _skew((omega / angle)[None])[0]
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def _neutral_basis(model) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """``mean (V, 3)``, ``A (V, 3, r_id)`` (neutral head = mean + A w), prior mean and variance."""
    n = model.n_vertices
    core = model.core.reshape(n, 3, model.rank_identity, model.rank_expression).double()
    basis = (core @ model.neutral_expression.double()).cpu().numpy()
    mean = model.mean.reshape(n, 3).double().cpu().numpy()
    mu, var = (q.double().cpu().numpy() for q in model.identity_prior)
    return mean, basis, mu, var


def fit_identity_to_surface(
    model,  # noqa: ANN001 - FaceModel
    template: Template,
    surface: Surface,
    weights: np.ndarray,
    scale: float | None = None,
    landmarks: np.ndarray | None = None,
    landmark_weight: float = 0.0,
    iterations: int = 40,
    progress: ProgressCallback | None = None,
) -> SurfaceFit:
    """Fit FaceForge's identity, pose and size to a surface near the template (module docstring).

    Args:
        model: the face model.
        template: its template (skin, faces).
        surface: the character in the template's frame (after the coarse similarity).
        weights: ``(V,)`` data weight per template vertex (0: does not pull).
        scale: fix the model -> surface scale (a real unit) instead of fitting it.
        landmarks: optional ``(68, 3)`` landmark targets in the surface's frame (NaN: unknown).
        landmark_weight: weight of each landmark against the weight of all data together.
        iterations: at most this many Gauss-Newton iterations (stops earlier when converged).
        progress: ``progress(done, total, message)``; returning False cancels.

    Returns:
        :class:`SurfaceFit`.
    """
    mean, basis, mu, var = _neutral_basis(model)
    r = basis.shape[-1]
    use = np.flatnonzero(weights > 0)
    skin_faces = template.faces[template.skin[template.faces].all(1)]
    w, rot, t, s = mu.copy(), np.eye(3), np.zeros(3), 1.0 if scale is None else float(scale)
    lm_ok = np.zeros(0, dtype=np.int64)
    if landmarks is not None and landmark_weight > 0:
        lm_ok = np.flatnonzero(np.isfinite(landmarks).all(1))
    previous, residual, matched, done, flat = np.inf, np.inf, 0.0, 0, 0
    for it in range(iterations):
        report(progress, it, iterations, "identity fit")
        y = s * (mean + basis @ w) @ rot.T + t
        normals = vertex_normals(y, skin_faces)
        hit = surface.closest(y[use], normals=normals[use], min_cos=0.5)
        p, n = surface.points(hit), surface.normals(hit)
        ok = (hit.distances < MAX_DISTANCE) & ((n * normals[use]).sum(1) > 0.5)
        idx, p, n = use[ok], p[ok], n[ok]
        c = weights[idx]
        matched = float(c.sum() / weights[use].sum())
        yi = y[idx]
        jac = np.concatenate(
            [
                s * np.einsum("ij,vjr->vir", rot, basis[idx]),  # identity
                -_skew(yi - t),  # rotation (small angles, about t)
                np.broadcast_to(np.eye(3), (len(idx), 3, 3)),  # translation
                (yi - t)[:, :, None],  # log-scale
            ],
            axis=2,
        )
        res = yi - p
        residual = float(np.sqrt((c * (res**2).sum(1)).sum() / c.sum()) * 1e3)
        j_plane, r_plane = np.einsum("vi,vip->vp", n, jac), (n * res).sum(1)
        norm = 1e6 / c.sum()
        data_hess = norm * (
            np.einsum("v,vp,vq->pq", c, j_plane, j_plane)
            + POINT_TO_POINT * np.einsum("v,vip,viq->pq", c, jac, jac)
        )
        hess = data_hess.copy()
        grad = norm * (
            np.einsum("v,vp,v->p", c, j_plane, r_plane)
            + POINT_TO_POINT * np.einsum("v,vip,vi->p", c, jac, res)
        )
        if len(lm_ok):
            lm_idx = template.landmarks[lm_ok]
            j_lm = np.concatenate(
                [
                    s * np.einsum("ij,vjr->vir", rot, basis[lm_idx]),
                    -_skew(y[lm_idx] - t),
                    np.broadcast_to(np.eye(3), (len(lm_idx), 3, 3)),
                    (y[lm_idx] - t)[:, :, None],
                ],
                axis=2,
            )
            r_lm = y[lm_idx] - landmarks[lm_ok]
            lw = 1e6 * landmark_weight / len(lm_ok)
            hess += lw * np.einsum("vip,viq->pq", j_lm, j_lm)
            grad += lw * np.einsum("vip,vi->p", j_lm, r_lm)
        prior = PRIOR / (r * var)
        hess[:r, :r] += np.diag(prior)
        grad[:r] += prior * (w - mu)
        if scale is not None:  # the unit is given: no scale step
            hess[-1, :] = hess[:, -1] = 0.0
            hess[-1, -1], grad[-1] = 1.0, 0.0
        hess += np.eye(len(hess)) * 1e-9 * np.trace(hess) / len(hess)
        step = -np.linalg.solve(hess, grad)
        w = w + step[:r]
        rot = _rotation(step[r : r + 3]) @ rot
        t = t + step[r + 3 : r + 6]
        s = s * float(np.exp(step[-1]))
        done = it + 1
        # Converged: the surfaces stopped approaching (1/1000 mm) for three steps in a row (a
        # single flat step happens while the head slides into place).
        flat = flat + 1 if abs(previous - residual) < 1e-3 else 0
        if flat >= 3:
            break
        previous = residual
    vertices = s * (mean + basis @ w) @ rot.T + t
    # The data Hessian is in surface-frame mm; per true mm it is divided by the scale squared.
    w_source = posterior_code(w, data_hess[:r, :r] / s**2, mu, var, residual / s)
    return SurfaceFit(
        w_id=w.astype(np.float32),
        scale=s,
        rotation=rot,
        translation=t,
        vertices=vertices,
        residual_mm=residual,
        matched_fraction=matched,
        iterations=done,
        w_source=w_source.astype(np.float32),
    )
