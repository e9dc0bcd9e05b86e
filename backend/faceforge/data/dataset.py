"""The face dataset type shared by the anny builder and the loaders of user data.

A :class:`FaceDataset` is an identity x expression tensor of meshes in one topology (the data
tensor of BabyFlow Sec. 4.3) plus optional dynamic clips (neutral -> apex sequences, as in CoMA),
face regions, landmark vertex indices and identity splits. Coordinates are in metres.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from faceforge.errors import DataError

__all__ = ["FaceDataset", "Clip", "ClipSet", "MeshClips", "BlendshapeClips"]


@dataclass(frozen=True)
class Clip:
    """One dynamic expression sequence of one identity.

    Attributes:
        identity: index into :attr:`FaceDataset.identity_names`.
        label: expression label (e.g. a CoMA label such as ``"mouth_open"``).
        frames: ``(T, V, 3)`` float32 vertex positions in metres, frame 0 is the start (neutral).
        name: a human-readable name (e.g. the source folder).
    """

    identity: int
    label: str
    frames: np.ndarray
    name: str = ""

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


class ClipSet(Protocol):
    """A sequence of :class:`Clip` that may materialise frames on access."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Clip: ...

    def __iter__(self) -> Iterator[Clip]: ...


class MeshClips(Sequence[Clip]):
    """Clips whose frames are stored as explicit vertex arrays (e.g. read from CoMA files)."""

    def __init__(self, clips: Sequence[Clip]) -> None:
        self._clips = list(clips)

    def __len__(self) -> int:
        return len(self._clips)

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        return self._clips[index]


class BlendshapeClips(Sequence[Clip]):
    """Clips stored compactly as per-frame blendshape weights over an identity's expressions.

    Frame ``t`` of clip ``j`` is ``X[i, 0] + sum_k w[t, k] (X[i, basis[k]] - X[i, 0])`` with ``X``
    the dataset tensor, ``i`` the clip's identity and ``basis`` the expression indices of the
    blendshapes (the 52 ARKit actions of the anny dataset): each identity's own, identity-aware
    blendshape rig.

    Args:
        vertices: ``(I, E, V, 3)`` dataset tensor (may be memory-mapped).
        basis: ``(K,)`` expression indices of the blendshapes.
        weights: ``(sum_T, K)`` float32 weights of all frames of all clips, concatenated.
        offsets: ``(n_clips + 1,)`` start of each clip in ``weights``.
        identities: ``(n_clips,)`` identity index per clip.
        labels: label per clip.
    """

    def __init__(
        self,
        vertices: np.ndarray,
        basis: np.ndarray,
        weights: np.ndarray,
        offsets: np.ndarray,
        identities: np.ndarray,
        labels: Sequence[str],
    ) -> None:
        if len(offsets) != len(identities) + 1 or len(labels) != len(identities):
            raise DataError("clip index arrays disagree in length")
        self.vertices = vertices
        self.basis = np.asarray(basis, dtype=np.int64)
        self.weights = weights
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.identities = np.asarray(identities, dtype=np.int64)
        self.labels = list(labels)

    def __len__(self) -> int:
        return len(self.identities)

    def clip_weights(self, index: int) -> np.ndarray:
        """``(T, K)`` blendshape weights of clip ``index``."""
        return np.asarray(self.weights[self.offsets[index] : self.offsets[index + 1]])

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        identity = int(self.identities[index])
        shapes = np.asarray(self.vertices[identity], dtype=np.float32)  # (E, V, 3)
        neutral = shapes[0]
        deltas = shapes[self.basis] - neutral  # (K, V, 3)
        w = self.clip_weights(index).astype(np.float32)
        frames = neutral[None] + np.einsum("tk,kvc->tvc", w, deltas, optimize=True)
        return Clip(identity, self.labels[index], frames.astype(np.float32), f"clip{index:05d}")


