"""Does a fit lie inside the model's space? Residual per region and identity log-likelihood.

A fit is always *some* face of the model; whether it is *the* scanned face depends on whether the
scan lies in the model's space. :func:`fit_trust` reports the fit's mean residual per region
and the identity code's log-likelihood under the identity flow, against limits measured when
the model was built (:func:`faceforge.model.calibration.calibrate_trust`) on fits of held-out
identities of the training distribution. With a dozen regions, per-region 95th percentiles
would flag almost half of those faces somewhere; the region limits are instead each region's
median residual times one common factor, the 97.5th percentile over the calibration faces of
their worst region's ratio to its median, so that 2.5% of them exceed some region's limit; the
identity limit is the 2.5th percentile of their log-likelihood. A region over its limit, or an
identity less likely than its limit, is named in the report so a user knows which part of the
fit not to trust.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from faceforge.model.face_model import FaceModel

__all__ = [
    "fit_trust",
    "identity_log_prob",
    "region_errors",
]

_SKIPPED_REGIONS = ("held",)


def identity_log_prob(model: FaceModel, w_id: np.ndarray) -> float:
    """Log density (nats) of an identity code under the identity flow."""
    with torch.no_grad():
        code = torch.as_tensor(np.asarray(w_id), dtype=torch.float32, device=model.device).reshape(1, -1)
        return float(model.identity_flow.log_prob(code)[0])


def region_errors(model: FaceModel, per_vertex_error_mm: np.ndarray) -> dict[str, float]:
    """Mean residual (mm) of each of the model's regions (NaN vertices ignored; a region with
    no data is left out)."""
    out = {}
    for name, indices in model.metadata.get("regions", {}).items():
        if name in _SKIPPED_REGIONS or not len(indices):
            continue
        values = per_vertex_error_mm[np.asarray(indices, dtype=np.int64)]
        if np.isfinite(values).any():
            out[name] = float(np.nanmean(values))
    return out


def fit_trust(model: FaceModel, w_id: np.ndarray, per_vertex_error_mm: np.ndarray) -> dict:
    """The trust report of one fit (see the module docstring).

    Returns:
        ``{"region_error_mm", "identity_log_prob", "limits"}`` plus, when the model carries
        calibrated limits, ``"outside_regions"`` (regions over their limit, worst first, with
        the ratio to it), ``"identity_unlikely"`` and ``"trusted"`` (neither).
    """
    regions = region_errors(model, per_vertex_error_mm)
    log_prob = identity_log_prob(model, w_id)
    limits = model.metadata.get("fit_calibration")
    report: dict = {"region_error_mm": regions, "identity_log_prob": log_prob, "limits": limits}
    if not limits:
        report["note"] = "this model has no calibrated limits: rebuild it to judge fits"
        return report
    outside = {
        name: value / limits["region_error_mm"][name]
        for name, value in regions.items()
        if name in limits["region_error_mm"] and value > limits["region_error_mm"][name]
    }
    report["outside_regions"] = [
        {"region": name, "error_mm": regions[name], "ratio_to_limit": ratio}
        for name, ratio in sorted(outside.items(), key=lambda kv: -kv[1])
    ]
    report["identity_unlikely"] = bool(log_prob < limits["identity_log_prob"])
    report["trusted"] = not outside and not report["identity_unlikely"]
    return report
