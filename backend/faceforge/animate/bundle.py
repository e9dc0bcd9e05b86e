"""The motion model file: Motion3DGAN + S2D-Dec trained together on one dataset, and what a take needs.

``faceforge animate build`` trains both on the training identities' clips and saves one file
(format, topology hash, labels, landmark indices, both networks). :class:`MotionModel` turns a
label and a seed into a take's dense displacements for any face in the topology: Motion3DGAN's
30-sample landmark motion (normalized units) is scaled to the face's landmarks, retimed with
onset, hold and release, and densified by S2D-Dec (identity independent).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from faceforge.artifact_file import load_artifact, save_artifact
from faceforge.errors import FaceForgeError
from faceforge.progress import ProgressCallback, report

__all__ = [
    "HEAD_LANDMARKS",
    "MOTION_FORMAT_VERSION",
    "MotionBuildConfig",
    "MotionModel",
    "build_motion_model",
    "load_motion_model",
]

MOTION_FORMAT_VERSION = 3  # 2: tensor checksums (faceforge.artifact_file); 3: clips normalized by frame 0

#: iBUG indices of the nose bridge (27-30) and the eye corners (36, 39, 42, 45): they move with the
#: head and about 1 mm or less with an expression (median over the dataset's clips of each label;
#: the centroid of all 68 moves up to 6 mm).
HEAD_LANDMARKS = np.array([27, 28, 29, 30, 36, 39, 42, 45])


@dataclass
class MotionBuildConfig:
    """Settings of ``faceforge animate build``: the two networks' configurations and the seed."""

    gan: object = None
    s2d: object = None
    seed: int = 0
    small: bool = False

    @classmethod
    def default(cls, small: bool = False, seed: int = 0) -> MotionBuildConfig:
        from faceforge.animate.dense import S2DConfig
        from faceforge.animate.gan import Motion3DGANConfig

        gan = Motion3DGANConfig.tiny() if small else Motion3DGANConfig()
        s2d = S2DConfig.tiny() if small else S2DConfig()
        gan = dataclasses.replace(gan, seed=seed)
        s2d = dataclasses.replace(s2d, seed=seed)
        return cls(gan=gan, s2d=s2d, seed=seed, small=small)

    def to_json(self) -> dict:
        return {
            "gan": dataclasses.asdict(self.gan),
            "s2d": dataclasses.asdict(self.s2d),
            "seed": self.seed,
            "small": self.small,
        }


@dataclass
class MotionModel:
    """Motion3DGAN + S2D-Dec for one topology.

    Attributes:
        gan: the landmark motion generator.
        s2d: the landmark -> dense decoder.
        landmarks: ``(68,)`` iBUG landmark vertex indices of the topology.
        n_vertices: vertices of the topology.
        topology_hash: as in the face model files.
        metadata: labels, build report, dataset facts.
    """

    gan: object
    s2d: object
    landmarks: np.ndarray
    n_vertices: int
    topology_hash: str
    metadata: dict = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return list(self.gan.labels)

    def landmark_motion(
        self,
        label: str,
        seed: int = 0,
        other_label: str | None = None,
        other_seed: int = 0,
        blend: float = 0.0,
    ) -> np.ndarray:
        """``(30, 68, 3)`` normalized landmark displacements of a generated motion, or of the point at
        ``blend`` on the sphere geodesic towards a second generated motion."""
        for name in (label, other_label):
            if name is not None and name not in self.labels:
                known = ", ".join(self.labels)
                raise FaceForgeError(f"unknown motion label {name!r}; the model knows {known}")
        if other_label is None or blend <= 0.0:
            return self.gan.generate(label, n=1, seed=seed)[0]
        if not 0.0 <= blend <= 1.0:
            raise FaceForgeError(f"blend must lie in [0, 1], got {blend}")
        steps = 101
        path = self.gan.interpolate(label, other_label, steps, seed_a=seed, seed_b=other_seed)
        return path[int(round(blend * (steps - 1)))]

    def take(
        self,
        neutral: np.ndarray,
        motion: np.ndarray,
        onset_frames: int,
        hold_frames: int = 0,
        release_frames: int = 0,
        intensity: float = 1.0,
    ) -> np.ndarray:
        """Dense displacements ``(T, V, 3)`` (metres) of a take of ``motion (30, 68, 3)`` on the face
        ``neutral (V, 3)``."""
        from faceforge.animate.gan import to_face
        from faceforge.animate.motion import envelope

        neutral = self._check_face(neutral)
        landmark_disp = to_face(motion, neutral[self.landmarks])
        frames = envelope(landmark_disp, onset_frames, hold_frames, release_frames, intensity)
        return self.s2d.decode(frames, exact_landmarks=True)

    def transfer(self, source: np.ndarray, neutral: np.ndarray, intensity: float = 1.0) -> np.ndarray:
        """Dense displacements ``(T, V, 3)`` on the face ``neutral`` driven by ``source (T, P, 3)``:
        per-frame landmarks (``P = 68``) or meshes in this topology (``P = V``), frame 0 neutral.

        Each frame's head translation is removed with the landmarks that follow the head but hardly
        the expression (:data:`HEAD_LANDMARKS`: nose bridge, eye corners), not with the centroid of
        all 68, which a jaw drop pulls down (4.6 mm for mouth_open's 22.6 mm apex, median of the
        dataset's clips, so the eyes moved up by that much); the motion is taken relative to
        frame 0 and scaled by the ratio of the two faces' landmark sizes.
        """
        neutral = self._check_face(neutral)
        source = np.asarray(source, dtype=np.float64)
        if source.ndim != 3 or source.shape[2] != 3 or len(source) < 2:
            raise FaceForgeError(f"the source must be (frames >= 2, points, 3), got {source.shape}")
        if source.shape[1] == self.n_vertices:
            source = source[:, self.landmarks]
        elif source.shape[1] != len(self.landmarks):
            raise FaceForgeError(
                f"the source has {source.shape[1]} points per frame: give {len(self.landmarks)} landmarks "
                f"or meshes of {self.n_vertices} vertices"
            )
        if not np.all(np.isfinite(source)):
            raise FaceForgeError("the source motion has non-finite positions")
        centred = source - source[:, HEAD_LANDMARKS].mean(axis=1, keepdims=True)
        target = neutral[self.landmarks] - neutral[self.landmarks].mean(axis=0)
        scale = np.linalg.norm(target) / max(np.linalg.norm(source[0] - source[0].mean(axis=0)), 1e-12)
        displacement = (centred - centred[:1]) * scale * intensity
        return self.s2d.decode(displacement.astype(np.float32), exact_landmarks=True)

    def _check_face(self, neutral: np.ndarray) -> np.ndarray:
        neutral = np.asarray(neutral, dtype=np.float32)
        if neutral.shape != (self.n_vertices, 3) or not np.all(np.isfinite(neutral)):
            raise FaceForgeError(
                f"the face must be ({self.n_vertices}, 3) finite vertices in the model's topology, "
                f"got {neutral.shape}"
            )
        return neutral

    def save(self, path: str | os.PathLike) -> Path:
        """One file, written atomically."""
        path = Path(path)
        payload = {
            "format": "faceforge-motion-model",
            "format_version": MOTION_FORMAT_VERSION,
            "topology_hash": self.topology_hash,
            "n_vertices": self.n_vertices,
            "landmarks": torch.as_tensor(self.landmarks, dtype=torch.int64),
            "metadata": self.metadata,
            "gan": self.gan.to_payload(),
            "s2d": self.s2d.to_payload(),
        }
        return save_artifact(payload, path)


