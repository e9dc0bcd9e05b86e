"""S2D-Dec (Sparse2Dense Sec. 3.2, Eq. 5-6): landmark displacements -> dense mesh displacements.

The decoder runs on a mesh hierarchy of the head topology (:mod:`faceforge.animate.hierarchy`:
quadric decimation, barycentric up-sampling, spirals).

The decoder maps the 68 x 3 landmark displacement (millimetres inside the network) through a
linear layer onto the coarsest level and up the hierarchy with spiral convolutions and ELUs to a
3-channel displacement per vertex. It sees only displacements, so it animates any identity's
neutral face. Loss: mean absolute error (L_dr) plus the same error weighted by each vertex's
closeness to the landmarks (L_pr; weight ``1 / (d + d0)`` rescaled to [0, 1], ``d`` the geodesic-free
Euclidean distance to the nearest landmark on the template, ``d0 = 5 mm``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from torch import nn

from faceforge.animate.hierarchy import (
    MeshHierarchy,
    build_hierarchy,
    decimate,
    spirals,
    upsampling_matrix,
)
from faceforge.device import resolve_device
from faceforge.errors import FaceForgeError
from faceforge.progress import ProgressCallback, report

__all__ = [
    "MeshHierarchy",
    "PCABaseline",
    "S2DConfig",
    "S2DModel",
    "build_hierarchy",
    "decimate",
    "evaluate",
    "spirals",
    "train_s2d",
    "training_pairs",
    "upsampling_matrix",
]


# -- the decoder ----------------------------------------------------------------------------------


# Activations run through the decoder as ``(V, B, C)``: every gather is an ``index_select`` on dim 0
# whose backward is a row-wise ``index_add_`` of contiguous ``B * C`` blocks, and no layer permutes
# (the ``(B, V, C)`` layout spent a third of a training step copying between layouts).


class SpiralConv(nn.Module):
    """Gather each vertex's spiral neighbourhood, concatenate, linear map (Sparse2Dense Eq. 5).

    The concatenation is never formed: with the spiral gathered slot-major, ``(S, V * B, C)``, the
    linear map is one batched product with its weight viewed as ``(S, C, out)``, summed over slots.
    The parameters are those of ``nn.Linear(C * S, out)`` over the slot-major concatenation.
    """

    def __init__(self, in_channels: int, out_channels: int, spiral: np.ndarray) -> None:
        super().__init__()
        spiral = np.asarray(spiral, dtype=np.int64)
        self.register_buffer("spiral", torch.as_tensor(spiral))
        self.register_buffer(
            "slot_major", torch.as_tensor(np.ascontiguousarray(spiral.T).reshape(-1)), persistent=False
        )
        self.linear = nn.Linear(in_channels * spiral.shape[1], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (V, B, C) -> (V, B, out)
        v, b, c = x.shape
        slots = self.spiral.shape[1]
        padded = torch.cat([x, x.new_zeros(1, b, c)], dim=0)  # index V is the spiral's padding
        gathered = padded.index_select(0, self.slot_major).view(slots, v * b, c)
        weight = self.linear.weight.view(-1, slots, c).permute(1, 2, 0)  # (S, C, out)
        out = torch.bmm(gathered, weight).sum(dim=0) + self.linear.bias
        return out.view(v, b, -1)


class S2DDecoder(nn.Module):
    """Linear onto the coarsest level, then (up-sample, spiral conv, ELU) per level, and a last
    spiral conv to 3 channels."""

    def __init__(self, hierarchy: MeshHierarchy, channels: tuple[int, ...], n_landmarks: int = 68) -> None:
        super().__init__()
        levels = len(hierarchy.vertices)
        if len(channels) != levels:
            raise FaceForgeError(f"{levels} levels need {levels} channel counts, got {len(channels)}")
        self.coarsest = len(hierarchy.vertices[-1])
        self.channels = channels
        self.inp = nn.Linear(n_landmarks * 3, self.coarsest * channels[-1])
        # Up-sampling as a gather: each fine vertex blends at most 3 coarse vertices.
        self.n_ups = len(hierarchy.up)
        for k, matrix in enumerate(hierarchy.up):
            csr = matrix.tocsr()
            index = np.zeros((csr.shape[0], 3), dtype=np.int64)
            weight = np.zeros((csr.shape[0], 3), dtype=np.float32)
            for row in range(csr.shape[0]):
                cols = csr.indices[csr.indptr[row] : csr.indptr[row + 1]][:3]
                vals = csr.data[csr.indptr[row] : csr.indptr[row + 1]][:3]
                index[row, : len(cols)], weight[row, : len(vals)] = cols, vals
                index[row, len(cols) :] = cols[0]  # with weight 0
            self.register_buffer(f"up_index_{k}", torch.as_tensor(index))
            self.register_buffer(f"up_weight_{k}", torch.as_tensor(weight))
        self.convs = nn.ModuleList(
            SpiralConv(channels[k + 1], channels[k], hierarchy.spirals[k]) for k in range(levels - 1)
        )
        self.out = SpiralConv(channels[0], 3, hierarchy.spirals[0])

    def _up(self, k: int, x: torch.Tensor) -> torch.Tensor:  # (V_coarse, B, C) -> (V_fine, B, C)
        index, weight = getattr(self, f"up_index_{k}"), getattr(self, f"up_weight_{k}")
        gathered = x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])
        return torch.sum(gathered * weight[:, :, None, None], dim=1)

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:  # (B, 68*3) mm -> (B, V, 3) mm
        x = self.inp(landmarks).view(len(landmarks), self.coarsest, self.channels[-1]).transpose(0, 1)
        x = x.contiguous()
        for k in reversed(range(len(self.convs))):
            x = nn.functional.elu(self.convs[k](self._up(k, x)))
        return self.out(x).transpose(0, 1)


@dataclass
class S2DConfig:
    """Settings of :func:`train_s2d` (defaults: the default dataset in minutes on a CPU)."""

    seed: int = 0
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 5e-5
    lr_decay: float = 0.97
    channels: tuple[int, ...] = (8, 16, 32, 64, 64)
    factors: tuple[int, ...] = (4, 4, 4, 4)
    spiral_length: int = 9
    clip_frames: int = 4
    landmark_weight: float = 1.0
    max_samples_per_epoch: int = 2000

    @classmethod
    def tiny(cls, seed: int = 0) -> S2DConfig:
        return cls(
            seed=seed, epochs=6, learning_rate=3e-3, channels=(4, 8, 8, 16, 16), clip_frames=2,
            max_samples_per_epoch=400,
        )  # fmt: skip


def training_pairs(
    dataset,  # noqa: ANN001 - FaceDataset
    identities: np.ndarray,
    clip_frames: int = 4,
    expressions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(landmark_disp (N, 68, 3), dense_disp (N, V, 3))`` in metres: every static expression of the
    identities (or ``expressions`` only) and ``clip_frames`` evenly spaced frames of their clips,
    as displacements from each identity's neutral."""
    index = np.asarray(dataset.landmarks["ibug68"])
    identities = set(int(i) for i in identities)
    if not identities:
        raise FaceForgeError("no training pairs: no identities given")
    chosen = np.arange(1, dataset.n_expressions) if expressions is None else np.asarray(expressions)
    clips = [c for c in range(len(dataset.clips)) if clip_frames and _clip_identity(dataset, c) in identities]
    # One preallocated array (no list + concatenate copy): the default dataset's pairs are ~1.3 GB.
    n_pairs = len(identities) * len(chosen) + len(clips) * clip_frames
    dense = np.empty((n_pairs, dataset.n_vertices, 3), np.float32)
    row = 0
    for i in sorted(identities):
        faces = np.asarray(dataset.vertices[i], dtype=np.float32)
        dense[row : row + len(chosen)] = faces[chosen] - faces[0]
        row += len(chosen)
    for c in clips:
        frames = np.asarray(dataset.clips[c].frames, dtype=np.float32)
        pick = np.linspace(1, len(frames) - 1, clip_frames).round().astype(int)
        dense[row : row + clip_frames] = frames[pick] - frames[0]
        row += clip_frames
    return dense[:, index], dense


