"""Evaluate BabyFlow models: fitting error vs linear baselines, latent Gaussianity, samples.

The protocol of BabyFlow Sec. 2.3, 2.6 and 4.5 on held-out identities of a built dataset.

Protocol of :func:`evaluate_models`, for the infant population (< 3 years, the paper's) and for
all ages, every row on the same data:

- **Models.** BabyFlow is built with the CLI's settings (``faceforge model build``) on the
  population's training identities (``small``: at most 10 flow epochs and 300 clip-blend
  expression codes, 2 faces per identity, a smoke test of the protocol rather than a result).
  A model file already built with those settings on the same training data is reused instead
  (``<out_dir>/models/babyflow-<population>.pt``, where built models are saved, then the
  CLI's model cache); reuse is checked by reproducing the model's training codes from the
  dataset (:func:`training_codes`). Two linear PCA 3DMMs
  are built on the same identities, without augmentation (BabyFM had none): ``babyfm_pca``
  from ONE face per training identity showing a seeded random expression (any of the 82,
  neutral included; no expression tensor), as BabyFM was built; ``tensor_pca`` from every
  face of the identity x expression tensor. Both keep ``r_id + r_ex`` components (the
  bilinear model's total; ``babyfm_pca`` at most ``n_train - 1``), so the two baselines
  differ only in their training faces.
- **Held-out faces.** For every test identity of the population, 6 expressive faces: 4 named
  non-neutral expressions drawn (seeded per identity) from the 81, plus the apex frames
  (largest displacement from the clip's first frame) of 2 seeded dynamic clips, i.e. expression
  blends no training face shows. Every face gets a seeded random rigid motion (rotation up to
  5 degrees about a random axis, translation up to 5 mm) so that each method's Procrustes
  alignment is part of the fit. Identity-seeded choices make an infant's test faces identical
  in both populations.
- **Fitting.** ``babyfm_pca`` and ``tensor_pca``: 10 rounds of Procrustes onto the current fit
  (the mean face first) and a ridge solve of the PCA coefficients with their variances as a
  Gaussian prior, with the energy of :func:`faceforge.model.fitting.fit_scan`
  (``gamma1 * mean squared vertex distance in mm^2 + gamma2 * mean(c^2 / lambda)``);
  ``bilinear`` and ``bilinear_flow``: :func:`~faceforge.model.fitting.fit_scan` without and
  with flows. Each method's ``gamma2`` is chosen from :data:`PRIOR_GRID` by the lowest mean
  error on the population's validation identities (same face rule; at most 4 identities, a
  seeded choice), then applied to test.
- **Error.** Per face, the mean per-vertex Euclidean distance (mm) between fit and face over
  all vertices of the head mesh (rigid motions do not change it); reported as mean +- std over
  faces, per region (mouth, eyes, nose) and as ratios.
- **Latent Gaussianity.** On the codes each flow was trained on (:func:`training_codes`):
  per-dimension skewness, excess kurtosis and a normality test of the standardised codes ``w``
  and of ``z = f(w)``; KDE plots of the first 4 components.
- **Samples at equal Mahalanobis radius** (Eq. 24, ``rho = 0.95``) with and without flows: the
  distance to the nearest training face and mesh distortion (:func:`mesh_distortion`).

Units: metres inside, millimetres in results.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceforge.data.dataset import BlendshapeClips, FaceDataset
from faceforge.data.geometry import apply_rigid, edge_list, rigid_align
from faceforge.errors import FaceForgeError
from faceforge.figures import save_figure
from faceforge.model.face_model import FaceModel
from faceforge.progress import ProgressCallback, report

__all__ = [
    "METHODS",
    "PAPER",
    "PRIOR_GRID",
    "REGIONS",
    "HeldOutFaces",
    "LinearPCAModel",
    "build_pca_model",
    "evaluate_models",
    "evaluate_population",
    "fit_pca",
    "format_report",
    "gaussianity_statistics",
    "held_out_faces",
    "mesh_distortion",
    "nearest_face_distance",
    "training_codes",
]

METHODS = ("babyfm_pca", "tensor_pca", "bilinear", "bilinear_flow")
"""Rows of the fitting table: (a) BabyFM-style PCA, (b) tensor PCA, (c) bilinear, (d) BabyFlow."""

METHOD_LABELS = {
    "babyfm_pca": "BabyFM-style PCA (1 face / identity)",
    "tensor_pca": "PCA of the full id x expr tensor",
    "bilinear": "bilinear (HOSVD), no flows",
    "bilinear_flow": "bilinear + flows (BabyFlow)",
}

PRIOR_GRID = (1e-4, 1e-3, 1e-2, 5e-2, 2e-1)
"""Candidate prior weights ``gamma2`` (``gamma1 = 1 - gamma2``), chosen per method on validation."""

REGIONS = ("mouth", "eyes", "nose")

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
    flow_max_epochs: int | None  # None: the CLI's setting
    expression_samples: int | None  # None: the CLI's setting

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


# -- linear PCA baselines -----------------------------------------------------------------------
@dataclass
class LinearPCAModel:
    """A linear PCA 3DMM ``x = mean + c @ components``.

    Attributes:
        mean: ``(3N,)`` float64 mean face, metres.
        components: ``(K, 3N)`` float64 orthonormal principal directions.
        variances: ``(K,)`` variance of each coefficient (m^2), the Gaussian prior.
        n_train: number of training faces.
        explained: fraction of the training variance the ``K`` components hold.
    """

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    n_train: int
    explained: float

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])


def build_pca_model(faces: np.ndarray, n_components: int, seed: int = 0) -> LinearPCAModel:
    """PCA of faces in one topology.

    Args:
        faces: ``(M, V, 3)`` or ``(M, 3N)`` faces in metres, in a common frame.
        n_components: components to keep (at most ``M - 1``).
        seed: seed of the randomized SVD used for ``M > 1000`` (exact eigendecomposition of the
            Gram matrix below).

    Returns:
        The model; components sorted by decreasing variance.
    """
    x = np.asarray(faces, dtype=np.float32).reshape(len(faces), -1)
    m = len(x)
    if m < 2:
        raise FaceForgeError(f"a PCA model needs at least 2 faces, got {m}")
    k = int(min(max(n_components, 1), m - 1))
    mean = x.mean(axis=0, dtype=np.float64)
    centred = torch.from_numpy(x - mean.astype(np.float32))
    total = sum(float((chunk.double() ** 2).sum()) for chunk in torch.split(centred, 512))
    if m <= 1000:
        c64 = centred.double()
        values, vectors = torch.linalg.eigh(c64 @ c64.T)
        values, vectors = values.flip(0)[:k].clamp_min(1e-30), vectors.flip(1)[:, :k]
        components = (vectors.T @ c64) / values.sqrt()[:, None]
    else:
        torch.manual_seed(seed)
        _, s, v = torch.svd_lowrank(centred, q=min(k + 30, m), niter=6)
        values, components = (s[:k].double() ** 2), v[:, :k].T.double()
    return LinearPCAModel(
        mean=mean,
        components=components.numpy(),
        variances=(values / (m - 1)).numpy(),
        n_train=m,
        explained=float(values.sum() / max(total, 1e-300)),
    )


def fit_pca(
    model: LinearPCAModel, scan: np.ndarray, prior_weight: float = 0.01, rounds: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a PCA model to a scan in correspondence: Procrustes, then a ridge solve.

    Each round aligns the scan rigidly onto the current fit (the mean face first) and solves
    ``min_c gamma1 * mean_v |x_v(c) - y_v|^2 (mm^2) + gamma2 * mean_k c_k^2 / lambda_k``, in
    closed form since the components are orthonormal (the energy of ``fit_scan``).

    Args:
        model: the PCA model.
        scan: ``(V, 3)`` scan vertices (metres), in correspondence with the model.
        prior_weight: ``gamma2`` in [0, 1).
        rounds: alignment + solve rounds (each is cheap: 10 make the alternation converge, which
            favours the baselines over ``fit_scan``'s 3 rounds, if anything).

    Returns:
        ``(V, 3)`` fitted face in the scan's frame (metres) and ``(V,)`` per-vertex distances (mm).
    """
    if not 0.0 <= prior_weight < 1.0:
        raise FaceForgeError(f"prior_weight must lie in [0, 1), got {prior_weight}")
    scan = np.asarray(scan, dtype=np.float64)
    n = scan.shape[0]
    if model.mean.shape[0] != 3 * n:
        raise FaceForgeError(f"the scan has {n} vertices, the PCA model {model.mean.shape[0] // 3}")
    rho = prior_weight / (1.0 - prior_weight)
    data_scale = 1e6 / n  # metres^2 summed over vertices -> mean mm^2
    shrink = data_scale / (data_scale + rho / (model.n_components * model.variances))
    target = model.mean.reshape(n, 3)
    rotation, translation = np.eye(3), np.zeros(3)
    for _ in range(rounds):
        rotation, translation = rigid_align(scan, target)
        b = apply_rigid(scan, rotation, translation).reshape(-1) - model.mean
        coefficients = (model.components @ b) * shrink
        target = (model.mean + coefficients @ model.components).reshape(n, 3)
    fitted = apply_rigid(target - translation, rotation.T, np.zeros(3))
    return fitted, np.linalg.norm(fitted - scan, axis=1) * 1e3


