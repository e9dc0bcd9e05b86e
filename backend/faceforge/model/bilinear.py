"""The HOSVD bilinear identity x expression model (BabyFlow Sec. 4.3, Eq. 8-9).

The centred data tensor ``T`` (identities x expressions x 3N) is decomposed on its identity and
expression modes: ``T ~ C x_id U_id x_ex U_ex`` with orthonormal factors ``U_id`` (I x r_id) and
``U_ex`` (E x r_ex) and the core projected onto the vertex space ``C = S x U_verts`` (3N x r_id x
r_ex, Eq. 9). A face is ``x = mu + C x_2 w_id x_3 w_ex``.

The factors are the leading eigenvectors of the mode Gram matrices ``T_(k) T_(k)^T`` (identical
to the left singular vectors of the unfoldings, at a fraction of the memory of an SVD of a
``I x E*3N`` matrix); the core is the tensorly multi-mode product.

Augmentation (Sec. 4.3): every identity also enters mirrored (left/right swapped, with the
expressions' Left/Right names swapped too, so ``mouthSmileLeft`` stays a left smile) and
symmetrized (the average of a face and its mirror image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceforge.errors import FaceForgeError

__all__ = [
    "BilinearBasis",
    "augment_identities",
    "expression_mirror_permutation",
    "geometric_mirror_map",
    "mirror_shapes",
    "hosvd",
    "choose_rank",
]


def expression_mirror_permutation(names: list[str]) -> np.ndarray:
    """``(E,)`` index of each expression's mirror image (``...Left`` <-> ``...Right``, else itself)."""
    index = {name: i for i, name in enumerate(names)}
    out = np.arange(len(names))
    for i, name in enumerate(names):
        for a, b in (("Left", "Right"), ("Right", "Left")):
            if name.endswith(a) and name[: -len(a)] + b in index:
                out[i] = index[name[: -len(a)] + b]
    return out


def geometric_mirror_map(vertices: np.ndarray) -> np.ndarray:
    """``(V,)`` mirror correspondence from geometry: the nearest vertex to each reflected vertex.

    For meshes without a known correspondence; assumes the face is roughly symmetric about X = 0.
    """
    from scipy.spatial import cKDTree

    vertices = np.asarray(vertices, dtype=np.float64)
    centred = vertices - [vertices[:, 0].mean(), 0.0, 0.0]
    _, idx = cKDTree(centred).query(centred * [-1.0, 1.0, 1.0])
    return idx.astype(np.int64)


def mirror_shapes(shapes: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Mirror images ``(..., V, 3)`` of shapes: vertex ``v`` takes its mirror's position, X negated."""
    out = np.array(shapes[..., mirror, :], dtype=np.float32, copy=True)
    out[..., 0] *= -1.0
    return out


def augment_identities(tensor: np.ndarray, mirror: np.ndarray, expression_mirror: np.ndarray) -> np.ndarray:
    """Original, mirrored and symmetrized copies of every identity.

    Args:
        tensor: ``(I, E, V, 3)`` faces.
        mirror: ``(V,)`` vertex mirror map.
        expression_mirror: ``(E,)`` expression mirror permutation.

    Returns:
        ``(3I, E, V, 3)`` float32: identities ``0..I-1`` as given, ``I..2I-1`` mirrored,
        ``2I..3I-1`` symmetrized.
    """
    tensor = np.asarray(tensor, dtype=np.float32)
    mirrored = mirror_shapes(tensor[:, expression_mirror], mirror)
    return np.concatenate([tensor, mirrored, 0.5 * (tensor + mirrored)], axis=0)


def choose_rank(eigenvalues: np.ndarray, fraction: float) -> int:
    """Smallest number of leading components whose eigenvalues hold ``fraction`` of the total."""
    ev = np.clip(np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1], 0.0, None)
    cumulative = np.cumsum(ev) / max(ev.sum(), 1e-300)
    return int(min(np.searchsorted(cumulative, fraction - 1e-12) + 1, len(ev)))