def _clip_identity(dataset, index: int) -> int:  # noqa: ANN001 - FaceDataset
    """Identity of clip ``index`` without building its frames (compact clips keep an index)."""
    clips = dataset.clips
    identities = getattr(clips, "identities", None)
    return int(identities[index]) if identities is not None else int(clips[index].identity)


#: The landmark-exact correction vanishes at vertices farther than this from every landmark (m).
CORRECTION_REACH = 0.04


class S2DModel:
    """The trained decoder with what it needs: hierarchy, landmark indices and closeness weights."""

    def __init__(self, hierarchy: MeshHierarchy, landmarks: np.ndarray, config: S2DConfig) -> None:
        self.hierarchy = hierarchy
        self.landmarks = np.asarray(landmarks, dtype=np.int64)
        self.config = config
        self.decoder = S2DDecoder(hierarchy, tuple(config.channels), len(self.landmarks))

    @property
    def n_vertices(self) -> int:
        return len(self.hierarchy.vertices[0])

    def correction_weights(self) -> np.ndarray:
        """``(V, L)`` spreading of a residual given at the landmarks over the surface (cached).

        The smoothest field that takes the residual at the landmarks and vanishes far from all of
        them (beyond :data:`CORRECTION_REACH`, and on parts without landmarks such as the tongue):
        the minimiser of the bi-Laplacian energy ``c^T L M^-1 L c`` (FEM Laplacian ``L``, lumped
        masses ``M``), so it bends smoothly through the landmarks instead of raising a bump at each
        as a Gaussian interpolant does (one 12 mm wide overshot the residual 30-fold between close
        landmarks) or a cusp as a harmonic one does, and follows the surface: the lips are apart
        except at the mouth corners. Its weights are then bounded to a convex mix (>= 0, rows
        summing to <= 1), so no vertex moves further than the landmark residuals.
        """
        if getattr(self, "_correction", None) is None:
            from scipy.sparse.linalg import splu

            from faceforge.data.geometry import connected_components, gradient_operator, triangle_areas

            v = np.asarray(self.hierarchy.vertices[0], dtype=np.float64)
            f = np.asarray(self.hierarchy.faces[0], dtype=np.int64)
            n = len(v)
            grad = gradient_operator(v, f)
            area = triangle_areas(v, f)
            lap = (grad.T @ sparse.diags(np.repeat(area, 3)) @ grad).tocsc()
            mass = np.zeros(n)
            np.add.at(mass, f.ravel(), np.repeat(area / 3.0, 3))
            energy = (lap @ sparse.diags(1.0 / np.maximum(mass, 1e-16)) @ lap).tocsc()
            labels = connected_components(f, n)
            reach = np.linalg.norm(v[:, None] - v[self.landmarks][None], axis=2).min(axis=1)
            fixed = (reach > CORRECTION_REACH) | ~np.isin(labels, labels[self.landmarks])
            fixed[self.landmarks] = True
            free = np.flatnonzero(~fixed)
            weights = np.zeros((n, len(self.landmarks)))
            weights[self.landmarks, np.arange(len(self.landmarks))] = 1.0
            rhs = -(energy[free][:, self.landmarks]).toarray()
            weights[free] = splu(energy[free][:, free].tocsc()).solve(rhs)
            # Bounded: the bi-Laplacian weights swing from -1.06 to 2.28 between close landmarks,
            # so the spread residual overshot the residuals themselves (mouth_extreme's apex 1.29 of
            # the real clips'); clipped to >= 0 and rows summing to at most 1, every corrected vertex
            # moves by a convex mix of the landmark residuals and zero (apex 1.20).
            weights = np.clip(weights, 0.0, None)
            total = weights.sum(axis=1, keepdims=True)
            weights = np.where(total > 1.0, weights / np.maximum(total, 1e-12), weights)
            self._correction = weights
        return self._correction

    def decode(
        self, landmark_disp: np.ndarray, batch: int = 256, exact_landmarks: bool = False
    ) -> np.ndarray:
        """``(T, V, 3)`` dense displacements (metres) of landmark displacements ``(T, 68, 3)``.

        The decoder's answer to no motion at all (its biases) is subtracted, so that a still face
        stays exactly still and a take starts and ends exactly on the neutral face. With
        ``exact_landmarks`` (takes and transferred motion) the decoder's residual at the landmarks
        is spread over the surface (:meth:`correction_weights`), so the landmarks move exactly as
        given: the decoder smooths small, local motions (generated ``mouth_middle`` takes: landmarks
        8.0 mm, the decoded mesh at most 6.2; with the correction the takes' apex lands at 0.97-1.21
        of the real clips' for every label on the 24 test identities, 0.77-1.10 without). Static
        reconstructions are not corrected: the decoder's own evaluation measures the decoder.
        """
        landmark_disp = np.asarray(landmark_disp, dtype=np.float32)
        if landmark_disp.ndim != 3 or landmark_disp.shape[1:] != (len(self.landmarks), 3):
            raise FaceForgeError(
                f"landmark displacements must be (T, {len(self.landmarks)}, 3), got {landmark_disp.shape}"
            )
        device = next(self.decoder.parameters()).device
        out = []
        with torch.no_grad():
            still = self.decoder(torch.zeros(1, len(self.landmarks) * 3, device=device)).cpu().numpy() * 1e-3
            for start in range(0, len(landmark_disp), batch):
                x = torch.as_tensor(landmark_disp[start : start + batch] * 1e3, device=device).reshape(
                    -1, len(self.landmarks) * 3
                )
                out.append(self.decoder(x).cpu().numpy() * 1e-3 - still)
        if not out:
            return np.zeros((0, self.n_vertices, 3), np.float32)
        dense = np.concatenate(out)
        if exact_landmarks:
            residual = landmark_disp - dense[:, self.landmarks]
            # (V, L) @ (T, L, 3) as a float32 BLAS product (einsum: 10x slower on 300 frames)
            if getattr(self, "_correction32", None) is None:
                self._correction32 = self.correction_weights().astype(np.float32)
            dense = dense + np.matmul(self._correction32, residual.astype(np.float32))
        return dense.astype(np.float32)

    def to_payload(self) -> dict:
        h = self.hierarchy
        return {
            "config": dataclasses.asdict(self.config),
            "landmarks": torch.as_tensor(self.landmarks),
            "vertices": [torch.as_tensor(v) for v in h.vertices],
            "faces": [torch.as_tensor(f) for f in h.faces],
            "kept": [torch.as_tensor(k) for k in h.kept],
            "up": [
                {
                    "row": torch.as_tensor(m.tocoo().row.astype(np.int64)),
                    "col": torch.as_tensor(m.tocoo().col.astype(np.int64)),
                    "data": torch.as_tensor(m.tocoo().data),
                    "shape": list(m.shape),
                }
                for m in h.up
            ],  # fmt: skip
            "spirals": [torch.as_tensor(s) for s in h.spirals],
            "state": {k: v.detach().cpu() for k, v in self.decoder.state_dict().items()},
        }

    @classmethod
    def from_payload(cls, payload: dict) -> S2DModel:
        config = dict(payload["config"])
        for key in ("channels", "factors"):
            config[key] = tuple(config[key])
        up = [
            sparse.coo_matrix(
                (u["data"].numpy(), (u["row"].numpy(), u["col"].numpy())), shape=tuple(u["shape"])
            ).tocsr()
            for u in payload["up"]
        ]
        hierarchy = MeshHierarchy(
            [v.numpy() for v in payload["vertices"]],
            [f.numpy() for f in payload["faces"]],
            [k.numpy() for k in payload["kept"]],
            up,
            [s.numpy() for s in payload["spirals"]],
        )
        model = cls(hierarchy, payload["landmarks"].numpy(), S2DConfig(**config))
        model.decoder.load_state_dict(payload["state"])
        model.decoder.eval()
        return model


