"""BabyFlow: the bilinear face model with normalizing flows over both latent spaces.

A face is ``x = mu + C x_2 w_id x_3 w_ex`` (Eq. 9) with ``w_id = f_id^-1(z_id)`` and
``w_ex = f_ex^-1(z_ex)`` (Eq. 10), ``z ~ N(0, I)``. :class:`FaceModel` is a torch module whose
assets are buffers, so ``.to(device)`` and ``state_dict`` work; it saves to one self-describing
file that loads without the training code (:func:`load_model`).

Units: metres for vertices, millimetres for reported errors.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceforge.artifact_file import load_artifact, save_artifact
from faceforge.errors import FaceForgeError
from faceforge.model.flows import RealNVP

__all__ = ["MODEL_FORMAT_VERSION", "FaceModel", "load_model", "topology_hash"]

MODEL_FORMAT_VERSION = 4  # 4: tensor checksums (faceforge.artifact_file)


def topology_hash(faces: np.ndarray, n_vertices: int) -> str:
    """SHA-256 (16 hex digits) of a mesh topology: vertex count and triangle list."""
    digest = hashlib.sha256(np.asarray([n_vertices], dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(faces, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


class FaceModel(nn.Module):
    """The BabyFlow face model.

    Args:
        mean: ``(3N,)`` mean face (metres).
        core: ``(3N, r_id, r_ex)`` core projected on the vertex space (Eq. 9).
        faces: ``(F, 3)`` triangles.
        identity_flow, expression_flow: flows ``z = f(w)`` of each code space.
        neutral_expression: ``(r_ex,)`` code of the neutral expression.
        expression_codes: ``(E, r_ex)`` codes of the named training expressions.
        identity_prior, expression_prior: ``(2, r)`` mean and variance of the codes, the
            Gaussian prior of a fit without flows (Eq. 22).
        metadata: JSON-serialisable names and facts (expression names, landmarks, regions,
            population, ranks, spectra...).
    """

    def __init__(
        self,
        mean: torch.Tensor,
        core: torch.Tensor,
        faces: torch.Tensor,
        identity_flow: RealNVP,
        expression_flow: RealNVP,
        neutral_expression: torch.Tensor,
        expression_codes: torch.Tensor,
        identity_prior: torch.Tensor,
        expression_prior: torch.Tensor,
        metadata: dict,
    ) -> None:
        super().__init__()
        core = torch.as_tensor(core, dtype=torch.float32)
        self.rank_identity, self.rank_expression = int(core.shape[1]), int(core.shape[2])
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("core", core.reshape(core.shape[0], -1).contiguous())
        self.register_buffer("faces", torch.as_tensor(faces, dtype=torch.int64))
        self.register_buffer("neutral_expression", torch.as_tensor(neutral_expression, dtype=torch.float32))
        self.register_buffer("expression_codes", torch.as_tensor(expression_codes, dtype=torch.float32))
        self.register_buffer("identity_prior", torch.as_tensor(identity_prior, dtype=torch.float32))
        self.register_buffer("expression_prior", torch.as_tensor(expression_prior, dtype=torch.float32))
        self.identity_flow = identity_flow
        self.expression_flow = expression_flow
        self.metadata = dict(metadata)
        self.eval()

    # -- sizes and names ------------------------------------------------------------------------
    @property
    def n_vertices(self) -> int:
        return int(self.mean.shape[0]) // 3

    @property
    def expression_names(self) -> list[str]:
        return list(self.metadata.get("expression_names", []))

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def expression_code(self, name: str) -> torch.Tensor:
        """``(r_ex,)`` code of a named training expression (e.g. ``"jawOpen"``, ``"happy"``)."""
        names = self.expression_names
        if name not in names:
            raise FaceForgeError(f"unknown expression {name!r}; the model knows {len(names)} names")
        return self.expression_codes[names.index(name)]

    # -- the bilinear decoder (Eq. 9) -------------------------------------------------------------
    def decode(self, w_id: torch.Tensor, w_ex: torch.Tensor) -> torch.Tensor:
        """``(B, V, 3)`` vertices (metres) of identity codes ``(B, r_id)`` and expression codes
        ``(B, r_ex)`` (either may be a single code, broadcast over the batch)."""
        w_id = torch.as_tensor(w_id, dtype=torch.float32, device=self.device)
        w_ex = torch.as_tensor(w_ex, dtype=torch.float32, device=self.device)
        w_id, w_ex = torch.broadcast_tensors(w_id.reshape(-1, self.rank_identity)[:, :, None],
                                             w_ex.reshape(-1, self.rank_expression)[:, None, :])  # fmt: skip
        outer = (w_id * w_ex).reshape(w_id.shape[0], -1)
        return (self.mean + outer @ self.core.T).reshape(-1, self.n_vertices, 3)

    # -- flows: w <-> z ---------------------------------------------------------------------------
    def encode(self, w_id: torch.Tensor, w_ex: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent codes ``z = f(w)`` of bilinear codes (both ``(B, r)``)."""
        w_id = torch.as_tensor(w_id, dtype=torch.float32, device=self.device).reshape(-1, self.rank_identity)
        w_ex = torch.as_tensor(w_ex, dtype=torch.float32, device=self.device).reshape(
            -1, self.rank_expression
        )
        return self.identity_flow(w_id)[0], self.expression_flow(w_ex)[0]

    def to_bilinear(self, z_id: torch.Tensor, z_ex: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bilinear codes ``w = f^-1(z)`` of latent codes (both ``(B, r)``)."""
        z_id = torch.as_tensor(z_id, dtype=torch.float32, device=self.device).reshape(-1, self.rank_identity)
        z_ex = torch.as_tensor(z_ex, dtype=torch.float32, device=self.device).reshape(
            -1, self.rank_expression
        )
        return self.identity_flow.inverse(z_id), self.expression_flow.inverse(z_ex)

    def decode_latent(self, z_id: torch.Tensor, z_ex: torch.Tensor) -> torch.Tensor:
        """``(B, V, 3)`` vertices of latent codes."""
        return self.decode(*self.to_bilinear(z_id, z_ex))

    def log_prob(self, w_id: torch.Tensor, w_ex: torch.Tensor) -> torch.Tensor:
        """``(B,)`` log density (nats) of a face's codes under both flows: a plausibility score."""
        w_id = torch.as_tensor(w_id, dtype=torch.float32, device=self.device).reshape(-1, self.rank_identity)
        w_ex = torch.as_tensor(w_ex, dtype=torch.float32, device=self.device).reshape(
            -1, self.rank_expression
        )
        return self.identity_flow.log_prob(w_id) + self.expression_flow.log_prob(w_ex)

    # -- generation -------------------------------------------------------------------------------
    def sample(
        self, n: int, seed: int = 0, radius: float | None = None, use_flows: bool = True
    ) -> dict[str, torch.Tensor]:
        """Random faces.

        Args:
            n: number of faces.
            seed: random seed.
            radius: if given, a confidence level ``rho`` in (0, 1): every latent sample is
                projected onto the hyperellipsoid of squared Mahalanobis radius
                ``beta^2 = chi2_D(rho)`` (Eq. 24), separately for identity and expression.
            use_flows: sample ``z`` and map through the flows (BabyFlow), or sample ``w`` from
                the Gaussian prior of the bilinear codes (the model without flows).

        Returns:
            ``z_id, z_ex`` (latent; equal to the standardised ``w`` without flows), ``w_id, w_ex``
            and ``vertices (n, V, 3)``.
        """
        if n < 1:
            raise FaceForgeError(f"n must be >= 1, got {n}")
        generator = torch.Generator().manual_seed(int(seed))
        z_id = torch.randn(n, self.rank_identity, generator=generator)
        z_ex = torch.randn(n, self.rank_expression, generator=generator)
        if radius is not None:
            z_id, z_ex = project_to_radius(z_id, radius), project_to_radius(z_ex, radius)
        z_id, z_ex = z_id.to(self.device), z_ex.to(self.device)
        with torch.no_grad():
            if use_flows:
                w_id, w_ex = self.to_bilinear(z_id, z_ex)
            else:
                w_id = self.identity_prior[0] + z_id * self.identity_prior[1].sqrt()
                w_ex = self.expression_prior[0] + z_ex * self.expression_prior[1].sqrt()
            vertices = self.decode(w_id, w_ex)
        return {"z_id": z_id, "z_ex": z_ex, "w_id": w_id, "w_ex": w_ex, "vertices": vertices}

    def interpolate(
        self,
        start: tuple[torch.Tensor, torch.Tensor],
        end: tuple[torch.Tensor, torch.Tensor],
        steps: int = 5,
        mode: str = "joint",
    ) -> torch.Tensor:
        """Faces along a straight line in latent space (Eq. 23).

        Args:
            start, end: ``(z_id, z_ex)`` latent codes of the two faces.
            steps: number of faces including both ends (``nu = 0 .. 1``).
            mode: ``"identity"`` (expression of ``start`` kept), ``"expression"`` (identity of
                ``start`` kept) or ``"joint"``.

        Returns:
            ``(steps, V, 3)`` vertices.
        """
        if mode not in ("identity", "expression", "joint"):
            raise FaceForgeError(f"mode must be identity, expression or joint, got {mode!r}")
        nu = torch.linspace(0.0, 1.0, steps, device=self.device)[:, None]
        z_id0, z_ex0 = (
            torch.as_tensor(t, dtype=torch.float32, device=self.device).reshape(1, -1) for t in start
        )
        z_id1, z_ex1 = (
            torch.as_tensor(t, dtype=torch.float32, device=self.device).reshape(1, -1) for t in end
        )
        z_id = (1 - nu) * z_id0 + nu * z_id1 if mode != "expression" else z_id0.expand(steps, -1)
        z_ex = (1 - nu) * z_ex0 + nu * z_ex1 if mode != "identity" else z_ex0.expand(steps, -1)
        with torch.no_grad():
            return self.decode_latent(z_id, z_ex)

    def neutralize(self, w_id: torch.Tensor) -> torch.Tensor:
        """``(B, V, 3)`` faces of identities ``w_id (B, r_id)`` with the neutral expression."""
        with torch.no_grad():
            return self.decode(w_id, self.neutral_expression)

    def transfer_expression(self, source_w_ex: torch.Tensor, target_w_id: torch.Tensor) -> torch.Tensor:
        """The expression of face A (its ``w_ex``) on the identity of face B (its ``w_id``)."""
        with torch.no_grad():
            return self.decode(target_w_id, source_w_ex)

    def cross_age_transfer(
        self, source_w_ex: torch.Tensor, target_w_id: torch.Tensor, intensity: float = 1.0
    ) -> torch.Tensor:
        """Expression transfer with BabyFlow's intensity ``delta`` (Eq. 7):
        ``x = x_B,neutral + delta * (x_B(w_ex,A) - x_B,neutral)``; the expression is carried by the
        bilinear interaction, so it takes the target's (e.g. an infant's) proportions."""
        with torch.no_grad():
            neutral = self.decode(target_w_id, self.neutral_expression)
            return neutral + intensity * (self.decode(target_w_id, source_w_ex) - neutral)

    # -- files ------------------------------------------------------------------------------------
    def topology_hash(self) -> str:
        return topology_hash(self.faces.cpu().numpy(), self.n_vertices)

    def info(self) -> dict:
        """Format, sizes, names and units as a JSON-serialisable dict."""
        return {
            "format_version": MODEL_FORMAT_VERSION,
            "n_vertices": self.n_vertices,
            "n_faces": int(self.faces.shape[0]),
            "rank_identity": self.rank_identity,
            "rank_expression": self.rank_expression,
            "topology_hash": self.topology_hash(),
            "units": "metres",
            **{k: v for k, v in self.metadata.items() if k not in ("regions", "landmarks")},
            "landmark_sets": {k: len(v) for k, v in self.metadata.get("landmarks", {}).items()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to one file (torch zip of tensors and plain data), atomically."""
        path = Path(path)
        payload = {
            "format": "faceforge-model",
            "format_version": MODEL_FORMAT_VERSION,
            "topology_hash": self.topology_hash(),
            "metadata": self.metadata,
            "flows": {"identity": self.identity_flow.config(), "expression": self.expression_flow.config()},
            "state": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "rank_identity": self.rank_identity,
            "rank_expression": self.rank_expression,
        }
        return save_artifact(payload, path)


def project_to_radius(z: torch.Tensor, radius: float) -> torch.Tensor:
    """Project standard-normal samples ``(B, D)`` onto the sphere ``|z| = beta``,
    ``beta^2 = chi2_D(radius)`` (Eq. 24 with the identity covariance of the latent space)."""
    from scipy.stats import chi2

    if not 0.0 < radius < 1.0:
        raise FaceForgeError(f"radius is a confidence level in (0, 1), got {radius}")
    beta = math.sqrt(chi2.ppf(radius, z.shape[-1]))
    return z * beta / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> FaceModel:
    """Load a model file written by :meth:`FaceModel.save`.

    Raises:
        FaceForgeError: missing, empty, damaged (zip CRC or a tensor checksum), foreign or
            other-format file, with the path (:func:`faceforge.artifact_file.load_artifact`).
    """
    path = Path(path)
    payload = load_artifact(
        path, "faceforge-model", MODEL_FORMAT_VERSION, "model file", "faceforge model build", map_location
    )
    try:
        state = payload["state"]
        flows = {}
        for name in ("identity", "expression"):
            cfg = payload["flows"][name]
            flows[name] = RealNVP(cfg["dim"], cfg["n_layers"], cfg["hidden"])
        r_id, r_ex = int(payload["rank_identity"]), int(payload["rank_expression"])
        core = state["core"].reshape(-1, r_id, r_ex)
        model = FaceModel(
            mean=state["mean"], core=core, faces=state["faces"], identity_flow=flows["identity"],
            expression_flow=flows["expression"], neutral_expression=state["neutral_expression"],
            expression_codes=state["expression_codes"], identity_prior=state["identity_prior"],
            expression_prior=state["expression_prior"], metadata=payload["metadata"],
        )  # fmt: skip
        model.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as error:
        raise FaceForgeError(f"{path} is damaged or incomplete: {error}") from error
    if model.topology_hash() != payload.get("topology_hash"):
        raise FaceForgeError(f"{path}: the stored topology hash does not match its mesh; the file is damaged")
    return model.to(map_location).eval()
