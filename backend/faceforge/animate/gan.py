"""Motion3DGAN (Sparse2Dense Sec. 3.1, Eq. 2-3): a conditional WGAN-GP over SRVF landmark motions.

Training motions: each clip's landmarks are centred and scaled by its first (neutral) frame
(``shape_space.normalize_clip``; per-frame normalization would move the eyes when the jaw drops),
taken relative to that frame, resampled to 30 samples by arc length and encoded
as SRVFs on the unit sphere (``shape_space``). The Karcher mean ``mu`` of the training SRVFs is the
reference point; the GAN models the tangent vectors ``log_mu(q)``. The generator's output is
projected onto the tangent space at ``mu`` (the authors' code skips this and leaves the sphere)
and mapped back with ``exp_mu``, so generated motions always lie on the sphere. The critic has no
batch normalization (it would break the per-sample gradient penalty). Besides the adversarial
loss the generator pays an L1 distance, in the tangent space, to a real motion of the same label.

Also here, for the evaluation protocol of Table 3: a one-layer LSTM expression classifier, the
Fréchet distance of its features, and a conditional LSTM generator baseline.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from faceforge.animate import shape_space as ss
from faceforge.device import resolve_device
from faceforge.errors import FaceForgeError
from faceforge.progress import ProgressCallback, report

__all__ = [
    "LSTMClassifier",
    "LSTMGenerator",
    "Motion3DGAN",
    "Motion3DGANConfig",
    "frechet_distance",
    "landmark_curves",
    "motion_curves",
    "to_face",
    "train_classifier",
    "train_lstm_generator",
    "train_motion3dgan",
]

N_LANDMARKS = 68


def landmark_curves(dataset) -> tuple[list[np.ndarray], list[str], np.ndarray]:  # noqa: ANN001
    """Landmark sequences ``(T, 68, 3)`` (metres), labels and identities of a dataset's clips."""
    index = np.asarray(dataset.landmarks["ibug68"])
    curves, labels, identities = [], [], []
    for clip in dataset.clips:
        curves.append(np.asarray(clip.frames[:, index], dtype=np.float32))
        labels.append(str(clip.label))
        identities.append(int(clip.identity))
    return curves, labels, np.asarray(identities, dtype=np.int64)


def motion_curves(sequences: list[np.ndarray]) -> np.ndarray:
    """``(N, 30, 68, 3)`` normalized displacement curves from the first frame, resampled to 30
    samples by arc length: what Motion3DGAN models and the classifier reads."""
    out = []
    for sequence in sequences:
        normalized, _, _ = ss.normalize_clip(sequence)
        displacement = (normalized - normalized[:1]).reshape(len(normalized), -1)
        out.append(ss.resample_arc_length(displacement, ss.N_SAMPLES).reshape(ss.N_SAMPLES, N_LANDMARKS, 3))
    return np.asarray(out, dtype=np.float32)


def to_face(displacements: np.ndarray, neutral_landmarks: np.ndarray) -> np.ndarray:
    """Normalized displacements ``(..., 68, 3)`` in metres on a face with ``neutral_landmarks
    (68, 3)``: times the Frobenius norm of its centred landmarks (undoing the normalization)."""
    neutral = np.asarray(neutral_landmarks, dtype=np.float64)
    scale = np.linalg.norm(neutral - neutral.mean(axis=0))
    return (np.asarray(displacements) * scale).astype(np.float32)


@dataclass
class Motion3DGANConfig:
    """Settings of :func:`train_motion3dgan` (defaults: the default dataset, minutes on a CPU)."""

    seed: int = 0
    epochs: int = 40
    batch_size: int = 64
    noise_dim: int = 64
    hidden: int = 256
    learning_rate: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.9)
    n_critic: int = 4
    gp_weight: float = 10.0
    l1_weight: float = 1.0

    @classmethod
    def tiny(cls, seed: int = 0) -> Motion3DGANConfig:
        """Seconds: for tests and the small demo."""
        return cls(seed=seed, epochs=4, batch_size=32, noise_dim=16, hidden=64)