# -- held-out faces -----------------------------------------------------------------------------
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


# -- latent Gaussianity -------------------------------------------------------------------------
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
        "skew": [_finite(v) for v in skew],
        "excess_kurtosis": [_finite(v) for v in kurt],
        "p_value": [_finite(v) for v in p],
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


def _latent_gaussianity(model: FaceModel, codes: dict) -> tuple[dict, dict]:
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


# -- sample quality -----------------------------------------------------------------------------
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
            "nearest_train_mm": _mean_std(nearest),
            "to_mean_face_mm": _mean_std(to_mean),
            "edge_strain": _mean_std(distortion["edge_strain"]),
            "flipped_fraction": _mean_std(distortion["flipped_fraction"]),
        }

    out = {"radius": SAMPLE_RADIUS, "n": int(n)}
    for key, use_flows in (("with_flows", True), ("without_flows", False)):
        drawn = model.sample(n, seed=seed, radius=SAMPLE_RADIUS, use_flows=use_flows)
        out[key] = measure(drawn["vertices"].cpu().numpy().astype(np.float64))
    out["reference_test_faces"] = measure(test.canonical.astype(np.float64))
    return out


# -- plots --------------------------------------------------------------------------------------
def _plot_kde(before: np.ndarray, after: np.ndarray, title: str, path: Path, components: int = 4) -> Path:
    """KDE of the first components of standardised ``w`` (blue) and ``z = f(w)`` (orange)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import gaussian_kde

    k = int(min(components, before.shape[1]))
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 2.8), squeeze=False)
    grid = np.linspace(-4.5, 4.5, 301)
    for j, ax in enumerate(axes[0]):
        for data, colour, label in (
            (before[:, j], "tab:blue", "w (no flow)"),
            (after[:, j], "tab:orange", "z = f(w)"),
        ):
            if len(data) > 2 and np.std(data) > 1e-12:
                ax.plot(grid, gaussian_kde(data)(grid), color=colour, label=label)
        ax.plot(grid, np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi), "k--", lw=0.8, label="N(0, 1)")
        ax.set_title(f"component {j + 1}", fontsize=9)
        ax.set_yticks([])
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_error_maps(
    mean_face: np.ndarray, faces: np.ndarray, maps: dict[str, np.ndarray], title: str, path: Path
) -> Path:
    """Front views of the mean face coloured by each method's mean per-vertex test error (mm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    tri = mean_face[faces] * 1e3
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    facing = -normal[:, 1] / np.maximum(np.linalg.norm(normal, axis=1), 1e-12)  # the face looks to -Y
    order = np.argsort(-tri[:, :, 1].mean(axis=1))  # painter's algorithm: far (large Y) first
    keep = order[facing[order] > 0]
    vmax = float(np.nanpercentile(np.concatenate([m for m in maps.values()]), 98))
    fig, axes = plt.subplots(1, len(maps), figsize=(3.0 * len(maps), 3.6), squeeze=False)
    for ax, (method, values) in zip(axes[0], maps.items(), strict=True):
        colours = np.nan_to_num(values[faces[keep]].mean(axis=1))
        collection = PolyCollection(tri[keep][:, :, [0, 2]], array=colours, cmap="jet", linewidths=0)
        collection.set_clim(0.0, vmax)
        ax.add_collection(collection)
        ax.autoscale_view()
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"{method}\n{np.nanmean(values):.3f} mm", fontsize=8)
    fig.colorbar(collection, ax=axes[0].tolist(), shrink=0.8, label="mean error (mm)")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


