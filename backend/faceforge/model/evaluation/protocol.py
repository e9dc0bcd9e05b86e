"""The BabyFlow evaluation protocol (see :mod:`faceforge.model.evaluation`): held-out faces, the
model of each population, prior-weight selection on validation faces, test errors per method, and
:func:`evaluate_models`, which runs it all and writes ``results.json``."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.data.dataset import BlendshapeClips, FaceDataset
from faceforge.data.geometry import apply_rigid
from faceforge.errors import FaceForgeError
from faceforge.model.evaluation.baselines import fit_pca, pca_baselines
from faceforge.model.evaluation.metrics import (
    latent_gaussianity,
    mean_std,
    mesh_distortion,
    nearest_face_distance,
    training_codes,
)
from faceforge.model.evaluation.plots import plot_error_maps, plot_kde
from faceforge.model.evaluation.summary import METHODS, REGIONS, fitting_summary, ood_summary
from faceforge.model.face_model import FaceModel
from faceforge.outputs import write_atomic
from faceforge.progress import ProgressCallback, report
from faceforge.store import default_model_path, model_build_config

__all__ = [
    "METHODS",
    "PAPER",
    "PRIOR_GRID",
    "REGIONS",
    "HeldOutFaces",
    "evaluate_models",
    "evaluate_population",
    "fitting_summary",
    "held_out_faces",
]

PRIOR_GRID = (1e-4, 1e-3, 1e-2, 5e-2, 2e-1)
"""Candidate prior weights ``gamma2`` (``gamma1 = 1 - gamma2``), chosen per method on validation."""

PAPER = {"babyflow_mm": 0.928, "babyfm_mm": 1.567, "ratio": 0.59}
"""BabyFlow's reported test errors (Sec. 2.3): 0.928 +- 0.142 mm vs BabyFM's 1.567 +- 0.384 mm."""

SAMPLE_RADIUS = 0.95
FACES_PER_IDENTITY = 6
CLIP_APEX_PER_IDENTITY = 2
MAX_ROTATION_DEG = 5.0
MAX_TRANSLATION_MM = 5.0


@dataclass(frozen=True)
class _Settings:
    """Sizes of one run. ``small`` is a smoke test of the protocol (minutes on 2 CPU cores), not a result."""

    faces_per_identity: int
    clip_apex_per_identity: int
    prior_grid: tuple[float, ...]
    max_val_identities: int
    n_samples: int
    flow_max_epochs: int | None  # None: faceforge model build's setting
    expression_samples: int | None  # None: faceforge model build's setting

    @classmethod
    def for_run(cls, small: bool) -> _Settings:
        if small:
            return cls(2, 1, (1e-3, 1e-1), 1, 16, 10, 300)
        return cls(FACES_PER_IDENTITY, CLIP_APEX_PER_IDENTITY, PRIOR_GRID, 4, 200, None, None)

    def to_json(self) -> dict:
        return {
            "faces_per_identity": self.faces_per_identity,
            "clip_apex_per_identity": self.clip_apex_per_identity,
            "prior_grid": list(self.prior_grid),
            "max_val_identities": self.max_val_identities,
            "n_samples": self.n_samples,
            "flow_max_epochs": self.flow_max_epochs,
            "expression_samples": self.expression_samples,
        }


@dataclass
class HeldOutFaces:
    """Expressive faces of held-out identities, as scans.

    Attributes:
        scans: ``(M, V, 3)`` float64 faces after a random rigid motion (metres).
        canonical: ``(M, V, 3)`` float32 the same faces in the dataset's canonical frame.
        identities: ``(M,)`` identity index of each face.
        labels: ``"<identity name>/<expression name>"`` or ``".../clip:<label>@<frame>"``.
    """

    scans: np.ndarray
    canonical: np.ndarray
    identities: np.ndarray
    labels: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def _random_rigid(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial.transform import Rotation

    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(MAX_ROTATION_DEG) * rng.uniform()
    shift = rng.normal(size=3)
    shift *= MAX_TRANSLATION_MM * 1e-3 * rng.uniform() ** (1 / 3) / np.linalg.norm(shift)
    return Rotation.from_rotvec(axis * angle).as_matrix(), shift


def held_out_faces(
    dataset: FaceDataset,
    identities: np.ndarray,
    per_identity: int = FACES_PER_IDENTITY,
    clip_apex: int = CLIP_APEX_PER_IDENTITY,
    seed: int = 0,
    perturb: bool = True,
) -> HeldOutFaces:
    """Choose the expressive test faces of some identities (see the module docstring).

    Args:
        dataset: dataset with an identity x expression tensor (index 0 neutral).
        identities: identity indices.
        per_identity: faces per identity.
        clip_apex: how many of them are clip apex frames (fewer if the identity has fewer clips;
            named expressions make up the rest).
        seed: seed; each identity's choice depends only on ``(seed, identity)``.
        perturb: apply a random rigid motion to each face.

    Returns:
        The faces, in identity order.
    """
    if dataset.vertices is None:
        raise FaceForgeError("held-out faces need an identity x expression tensor")
    clips = dataset.clips
    if isinstance(clips, BlendshapeClips):
        clip_ids = np.asarray(clips.identities, dtype=np.int64)  # without materialising frames
    else:
        clip_ids = np.asarray([c.identity for c in clips], dtype=np.int64)
    scans, canonical, owners, labels = [], [], [], []
    for identity in np.asarray(identities, dtype=np.int64):
        rng = np.random.default_rng([seed, int(identity), 31])
        own_clips = np.flatnonzero(clip_ids == identity) if len(clip_ids) else np.zeros(0, dtype=np.int64)
        n_clips = int(min(clip_apex, len(own_clips), per_identity))
        n_named = int(min(per_identity - n_clips, dataset.n_expressions - 1))
        name = dataset.identity_names[identity]
        faces = []
        for e in np.sort(rng.choice(np.arange(1, dataset.n_expressions), size=n_named, replace=False)):
            faces.append(dataset.mesh(int(identity), int(e)))
            labels.append(f"{name}/{dataset.expression_names[e]}")
        for j in np.sort(rng.choice(own_clips, size=n_clips, replace=False)) if n_clips else []:
            clip = dataset.clips[int(j)]
            frames = np.asarray(clip.frames, dtype=np.float32)
            apex = int(np.argmax(np.linalg.norm(frames - frames[:1], axis=2).mean(axis=1)))
            faces.append(frames[apex])
            labels.append(f"{name}/clip:{clip.label}@{apex}")
        for face in faces:
            rotation, shift = _random_rigid(rng) if perturb else (np.eye(3), np.zeros(3))
            scans.append(apply_rigid(face.astype(np.float64), rotation, shift))
        canonical.extend(faces)
        owners.extend([int(identity)] * len(faces))
    n_v = dataset.n_vertices
    return HeldOutFaces(
        scans=np.asarray(scans, dtype=np.float64).reshape(-1, n_v, 3),
        canonical=np.asarray(canonical, dtype=np.float32).reshape(-1, n_v, 3),
        identities=np.asarray(owners, dtype=np.int64),
        labels=labels,
    )


def _fit_errors(
    method: str,
    models: dict,
    faces: HeldOutFaces,
    prior_weight: float,
    step: ProgressCallback,
    trust: list | None = None,
) -> np.ndarray:
    """``(M, V)`` per-vertex errors (mm) of one method on held-out faces; the bilinear methods
    append each fit's trust report (:mod:`faceforge.model.trust`) to ``trust`` if given."""
    from faceforge.model.fitting import fit_scan

    out = np.empty((len(faces), faces.scans.shape[1]))
    for i, scan in enumerate(faces.scans):
        if method in ("babyfm_pca", "tensor_pca"):
            out[i] = fit_pca(models[method], scan, prior_weight)[1]
        else:
            fit = fit_scan(
                models["bilinear"], scan, use_flows=method == "bilinear_flow", prior_weight=prior_weight
            )
            out[i] = fit.per_vertex_error_mm
            if trust is not None:
                trust.append(fit.trust)
        step(f"{method} gamma2={prior_weight:g}")
    return out


