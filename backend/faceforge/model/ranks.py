"""Choosing the identity rank by held-out error, in and out of the training distribution.

Explained variance says how much of the *training* identities a rank keeps, not how well the
space reaches faces unlike them. :func:`select_identity_rank` projects held-out identities
(least squares, every expression of each identity at once) onto the leading ``r`` identity
components for each candidate ``r`` and keeps the first rank after which the
out-of-distribution validation error falls by less than :data:`MIN_GAIN_MM` per added component:
the error keeps falling up to the training identities' numerical rank (160 components for all
ages), but each component costs fitting time (a fit's cost grows with ``r_id * r_ex``), file
size and prior-dominated, poorly identifiable directions. The dataset's
out-of-distribution identities (``ood_val``, another sampler, see
:mod:`faceforge.data.anny_source`) make that split; the reported figures use ``ood_test``.
"""

from __future__ import annotations

import numpy as np

from faceforge.model.bilinear import BilinearBasis

__all__ = [
    "IDENTITY_RANK_CANDIDATES",
    "MIN_GAIN_MM",
    "numerical_rank",
    "projection_errors",
    "select_identity_rank",
]

#: Identity ranks tried (clipped to the number of augmented training identities).
IDENTITY_RANK_CANDIDATES = (25, 40, 60, 80, 100, 130, 160, 200)
#: Out-of-distribution error (mm per vertex) one more identity component must still remove.
MIN_GAIN_MM = 0.01


def projection_errors(basis: BilinearBasis, faces: np.ndarray, ranks: list[int]) -> dict[int, np.ndarray]:
    """Mean per-vertex error (mm) of each identity's least-squares projection at each rank.

    Args:
        basis: the HOSVD with at least ``max(ranks)`` identity components.
        faces: ``(K, E, 3N)`` held-out identities under the basis's ``E`` expressions, metres.
        ranks: identity ranks to evaluate.

    Returns:
        ``{rank: (K,) errors in mm}``.
    """
    core = basis.core.astype(np.float64)  # (3N, r, E')
    u_ex = basis.expression_factor.astype(np.float64)  # (E, E')
    x = np.asarray(faces, dtype=np.float64) - basis.mean.astype(np.float64)
    n_ids, n_ex = x.shape[:2]
    r_max = max(ranks)
    lhs = np.zeros((r_max, r_max))
    rhs = np.zeros((n_ids, r_max))
    for e in range(n_ex):
        a = core[:, :r_max] @ u_ex[e]  # (3N, r_max)
        lhs += a.T @ a
        rhs += x[:, e] @ a
    codes = {r: np.linalg.solve(lhs[:r, :r], rhs[:, :r].T).T for r in ranks}  # (K, r)
    errors = {r: np.zeros(n_ids) for r in ranks}
    for e in range(n_ex):
        a = core[:, :r_max] @ u_ex[e]
        for r in ranks:
            residual = (x[:, e] - codes[r] @ a[:, :r].T).reshape(n_ids, -1, 3)
            errors[r] += np.linalg.norm(residual, axis=2).mean(axis=1)
    return {r: 1e3 * v / n_ex for r, v in errors.items()}


def numerical_rank(eigenvalues: np.ndarray, relative: float = 1e-6) -> int:
    """Components whose eigenvalue exceeds ``relative`` times the largest: beyond them the
    identity space has no training data (symmetrized copies add no rank, nor do the mirrors of
    near-symmetric faces), codes along them are not identifiable, and the float32 Gram matrix
    the HOSVD diagonalises cannot resolve them (its rounding is ~1e-7 of the largest)."""
    ev = np.asarray(eigenvalues, dtype=np.float64)
    return max(1, int(np.sum(ev > relative * ev.max())))


def select_identity_rank(
    basis: BilinearBasis,
    in_distribution: np.ndarray,
    out_of_distribution: np.ndarray | None,
    candidates: tuple[int, ...] = IDENTITY_RANK_CANDIDATES,
    min_gain_mm: float = MIN_GAIN_MM,
) -> tuple[int, dict]:
    """The identity rank (see the module docstring) and the error curve behind it.

    Args:
        basis: the HOSVD with the most components worth trying.
        in_distribution: ``(K, E, 3N)`` validation identities of the training distribution.
        out_of_distribution: ``(K', E, 3N)`` out-of-distribution validation identities; None
            (a dataset without them) selects on ``in_distribution`` instead.
        candidates: ranks to try (those above the basis's rank or above the training
            identities' numerical rank are dropped; that rank is tried when it is smaller than
            every candidate).
        min_gain_mm: the error one more component must remove (mm per vertex) for the next
            candidate to be taken.

    Returns:
        The rank and ``{"ranks", "val_mm", "ood_val_mm", "selected_on", "min_gain_mm"}``.
    """
    usable = min(basis.rank_identity, numerical_rank(basis.identity_eigenvalues))
    ranks = sorted({r for r in candidates if r <= usable} or {usable})
    val = projection_errors(basis, in_distribution, ranks)
    ood = projection_errors(basis, out_of_distribution, ranks) if out_of_distribution is not None else None
    chosen_on = ood if ood is not None else val
    means = [float(chosen_on[r].mean()) for r in ranks]
    rank = ranks[-1]
    for k in range(len(ranks) - 1):
        if (means[k] - means[k + 1]) / (ranks[k + 1] - ranks[k]) < min_gain_mm:
            rank = ranks[k]
            break
    return rank, {
        "ranks": ranks,
        "val_mm": [round(float(val[r].mean()), 4) for r in ranks],
        "ood_val_mm": [round(float(ood[r].mean()), 4) for r in ranks] if ood is not None else None,
        "selected_on": "ood_val" if ood is not None else "val",
        "min_gain_mm": min_gain_mm,
    }