def landmark_closeness(vertices: np.ndarray, landmarks: np.ndarray, d0: float = 0.005) -> np.ndarray:
    """``(V,)`` weights in [0, 1]: ``1 / (d + d0)`` rescaled, ``d`` the distance to the nearest landmark."""
    distance = np.min(np.linalg.norm(vertices[:, None] - vertices[landmarks][None], axis=-1), axis=1)
    inverse = 1.0 / (distance + d0)
    return ((inverse - inverse.min()) / max(inverse.max() - inverse.min(), 1e-12)).astype(np.float32)


def train_s2d(
    dataset,  # noqa: ANN001
    train_identities: np.ndarray,
    config: S2DConfig | None = None,
    progress: ProgressCallback | None = None,
    expressions: np.ndarray | None = None,
) -> tuple[S2DModel, dict]:
    """Train S2D-Dec on the identities' static expressions (or ``expressions``) and clip frames."""
    config = config or S2DConfig()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    template = np.asarray(dataset.vertices[int(np.min(train_identities)), 0], dtype=np.float64)
    hierarchy = build_hierarchy(template, dataset.faces, config.factors, config.spiral_length)
    hierarchy_seconds = time.perf_counter() - started
    landmarks = np.asarray(dataset.landmarks["ibug68"])
    model = S2DModel(hierarchy, landmarks, config)
    device = torch.device(resolve_device())  # the device policy: $FACEFORGE_DEVICE, else a GPU if any
    decoder = model.decoder.to(device)
    x_all, y_all = training_pairs(dataset, train_identities, config.clip_frames, expressions)
    x_all = torch.as_tensor(x_all.reshape(len(x_all), -1) * 1e3)
    y_all = torch.as_tensor(y_all)  # metres; scaled to mm per batch (no second 1.3 GB copy)
    weights = torch.as_tensor(landmark_closeness(template, landmarks), device=device)[None, :, None]
    optimizer = torch.optim.Adam(
        decoder.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, config.lr_decay)
    history: dict = {
        "loss": [],
        "n_pairs": int(len(x_all)),
        "hierarchy_sizes": [len(v) for v in hierarchy.vertices],
    }
    decoder.train()
    for epoch in range(config.epochs):
        order = rng.permutation(len(x_all))[: config.max_samples_per_epoch]
        losses = []
        for start in range(0, len(order), config.batch_size):
            index = torch.as_tensor(order[start : start + config.batch_size])
            x, y = x_all[index].to(device), y_all[index].to(device) * 1e3
            error = (decoder(x) - y).abs()
            loss = error.mean() + config.landmark_weight * (weights * error).mean()  # L_dr + L_pr (mm)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        schedule.step()
        history["loss"].append(float(np.mean(losses)))
        report(progress, epoch + 1, config.epochs, f"loss {history['loss'][-1]:.3f} mm")
    decoder.eval()
    decoder.cpu()
    history["parameters"] = int(sum(p.numel() for p in decoder.parameters()))
    history["hierarchy_seconds"] = round(hierarchy_seconds, 2)
    history["seconds"] = round(time.perf_counter() - started, 2)
    history["final_loss"] = history["loss"][-1] if history["loss"] else None
    return model, history


