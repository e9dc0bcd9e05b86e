"""Build a BabyFlow face model from an identity x expression dataset.

Population (all ages, or infants < 3 years as in BabyFlow), augmentation with mirrored and
symmetrized identities, truncated HOSVD, then the two RealNVP flows:

- identity flow on the codes of the training identities (and their mirrored/symmetrized copies),
  validated on the codes of the validation identities (least-squares projections);
- expression flow on the codes of the named expressions plus the codes of expression blends
  seen in the dataset's dynamic clips (each frame's ARKit weights mix the expression codes, since
  the model is linear in ``w_ex``), validated on the clips of the validation identities.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from faceforge.data.dataset import BlendshapeClips, FaceDataset
from faceforge.errors import FaceForgeError
from faceforge.model.bilinear import (
    BilinearBasis,
    augment_identities,
    expression_mirror_permutation,
    geometric_mirror_map,
    hosvd,
)
from faceforge.model.calibration import calibrate_trust
from faceforge.model.face_model import FaceModel
from faceforge.model.flows import FlowTrainingConfig, RealNVP, train_flow
from faceforge.model.ranks import IDENTITY_RANK_CANDIDATES, MIN_GAIN_MM, select_identity_rank
from faceforge.progress import ProgressCallback, report

__all__ = ["ModelBuildConfig", "build_model", "population_split", "project_identities"]


@dataclass(frozen=True)
class ModelBuildConfig:
    """Settings of :func:`build_model`.

    Attributes:
        population: ``"all"`` ages or ``"infant"`` (< 3 years, BabyFlow's population).
        rank_identity: identity components, the fraction of identity variance to keep, or
            ``"heldout"``: the rank after which one more component removes less than
            ``rank_min_gain_mm`` of error on the held-out out-of-distribution identities
            (:mod:`faceforge.model.ranks`).
        rank_min_gain_mm: that threshold, mm per vertex per component.
        rank_expression: expression components, or the fraction of expression variance (around
            each identity's mean face) to keep.
        augment: add mirrored and symmetrized identities.
        expression_samples: clip frames drawn as extra expression-flow training codes.
        flow: flow training settings.
        seed: seed of all random choices.
    """

    population: str = "all"
    rank_identity: float | int | str = "heldout"
    rank_min_gain_mm: float = MIN_GAIN_MM
    rank_expression: float | int = 0.99
    augment: bool = True
    expression_samples: int = 3000
    flow: FlowTrainingConfig = field(default_factory=FlowTrainingConfig)
    seed: int = 0

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["flow"] = self.flow.to_json()
        return out


def population_split(dataset: FaceDataset, population: str, split: str) -> np.ndarray:
    """Identity indices of a split restricted to a population (``"all"`` or ``"infant"``)."""
    ids = dataset.split(split)
    if population == "all":
        return ids
    if population != "infant":
        raise FaceForgeError(f"population must be 'all' or 'infant', got {population!r}")
    ages = np.array([row.get("age_years", np.nan) for row in dataset.identity_info])
    if np.isnan(ages).all():
        raise FaceForgeError("the dataset has no ages: an infant model needs identity ages")
    return ids[ages[ids] < 3.0]


# Age groups of the cross-age tools: name -> [first year, end year).
AGE_GROUPS: dict[str, tuple[float, float]] = {
    "infant": (0.0, 3.0),
    "child": (3.0, 12.0),
    "teen": (12.0, 18.0),
    "adult": (18.0, 60.0),
    "elder": (60.0, 200.0),
}


def age_group_codes(codes: np.ndarray, ages: np.ndarray) -> dict[str, dict]:
    """The mean identity code of each age group with training identities in it.

    Args:
        codes: ``(K, r_id)`` identity codes of the training identities.
        ages: ``(K,)`` their ages in years (NaN = unknown).

    Returns:
        ``{group: {"years": [lo, hi], "count": n, "w_id": [...]}}`` (JSON-serialisable).
    """
    groups = {}
    for name, (lo, hi) in AGE_GROUPS.items():
        members = (ages >= lo) & (ages < hi)
        if members.any():
            groups[name] = {
                "years": [lo, hi],
                "count": int(members.sum()),
                "w_id": [float(v) for v in codes[members].mean(axis=0)],
            }
    return groups


def project_identities(basis: BilinearBasis, faces: np.ndarray) -> np.ndarray:
    """Least-squares identity codes ``(K, r_id)`` of identities seen under all the basis's
    expressions: ``faces (K, E, 3N)`` with ``E`` matching ``basis.expression_factor``."""
    core = basis.core.astype(np.float64)
    a = np.einsum("vij,ej->evi", core, basis.expression_factor.astype(np.float64))  # (E, 3N, r_id)
    lhs = np.einsum("evi,evj->ij", a, a)
    out = []
    for x in faces:
        rhs = np.einsum("evi,ev->i", a, np.asarray(x, np.float64) - basis.mean)
        out.append(np.linalg.solve(lhs, rhs))
    return np.asarray(out, dtype=np.float32)


def _expression_blends(
    dataset: FaceDataset, identities: np.ndarray, codes: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Codes of expression mixtures: clip frames' blendshape weights, or random sparse blends."""
    base, named = codes[0], codes
    clips = dataset.clips
    if isinstance(clips, BlendshapeClips) and len(clips):
        chosen = [j for j in range(len(clips)) if clips.identities[j] in set(identities.tolist())]
        weights = np.concatenate([clips.clip_weights(j) for j in chosen]) if chosen else np.zeros((0, 1))
        if len(weights):
            rows = weights[rng.choice(len(weights), size=min(count, len(weights)), replace=False)]
            deltas = named[clips.basis] - base  # (K, r_ex)
            return (base + rows.astype(np.float64) @ deltas).astype(np.float32)
    # Data without clips: sparse convex blends of one to three named expressions.
    out = np.empty((count, codes.shape[1]), dtype=np.float32)
    for k in range(count):
        picks = rng.choice(np.arange(1, len(codes)), size=rng.integers(1, 4), replace=False)
        amounts = rng.uniform(0.2, 1.0, size=len(picks))
        out[k] = base + amounts @ (named[picks] - base)
    return out


def _population_ids(dataset: FaceDataset, population: str) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation identity indices of the population; at least 2 and 1 of them."""
    train_ids = population_split(dataset, population, "train")
    val_ids = population_split(dataset, population, "val")
    if len(train_ids) < 2 or len(val_ids) < 1:
        raise FaceForgeError(
            f"population {population!r} has {len(train_ids)} training and {len(val_ids)} validation "
            "identities; a model needs at least 2 and 1"
        )
    return train_ids, val_ids


def _fit_basis(
    dataset: FaceDataset,
    train_ids: np.ndarray,
    config: ModelBuildConfig,
    progress: ProgressCallback | None,
    total: int,
) -> tuple[BilinearBasis, np.ndarray, float, dict | None]:
    """The truncated HOSVD of the training identities' faces (augmented if ``config.augment``).

    Returns:
        The basis, the ``(V,)`` left/right vertex mirror map, the HOSVD's seconds and the rank
        selection's curve (None unless ``rank_identity == "heldout"``).
    """
    report(progress, 0, total, "loading faces")
    tensor = np.asarray(dataset.vertices[np.sort(train_ids)], dtype=np.float32)
    mirror = dataset.mirror if dataset.mirror is not None else geometric_mirror_map(tensor[:, 0].mean(axis=0))
    if config.augment:
        tensor = augment_identities(tensor, mirror, expression_mirror_permutation(dataset.expression_names))
    report(progress, 1, total, "HOSVD")
    t0 = time.perf_counter()
    if config.rank_identity != "heldout":
        basis = hosvd(tensor, config.rank_identity, config.rank_expression)
        return basis, mirror, time.perf_counter() - t0, None
    widest = hosvd(tensor, min(max(IDENTITY_RANK_CANDIDATES), len(tensor)), config.rank_expression)
    del tensor
    n_ex = dataset.vertices.shape[1]

    def faces(split: str) -> np.ndarray | None:
        if split not in dataset.splits:
            return None
        ids = np.sort(population_split(dataset, config.population, split))
        if len(ids) == 0:
            return None
        return np.asarray(dataset.vertices[ids], dtype=np.float32).reshape(len(ids), n_ex, -1)

    val = faces("val")
    rank, curve = select_identity_rank(widest, val, faces("ood_val"), min_gain_mm=config.rank_min_gain_mm)
    return widest.truncated(rank), mirror, time.perf_counter() - t0, curve


def _flow_codes(
    dataset: FaceDataset,
    basis: BilinearBasis,
    train_ids: np.ndarray,
    val_ids: np.ndarray,
    config: ModelBuildConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and validation codes of the two flows (see the module docstring).

    Returns:
        ``id_train (K', r_id)`` (the basis's identity factor, augmented copies included),
        ``id_val (K_val, r_id)``, ``ex_train (E + S, r_ex)`` and ``ex_val (S', r_ex)``.
    """
    id_train = basis.identity_factor
    n_ex = dataset.vertices.shape[1]
    val_faces = np.asarray(dataset.vertices[np.sort(val_ids)], dtype=np.float32).reshape(
        len(val_ids), n_ex, -1
    )
    id_val = project_identities(basis, val_faces)
    rng = np.random.default_rng(config.seed)
    ex_codes = basis.expression_factor
    ex_train = np.concatenate(
        [ex_codes, _expression_blends(dataset, train_ids, ex_codes, config.expression_samples, rng)]
    )
    ex_val = _expression_blends(dataset, val_ids, ex_codes, max(config.expression_samples // 8, 64), rng)
    return id_train, id_val, ex_train, ex_val


def _train_flows(
    codes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    flow_config: FlowTrainingConfig,
    progress: ProgressCallback | None,
    total: int,
) -> tuple[RealNVP, dict, RealNVP, dict, float]:
    """Train the identity and expression flows on ``codes`` (from :func:`_flow_codes`).

    Returns:
        The identity flow and its history, the expression flow and its history, the seconds.
    """
    id_train, id_val, ex_train, ex_val = codes

    def stage(offset: int, name: str) -> ProgressCallback | None:
        if progress is None:
            return None
        return lambda done, n, msg: progress(offset, total, f"{name} flow: epoch {done} ({msg})")

    t0 = time.perf_counter()
    id_flow, id_history = train_flow(id_train, id_val, flow_config, stage(2, "identity"))
    ex_flow, ex_history = train_flow(
        ex_train, ex_val, dataclasses.replace(flow_config, seed=flow_config.seed + 1), stage(3, "expression")
    )
    return id_flow, id_history, ex_flow, ex_history, time.perf_counter() - t0


def _explained(ev: np.ndarray, rank: int) -> float:
    """Fraction of the total of the eigenvalues ``ev`` that the first ``rank`` hold."""
    return float(np.sum(ev[:rank]) / max(np.sum(ev), 1e-300))


def _model_metadata(
    dataset: FaceDataset,
    config: ModelBuildConfig,
    basis: BilinearBasis,
    mirror: np.ndarray,
    train_ids: np.ndarray,
) -> dict:
    """The model's metadata (names, landmarks, regions, age groups, spectra, settings)."""
    id_train = basis.identity_factor
    ages = (
        np.array([row.get("age_years", np.nan) for row in dataset.identity_info])
        if dataset.identity_info
        else None
    )
    return {
        "age_groups": age_group_codes(id_train[: len(train_ids)], ages[np.sort(train_ids)])
        if ages is not None
        else {},
        "name": f"babyflow-{config.population}",
        "population": config.population,
        "expression_names": list(dataset.expression_names),
        "landmarks": {k: [int(i) for i in v] for k, v in dataset.landmarks.items()},
        "landmark_names": {k: list(v) for k, v in dataset.landmark_names.items()},
        "regions": {k: [int(i) for i in v] for k, v in dataset.regions.items()},
        "mirror": [int(i) for i in mirror],
        "n_train_identities": int(len(train_ids)),
        "n_train_identities_augmented": int(len(id_train)),
        "train_age_years": [float(np.nanmin(ages[train_ids])), float(np.nanmax(ages[train_ids]))]
        if ages is not None and len(ages)
        else None,
        "identity_variance_kept": _explained(basis.identity_eigenvalues, basis.rank_identity),
        "expression_variance_kept": _explained(basis.expression_eigenvalues, basis.rank_expression),
        "identity_spectrum": [float(v) for v in basis.identity_eigenvalues[:64]],
        "expression_spectrum": [float(v) for v in basis.expression_eigenvalues[:64]],
        "config": config.to_json(),
        "dataset": dataset.source,
    }


def build_model(
    dataset: FaceDataset,
    config: ModelBuildConfig = ModelBuildConfig(),
    progress: ProgressCallback | None = None,
) -> tuple[FaceModel, dict]:
    """Build the model (see the module docstring).

    Returns:
        The model and a report (ranks, explained variance, flow histories, timings).
    """
    if dataset.vertices is None:
        raise FaceForgeError("building a model needs an identity x expression tensor")
    started = time.perf_counter()
    train_ids, val_ids = _population_ids(dataset, config.population)
    total = 4
    basis, mirror, hosvd_seconds, rank_curve = _fit_basis(dataset, train_ids, config, progress, total)
    codes = _flow_codes(dataset, basis, train_ids, val_ids, config)
    id_train, _, ex_train, _ = codes
    id_flow, id_history, ex_flow, ex_history, flow_seconds = _train_flows(codes, config.flow, progress, total)
    report(progress, total, total, "done")

    metadata = _model_metadata(dataset, config, basis, mirror, train_ids)
    ex_codes = basis.expression_factor
    model = FaceModel(
        mean=torch.from_numpy(basis.mean),
        core=torch.from_numpy(basis.core),
        faces=torch.from_numpy(np.asarray(dataset.faces)),
        identity_flow=id_flow,
        expression_flow=ex_flow,
        neutral_expression=torch.from_numpy(ex_codes[0]),
        expression_codes=torch.from_numpy(ex_codes),
        identity_prior=torch.from_numpy(np.stack([id_train.mean(0), id_train.var(0) + 1e-12])),
        expression_prior=torch.from_numpy(np.stack([ex_train.mean(0), ex_train.var(0) + 1e-12])),
        metadata=metadata,
    )
    model.metadata["fit_calibration"] = calibrate_trust(model, dataset, val_ids, config.seed)
    build_report = {
        "population": config.population,
        "rank_identity": basis.rank_identity,
        "rank_expression": basis.rank_expression,
        "identity_variance_kept": metadata["identity_variance_kept"],
        "expression_variance_kept": metadata["expression_variance_kept"],
        "identity_rank_selection": rank_curve,
        "n_train_identities": int(len(train_ids)),
        "identity_flow": {k: id_history[k] for k in ("best_epoch", "epochs", "best_val_nll")},
        "expression_flow": {k: ex_history[k] for k in ("best_epoch", "epochs", "best_val_nll")},
        "hosvd_seconds": round(hosvd_seconds, 2),
        "flow_seconds": round(flow_seconds, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    model.metadata["build_report"] = build_report
    return model, build_report