def load_motion_model(path: str | os.PathLike) -> MotionModel:
    """Load a file written by :meth:`MotionModel.save`.

    Raises:
        FaceForgeError: missing, corrupt, foreign or other-format file.
    """
    from faceforge.animate.dense import S2DModel
    from faceforge.animate.gan import Motion3DGAN

    payload = load_artifact(
        path, "faceforge-motion-model", MOTION_FORMAT_VERSION, "motion model file", "faceforge animate build"
    )
    return MotionModel(
        gan=Motion3DGAN.from_payload(payload["gan"]),
        s2d=S2DModel.from_payload(payload["s2d"]),
        landmarks=payload["landmarks"].numpy(),
        n_vertices=int(payload["n_vertices"]),
        topology_hash=str(payload["topology_hash"]),
        metadata=dict(payload["metadata"]),
    )


def build_motion_model(
    dataset, config: MotionBuildConfig, progress: ProgressCallback | None = None  # noqa: ANN001
) -> tuple[MotionModel, dict]:
    """Train Motion3DGAN on the training identities' clips and S2D-Dec on their frames.

    Returns:
        The model and a report (sizes, seconds, final losses).
    """
    from faceforge.animate.dense import train_s2d
    from faceforge.animate.gan import landmark_curves, train_motion3dgan
    from faceforge.model.face_model import topology_hash

    if not len(dataset.clips):
        raise FaceForgeError("the dataset has no dynamic clips: build it with clips (faceforge data build)")
    train_ids = np.sort(dataset.split("train"))
    started = time.perf_counter()

    def stage(offset: int, name: str) -> ProgressCallback | None:
        if progress is None:
            return None
        return lambda done, total, msg: progress(offset, 2, f"{name}: {done}/{total} {msg}")

    curves, labels, identities = landmark_curves(dataset)
    keep = np.isin(np.asarray(identities), train_ids)
    curves = [c for c, k in zip(curves, keep, strict=True) if k]
    labels = [lab for lab, k in zip(labels, keep, strict=True) if k]
    t0 = time.perf_counter()
    gan, gan_history = train_motion3dgan(curves, labels, config.gan, progress=stage(0, "Motion3DGAN"))
    gan_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    s2d, s2d_history = train_s2d(dataset, train_ids, config.s2d, progress=stage(1, "S2D-Dec"))
    s2d_seconds = time.perf_counter() - t0
    report(progress, 2, 2, "done")
    build_report = {
        "n_train_identities": int(len(train_ids)),
        "n_train_clips": len(curves),
        "labels": sorted(set(labels)),
        "gan_seconds": round(gan_seconds, 1),
        "s2d_seconds": round(s2d_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "gan_history": {k: v for k, v in gan_history.items() if not isinstance(v, list)},
        "s2d_history": {k: v for k, v in s2d_history.items() if not isinstance(v, list)},
    }
    model = MotionModel(
        gan=gan,
        s2d=s2d,
        landmarks=np.asarray(dataset.landmarks["ibug68"], dtype=np.int64),
        n_vertices=int(dataset.n_vertices),
        topology_hash=topology_hash(dataset.faces, dataset.n_vertices),
        metadata={"config": config.to_json(), "build_report": build_report, "dataset": dataset.source},
    )
    return model, build_report
