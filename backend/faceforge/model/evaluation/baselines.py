"""The linear PCA 3DMM baselines of the BabyFlow protocol: BabyFM-style (one face per identity)
and a PCA of the whole identity x expression tensor, with a Procrustes + ridge fit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from faceforge.data.dataset import FaceDataset
from faceforge.data.geometry import apply_rigid, rigid_align
from faceforge.errors import FaceForgeError

__all__ = ["LinearPCAModel", "build_pca_model", "fit_pca", "pca_baselines"]


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


def pca_baselines(
    dataset: FaceDataset, train_ids: np.ndarray, n_components: int, seed: int = 0
) -> dict[str, LinearPCAModel]:
    """The protocol's two baselines on the training identities, without augmentation (BabyFM had none).

    ``babyfm_pca`` is built from ONE face per identity showing a seeded random expression (any of the
    dataset's, neutral included), as BabyFM was; ``tensor_pca`` from every face of the identity x
    expression tensor. Both keep ``n_components`` (``babyfm_pca`` at most ``n_train - 1``).
    """
    ids = np.sort(train_ids)
    rng = np.random.default_rng([seed, 7])
    one_each = rng.integers(0, dataset.n_expressions, size=len(ids))
    babyfm = build_pca_model(
        np.stack([dataset.mesh(int(i), int(e)) for i, e in zip(ids, one_each, strict=True)]), n_components
    )
    tensor_pca = build_pca_model(
        np.asarray(dataset.vertices[ids], dtype=np.float32).reshape(-1, dataset.n_vertices, 3),
        n_components,
        seed,
    )
    return {"babyfm_pca": babyfm, "tensor_pca": tensor_pca}