def _reusable_model(
    dataset: FaceDataset, population: str, small: bool, accepted: list, own_path: Path
) -> tuple[FaceModel | None, dict | None, str]:
    """A saved model built with one of the ``accepted`` configs on this dataset's training split.

    Looks at ``own_path`` (where this evaluation saves what it builds), then the store's model cache.
    A candidate is accepted when its population and build config match and its training codes
    are reproduced from ``dataset`` (prior variances within 1e-3, relative), i.e. it was
    trained on these very faces. Returns ``(model, codes, path)`` or ``(None, None, "")``.
    """
    from faceforge.model.face_model import load_model

    wanted = [json.dumps(c.to_json(), sort_keys=True) for c in accepted]
    for path in (own_path, default_model_path(population, small)):
        if not Path(path).is_file():
            continue
        try:
            model = load_model(path)
            if model.metadata.get("population") != population or model.n_vertices != dataset.n_vertices:
                continue
            if json.dumps(model.metadata.get("config"), sort_keys=True) not in wanted:
                continue
            codes = training_codes(model, dataset)
        except (FaceForgeError, ValueError, IndexError):
            continue
        if max(codes["identity_mismatch"], codes["expression_mismatch"]) < 1e-3:
            return model, codes, str(path)
    return None, None, ""


def _sample_quality(
    model: FaceModel, dataset: FaceDataset, train_ids: np.ndarray, test: HeldOutFaces, n: int, seed: int
) -> dict:
    mean_face = model.mean.detach().cpu().numpy().reshape(-1, 3).astype(np.float64)
    faces = model.faces.cpu().numpy()
    ids = np.sort(train_ids)

    def measure(vertices: np.ndarray) -> dict:
        distortion = mesh_distortion(vertices, mean_face, faces)
        nearest = nearest_face_distance(vertices, dataset.vertices, ids)
        to_mean = np.linalg.norm(vertices - mean_face, axis=2).mean(axis=1) * 1e3
        return {
            "n": int(len(vertices)),
            "nearest_train_mm": mean_std(nearest),
            "to_mean_face_mm": mean_std(to_mean),
            "edge_strain": mean_std(distortion["edge_strain"]),
            "flipped_fraction": mean_std(distortion["flipped_fraction"]),
        }

    out = {"radius": SAMPLE_RADIUS, "n": int(n)}
    for key, use_flows in (("with_flows", True), ("without_flows", False)):
        drawn = model.sample(n, seed=seed, radius=SAMPLE_RADIUS, use_flows=use_flows)
        out[key] = measure(drawn["vertices"].cpu().numpy().astype(np.float64))
    out["reference_test_faces"] = measure(test.canonical.astype(np.float64))
    return out


