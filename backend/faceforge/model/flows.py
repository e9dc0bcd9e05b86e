"""RealNVP normalizing flows over the bilinear model's codes (BabyFlow Sec. 4.4, Eq. 10-19).

``z = f(w)``: a fixed standardisation of ``w`` (training mean and std) followed by affine
coupling layers with alternating halves (Eq. 14). Each coupling's scale network ends in a tanh
times a learned per-dimension scale, which keeps ``exp(s)`` bounded. Training minimises
``NLL + ||J_f||_F`` (Eq. 19) with uniform dequantization noise (scaled by each dimension's
standard deviation) and stops early on the validation NLL.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from faceforge.errors import FaceForgeError
from faceforge.progress import ProgressCallback, report

__all__ = [
    "coupling_partitions",
    "AffineCoupling",
    "RealNVP",
    "FlowTrainingConfig",
    "train_flow",
    "jacobian_frobenius",
]

_LOG_2PI = math.log(2.0 * math.pi)
_SLOPE = 0.1  # LeakyReLU negative slope


class _TwinMLP(nn.Module):
    """The scale and shift networks of a coupling: two independent MLPs (two LeakyReLU hidden
    layers each) evaluated together as batched matrix products, which halves the number of
    operator calls; at these sizes per-call overhead, not arithmetic, bounds CPU training time.
    The output layers start at zero so a coupling starts as the identity map."""

    def __init__(self, d_in: int, d_out: int, hidden: int) -> None:
        super().__init__()
        sizes = [(d_in, hidden), (hidden, hidden), (hidden, d_out)]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for k, (n_in, n_out) in enumerate(sizes):
            bound = 1.0 / math.sqrt(n_in)  # nn.Linear's default initialisation
            last = k == len(sizes) - 1
            w = torch.zeros(2, n_in, n_out) if last else torch.empty(2, n_in, n_out).uniform_(-bound, bound)
            b = torch.zeros(2, 1, n_out) if last else torch.empty(2, 1, n_out).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, d_in)`` -> raw scale and shift outputs, each ``(B, d_out)``."""
        h = x.unsqueeze(0).expand(2, *x.shape)
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if k < len(self.weights) - 1:
                h = torch.nn.functional.leaky_relu(h, _SLOPE)
        return h[0], h[1]


