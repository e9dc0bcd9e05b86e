"""Leave-one-age-band-out: how far does the identity space reach beyond the ages it saw?
(``faceforge eval reach``)

For each age band of :data:`faceforge.model.build.AGE_GROUPS` the bilinear basis is rebuilt
(HOSVD with the default build's augmentation and the same ranks) without that band's training
identities, and the held-out identities (``val`` and ``test``) are projected onto it by least
squares with every expression known (:func:`faceforge.model.ranks.projection_errors`). The
band's error with the band left out, against its error when the band is in training, says how
much of a face of an unseen age the space can still make: a harder out-of-distribution test
than the ``ood_test`` identities, which share the training ages. Projections, not fits: no
flows are trained and no prior is chosen, so the figures bound what a fit could reach.
"""

from __future__ import annotations

import time

import numpy as np

from faceforge.data.dataset import FaceDataset
from faceforge.errors import FaceForgeError
from faceforge.model.bilinear import augment_identities, expression_mirror_permutation, hosvd
from faceforge.model.build import AGE_GROUPS
from faceforge.model.ranks import numerical_rank, projection_errors
from faceforge.progress import ProgressCallback, report

__all__ = ["leave_one_band_out", "format_reach"]


def _faces(dataset: FaceDataset, ids: np.ndarray) -> np.ndarray:
    n_ex = dataset.vertices.shape[1]
    return np.asarray(dataset.vertices[np.sort(ids)], dtype=np.float32).reshape(len(ids), n_ex, -1)


def _basis(dataset: FaceDataset, train_ids: np.ndarray, rank_identity: int, rank_expression: float):  # noqa: ANN202
    tensor = augment_identities(
        np.asarray(dataset.vertices[np.sort(train_ids)], dtype=np.float32),
        dataset.mirror,
        expression_mirror_permutation(dataset.expression_names),
    )
    basis = hosvd(tensor, min(rank_identity, len(tensor)), rank_expression)
    return basis.truncated(min(rank_identity, numerical_rank(basis.identity_eigenvalues)))


def leave_one_band_out(
    dataset: FaceDataset,
    rank_identity: int = 60,
    rank_expression: float = 0.99,
    progress: ProgressCallback | None = None,
) -> dict:
    """Projection errors (mm) of each age band's held-out identities with and without the band in
    training (module docstring).

    Returns:
        ``{"rank_identity", "bands": {band: {"n_train_left_out", "n_held_out", "seen_mm",
        "left_out_mm", "ratio", "other_bands_mm"}}, "seconds"}``; bands with fewer than one
        held-out or fewer than two remaining training identities are left out.
    """
    if dataset.mirror is None or not dataset.identity_info:
        raise FaceForgeError("leave-one-band-out needs a FaceForge dataset (ages and the mirror map)")
    started = time.perf_counter()
    ages = np.array([row.get("age_years", np.nan) for row in dataset.identity_info])
    train = np.sort(dataset.split("train"))
    held = np.sort(np.concatenate([dataset.split("val"), dataset.split("test")]))
    bands = {
        name: (lo, hi)
        for name, (lo, hi) in AGE_GROUPS.items()
        if ((ages[held] >= lo) & (ages[held] < hi)).any()
        and ((ages[train] < lo) | (ages[train] >= hi)).sum() >= 2
    }
    total = len(bands) + 1
    report(progress, 0, total, "basis of every band")
    full = _basis(dataset, train, rank_identity, rank_expression)
    rank = full.rank_identity
    held_faces = _faces(dataset, held)
    seen = projection_errors(full, held_faces, [rank])[rank]
    out: dict = {"rank_identity": rank, "bands": {}}
    for k, (name, (lo, hi)) in enumerate(bands.items()):
        report(progress, k + 1, total, f"without {name}")
        inside = (ages[held] >= lo) & (ages[held] < hi)
        keep = train[(ages[train] < lo) | (ages[train] >= hi)]
        basis = _basis(dataset, keep, rank, rank_expression)
        errors = projection_errors(basis, held_faces, [basis.rank_identity])[basis.rank_identity]
        out["bands"][name] = {
            "years": [lo, hi],
            "n_train_left_out": int(len(train) - len(keep)),
            "n_held_out": int(inside.sum()),
            "seen_mm": float(seen[inside].mean()),
            "left_out_mm": float(errors[inside].mean()),
            "ratio": float(errors[inside].mean() / seen[inside].mean()),
            "other_bands_mm": float(errors[~inside].mean()) if (~inside).any() else None,
        }
    report(progress, total, total, "done")
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def format_reach(result: dict) -> list[str]:
    """Text lines of :func:`leave_one_band_out`'s result."""
    lines = [f"identity rank {result['rank_identity']}: projection error of held-out identities (mm)"]
    for name, row in result["bands"].items():
        lines.append(
            f"{name:7s} {row['n_held_out']:3d} held out: {row['seen_mm']:.3f} with the band in training, "
            f"{row['left_out_mm']:.3f} without its {row['n_train_left_out']} training identities "
            f"({row['ratio']:.2f}x)"
        )
    lines.append(f"({result['seconds']:.0f} s)")
    return lines