class PCABaseline:
    """The PCA-fitting baseline of Table 1: a PCA of training dense displacements, whose
    coefficients are fitted (ridge least squares) to the landmark rows."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, landmarks: np.ndarray, ridge: float) -> None:
        self.mean, self.components, self.landmarks, self.ridge = (
            mean,
            components,
            np.asarray(landmarks),
            ridge,
        )

    @classmethod
    def fit(
        cls,
        dense_disp: np.ndarray,
        landmarks: np.ndarray,
        n_components: int = 40,
        ridge: float = 1e-3,
        seed: int = 0,
    ) -> PCABaseline:
        """PCA of ``dense_disp (N, V, 3)`` (metres) by a randomized range finder (Halko et al.
        2011, 4 power iterations, 10 extra columns): only ``N x (k + 10)`` and ``3V x (k + 10)``
        blocks beside the data, in float32 passes over it, instead of a full SVD whose float64
        copies and factors took ~11 GB on the default dataset."""
        x = np.asarray(dense_disp, dtype=np.float32).reshape(len(dense_disp), -1)
        mean = x.mean(axis=0, dtype=np.float64)
        mean32 = mean.astype(np.float32)
        k = min(n_components, *x.shape)
        width = min(k + 10, *x.shape)

        def times(block: np.ndarray) -> np.ndarray:  # (X - mean) @ block
            return x @ block - mean32 @ block

        def times_t(block: np.ndarray) -> np.ndarray:  # (X - mean)^T @ block
            return x.T @ block - np.outer(mean32, block.sum(axis=0))

        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(times(rng.standard_normal((x.shape[1], width)).astype(np.float32)))
        for _ in range(4):
            q, _ = np.linalg.qr(times_t(q))
            q, _ = np.linalg.qr(times(q))
        small = times_t(q).T.astype(np.float64)  # (width, 3V) = Q^T (X - mean)
        _, s, vt = np.linalg.svd(small, full_matrices=False)
        return cls(mean, vt[:k] * s[:k, None] / np.sqrt(len(x)), landmarks, ridge)

    def predict(self, landmark_disp: np.ndarray) -> np.ndarray:
        n_vertices = self.mean.size // 3
        rows = (self.landmarks[:, None] * 3 + np.arange(3)).reshape(-1)
        basis = self.components[:, rows].T  # (204, k)
        target = np.asarray(landmark_disp, dtype=np.float64).reshape(len(landmark_disp), -1) - self.mean[rows]
        lhs = (
            basis.T @ basis + self.ridge * np.eye(basis.shape[1]) * np.trace(basis.T @ basis) / basis.shape[1]
        )
        coefficients = np.linalg.solve(lhs, basis.T @ target.T).T
        return (self.mean + coefficients @ self.components).reshape(-1, n_vertices, 3).astype(np.float32)

    def decode(self, landmark_disp: np.ndarray) -> np.ndarray:
        return self.predict(landmark_disp)


def evaluate(model, dataset, identities: np.ndarray, expressions: np.ndarray | None = None) -> dict:  # noqa: ANN001
    """Mean per-vertex error (mm) of a decoder (anything with ``decode``) on the identities'
    static expressions (or ``expressions`` only)."""
    x, y = training_pairs(dataset, identities, clip_frames=0, expressions=expressions)
    predicted = model.decode(x)
    per_vertex = np.linalg.norm(predicted - y, axis=-1) * 1e3
    per_face = per_vertex.mean(axis=1)
    return {"mean_mm": float(per_vertex.mean()), "std_mm": float(per_face.std()), "n_faces": int(len(x))}
