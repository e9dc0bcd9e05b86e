"""Measures of the BabyFlow protocol: marginal Gaussianity of latent codes, the codes a model's flows
were trained on, mesh distortion and the distance to the nearest training face. Units: metres in,
millimetres out."""

from __future__ import annotations

import math

import numpy as np
import torch

from faceforge.data.dataset import FaceDataset
from faceforge.data.geometry import edge_list
from faceforge.errors import FaceForgeError
from faceforge.model.face_model import FaceModel

__all__ = [
    "finite_or_none",
    "gaussianity_statistics",
    "latent_gaussianity",
    "mean_std",
    "mesh_distortion",
    "nearest_face_distance",
    "training_codes",
]


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, or None when it is NaN or infinite (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def mean_std(values: np.ndarray) -> dict[str, float]:
    """``{"mean", "std"}`` of an array."""
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def gaussianity_statistics(samples: np.ndarray) -> dict:
    """Per-dimension (marginal) Gaussianity of codes.

    Args:
        samples: ``(N, D)`` codes, one row per sample.

    Returns:
        ``n``, ``dims``, the ``test`` used (D'Agostino-Pearson ``normaltest`` for ``N >= 20``,
        Shapiro-Wilk below), ``mean_abs_skew``, ``max_abs_skew``, ``mean_abs_excess_kurtosis``,
        ``max_abs_excess_kurtosis``, ``fraction_rejected`` (dimensions whose normality test
        rejects at ``p < 0.05``) and the per-dimension ``skew``, ``excess_kurtosis`` and
        ``p_value`` lists. Constant dimensions are left out (``None``), as are summaries with
        no value (e.g. the test with ``N < 3``).
    """
    from scipy import stats

    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise FaceForgeError(f"Gaussianity statistics need (N >= 2, D) samples, got shape {x.shape}")
    n, d = x.shape
    varying = x.std(axis=0) > 1e-12 * np.maximum(np.abs(x).max(axis=0), 1e-300)
    skew = np.full(d, np.nan)
    kurt = np.full(d, np.nan)
    p = np.full(d, np.nan)
    test = "normaltest" if n >= 20 else ("shapiro" if n >= 3 else "none")
    if varying.any():
        skew[varying] = stats.skew(x[:, varying], axis=0)
        kurt[varying] = stats.kurtosis(x[:, varying], axis=0, fisher=True)
        if test == "normaltest":
            p[varying] = stats.normaltest(x[:, varying], axis=0).pvalue
        elif test == "shapiro":
            p[varying] = [stats.shapiro(column).pvalue for column in x[:, varying].T]

    def agg(fn, values: np.ndarray) -> float | None:  # noqa: ANN001
        values = values[np.isfinite(values)]
        return float(fn(values)) if len(values) else None

    return {
        "n": int(n),
        "dims": int(d),
        "test": test,
        "mean_abs_skew": agg(np.mean, np.abs(skew)),
        "max_abs_skew": agg(np.max, np.abs(skew)),
        "mean_abs_excess_kurtosis": agg(np.mean, np.abs(kurt)),
        "max_abs_excess_kurtosis": agg(np.max, np.abs(kurt)),
        "fraction_rejected": agg(lambda v: np.mean(v < 0.05), p),
        "skew": [finite_or_none(v) for v in skew],
        "excess_kurtosis": [finite_or_none(v) for v in kurt],
        "p_value": [finite_or_none(v) for v in p],
    }


def training_codes(model: FaceModel, dataset: FaceDataset) -> dict:
    """Reproduce the codes the model's two flows were trained on, from the dataset it was built on.

    Identity: the HOSVD identity factor of the (augmented) training tensor, i.e. the leading
    eigenvectors of its identity-mode Gram matrix, recomputed one expression at a time. Expression:
    the named expressions' codes plus the clip-blend codes drawn with the build's seed. Both are
    checked against the model's stored priors (mean and variance of the training codes).

    Args:
        model: a model from :func:`~faceforge.model.build.build_model` (its metadata holds the
            population and the build config).
        dataset: the dataset it was built on.

    Returns:
        ``identity`` ``(3I, r_id)`` (``(I, r_id)`` without augmentation) and ``expression``
        ``(E + S, r_ex)`` float64 codes, and ``identity_mismatch`` / ``expression_mismatch``: the
        largest difference between the reproduced and stored prior variances, relative to the
        largest stored variance (~1e-6 when reproduced; large when the dataset differs).
    """
    from faceforge.model.bilinear import _leading_eigenvectors, expression_mirror_permutation, mirror_shapes
    from faceforge.model.build import _expression_blends, population_split

    if dataset.vertices is None:
        raise FaceForgeError("reproducing training codes needs the identity x expression tensor")
    config = model.metadata.get("config", {})
    population = model.metadata.get("population", config.get("population", "all"))
    train_ids = population_split(dataset, population, "train")
    ids = np.sort(train_ids)
    augment = bool(config.get("augment", True))
    mirror = np.asarray(model.metadata.get("mirror", dataset.mirror), dtype=np.int64)
    expression_mirror = expression_mirror_permutation(dataset.expression_names)
    mean = model.mean.detach().cpu().numpy().astype(np.float32)
    n_rows = 3 * len(ids) if augment else len(ids)
    gram = np.zeros((n_rows, n_rows), dtype=np.float64)
    for e in range(dataset.n_expressions):
        block = np.asarray(dataset.vertices[ids, e], dtype=np.float32)
        if augment:
            mirrored = mirror_shapes(np.asarray(dataset.vertices[ids, expression_mirror[e]]), mirror)
            block = np.concatenate([block, mirrored, 0.5 * (block + mirrored)])
        flat = block.reshape(n_rows, -1) - mean
        gram += (flat @ flat.T).astype(np.float64)
    _, identity = _leading_eigenvectors(gram, model.rank_identity)
    expression_codes = model.expression_codes.detach().cpu().numpy()
    rng = np.random.default_rng(config.get("seed", 0))
    blends = _expression_blends(
        dataset, train_ids, expression_codes, int(config.get("expression_samples", 3000)), rng
    )
    expression = np.concatenate([expression_codes, blends]).astype(np.float64)

    def mismatch(codes: np.ndarray, prior: torch.Tensor) -> float:
        stored = prior[1].detach().cpu().numpy().astype(np.float64)
        return float(np.max(np.abs(codes.var(axis=0) - stored)) / max(stored.max(), 1e-300))

    return {
        "identity": identity.astype(np.float64),
        "expression": expression,
        "identity_mismatch": mismatch(identity, model.identity_prior),
        "expression_mismatch": mismatch(expression, model.expression_prior),
    }


def latent_gaussianity(model: FaceModel, codes: dict) -> tuple[dict, dict]:
    """Statistics and ``(before, after)`` arrays of both spaces: standardised ``w`` vs ``z = f(w)``."""
    stats, arrays = {}, {}
    for space, flow in (("identity", model.identity_flow), ("expression", model.expression_flow)):
        w = torch.as_tensor(codes[space], dtype=torch.float32)
        with torch.no_grad():
            before = flow.standardize(w).numpy().astype(np.float64)
            after = flow(w)[0].numpy().astype(np.float64)
        stats[space] = {
            "n_codes": int(len(w)),
            "dims": int(w.shape[1]),
            "reproduction_mismatch": codes[f"{space}_mismatch"],
            "before_flow": gaussianity_statistics(before),
            "after_flow": gaussianity_statistics(after),
        }
        arrays[space] = (before, after)
    return stats, arrays


def mesh_distortion(vertices: np.ndarray, reference: np.ndarray, faces: np.ndarray) -> dict[str, np.ndarray]:
    """Distortion of meshes relative to a reference mesh of the same topology.

    - ``edge_strain``: mean over edges of ``|log(l / l_ref)|``, the edge length relative to the
      reference's (0 for a rigid copy; ``|log s|`` for a uniform scaling by ``s``);
    - ``flipped_fraction``: fraction of triangles whose normal points against the reference
      triangle's normal (folded-over triangles).

    Args:
        vertices: ``(B, V, 3)`` meshes (metres).
        reference: ``(V, 3)`` reference mesh (the model's mean face).
        faces: ``(F, 3)`` triangles.

    Returns:
        Both measures, ``(B,)`` arrays. Degenerate reference edges and triangles are ignored.
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, *np.shape(reference))
    ref = np.asarray(reference, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    edges = edge_list(faces)
    ref_length = np.linalg.norm(ref[edges[:, 1]] - ref[edges[:, 0]], axis=1)
    good_edges = ref_length > 1e-9
    edges, ref_length = edges[good_edges], ref_length[good_edges]
    ref_normal = np.cross(ref[faces[:, 1]] - ref[faces[:, 0]], ref[faces[:, 2]] - ref[faces[:, 0]])
    good_faces = np.linalg.norm(ref_normal, axis=1) > 1e-14
    faces, ref_normal = faces[good_faces], ref_normal[good_faces]
    strain = np.empty(len(v))
    flipped = np.empty(len(v))
    for b, mesh in enumerate(v):
        length = np.linalg.norm(mesh[edges[:, 1]] - mesh[edges[:, 0]], axis=1)
        strain[b] = np.mean(np.abs(np.log(np.maximum(length, 1e-12) / ref_length)))
        normal = np.cross(mesh[faces[:, 1]] - mesh[faces[:, 0]], mesh[faces[:, 2]] - mesh[faces[:, 0]])
        flipped[b] = np.mean(np.einsum("fc,fc->f", normal, ref_normal) < 0)
    return {"edge_strain": strain, "flipped_fraction": flipped}


def nearest_face_distance(
    samples: np.ndarray, faces: np.ndarray, rows: np.ndarray | None = None, candidates: int = 10
) -> np.ndarray:
    """Distance from each sample to its nearest face of a set, without alignment.

    The distance between two meshes is the mean per-vertex Euclidean distance (mm). The
    nearest face is searched among the ``candidates`` faces nearest in RMS distance (an exact
    matrix-product search), which contain it unless the two distances rank faces very differently.

    Args:
        samples: ``(B, V, 3)`` meshes (metres).
        faces: ``(R, E, V, 3)`` or ``(R, V, 3)`` array-like (a memory map is read row by row).
        rows: indices of the first axis of ``faces`` to search (default: all).
        candidates: RMS-nearest faces checked exactly per sample.

    Returns:
        ``(B,)`` distances in millimetres.
    """
    s = np.asarray(samples, dtype=np.float64)
    b, n_v = s.shape[0], s.shape[1]
    rows = np.arange(len(faces)) if rows is None else np.asarray(rows, dtype=np.int64)
    centre = s.reshape(b, -1).mean(axis=0)
    sc = torch.from_numpy((s.reshape(b, -1) - centre).astype(np.float32))
    sn = (sc.double() ** 2).sum(1)
    best = torch.full((b, candidates), math.inf, dtype=torch.float64)
    where = torch.full((b, candidates, 2), -1, dtype=torch.int64)
    for row in rows:
        block = np.asarray(faces[int(row)], dtype=np.float32).reshape(-1, 3 * n_v)
        x = torch.from_numpy(block - centre.astype(np.float32))
        d2 = sn[:, None] + (x.double() ** 2).sum(1)[None] - 2.0 * (sc @ x.T).double()
        index = torch.stack([torch.full((x.shape[0],), int(row)), torch.arange(x.shape[0])], dim=1)
        merged = torch.cat([best, d2], dim=1)
        order = torch.topk(merged, k=min(candidates, merged.shape[1]), dim=1, largest=False).indices
        pool = torch.cat([where, index[None].expand(b, -1, -1)], dim=1)
        best = torch.gather(merged, 1, order)
        where = torch.gather(pool, 1, order[:, :, None].expand(-1, -1, 2))
    out = np.full(b, np.inf)
    for i in range(b):
        for row, sub in where[i].tolist():
            if row < 0:
                continue
            block = faces[row]  # a view of a memory map: only the chosen face is read
            face = np.asarray(block[sub] if np.ndim(block) == 3 else block, dtype=np.float64)
            out[i] = min(out[i], float(np.linalg.norm(face - s[i], axis=1).mean() * 1e3))
    return out