class _Generator(nn.Module):
    def __init__(self, noise_dim: int, n_labels: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(noise_dim + n_labels, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, out_dim),
        )  # fmt: skip

    def forward(self, noise: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([noise, onehot], dim=1))


class _Critic(nn.Module):
    """No batch norm: the gradient penalty is per sample."""

    def __init__(self, n_labels: int, hidden: int, in_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim + n_labels, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden + n_labels, hidden // 2), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.first, self.second = self.net[0], self.net[2]
        self.out = nn.Linear(hidden // 2 + n_labels, 1)

    def forward(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        # The label is concatenated at every layer.
        h = nn.functional.leaky_relu(self.first(torch.cat([x, onehot], 1)), 0.2)
        h = nn.functional.leaky_relu(self.second(torch.cat([h, onehot], 1)), 0.2)
        return self.out(torch.cat([h, onehot], 1))


class Motion3DGAN(nn.Module):
    """The trained generator with its reference point and per-label apex distances.

    Attributes:
        labels: label names (order of the one-hot code).
        mean_q: ``(29, 204)`` Karcher mean SRVF (the tangent space's base point).
        reaches: ``(n_labels,)`` mean distance from neutral to apex (the last sample) of each
            label's training motions, normalized units: the scale a generated motion gets back.
            The apex, not the curve length: a generated motion is straighter than a real one that
            wanders, and at equal length overshot its apex (cheeks_in by 40%).
    """

    def __init__(self, labels: list[str], mean_q: np.ndarray, reaches: np.ndarray, config: Motion3DGANConfig):
        super().__init__()
        self.labels = list(labels)
        self.config = config
        self.register_buffer("mean_q", torch.as_tensor(mean_q, dtype=torch.float32))
        self.register_buffer("reaches", torch.as_tensor(reaches, dtype=torch.float32))
        self.generator = _Generator(config.noise_dim, len(labels), config.hidden, self.mean_q.numel())

    def _label_index(self, label: str) -> int:
        if label not in self.labels:
            raise FaceForgeError(f"unknown motion label {label!r}; the model knows {', '.join(self.labels)}")
        return self.labels.index(label)

    def tangent(self, noise: torch.Tensor, label_ids: torch.Tensor) -> torch.Tensor:
        """Generated tangent vectors ``(B, 29, 204)`` at ``mean_q`` (projected)."""
        onehot = nn.functional.one_hot(label_ids, len(self.labels)).float()
        v = self.generator(noise, onehot).reshape(len(noise), *self.mean_q.shape)
        return ss.project_tangent_torch(self.mean_q, v)

    def generate_srvf(self, label: str, n: int = 1, seed: int = 0) -> np.ndarray:
        """``(n, 29, 204)`` generated SRVFs on the unit sphere."""
        generator = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(n, self.config.noise_dim, generator=generator).to(self.mean_q.device)
        ids = torch.full((n,), self._label_index(label), dtype=torch.int64, device=self.mean_q.device)
        with torch.no_grad():
            q = ss.exp_map_torch(self.mean_q, self.tangent(noise, ids))
        return q.cpu().numpy().astype(np.float64)

    def _curve(self, q: np.ndarray, reach: float) -> np.ndarray:
        """The curve of ``q`` from zero, scaled so that its apex (last sample) lies ``reach`` away
        (the curve is linear in the length ``decode`` is given)."""
        curve = ss.decode(q, np.zeros(q.shape[1]), 1.0)
        curve *= reach / max(float(np.linalg.norm(curve[-1])), 1e-12)
        return curve.reshape(ss.N_SAMPLES, N_LANDMARKS, 3).astype(np.float32)

    def generate(self, label: str, n: int = 1, seed: int = 0, reach: float | None = None) -> np.ndarray:
        """``(n, 30, 68, 3)`` generated displacement curves from a zero start, normalized units, the
        apex ``reach`` away (default: the label's mean)."""
        reach = float(self.reaches[self._label_index(label)]) if reach is None else float(reach)
        return np.stack([self._curve(q, reach) for q in self.generate_srvf(label, n, seed)])

    def interpolate(
        self, label_a: str, label_b: str, steps: int, seed_a: int = 0, seed_b: int = 0
    ) -> np.ndarray:
        """``(steps, 30, 68, 3)`` motions along the sphere geodesic between two generated motions
        (Sec. 4.4); the apex distance is interpolated linearly."""
        q_a = self.generate_srvf(label_a, 1, seed_a)[0]
        q_b = self.generate_srvf(label_b, 1, seed_b)[0]
        len_a = float(self.reaches[self._label_index(label_a)])
        len_b = float(self.reaches[self._label_index(label_b)])
        out = []
        for t in np.linspace(0.0, 1.0, steps):
            out.append(self._curve(ss.geodesic(q_a, q_b, float(t)), (1 - t) * len_a + t * len_b))
        return np.stack(out)

    def to_payload(self) -> dict:
        return {
            "labels": list(self.labels),
            "config": dataclasses.asdict(self.config),
            "state": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }

    @classmethod
    def from_payload(cls, payload: dict) -> Motion3DGAN:
        config = dict(payload["config"])
        config["betas"] = tuple(config["betas"])
        state = payload["state"]
        model = cls(
            payload["labels"], state["mean_q"].numpy(), state["reaches"].numpy(), Motion3DGANConfig(**config)
        )
        model.load_state_dict(state)
        model.eval()
        return model


def _gradient_penalty(
    critic: _Critic, real: torch.Tensor, fake: torch.Tensor, onehot: torch.Tensor
) -> torch.Tensor:
    alpha = torch.rand(len(real), 1, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = critic(mixed, onehot)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    return ((grad.norm(dim=1) - 1.0) ** 2).mean()


class _TangentMotions(NamedTuple):
    """Training motions as tangent vectors at their Karcher mean (see the module docstring).

    Attributes:
        names: the sorted label names (the one-hot order).
        label_ids: ``(N,)`` label index of each motion.
        reaches: ``(n_labels,)`` mean neutral-to-apex distance of each label's motions (normalized).
        mean_q: ``(29, 204)`` Karcher mean SRVF of the motions.
        tangents: ``(N, 29, 204)`` float32 ``log_mu(q)`` of each motion.
    """

    names: list[str]
    label_ids: np.ndarray
    reaches: np.ndarray
    mean_q: np.ndarray
    tangents: np.ndarray


def _tangent_motions(sequences: list[np.ndarray], labels: list[str]) -> _TangentMotions:
    """Encode landmark sequences ``(T, 68, 3)`` as SRVFs and log-map them at their Karcher mean."""
    curves = motion_curves(sequences).reshape(len(sequences), ss.N_SAMPLES, -1)
    encoded = [ss.encode(c) for c in curves]
    qs = np.stack([e[0] for e in encoded])
    names = sorted(set(labels))
    label_ids = np.array([names.index(lab) for lab in labels])
    apex = np.linalg.norm(curves[:, -1] - curves[:, 0], axis=1)
    reaches = np.array([apex[label_ids == k].mean() for k in range(len(names))])
    mean_q = ss.karcher_mean(qs)
    tangents = np.stack([ss.log_map(mean_q, q) for q in qs]).astype(np.float32)
    return _TangentMotions(names, label_ids, reaches, mean_q, tangents)


class _AdversarialTraining:
    """The critic, both optimisers and the training motions of :func:`train_motion3dgan`.

    ``rng`` draws the batch order and the L1 partners; torch's global generator draws the
    noise and the gradient penalty's mixing weights.
    """

    def __init__(
        self,
        model: Motion3DGAN,
        motions: _TangentMotions,
        config: Motion3DGANConfig,
        rng: np.random.Generator,
        device: torch.device,
    ) -> None:
        n_labels = len(motions.names)
        tangents = motions.tangents
        self.model, self.config, self.rng, self.device, self.n_labels = model, config, rng, device, n_labels
        self.critic = _Critic(n_labels, config.hidden, tangents[0].size).to(device)
        self.g_opt = torch.optim.Adam(
            model.generator.parameters(), lr=config.learning_rate, betas=config.betas
        )
        self.c_opt = torch.optim.Adam(self.critic.parameters(), lr=config.learning_rate, betas=config.betas)
        self.real_all = torch.as_tensor(tangents.reshape(len(tangents), -1), device=device)  # (N, 29 * 204)
        self.ids_all = torch.as_tensor(motions.label_ids, device=device)
        self.by_label = [np.flatnonzero(motions.label_ids == k) for k in range(n_labels)]

    def _critic_steps(self, real: torch.Tensor, ids: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """``n_critic`` WGAN-GP updates of the critic on one batch; returns the last loss."""
        config, critic = self.config, self.critic
        for _ in range(config.n_critic):
            noise = torch.randn(len(real), config.noise_dim, device=self.device)
            with torch.no_grad():
                fake = self.model.tangent(noise, ids).reshape(len(real), -1)
            c_loss = critic(fake, onehot).mean() - critic(real, onehot).mean()
            c_loss = c_loss + config.gp_weight * _gradient_penalty(critic, real, fake, onehot)
            self.c_opt.zero_grad()
            c_loss.backward()
            self.c_opt.step()
        return c_loss

    def _generator_step(self, ids: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """One generator update: adversarial loss plus L1 to a real motion of the same label."""
        config = self.config
        noise = torch.randn(len(ids), config.noise_dim, device=self.device)
        fake = self.model.tangent(noise, ids).reshape(len(ids), -1)
        partners = torch.as_tensor(
            [self.rng.choice(self.by_label[int(k)]) for k in ids.cpu().numpy()], device=self.device
        )  # a real motion of the same label for the L1 term
        g_loss = (
            -self.critic(fake, onehot).mean()
            + config.l1_weight * (fake - self.real_all[partners]).abs().mean()
        )
        self.g_opt.zero_grad()
        g_loss.backward()
        self.g_opt.step()
        return g_loss

    def epoch(self) -> tuple[float, float]:
        """One pass over the motions in a random order; the mean critic and generator losses."""
        batch_size = self.config.batch_size
        batches = max(1, len(self.real_all) // batch_size)
        c_losses, g_losses = [], []
        order = self.rng.permutation(len(self.real_all))
        for b in range(batches):
            index = order[b * batch_size : (b + 1) * batch_size]
            real, ids = self.real_all[index], self.ids_all[index]
            onehot = nn.functional.one_hot(ids, self.n_labels).float()
            c_loss = self._critic_steps(real, ids, onehot)
            g_loss = self._generator_step(ids, onehot)
            c_losses.append(float(c_loss.detach()))
            g_losses.append(float(g_loss.detach()))
        return float(np.mean(c_losses)), float(np.mean(g_losses))


def train_motion3dgan(
    sequences: list[np.ndarray],
    labels: list[str],
    config: Motion3DGANConfig | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[Motion3DGAN, dict]:
    """Train Motion3DGAN on landmark sequences ``(T, 68, 3)`` (metres) with their labels.

    Returns:
        The model (eval mode) and a history (per-epoch critic and generator losses, seconds).
    """
    if len(sequences) != len(labels) or len(sequences) < 2:
        raise FaceForgeError(
            f"need at least 2 labelled sequences, got {len(sequences)} and {len(labels)} labels"
        )
    config = config or Motion3DGANConfig()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    motions = _tangent_motions(sequences, labels)
    model = Motion3DGAN(motions.names, motions.mean_q, motions.reaches, config)
    device = torch.device(resolve_device())  # the device policy: $FACEFORGE_DEVICE, else a GPU if any
    model.to(device)
    training = _AdversarialTraining(model, motions, config, rng, device)
    history: dict = {"critic_loss": [], "generator_loss": [], "epochs": config.epochs}
    for epoch in range(config.epochs):
        c_loss, g_loss = training.epoch()
        history["critic_loss"].append(c_loss)
        history["generator_loss"].append(g_loss)
        report(progress, epoch + 1, config.epochs, f"critic {history['critic_loss'][-1]:.3f}")
    model.eval()
    model.cpu()
    history["seconds"] = round(time.perf_counter() - started, 2)
    history["final_critic_loss"] = history["critic_loss"][-1]
    history["final_generator_loss"] = history["generator_loss"][-1]
    return model, history


# -- evaluation protocol of Table 3 -------------------------------------------------------------


class LSTMClassifier(nn.Module):
    """One-layer LSTM over the 30 frames of normalized landmark displacements -> label logits."""

    def __init__(self, n_labels: int, hidden: int = 64) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_LANDMARKS * 3, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_labels)

    def features(self, curves: torch.Tensor) -> torch.Tensor:
        """``(N, hidden)``: the LSTM's last hidden state (the FID features)."""
        _, (h, _) = self.lstm(curves.reshape(len(curves), ss.N_SAMPLES, -1) * 10.0)
        return h[-1]

    def forward(self, curves: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(curves))


def train_classifier(
    curves: np.ndarray, label_ids: np.ndarray, n_labels: int, epochs: int = 60, seed: int = 0
) -> LSTMClassifier:
    """Train :class:`LSTMClassifier` on ``curves (N, 30, 68, 3)`` (see :func:`motion_curves`)."""
    torch.manual_seed(seed)
    model = LSTMClassifier(n_labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.as_tensor(np.asarray(curves, dtype=np.float32))
    y = torch.as_tensor(np.asarray(label_ids, dtype=np.int64))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(64):
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return model


def classifier_accuracy(model: LSTMClassifier, curves: np.ndarray, label_ids: np.ndarray) -> float:
    with torch.no_grad():
        predicted = model(torch.as_tensor(np.asarray(curves, dtype=np.float32))).argmax(dim=1).numpy()
    return float(np.mean(predicted == np.asarray(label_ids)))


def classifier_features(model: LSTMClassifier, curves: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.features(torch.as_tensor(np.asarray(curves, dtype=np.float32))).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N, H)`` (the FID formula)."""
    from scipy.linalg import sqrtm

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(max(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root), 0.0))


class LSTMGenerator(nn.Module):
    """Baseline of Table 3: a conditional LSTM that unrolls 30 frames from a label and a noise code,
    trained to reproduce real motions of that label (L1), without the sphere or a critic."""

    def __init__(self, labels: list[str], noise_dim: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.labels = list(labels)
        self.noise_dim = noise_dim
        self.lstm = nn.LSTM(noise_dim + len(labels), hidden, batch_first=True)
        self.out = nn.Linear(hidden, N_LANDMARKS * 3)

    def forward(self, noise: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        step = torch.cat([noise, onehot], dim=1)[:, None].expand(-1, ss.N_SAMPLES, -1)
        h, _ = self.lstm(step)
        velocity = self.out(h)
        curve = torch.cumsum(velocity, dim=1)
        return (curve - curve[:, :1]).reshape(len(noise), ss.N_SAMPLES, N_LANDMARKS, 3)

    def generate(self, label: str, n: int = 1, seed: int = 0) -> np.ndarray:
        generator = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(n, self.noise_dim, generator=generator)
        onehot = nn.functional.one_hot(torch.full((n,), self.labels.index(label)), len(self.labels)).float()
        with torch.no_grad():
            return self(noise, onehot).numpy()


def train_lstm_generator(
    curves: np.ndarray, labels: list[str], epochs: int = 60, seed: int = 0
) -> LSTMGenerator:
    """Train :class:`LSTMGenerator` on ``curves (N, 30, 68, 3)`` with their labels."""
    torch.manual_seed(seed)
    names = sorted(set(labels))
    model = LSTMGenerator(names)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = torch.as_tensor(np.asarray(curves, dtype=np.float32))
    onehot = nn.functional.one_hot(torch.as_tensor([names.index(lab) for lab in labels]), len(names)).float()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(64):
            noise = torch.randn(len(index), model.noise_dim, generator=generator)
            loss = (model(noise, onehot[index]) - x[index]).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return model