def _leading_eigenvectors(gram: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh(np.asarray(gram, dtype=np.float64))
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    # Deterministic signs: the largest-magnitude entry of each vector is positive.
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    return values, vectors[:, :rank]


@dataclass
class BilinearBasis:
    """A truncated HOSVD of a face tensor.

    Attributes:
        mean: ``(3N,)`` float32 mean face, metres.
        core: ``(3N, r_id, r_ex)`` float32 core projected onto the vertex space (C of Eq. 9).
        identity_factor: ``(I, r_id)`` orthonormal identity codes of the training identities.
        expression_factor: ``(E, r_ex)`` orthonormal expression codes of the expressions.
        identity_eigenvalues: all eigenvalues of the identity-mode Gram matrix (m^2).
        expression_eigenvalues: all eigenvalues of the expression-mode Gram matrix (m^2).
    """

    mean: np.ndarray
    core: np.ndarray
    identity_factor: np.ndarray
    expression_factor: np.ndarray
    identity_eigenvalues: np.ndarray
    expression_eigenvalues: np.ndarray

    @property
    def rank_identity(self) -> int:
        return int(self.core.shape[1])

    @property
    def rank_expression(self) -> int:
        return int(self.core.shape[2])

    def truncated(self, rank_identity: int) -> BilinearBasis:
        """The same HOSVD with only the leading ``rank_identity`` identity components (the
        factors are orthonormal eigenvectors, so truncating is slicing)."""
        if not 1 <= rank_identity <= self.rank_identity:
            raise FaceForgeError(f"identity rank must lie in [1, {self.rank_identity}], got {rank_identity}")
        return BilinearBasis(
            mean=self.mean,
            core=np.ascontiguousarray(self.core[:, :rank_identity]),
            identity_factor=np.ascontiguousarray(self.identity_factor[:, :rank_identity]),
            expression_factor=self.expression_factor,
            identity_eigenvalues=self.identity_eigenvalues,
            expression_eigenvalues=self.expression_eigenvalues,
        )

    def decode(self, w_id: np.ndarray, w_ex: np.ndarray) -> np.ndarray:
        """``(B, 3N)`` faces for codes ``(B, r_id)`` and ``(B, r_ex)`` (Eq. 9; B broadcasts)."""
        w_id, w_ex = np.atleast_2d(w_id), np.atleast_2d(w_ex)
        outer = w_id[:, :, None] * w_ex[:, None, :]
        outer = outer.reshape(len(outer), -1)
        return self.mean + outer @ self.core.reshape(self.core.shape[0], -1).T


def hosvd(tensor: np.ndarray, rank_identity: int | float, rank_expression: int | float) -> BilinearBasis:
    """Truncated HOSVD of the identity and expression modes of a face tensor.

    Args:
        tensor: ``(I, E, V, 3)`` or ``(I, E, 3N)`` faces (metres).
        rank_identity: number of identity components, or a float in (0, 1]: the fraction of the
            identity-mode variance to keep.
        rank_expression: number of expression components, or a float in (0, 1]: the fraction of
            the expression-mode variance *around each identity's mean face* to keep (plus one
            component for the identity-wide offset, which otherwise dominates that mode).

    Returns:
        The basis, with the full eigenvalue spectra for reporting.
    """
    import tensorly as tl

    t = np.asarray(tensor, dtype=np.float32)
    n_id, n_ex = t.shape[:2]
    t = t.reshape(n_id, n_ex, -1)
    if n_id < 2 or n_ex < 2:
        raise FaceForgeError(
            f"the bilinear model needs >= 2 identities and >= 2 expressions, got {t.shape[:2]}"
        )
    mean = t.mean(axis=(0, 1))
    centred = t - mean
    flat = centred.reshape(n_id, -1)
    gram_id = flat @ flat.T
    gram_ex = np.zeros((n_ex, n_ex), dtype=np.float64)
    around = np.zeros((n_ex, n_ex), dtype=np.float64)
    for i in range(n_id):
        gram_ex += centred[i] @ centred[i].T
        d = centred[i] - centred[i].mean(axis=0)
        around += d @ d.T
    ev_id, _ = _leading_eigenvectors(gram_id, 1)
    ev_ex, _ = _leading_eigenvectors(gram_ex, 1)
    if isinstance(rank_identity, float):
        rank_identity = choose_rank(ev_id, rank_identity)
    if isinstance(rank_expression, float):
        rank_expression = min(choose_rank(np.linalg.eigvalsh(around), rank_expression) + 1, n_ex)
    rank_identity, rank_expression = int(rank_identity), int(rank_expression)
    if not (1 <= rank_identity <= n_id and 1 <= rank_expression <= n_ex):
        raise FaceForgeError(
            f"ranks must lie in [1, {n_id}] x [1, {n_ex}], got {rank_identity} x {rank_expression}"
        )
    _, u_id = _leading_eigenvectors(gram_id, rank_identity)
    _, u_ex = _leading_eigenvectors(gram_ex, rank_expression)
    core = tl.tenalg.multi_mode_dot(
        centred, [u_id.T.astype(np.float32), u_ex.T.astype(np.float32)], modes=[0, 1]
    )
    return BilinearBasis(
        mean=mean.astype(np.float32),
        core=np.ascontiguousarray(np.transpose(core, (2, 0, 1))).astype(np.float32),
        identity_factor=u_id.astype(np.float32),
        expression_factor=u_ex.astype(np.float32),
        identity_eigenvalues=ev_id,
        expression_eigenvalues=ev_ex,
    )