def coupling_partitions(dim: int, n_layers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(changed, kept)`` index sets of each coupling: pairs of layers swap the two halves of a
    partition (Eq. 14-15); successive pairs use the first/second half, then even/odd indices,
    then halves of a fixed shuffle, so every pair of dimensions conditions each other somewhere
    (with halves alone, two leading components never interact)."""
    idx = torch.arange(dim)
    orders = [
        idx,
        torch.cat([idx[0::2], idx[1::2]]),
        torch.randperm(dim, generator=torch.Generator().manual_seed(dim)),
    ]
    out = []
    for k in range(n_layers):
        order = orders[(k // 2) % len(orders)]
        first, second = order[: dim // 2], order[dim // 2 :]
        out.append((first, second) if k % 2 else (second, first))
    return out


class AffineCoupling(nn.Module):
    """One affine coupling layer (Eq. 14): ``y_b = x_b * exp(s(x_a)) + t(x_a)``, ``y_a = x_a``.

    The partition is stored as a binary mask (1 on the kept entries ``a``): masked dense
    products avoid gathers and scatters. ``s`` is a tanh times a learned per-dimension gain,
    which keeps ``exp(s)`` bounded.

    Args:
        changed: indices ``b`` of the entries this layer transforms.
        kept: indices ``a`` of the entries that condition the transform (left unchanged).
        hidden: width of the scale and shift networks.
    """

    def __init__(self, changed: torch.Tensor, kept: torch.Tensor, hidden: int) -> None:
        super().__init__()
        dim = len(changed) + len(kept)
        mask = torch.zeros(dim)
        mask[torch.as_tensor(kept, dtype=torch.long)] = 1.0
        self.register_buffer("mask", mask)
        self.nets = _TwinMLP(dim, dim, hidden)
        self.scale_gain = nn.Parameter(torch.ones(dim))

    def _st(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, raw_t = self.nets(x * self.mask)
        free = 1.0 - self.mask
        return (free * self.scale_gain) * torch.tanh(raw_s), free * raw_t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, D) -> (B, D)``, and ``(B,)`` log|det J| (Eq. 17)."""
        s, t = self._st(x)
        return x * torch.exp(s) + t, s.sum(-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse map (Eq. 15)."""
        s, t = self._st(y)
        return (y - t) * torch.exp(-s)


class RealNVP(nn.Module):
    """A RealNVP flow ``z = f(w)`` with a standard normal base distribution.

    Args:
        dim: code dimension ``D``.
        n_layers: number of affine couplings (BabyFlow: 6), halves alternating.
        hidden: width of the coupling networks.
        mean, std: ``(D,)`` standardisation applied before the couplings (part of ``f``).
    """

    def __init__(
        self,
        dim: int,
        n_layers: int = 6,
        hidden: int = 64,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.dim, self.n_layers, self.hidden = dim, n_layers, hidden
        self.register_buffer("mean", torch.zeros(dim) if mean is None else torch.as_tensor(mean).float())
        self.register_buffer("std", torch.ones(dim) if std is None else torch.as_tensor(std).float())
        self.layers = nn.ModuleList(
            AffineCoupling(changed, kept, hidden) for changed, kept in coupling_partitions(dim, n_layers)
        )

    def standardize(self, w: torch.Tensor) -> torch.Tensor:
        """The fixed affine first step of ``f``: ``(w - mean) / std``."""
        return (w - self.mean) / self.std

    def couplings(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned part of ``f`` on standardised codes: ``u -> z`` and its ``log|det|``."""
        logdet = torch.zeros(u.shape[:-1], dtype=u.dtype, device=u.device)
        for layer in self.layers:
            u, ld = layer(u)
            logdet = logdet + ld
        return u, logdet

    def forward(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``w (B, D) -> z (B, D)`` and ``log|det df/dw| (B,)``."""
        z, logdet = self.couplings(self.standardize(w))
        return z, logdet - torch.log(self.std).sum()

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, D) -> w (B, D)``."""
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z * self.std + self.mean

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        """``(B,)`` log density of codes ``w`` (Eq. 10), in nats."""
        return self.base_log_prob(*self.couplings(self.standardize(w)))

    def base_log_prob(self, z: torch.Tensor, coupling_logdet: torch.Tensor) -> torch.Tensor:
        """``(B,)`` log density of codes from their latents ``z (B, D)`` and the couplings'
        ``log|det| (B,)`` (change of variables, Eq. 10, including the standardisation)."""
        logdet = coupling_logdet - torch.log(self.std).sum()
        return -0.5 * (z**2).sum(-1) - 0.5 * self.dim * _LOG_2PI + logdet

    def config(self) -> dict:
        return {"dim": self.dim, "n_layers": self.n_layers, "hidden": self.hidden}


def jacobian_frobenius(flow: RealNVP, w: torch.Tensor, exact: bool = False) -> torch.Tensor:
    """Frobenius norm of the Jacobian of the learned couplings (Eq. 18).

    Taken on standardised codes, so the penalty measures the deformation the couplings add,
    whatever the units of ``w`` (the fixed standardisation has a constant Jacobian).

    Args:
        flow: the flow.
        w: ``(B, D)`` codes.
        exact: the exact per-sample norms ``(B,)`` from the full Jacobians (``D`` backward
            passes); otherwise a Hutchinson estimate of the batch's RMS norm, ``()``, from one
            central-difference Jacobian-vector product per sample with Gaussian probes, which
            is what training uses.
    """
    u = flow.standardize(w)
    if exact:
        jac = torch.func.vmap(torch.func.jacrev(lambda x: flow.couplings(x[None])[0][0]))(u)  # (B, D, D)
        return torch.sqrt((jac**2).sum(dim=(-2, -1)) + 1e-12)
    return _hutchinson_frobenius(flow, u, torch.randn_like(u))[2]


_FD_STEP = 1e-2  # central-difference step in standardised units: O(1e-4) relative error


def _hutchinson_frobenius(
    flow: RealNVP, u: torch.Tensor, probe: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batched pass over ``[u, u + h v, u - h v]``: the couplings' ``z`` and ``log|det|`` at
    ``u`` and a Hutchinson estimate of the batch's RMS ``||J||_F`` from the central difference
    ``J v ~ (f(u + h v) - f(u - h v)) / 2h`` (``E |J v|^2 = ||J||_F^2`` for Gaussian ``v``).
    Differences instead of forward-mode AD keep it to one pass of the plain network."""
    n = len(u)
    z, logdet = flow.couplings(torch.cat([u, u + _FD_STEP * probe, u - _FD_STEP * probe]))
    jv = (z[n : 2 * n] - z[2 * n :]) / (2.0 * _FD_STEP)
    return z[:n], logdet[:n], torch.sqrt((jv**2).sum(-1).mean() + 1e-12)


@dataclass(frozen=True)
class FlowTrainingConfig:
    """Training settings of one flow (BabyFlow: 6 couplings, Adamax 1e-3, early stopping).

    Attributes:
        n_layers, hidden: architecture.
        learning_rate: Adamax step size.
        batch_size: samples per step.
        max_epochs: upper bound on epochs.
        patience: epochs without a better validation NLL before stopping.
        dequantization: uniform noise width as a fraction of each dimension's std (0: none).
        jacobian_weight: weight of ``||J_f||_F`` in the loss (Eq. 19 uses 1).
        seed: seed of initialisation, batching and noise.
    """

    n_layers: int = 6
    hidden: int = 64
    learning_rate: float = 1e-3
    batch_size: int = 256
    max_epochs: int = 400
    patience: int = 30
    dequantization: float = 0.05
    jacobian_weight: float = 1.0
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def train_flow(
    train: np.ndarray,
    val: np.ndarray,
    config: FlowTrainingConfig = FlowTrainingConfig(),
    progress: ProgressCallback | None = None,
    device: str | torch.device = "cpu",
) -> tuple[RealNVP, dict]:
    """Fit a :class:`RealNVP` to codes by maximum likelihood with Jacobian regularisation.

    Args:
        train: ``(N, D)`` training codes.
        val: ``(M, D)`` validation codes for early stopping (M >= 1).
        config: settings.
        progress: called once per epoch; returning False cancels (raises Cancelled).
        device: torch device.

    Returns:
        The flow with the best validation NLL (on the CPU, eval mode) and a history dict
        (``train_nll``, ``val_nll`` per epoch, ``best_epoch``, ``epochs``).
    """
    train = np.asarray(train, dtype=np.float32)
    val = np.asarray(val, dtype=np.float32)
    if train.ndim != 2 or len(train) < 2 or val.ndim != 2 or len(val) < 1 or val.shape[1] != train.shape[1]:
        raise FaceForgeError(
            f"flow training needs (N>=2, D) train and (M>=1, D) val codes, got {train.shape}, {val.shape}"
        )
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    mean = torch.from_numpy(train.mean(axis=0))
    std = torch.from_numpy(train.std(axis=0) + 1e-6)
    flow = RealNVP(train.shape[1], config.n_layers, config.hidden, mean, std).to(device)
    optimiser = torch.optim.Adamax(flow.parameters(), lr=config.learning_rate, foreach=True)
    x_train = torch.from_numpy(train).to(device)
    x_val = torch.from_numpy(val).to(device)
    noise_scale = (config.dequantization * std).to(device)
    best, best_state, best_epoch, stale = math.inf, copy.deepcopy(flow.state_dict()), 0, 0
    history: dict = {"train_nll": [], "val_nll": []}
    for epoch in range(config.max_epochs):
        flow.train()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = x_train[order[start : start + config.batch_size]]
            noise = (torch.rand(batch.shape, generator=generator).to(device) - 0.5) * noise_scale
            w = batch + noise
            u = flow.standardize(w)
            if config.jacobian_weight > 0:
                probe = torch.randn(u.shape, generator=generator).to(device)
                z, logdet, jacobian = _hutchinson_frobenius(flow, u, probe)
            else:
                z, logdet = flow.couplings(u)
                jacobian = torch.zeros((), device=device)
            nll = -flow.base_log_prob(z, logdet).mean()
            loss = nll + config.jacobian_weight * jacobian
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(flow.parameters(), 10.0, foreach=True)
            optimiser.step()
            total += float(nll.detach()) * len(batch)
        flow.eval()
        with torch.no_grad():
            val_nll = float(-flow.log_prob(x_val).mean())
        history["train_nll"].append(total / len(x_train))
        history["val_nll"].append(val_nll)
        if val_nll < best - 1e-4:
            best, best_state, best_epoch, stale = val_nll, copy.deepcopy(flow.state_dict()), epoch, 0
        else:
            stale += 1
        report(progress, epoch + 1, config.max_epochs, f"val NLL {val_nll:.3f}")
        if stale >= config.patience:
            break
    flow.load_state_dict(best_state)
    flow = flow.cpu().eval()
    history.update(best_epoch=best_epoch, epochs=len(history["val_nll"]), best_val_nll=best)
    return flow, history
