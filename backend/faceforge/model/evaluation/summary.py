"""The fitting rows of the evaluation: per method, in distribution (the test identities) and out
of distribution (the ``ood_test`` identities of another sampler)."""

from __future__ import annotations

import numpy as np

from faceforge.model.evaluation.metrics import mean_std

__all__ = ["METHODS", "REGIONS", "fitting_summary", "ood_summary"]

METHODS = ("babyfm_pca", "tensor_pca", "bilinear", "bilinear_flow")
"""Rows of the fitting table: (a) BabyFM-style PCA, (b) tensor PCA, (c) bilinear, (d) BabyFlow."""

REGIONS = ("mouth", "eyes", "nose")


def fitting_summary(per_vertex: dict[str, np.ndarray], regions: dict[str, np.ndarray], models: dict) -> dict:
    """The fitting rows of one population from per-vertex test errors.

    Args:
        per_vertex: method -> ``(M, V)`` per-vertex errors (mm) on the M test faces.
        regions: the dataset's region -> vertex indices (mouth, eyes, nose are reported).
        models: ``babyfm_pca``, ``tensor_pca`` (:class:`LinearPCAModel`) and ``bilinear`` (FaceModel).

    Returns:
        ``ranks``, ``fit_error_mm`` (mean over faces of the mean over vertices), ``fit_error_std_mm``
        (over faces), ``per_face_error_mm``, ``ratio_flow_vs_pca``, ``ratio_flow_vs_tensor_pca``,
        ``ratio_bilinear_vs_pca`` and ``per_region_mm``.
    """
    per_face = {m: per_vertex[m].mean(axis=1) for m in METHODS}
    fit_error = {m: float(per_face[m].mean()) for m in METHODS}
    babyfm, tensor_pca = models["babyfm_pca"], models["tensor_pca"]
    r_id, r_ex = models["bilinear"].rank_identity, models["bilinear"].rank_expression
    return {
        "ranks": {
            "rank_identity": r_id,
            "rank_expression": r_ex,
            "bilinear_total": r_id + r_ex,
            "babyfm_pca": babyfm.n_components,
            "tensor_pca": tensor_pca.n_components,
            "babyfm_pca_train_faces": babyfm.n_train,
            "tensor_pca_train_faces": tensor_pca.n_train,
            "babyfm_pca_variance_kept": babyfm.explained,
            "tensor_pca_variance_kept": tensor_pca.explained,
        },
        "fit_error_mm": fit_error,
        "fit_error_std_mm": {m: float(per_face[m].std()) for m in METHODS},
        "per_face_error_mm": {m: [float(v) for v in per_face[m]] for m in METHODS},
        "ratio_flow_vs_pca": fit_error["bilinear_flow"] / fit_error["babyfm_pca"],
        "ratio_flow_vs_tensor_pca": fit_error["bilinear_flow"] / fit_error["tensor_pca"],
        "ratio_bilinear_vs_pca": fit_error["bilinear"] / fit_error["babyfm_pca"],
        "per_region_mm": {
            region: {m: float(per_vertex[m][:, regions[region]].mean()) for m in METHODS}
            for region in REGIONS
            if region in regions
        },
    }


def ood_summary(
    per_vertex: dict[str, np.ndarray],
    per_vertex_ood: dict[str, np.ndarray],
    regions: dict[str, np.ndarray],
    trust: dict[str, list],
    ood_identities: np.ndarray,
) -> dict:
    """Out-of-distribution rows beside the test rows: fit error per method, its ratio to the
    test error, per-region errors, the identity flow's log-likelihood of both sets' fitted codes
    and how often the fit's trust report flags each set; ``ood_identities`` is the identity of
    each out-of-distribution face."""
    test_error = {m: float(per_vertex[m].mean(axis=1).mean()) for m in METHODS}
    per_face = {m: per_vertex_ood[m].mean(axis=1) for m in METHODS}

    def log_likelihood(rows: list) -> dict:
        return mean_std(np.array([r["identity_log_prob"] for r in rows]))

    def flagged(rows: list) -> float | None:
        known = [r for r in rows if "trusted" in r]
        return float(np.mean([not r["trusted"] for r in known])) if known else None

    return {
        "n_faces": int(len(ood_identities)),
        "n_identities": int(len(np.unique(ood_identities))),
        "fit_error_mm": {m: float(per_face[m].mean()) for m in METHODS},
        "fit_error_std_mm": {m: float(per_face[m].std()) for m in METHODS},
        "ratio_ood_vs_test": {m: float(per_face[m].mean()) / test_error[m] for m in METHODS},
        "per_region_mm": {
            region: {m: float(per_vertex_ood[m][:, regions[region]].mean()) for m in METHODS}
            for region in REGIONS
            if region in regions
        },
        "identity_log_likelihood": {
            "test": log_likelihood(trust["test"]),
            "ood_test": log_likelihood(trust["ood_test"]),
        },
        "flagged_outside": {"test": flagged(trust["test"]), "ood_test": flagged(trust["ood_test"])},
    }
