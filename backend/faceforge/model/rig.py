"""Expression rigs from the face model: what the Blender add-on turns into shape keys.

A *rig* of an identity is its neutral face (the shape-key basis) and one face per named training
expression (the 52 ARKit units and the composite expressions), each an absolute vertex array in
metres. Because the model is linear in the expression code for a fixed identity (Eq. 9), a mix of
shape keys with values ``v`` is exactly the face of the expression code
``w_n + sum_k v_k (w_k - w_n)``: that is how key values map back to codes (:func:`mix_expression`)
and how a sampled expression maps to key values (:func:`expression_weights`).

Scans in the model's topology get a rig too (:func:`rig_scan`): the model is fitted, the fitted
expression is removed from the scan (a neutral basis that keeps the scan's own detail), and every
expression is added as the fitted identity's displacement, rotated into the scan's frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from faceforge.errors import FaceForgeError
from faceforge.model.face_model import FaceModel, project_to_radius
from faceforge.model.fitting import FitResult, fit_scan
from faceforge.progress import ProgressCallback

__all__ = [
    "NEUTRAL",
    "ScanRig",
    "age_group_identity",
    "expression_rig",
    "expression_weights",
    "key_names",
    "mix_expression",
    "rig_scan",
    "sample_identity",
]

NEUTRAL = "neutral"


def key_names(model: FaceModel) -> list[str]:
    """Names of the expression shape keys: every named expression but the neutral one."""
    return [name for name in model.expression_names if name != NEUTRAL]


def _key_codes(model: FaceModel) -> torch.Tensor:
    """``(E, r_ex)`` expression codes of :func:`key_names`, in that order."""
    return torch.stack([model.expression_code(name) for name in key_names(model)])


def sample_identity(
    model: FaceModel,
    seed: int = 0,
    radius: float | None = None,
    leading: Sequence[float] | None = None,
) -> np.ndarray:
    """A latent identity code ``z_id (r_id,)``.

    Args:
        model: the face model.
        seed: random seed of the standard-normal draw.
        radius: if given, the draw is projected to this confidence level (Eq. 24).
        leading: values that replace the first ``len(leading)`` latent dimensions after the draw
            (the add-on's identity sliders; 0 is the mode of each dimension); values past
            ``r_id`` are ignored.
    """
    generator = torch.Generator().manual_seed(int(seed))
    z = torch.randn(1, model.rank_identity, generator=generator)
    if radius is not None:
        z = project_to_radius(z, radius)
    if leading is not None:
        # Sliders past the model's identity rank have no dimension to set: they are ignored.
        values = np.asarray(leading, dtype=np.float32).reshape(-1)[: model.rank_identity]
        if not np.all(np.isfinite(values)):
            raise FaceForgeError("slider values must be finite numbers")
        z[0, : len(values)] = torch.from_numpy(values)
    return z[0].numpy()


def identity_codes(model: FaceModel, z_id: np.ndarray) -> torch.Tensor:
    """Bilinear identity codes ``(B, r_id)`` of latent codes ``(B, r_id)`` through the identity flow."""
    z = torch.as_tensor(np.asarray(z_id, dtype=np.float32), device=model.device)
    z = z.reshape(-1, model.rank_identity)
    if not torch.isfinite(z).all():
        raise FaceForgeError("identity codes must be finite")
    with torch.no_grad():
        return model.identity_flow.inverse(z)


def expression_rig(model: FaceModel, w_id: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Neutral faces ``(B, V, 3)`` and expression faces ``(B, E, V, 3)`` (float32, metres) of
    identity codes ``w_id (B, r_id)``; ``E`` follows :func:`key_names`."""
    w_id = torch.as_tensor(w_id, dtype=torch.float32, device=model.device).reshape(-1, model.rank_identity)
    codes = _key_codes(model)
    with torch.no_grad():
        neutral = model.decode(w_id, model.neutral_expression)
        faces = torch.stack([model.decode(w[None], codes) for w in w_id])
    return neutral.cpu().numpy(), faces.cpu().numpy()


def mix_expression(model: FaceModel, values: np.ndarray) -> torch.Tensor:
    """The expression code ``(r_ex,)`` of shape-key values ``(E,)`` (order of :func:`key_names`):
    ``w_n + sum_k v_k (w_k - w_n)``, exact because the model is linear in ``w_ex``."""
    values = torch.as_tensor(np.asarray(values, dtype=np.float32), device=model.device).reshape(-1)
    codes = _key_codes(model)
    if values.shape[0] != codes.shape[0] or not torch.isfinite(values).all():
        raise FaceForgeError(f"expected {codes.shape[0]} finite shape-key values, got {values.shape[0]}")
    return model.neutral_expression + values @ (codes - model.neutral_expression)


def expression_weights(
    model: FaceModel, w_id: torch.Tensor, w_ex: torch.Tensor, bounds: tuple[float, float] = (0.0, 1.0)
) -> tuple[np.ndarray, float, float]:
    """Shape-key values that best reproduce the face ``(w_id, w_ex)`` on identity ``w_id``.

    Solves ``min_v |sum_k v_k (x_k - x_n) - (x - x_n)|^2`` over all vertices with ``v`` in
    ``bounds`` (bounded least squares, as an animator's sliders are bounded).

    Returns:
        ``values (E,)``, the RMS and the maximum per-vertex residual of the reproduction, in mm.
    """
    from scipy.optimize import lsq_linear

    w_id = torch.as_tensor(w_id, dtype=torch.float32, device=model.device).reshape(1, -1)
    w_ex = torch.as_tensor(w_ex, dtype=torch.float32, device=model.device).reshape(1, -1)
    with torch.no_grad():
        neutral = model.decode(w_id, model.neutral_expression)[0]
        keys = model.decode(w_id, _key_codes(model))
        target = model.decode(w_id, w_ex)[0]
    basis = (keys - neutral).reshape(keys.shape[0], -1).T.double().cpu().numpy()  # (3V, E)
    rhs = (target - neutral).reshape(-1).double().cpu().numpy()
    solution = lsq_linear(basis, rhs, bounds=bounds, method="bvls")
    residual = (basis @ np.clip(solution.x, *bounds) - rhs).reshape(-1, 3)
    per_vertex = np.linalg.norm(residual, axis=1) * 1e3
    values = np.clip(solution.x, *bounds)  # bvls may overshoot a bound by rounding
    return values.astype(np.float32), float(np.sqrt(np.mean(per_vertex**2))), float(per_vertex.max())


def age_group_identity(model: FaceModel, group: str) -> torch.Tensor:
    """``(r_id,)`` mean identity code of an age group's training identities (see ``AGE_GROUPS``)."""
    groups = model.metadata.get("age_groups") or {}
    if group not in groups:
        known = ", ".join(groups) or "none (rebuild the model with `faceforge model build --force`)"
        raise FaceForgeError(f"the model has no age group {group!r}; it has: {known}")
    return torch.tensor(groups[group]["w_id"], dtype=torch.float32, device=model.device)


@dataclass
class ScanRig:
    """An expression rig of a scan: see :func:`rig_scan`.

    Attributes:
        neutral: ``(V, 3)`` the scan with its fitted expression removed (scan frame, metres).
        keys: ``(E, V, 3)`` ``neutral`` plus each expression's displacement (order of :func:`key_names`).
        values: ``(E,)`` shape-key values that reproduce the scan's own expression on the rig.
        fit: the model fit behind it.
    """

    neutral: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    fit: FitResult


def rig_scan(
    model: FaceModel,
    scan: np.ndarray,
    weights: np.ndarray | None = None,
    use_flows: bool = True,
    progress: ProgressCallback | None = None,
) -> ScanRig:
    """Fit the model to a scan in its topology and build the scan's own expression rig.

    The fitted expression's displacement is removed from the scan (the neutral basis keeps the
    scan's own detail); each key adds the fitted identity's displacement of one expression (so an
    infant scan gets an infant's jaw motion), rotated from the model's frame into the scan's.
    Vertices the scan lacks (NaN) take the fit's.

    The split between identity and expression is only as good as the fit: one scan does not fix
    it in a bilinear model (``w_id ⊗ w_ex`` is unchanged by ``(w_id / s, s w_ex)``); the priors
    (and the flows) choose. Scans that are already neutral are the reliable case.
    """
    fit = fit_scan(model, scan, weights, use_flows=use_flows, progress=progress)
    w_id = torch.as_tensor(fit.w_id, dtype=torch.float32, device=model.device)[None]
    w_ex = torch.as_tensor(fit.w_ex, dtype=torch.float32, device=model.device)
    with torch.no_grad():
        neutral_model = model.decode(w_id, model.neutral_expression)[0]
        fitted_model = model.decode(w_id, w_ex)[0]
        keys_model = model.decode(w_id, _key_codes(model))
    rotation = np.asarray(fit.rotation, dtype=np.float64)
    # Model-frame displacements d map to the scan frame as R^T d (row vectors: d @ R).
    expression_now = (fitted_model - neutral_model).double().cpu().numpy() @ rotation
    displacements = (keys_model - neutral_model).double().cpu().numpy() @ rotation
    scan = np.asarray(scan, dtype=np.float64)
    filled = np.where(np.isfinite(scan), scan, fit.vertices)
    neutral = filled - expression_now
    values, _, _ = expression_weights(model, w_id, w_ex)
    return ScanRig(
        neutral=neutral.astype(np.float32),
        keys=(neutral[None] + displacements).astype(np.float32),
        values=values,
        fit=fit,
    )