def _population_identities(
    dataset: FaceDataset, population: str, settings: _Settings, seed: int, notes: list[str]
) -> dict:
    """``train``, ``val``, ``test`` and ``select`` (validation identities used to choose the prior
    weights) of a population, or ``{"skipped": True, "note"}`` when it cannot have a model."""
    from faceforge.model.build import population_split

    try:
        train_ids, val_ids, test_ids = (
            population_split(dataset, population, s) for s in ("train", "val", "test")
        )
    except FaceForgeError as error:
        return {"skipped": True, "note": str(error)}
    if len(train_ids) < 2 or len(val_ids) < 1:
        return {
            "skipped": True,
            "note": f"{len(train_ids)} training and {len(val_ids)} validation identities: "
            "a model needs at least 2 and 1",
        }
    if len(test_ids) == 0:
        test_ids = val_ids
        notes.append("no test identity in this population: evaluated on the validation identities, "
                     "on which the prior weights were also chosen")  # fmt: skip
    select_ids = val_ids
    if len(val_ids) > settings.max_val_identities:
        rng = np.random.default_rng([seed, 11])
        select_ids = np.sort(rng.choice(val_ids, size=settings.max_val_identities, replace=False))
    ood_ids = (
        population_split(dataset, population, "ood_test")
        if "ood_test" in dataset.splits
        else np.zeros(0, dtype=np.int64)
    )
    return {"train": train_ids, "val": val_ids, "test": test_ids, "select": select_ids, "ood_test": ood_ids}


def _population_model(
    dataset: FaceDataset,
    population: str,
    out_dir: Path,
    small: bool,
    seed: int,
    settings: _Settings,
    progress: ProgressCallback | None,
) -> tuple[FaceModel, dict | None, dict, str]:
    """The BabyFlow model of a population: a reusable saved one (:func:`_reusable_model`) or a new
    build saved under ``out_dir/models``. Returns ``(model, training codes or None, build report,
    where it came from)``."""
    from faceforge.model.build import build_model

    config = model_build_config(small, population, seed, settings.flow_max_epochs)
    if settings.expression_samples is not None:
        config = dataclasses.replace(config, expression_samples=settings.expression_samples)
    accepted = [config, model_build_config(small, population, seed, None)]
    model_path = out_dir / "models" / f"babyflow-{population}.pt"
    model, codes, model_source = _reusable_model(dataset, population, small, accepted, model_path)
    if model is None:
        model, build_report = build_model(dataset, config, progress=progress)
        model.save(model_path)
        return model, None, build_report, "built (saved to " + str(model_path) + ")"
    build_report = dict(model.metadata.get("build_report", {}))
    build_report["reused"] = True
    return model, codes, build_report, model_source