# -- the protocol -------------------------------------------------------------------------------
def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _mean_std(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def _fit_errors(
    method: str,
    models: dict,
    faces: HeldOutFaces,
    prior_weight: float,
    step: ProgressCallback,
) -> np.ndarray:
    """``(M, V)`` per-vertex errors (mm) of one method on held-out faces."""
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
        step(f"{method} gamma2={prior_weight:g}")
    return out


def _reusable_model(
    dataset: FaceDataset, population: str, small: bool, accepted: list, own_path: Path
) -> tuple[FaceModel | None, dict | None, str]:
    """A saved model built with one of the ``accepted`` configs on this dataset's training split.

    Looks at ``own_path`` (where this evaluation saves what it builds), then the CLI's cache.
    A candidate is accepted when its population and build config match and its training codes
    are reproduced from ``dataset`` (prior variances within 1e-3, relative), i.e. it was
    trained on these very faces. Returns ``(model, codes, path)`` or ``(None, None, "")``.
    """
    from faceforge.cli import default_model_path
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


def evaluate_population(
    dataset: FaceDataset,
    population: str,
    out_dir: Path,
    small: bool = False,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> dict:
    """Run the whole protocol (module docstring) for one population.

    Args:
        dataset: the dataset (with splits; ages for ``"infant"``).
        population: ``"infant"`` or ``"all"``.
        out_dir: where the plots go (created).
        small: the CLI's small build settings (short flow training) and fewer samples.
        seed: seed of the model build and every choice here.
        progress: ``progress(done, total, message)``; returning False cancels.

    Returns:
        A JSON-serialisable dict (see :func:`evaluate_models`); ``{"skipped": True, "note": ...}``
        when the population has too few identities for a model.
    """
    from faceforge.cli import _model_build_config
    from faceforge.model.build import build_model, population_split

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
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
    settings = _Settings.for_run(small)
    select_ids = val_ids
    if len(val_ids) > settings.max_val_identities:
        rng = np.random.default_rng([seed, 11])
        select_ids = np.sort(rng.choice(val_ids, size=settings.max_val_identities, replace=False))
    per_identity, apex = settings.faces_per_identity, settings.clip_apex_per_identity
    val = held_out_faces(dataset, select_ids, per_identity, apex, seed=seed)
    test = held_out_faces(dataset, test_ids, per_identity, apex, seed=seed)
    grid = settings.prior_grid
    n_steps = 1 + len(grid) * len(METHODS) * len(val) + len(METHODS) * len(test) + 2
    done = 0

    def step(message: str) -> None:
        nonlocal done
        done += 1
        report(progress, done, n_steps, f"{population}: {message}")

    def build_progress(_done: int, _total: int, message: str) -> bool | None:
        return None if progress is None else progress(done, n_steps, f"{population}: {message}")

    t0 = time.perf_counter()
    config = _model_build_config(small, population, seed, settings.flow_max_epochs)
    if settings.expression_samples is not None:
        config = dataclasses.replace(config, expression_samples=settings.expression_samples)
    accepted = [config, _model_build_config(small, population, seed, None)]
    model_path = out_dir / "models" / f"babyflow-{population}.pt"
    model, codes, model_source = _reusable_model(dataset, population, small, accepted, model_path)
    if model is None:
        model, build_report = build_model(dataset, config, progress=build_progress)
        model.save(model_path)
        model_source = "built (saved to " + str(model_path) + ")"
    else:
        build_report = dict(model.metadata.get("build_report", {}))
        build_report["reused"] = True
    build_seconds = time.perf_counter() - t0
    step("model built")
    r_id, r_ex = model.rank_identity, model.rank_expression
    ids = np.sort(train_ids)
    rng = np.random.default_rng([seed, 7])
    one_each = rng.integers(0, dataset.n_expressions, size=len(ids))
    babyfm = build_pca_model(
        np.stack([dataset.mesh(int(i), int(e)) for i, e in zip(ids, one_each, strict=True)]), r_id + r_ex
    )
    tensor_pca = build_pca_model(
        np.asarray(dataset.vertices[ids], dtype=np.float32).reshape(-1, dataset.n_vertices, 3),
        r_id + r_ex,
        seed,
    )
    models = {"babyfm_pca": babyfm, "tensor_pca": tensor_pca, "bilinear": model}

    selection: dict[str, dict[str, float]] = {}
    chosen: dict[str, float] = {}
    for method in METHODS:
        curve = {g: float(_fit_errors(method, models, val, g, step).mean(axis=1).mean()) for g in grid}
        chosen[method] = min(curve, key=curve.get)
        selection[method] = {f"{g:g}": e for g, e in curve.items()}
        if len(grid) > 2 and chosen[method] in (grid[0], grid[-1]):
            notes.append(f"{method}: the chosen prior weight {chosen[method]:g} lies at the edge of the grid")
    per_vertex = {m: _fit_errors(m, models, test, chosen[m], step) for m in METHODS}
    per_face = {m: v.mean(axis=1) for m, v in per_vertex.items()}
    fit_error = {m: float(per_face[m].mean()) for m in METHODS}
    per_region = {
        region: {m: float(per_vertex[m][:, dataset.regions[region]].mean()) for m in METHODS}
        for region in REGIONS
        if region in dataset.regions
    }

    codes = codes or training_codes(model, dataset)
    gaussianity, arrays = _latent_gaussianity(model, codes)
    plots = {}
    for space, (before, after) in arrays.items():
        path = out_dir / f"latent_kde_{population}_{space}.png"
        plots[f"kde_{space}"] = str(
            _plot_kde(before, after, f"{population} model: {space} codes before / after the flow", path)
        )
    mean_face = model.mean.detach().cpu().numpy().reshape(-1, 3).astype(np.float64)
    plots["error_map"] = str(_plot_error_maps(
        mean_face, model.faces.cpu().numpy(), {m: per_vertex[m].mean(axis=0) for m in METHODS},
        f"{population} model: mean per-vertex test error", out_dir / f"fit_error_map_{population}.png",
    ))  # fmt: skip
    step("latent Gaussianity")
    samples = _sample_quality(model, dataset, train_ids, test, settings.n_samples, seed)
    step("samples")
    return {
        "skipped": False,
        "population": population,
        "n_train_identities": int(len(train_ids)),
        "n_val_identities": int(len(val_ids)),
        "n_test_identities": int(len(test_ids)),
        "n_val_identities_for_selection": int(len(select_ids)),
        "n_val_faces": len(val),
        "n_test_faces": len(test),
        "test_faces": test.labels,
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
        "per_region_mm": per_region,
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
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False))
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


# -- the report ---------------------------------------------------------------------------------
def format_report(results: dict) -> str:
    """A markdown report of :func:`evaluate_models` results: fitting, Gaussianity and sample tables."""
    populations = [p for p in ("infant", "all") if isinstance(results.get(p), dict)]
    label = {"infant": "infant (< 3 y)", "all": "all ages"}
    lines = ["#### Fitting error on held-out identities (mm; mean ± std over faces)", ""]
    lines += [
        "| population | method | components | γ2 | error (mm) | mouth | eyes | nose | vs BabyFM-style |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in populations:
        r = results[p]
        if r.get("skipped"):
            lines.append(f"| {label[p]} | skipped: {r.get('note', '')} | | | | | | | |")
            continue
        ranks = r["ranks"]
        comps = {
            "babyfm_pca": f"{ranks['babyfm_pca']}",
            "tensor_pca": f"{ranks['tensor_pca']}",
            "bilinear": f"{ranks['rank_identity']} × {ranks['rank_expression']}",
            "bilinear_flow": f"{ranks['rank_identity']} × {ranks['rank_expression']}",
        }
        for m in METHODS:
            regions = [r["per_region_mm"].get(reg, {}).get(m) for reg in REGIONS]
            ratio = r["fit_error_mm"][m] / r["fit_error_mm"]["babyfm_pca"]
            lines.append(
                f"| {label[p]} | {METHOD_LABELS[m]} | {comps[m]} | {r['prior_weights'][m]:g} | "
                f"{r['fit_error_mm'][m]:.3f} ± {r['fit_error_std_mm'][m]:.3f} | "
                + " | ".join("–" if v is None else f"{v:.3f}" for v in regions)
                + f" | {ratio:.2f} |"
            )
    paper = results.get("paper", PAPER)
    lines.append(
        f"| paper (real infant scans) | BabyFM → BabyFlow | | | "
        f"{paper['babyfm_mm']:.3f} → {paper['babyflow_mm']:.3f} | | | | {paper['ratio']:.2f} |"
    )
    lines.append("")
    for p in populations:
        r = results[p]
        if r.get("skipped"):
            continue
        lines.append(
            f"- {label[p]}: {r['n_test_faces']} test faces of {r['n_test_identities']} "
            f"identit{'y' if r['n_test_identities'] == 1 else 'ies'}, "
            f"{r['n_train_identities']} training identities; bilinear + flows / BabyFM-style PCA = "
            f"**{r['ratio_flow_vs_pca']:.2f}** (paper {paper['ratio']:.2f}), / tensor PCA = "
            f"**{r['ratio_flow_vs_tensor_pca']:.2f}**."
        )
        for note in r.get("notes", []):
            lines.append(f"  - note: {note}")
    lines += [
        "",
        "#### Latent Gaussianity of the training codes, before (standardised w) → after (z = f(w)) the flow",
        "",
    ]
    lines += [
        "| population | space | codes × dims | mean abs skew | mean abs excess kurtosis "
        "| dims failing normality (p < 0.05) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for p in populations:
        r = results[p]
        if r.get("skipped"):
            continue
        for space in ("identity", "expression"):
            g = r["latent_gaussianity"][space]
            b, a = g["before_flow"], g["after_flow"]
            lines.append(
                f"| {label[p]} | {space} | {g['n_codes']} × {g['dims']} | {_fmt(b['mean_abs_skew'])} → "
                f"{_fmt(a['mean_abs_skew'])} | {_fmt(b['mean_abs_excess_kurtosis'])} → "
                f"{_fmt(a['mean_abs_excess_kurtosis'])} | {_pct(b['fraction_rejected'])} → "
                f"{_pct(a['fraction_rejected'])} ({b['test']}) |"
            )
    lines += ["", "#### Samples at equal Mahalanobis radius (Eq. 24, ρ = 0.95)", ""]
    lines += [
        "| population | sampler | nearest training face (mm) | to mean face (mm) | edge strain "
        "| flipped triangles |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for p in populations:
        r = results[p]
        if r.get("skipped"):
            continue
        s = r["samples"]
        rows = (
            ("with_flows", f"with flows (n={s['n']})"),
            ("without_flows", f"without flows (n={s['n']})"),
            ("reference_test_faces", "held-out real faces"),
        )
        for key, name in rows:
            q = s[key]
            nearest = q["nearest_train_mm"]
            lines.append(
                f"| {label[p]} | {name} | {nearest['mean']:.3f} ± {nearest['std']:.3f} | "
                f"{q['to_mean_face_mm']['mean']:.3f} | {q['edge_strain']['mean']:.4f} | "
                f"{100 * q['flipped_fraction']['mean']:.3f}% |"
            )
    plots = [v for p in populations if not results[p].get("skipped") for v in results[p]["plots"].values()]
    if plots:
        lines += ["", "Plots: " + ", ".join(f"`{v}`" for v in plots)]
    if "seconds" in results:
        lines.append(f"Evaluated in {results['seconds']:.0f} s.")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.0f}%"
