"""The limits of a model's trust report (:mod:`faceforge.model.trust`), measured at build time on
fits of held-out identities of the training distribution."""

from __future__ import annotations

import numpy as np

from faceforge.data.dataset import FaceDataset
from faceforge.model.face_model import FaceModel
from faceforge.model.fitting import fit_scan
from faceforge.model.trust import identity_log_prob, region_errors

__all__ = ["CALIBRATION_FACES", "FALSE_ALARM", "calibrate_trust"]

#: Held-out faces fitted to calibrate the limits (neutral and one expression per identity).
CALIBRATION_FACES = 48
#: Share of in-distribution faces each of the two tests may flag.
FALSE_ALARM = 0.025


def calibrate_trust(model: FaceModel, dataset: FaceDataset, identities: np.ndarray, seed: int = 0) -> dict:
    """Limits for :func:`faceforge.model.trust.fit_trust` from fits of held-out ``identities``
    (see :mod:`faceforge.model.trust` for how they are set).

    Fits the neutral face and one random expression of up to ``CALIBRATION_FACES / 2``
    identities with :func:`faceforge.model.fitting.fit_scan`'s defaults (with flows, as a user
    fits).

    Returns:
        ``{"region_error_mm": {region: limit}, "identity_log_prob": limit, "faces": n,
        "false_alarm": share}``.
    """
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(np.sort(identities))[: CALIBRATION_FACES // 2]
    n_ex = dataset.vertices.shape[1]
    per_region: dict[str, list[float]] = {}
    log_probs = []
    for i in chosen:
        for e in (0, int(rng.integers(1, n_ex))):
            fit = fit_scan(model, np.asarray(dataset.vertices[i, e], dtype=np.float64))
            for name, value in region_errors(model, fit.per_vertex_error_mm).items():
                per_region.setdefault(name, []).append(value)
            log_probs.append(identity_log_prob(model, fit.w_id))
    names = sorted(per_region)
    table = np.array([per_region[n] for n in names])  # (regions, faces)
    median = np.median(table, axis=1)
    worst = (table / np.maximum(median[:, None], 1e-9)).max(axis=0)
    factor = float(np.percentile(worst, 100 * (1 - FALSE_ALARM)))
    return {
        "region_error_mm": {n: float(factor * m) for n, m in zip(names, median, strict=True)},
        "identity_log_prob": float(np.percentile(log_probs, 100 * FALSE_ALARM)),
        "faces": len(log_probs),
        "false_alarm": FALSE_ALARM,
    }