def _choose_priors(
    models: dict, val: HeldOutFaces, grid: tuple[float, ...], step: Callable[[str], None], notes: list[str]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Each method's prior weight: the grid value with the lowest mean validation error, and the
    validation curves (mm) it was chosen from."""
    selection: dict[str, dict[str, float]] = {}
    chosen: dict[str, float] = {}
    for method in METHODS:
        curve = {g: float(_fit_errors(method, models, val, g, step).mean(axis=1).mean()) for g in grid}
        chosen[method] = min(curve, key=curve.get)
        selection[method] = {f"{g:g}": e for g, e in curve.items()}
        if len(grid) > 2 and chosen[method] in (grid[0], grid[-1]):
            notes.append(f"{method}: the chosen prior weight {chosen[method]:g} lies at the edge of the grid")
    return chosen, selection


def _latent_and_plots(
    model: FaceModel,
    dataset: FaceDataset,
    codes: dict | None,
    per_vertex: dict[str, np.ndarray],
    population: str,
    out_dir: Path,
) -> tuple[dict, dict[str, str]]:
    """Latent Gaussianity statistics, the KDE plots and the per-vertex error map."""
    codes = codes or training_codes(model, dataset)
    gaussianity, arrays = latent_gaussianity(model, codes)
    plots = {}
    for space, (before, after) in arrays.items():
        path = out_dir / f"latent_kde_{population}_{space}.png"
        title = f"{population} model: {space} codes before / after the flow"
        plots[f"kde_{space}"] = str(plot_kde(before, after, title, path))
    mean_face = model.mean.detach().cpu().numpy().reshape(-1, 3).astype(np.float64)
    plots["error_map"] = str(plot_error_maps(
        mean_face, model.faces.cpu().numpy(), {m: per_vertex[m].mean(axis=0) for m in METHODS},
        f"{population} model: mean per-vertex test error", out_dir / f"fit_error_map_{population}.png",
    ))  # fmt: skip
    return gaussianity, plots


def evaluate_population(
    dataset: FaceDataset,
    population: str,
    out_dir: Path,
    small: bool = False,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> dict:
    """Run the whole protocol (package docstring) for one population.

    Args:
        dataset: the dataset (with splits; ages for ``"infant"``).
        population: ``"infant"`` or ``"all"``.
        out_dir: where the plots go (created).
        small: ``faceforge model build --small``'s settings (short flow training) and fewer samples.
        seed: seed of the model build and every choice here.
        progress: ``progress(done, total, message)``; returning False cancels.

    Returns:
        A JSON-serialisable dict (see :func:`evaluate_models`); ``{"skipped": True, "note": ...}``
        when the population has too few identities for a model.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    settings = _Settings.for_run(small)
    ids = _population_identities(dataset, population, settings, seed, notes)
    if ids.get("skipped"):
        return ids
    per_identity, apex = settings.faces_per_identity, settings.clip_apex_per_identity
    val = held_out_faces(dataset, ids["select"], per_identity, apex, seed=seed)
    test = held_out_faces(dataset, ids["test"], per_identity, apex, seed=seed)
    ood = (
        held_out_faces(dataset, ids["ood_test"], per_identity, apex, seed=seed)
        if len(ids["ood_test"])
        else None
    )
    grid = settings.prior_grid
    n_ood = 0 if ood is None else len(ood)
    n_steps = 1 + len(grid) * len(METHODS) * len(val) + len(METHODS) * (len(test) + n_ood) + 2
    done = 0

    def step(message: str) -> None:
        nonlocal done
        done += 1
        report(progress, done, n_steps, f"{population}: {message}")

    def build_progress(_done: int, _total: int, message: str) -> bool | None:
        return None if progress is None else progress(done, n_steps, f"{population}: {message}")

    t0 = time.perf_counter()
    model, codes, build_report, model_source = _population_model(
        dataset, population, out_dir, small, seed, settings, build_progress
    )
    build_seconds = time.perf_counter() - t0
    step("model built")
    models = {
        **pca_baselines(dataset, ids["train"], model.rank_identity + model.rank_expression, seed),
        "bilinear": model,
    }
    chosen, selection = _choose_priors(models, val, grid, step, notes)
    trust: dict[str, list] = {"test": [], "ood_test": []}
    per_vertex = {
        m: _fit_errors(m, models, test, chosen[m], step, trust["test"] if m == "bilinear_flow" else None)
        for m in METHODS
    }
    out_of_distribution = None
    if ood is not None:
        per_vertex_ood = {
            m: _fit_errors(
                m, models, ood, chosen[m], step, trust["ood_test"] if m == "bilinear_flow" else None
            )
            for m in METHODS
        }
        out_of_distribution = ood_summary(per_vertex, per_vertex_ood, dataset.regions, trust, ood.identities)
    gaussianity, plots = _latent_and_plots(model, dataset, codes, per_vertex, population, out_dir)
    step("latent Gaussianity")
    samples = _sample_quality(model, dataset, ids["train"], test, settings.n_samples, seed)
    step("samples")
    return {
        "skipped": False,
        "population": population,
        **_identity_counts(ids, val, test),
        **fitting_summary(per_vertex, dataset.regions, models),
        "out_of_distribution": out_of_distribution,
        "prior_weights": chosen,
        "prior_selection_val_mm": selection,
        "latent_gaussianity": gaussianity,
        "samples": samples,
        "plots": plots,
        "build_report": build_report,
        "model_source": model_source,
        "notes": notes,
        "seconds": {"build": round(build_seconds, 1), "total": round(time.perf_counter() - started, 1)},
    }


def _identity_counts(ids: dict, val: HeldOutFaces, test: HeldOutFaces) -> dict:
    return {
        "n_train_identities": int(len(ids["train"])),
        "n_val_identities": int(len(ids["val"])),
        "n_test_identities": int(len(ids["test"])),
        "n_val_identities_for_selection": int(len(ids["select"])),
        "n_val_faces": len(val),
        "n_test_faces": len(test),
        "test_faces": test.labels,
    }


def evaluate_models(
    dataset_dir: Path, out_dir: Path, small: bool = False, seed: int = 0, quiet: bool = False
) -> dict:
    """Evaluate the infant and all-ages BabyFlow models on a built dataset (module docstring).

    Args:
        dataset_dir: a directory written by ``faceforge data build``.
        out_dir: where ``results.json`` and the PNG plots go (created).
        small: the small settings (short flow training, fewer samples) for tests and demos.
        seed: seed of the builds and of every random choice.
        quiet: no progress bar (otherwise a tqdm bar on stderr).

    Returns:
        JSON-serialisable results: per population (``"infant"``, ``"all"``) ``fit_error_mm`` and
        ``fit_error_std_mm`` per method (mm), ``ratio_flow_vs_pca``, ``ratio_flow_vs_tensor_pca``,
        ``per_region_mm``, ``prior_weights``, ``latent_gaussianity``, ``samples``, ``plots``,
        ``n_test_faces``, ``ranks``...; top-level copies of the infant model's fitting keys (the
        paper's protocol; the all-ages model's if the infant one is skipped, see
        ``protocol_population``) and ``paper``, BabyFlow's reported figures.
    """
    from faceforge.data.build import load_built_dataset, read_manifest
    from faceforge.progress import TerminalProgress

    started = time.perf_counter()
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    dataset = load_built_dataset(dataset_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = TerminalProgress("faceforge eval model", enabled=not quiet)
    populations = ("infant", "all")
    results: dict = {
        "dataset": str(dataset_dir),
        "dataset_content_hash": read_manifest(dataset_dir).get("content_hash"),
        "small": bool(small),
        "seed": int(seed),
        "protocol": {
            **_Settings.for_run(small).to_json(),
            "rigid_perturbation": {
                "max_rotation_deg": MAX_ROTATION_DEG,
                "max_translation_mm": MAX_TRANSLATION_MM,
            },
            "sample_radius": SAMPLE_RADIUS,
            "baselines_augmented": False,
            "error": "mean per-vertex Euclidean distance over all head-mesh vertices, mm",
        },
        "paper": dict(PAPER),
    }
    try:
        for k, population in enumerate(populations):

            def progress(done: int, total: int, message: str, k: int = k) -> bool:
                return bar(k * 1000 + round(1000 * done / max(total, 1)), 1000 * len(populations), message)

            results[population] = evaluate_population(dataset, population, out_dir, small, seed, progress)
    finally:
        bar.close()
    protocol = next((p for p in populations if not results[p].get("skipped")), None)
    results["protocol_population"] = protocol
    if protocol is not None:
        for key in (
            "fit_error_mm",
            "fit_error_std_mm",
            "ratio_flow_vs_pca",
            "ratio_flow_vs_tensor_pca",
            "n_test_faces",
        ):
            results[key] = results[protocol][key]
    results["seconds"] = round(time.perf_counter() - started, 1)
    results = _plain(results)
    write_atomic(out_dir / "results.json", json.dumps(results, indent=2, allow_nan=False))
    return results


def _plain(value: object) -> object:
    """JSON-ready copy: numpy scalars and arrays to Python, paths to str, NaN and inf to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value