@dataclass
class FaceDataset:
    """Meshes of several identities under several expressions, in one topology.

    Attributes:
        faces: ``(F, 3)`` int64 triangle vertex indices.
        identity_names: ``I`` identity names.
        expression_names: ``E`` expression names; index 0 is neutral where the source has one.
        vertices: ``(I, E, V, 3)`` float32 positions in metres (may be a read-only memmap), or
            ``None`` for data that only has clips. Missing meshes are NaN.
        clips: dynamic sequences, or an empty list.
        regions: region name -> vertex indices.
        landmarks: landmark set name (``"ibug68"``, ``"babyfm23"``) -> ``(K,)`` vertex indices.
        landmark_names: landmark set name -> ``K`` names.
        splits: split name (``"train"``, ``"val"``, ``"test"``) -> identity indices.
        mirror: ``(V,)`` index of each vertex's left/right mirror vertex, or ``None`` if unknown.
        identity_info: per-identity metadata (age in years, phenotype parameters, ...).
        expression_info: per-expression metadata (e.g. ARKit weights of a composite).
        source: where the data came from (``"anny"``, ``"facewarehouse"``, a folder path...).
    """

    faces: np.ndarray
    identity_names: list[str]
    expression_names: list[str]
    vertices: np.ndarray | None = None
    clips: Sequence[Clip] = field(default_factory=list)
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    landmark_names: dict[str, list[str]] = field(default_factory=dict)
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    mirror: np.ndarray | None = None
    identity_info: list[dict] = field(default_factory=list)
    expression_info: list[dict] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        self.faces = np.asarray(self.faces, dtype=np.int64)
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise DataError(f"faces must have shape (F, 3), got {self.faces.shape}")
        if self.vertices is not None:
            shape = self.vertices.shape
            if len(shape) != 4 or shape[3] != 3:
                raise DataError(f"vertices must have shape (I, E, V, 3), got {shape}")
            if shape[0] != len(self.identity_names) or shape[1] != len(self.expression_names):
                raise DataError(
                    f"vertices shape {shape} disagrees with {len(self.identity_names)} identities "
                    f"and {len(self.expression_names)} expressions"
                )

    @property
    def n_identities(self) -> int:
        return len(self.identity_names)

    @property
    def n_expressions(self) -> int:
        return len(self.expression_names)

    @property
    def n_vertices(self) -> int:
        if self.vertices is not None:
            return int(self.vertices.shape[2])
        if len(self.clips):
            return int(self.clips[0].frames.shape[1])
        return int(self.faces.max()) + 1 if len(self.faces) else 0

    def mesh(self, identity: int, expression: int = 0) -> np.ndarray:
        """``(V, 3)`` float32 vertices of one identity under one expression, in metres."""
        if self.vertices is None:
            raise DataError(f"dataset {self.source!r} has no identity x expression tensor")
        return np.asarray(self.vertices[identity, expression], dtype=np.float32)

    def split(self, name: str) -> np.ndarray:
        """Identity indices of split ``name`` (all identities if the dataset has no splits)."""
        if not self.splits:
            return np.arange(self.n_identities)
        if name not in self.splits:
            raise DataError(f"unknown split {name!r}; the dataset has {sorted(self.splits)}")
        return self.splits[name]

    def summary(self) -> dict:
        """Sizes and names as a JSON-serialisable dict."""
        n_frames = int(sum(c.n_frames for c in self.clips)) if isinstance(self.clips, MeshClips) else None
        if isinstance(self.clips, BlendshapeClips):
            n_frames = int(self.clips.offsets[-1])
        return {
            "source": self.source,
            "n_identities": self.n_identities,
            "n_expressions": self.n_expressions,
            "n_vertices": self.n_vertices,
            "n_faces": int(len(self.faces)),
            "n_clips": len(self.clips),
            "n_clip_frames": n_frames,
            "splits": {k: int(len(v)) for k, v in self.splits.items()},
            "regions": {k: int(len(v)) for k, v in self.regions.items()},
            "landmarks": {k: int(len(v)) for k, v in self.landmarks.items()},
        }
