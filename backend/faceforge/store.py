"""Where FaceForge keeps what it builds, and when a cached copy can be reused.

One place knows every artifact kind, its cache path, its build configuration and its reuse check:

============== ======================================== ==================================================
kind           path (under :func:`default_cache_dir`)   reused when
============== ======================================== ==================================================
dataset        ``data/anny[-small]/``                   same :class:`~faceforge.data.build.BuildConfig`
                                                        (the builder checks its manifest)
face model     ``models/babyflow-<population>[-small]`` same build config, dataset content hash and
               ``.pt``                                  topology (:func:`cached_model_report`)
motion model   ``models/motion[-small].pt``             same config, dataset content hash and topology
material space ``physics/material-<key>.npz``           same head, faces, resolution and jaw pose (key);
                                                        the 16 most recently used are kept
============== ======================================== ==================================================

The CLI, the server's methods, the demo and the evaluations ask here; this module never imports the
CLI or the server.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from faceforge.errors import FaceForgeError

if TYPE_CHECKING:
    import numpy as np

    from faceforge.data.build import BuildConfig
    from faceforge.data.dataset import FaceDataset
    from faceforge.model.build import ModelBuildConfig
    from faceforge.physics.material import MaterialSpace

__all__ = [
    "cached_material_space",
    "cached_model_report",
    "dataset_config",
    "default_cache_dir",
    "default_data_dir",
    "default_material_dir",
    "default_model_path",
    "default_motion_path",
    "ensure_dataset",
    "ensure_model",
    "ensure_motion_model",
    "model_build_config",
]

Progress = Callable[[int, int, str], "bool | None"]


# --- locations ----------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """FaceForge's cache root: ``$FACEFORGE_CACHE`` or ``~/.cache/faceforge``."""
    return Path(os.environ.get("FACEFORGE_CACHE", Path.home() / ".cache" / "faceforge"))


def default_data_dir(small: bool = False) -> Path:
    """Where the default (or small) anny dataset is built: ``data/anny[-small]``."""
    return default_cache_dir() / "data" / ("anny-small" if small else "anny")


def default_model_path(population: str = "all", small: bool = False) -> Path:
    """Where ``faceforge model build`` caches a model (``models/babyflow-<population>[-small].pt``)."""
    return default_cache_dir() / "models" / f"babyflow-{population}{'-small' if small else ''}.pt"


def default_motion_path(small: bool = False) -> Path:
    """Where ``faceforge animate build`` caches the motion model (``models/motion[-small].pt``)."""
    return default_cache_dir() / "models" / f"motion{'-small' if small else ''}.pt"


def default_material_dir() -> Path:
    """Where the physics material spaces are cached (``physics/``)."""
    return default_cache_dir() / "physics"


# --- build configurations -----------------------------------------------------------------------
def dataset_config(small: bool = False) -> BuildConfig:
    """The build configuration of the default (or small) dataset."""
    from faceforge.data.build import BuildConfig

    return BuildConfig.small() if small else BuildConfig()


def model_build_config(small: bool, population: str, seed: int, epochs: int | None) -> ModelBuildConfig:
    """The face model's build configuration for ``faceforge model build`` and the evaluations:
    the small one trains the flows for at most 60 epochs (patience 15) on 600 expression samples."""
    from faceforge.model import FlowTrainingConfig, ModelBuildConfig

    flow = (
        FlowTrainingConfig(seed=seed, max_epochs=60, patience=15) if small else FlowTrainingConfig(seed=seed)
    )
    if epochs is not None:
        flow = dataclasses.replace(flow, max_epochs=epochs)
    return ModelBuildConfig(
        population=population, seed=seed, flow=flow, expression_samples=600 if small else 3000
    )


# --- reuse checks and builds --------------------------------------------------------------------
def _stage(progress: Progress | None, prefix: str) -> Progress | None:
    return None if progress is None else (lambda d, t, m: progress(d, t, f"{prefix}: {m}"))


def ensure_dataset(data: str | Path | None, small: bool, progress: Progress | None = None) -> Path:
    """The dataset directory to use: ``data`` as given, else the default (or small) dataset, built
    first when it is missing or was built with another configuration."""
    from faceforge.data.build import build_dataset

    if data:
        return Path(data)
    directory = default_data_dir(small)
    build_dataset(directory, dataset_config(small), progress=progress)
    return directory


def _same_json(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def cached_model_report(
    path: Path, config: ModelBuildConfig, dataset: FaceDataset, content_hash: str | None
) -> dict | None:
    """The build report of the model at ``path`` if it can be reused: it loads (current format)
    and was built with ``config`` on this very dataset (content hash and topology); otherwise
    None (rebuild)."""
    from faceforge.model import load_model
    from faceforge.model.face_model import topology_hash

    if not path.is_file():
        return None
    try:
        model = load_model(path)
    except FaceForgeError:
        return None
    same_config = _same_json(model.metadata.get("config"), config.to_json())
    same_topology = model.topology_hash() == topology_hash(dataset.faces, dataset.n_vertices)
    same_data = content_hash is not None and model.metadata.get("dataset_content_hash") == content_hash
    if not (same_config and same_topology and same_data):
        return None
    return model.metadata.get("build_report", {})


def ensure_model(
    population: str = "all",
    small: bool = False,
    data: str | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    epochs: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Build a model (and the default dataset first if needed), or reuse an identical cached one.

    Args:
        population: ``"all"`` or ``"infant"``.
        small: the small dataset and short flow training (seconds to a minute).
        data: a built dataset folder (default: the default or small dataset, built if missing).
        out: the model file (default: :func:`default_model_path`).
        seed, epochs: build settings (see ``faceforge model build``).
        force: rebuild even if an identical model exists.
        progress: ``progress(done, total, message)`` for both stages; returning False cancels.

    Returns:
        ``{"path", "cached", **build report}``.
    """
    from faceforge.data.build import load_built_dataset, read_manifest
    from faceforge.model import build_model

    directory = ensure_dataset(data, small, _stage(progress, "dataset"))
    dataset = load_built_dataset(directory)
    content_hash = read_manifest(directory).get("content_hash")
    path = Path(out) if out else default_model_path(population, small)
    config = model_build_config(small, population, seed, epochs)
    cached = None if force else cached_model_report(path, config, dataset, content_hash)
    if cached is not None:
        return {"path": str(path), "cached": True, **cached}
    model, report = build_model(dataset, config, progress=_stage(progress, f"model ({population})"))
    model.metadata["dataset_content_hash"] = content_hash
    model.save(path)
    return {"path": str(path), "cached": False, **report}


def ensure_motion_model(
    small: bool = False,
    data: str | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    force: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Build the motion model (Motion3DGAN + S2D-Dec; the default dataset first if needed), or reuse
    an identical cached one. Returns ``{"path", "cached", **build report}``."""
    from faceforge.animate.bundle import MotionBuildConfig, build_motion_model, load_motion_model
    from faceforge.data.build import load_built_dataset, read_manifest
    from faceforge.model.face_model import topology_hash

    directory = ensure_dataset(data, small, _stage(progress, "dataset"))
    dataset = load_built_dataset(directory)
    content_hash = read_manifest(directory).get("content_hash")
    path = Path(out) if out else default_motion_path(small)
    config = MotionBuildConfig.default(small=small, seed=seed)
    if not force and path.is_file():
        try:
            cached = load_motion_model(path)
        except FaceForgeError:
            cached = None
        if (
            cached is not None
            and _same_json(cached.metadata.get("config"), config.to_json())
            and cached.metadata.get("dataset_content_hash") == content_hash
            and cached.topology_hash == topology_hash(dataset.faces, dataset.n_vertices)
        ):
            return {"path": str(path), "cached": True, **cached.metadata.get("build_report", {})}
    model, report = build_motion_model(dataset, config, progress=_stage(progress, "motion model"))
    model.metadata["dataset_content_hash"] = content_hash
    model.save(path)
    return {"path": str(path), "cached": False, **report}


def cached_material_space(
    vertices: np.ndarray,
    faces: np.ndarray,
    resolution: float = 0.002,
    *,
    jaw_open: np.ndarray | None = None,
    cache_dir: str | Path | None = None,
    keep: int = 16,
) -> MaterialSpace:
    """:func:`~faceforge.physics.material.build_material_space`, kept on disk under ``cache_dir``
    (default :func:`default_material_dir`): a head already built at this resolution loads in well
    under a second instead of being rebuilt (about 20 s at 2 mm). A damaged entry is rebuilt; only
    the ``keep`` most recently used entries stay (1 MB at 6.8 mm, 8.5 MB at 2 mm)."""
    from faceforge.physics.material import (
        build_material_space,
        load_material_space,
        material_cache_key,
        save_material_space,
    )

    cache_dir = Path(cache_dir) if cache_dir is not None else default_material_dir()
    path = cache_dir / f"material-{material_cache_key(vertices, faces, resolution, jaw_open)}.npz"
    if path.exists():
        try:
            material = load_material_space(path)
            os.utime(path)  # most recently used: the last to be pruned
            return material
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    material = build_material_space(vertices, faces, resolution, jaw_open=jaw_open)
    try:
        save_material_space(material, path)
        _prune_materials(cache_dir, keep)
    except OSError:  # a read-only cache is no reason to fail the simulation
        pass
    return material


def _prune_materials(cache_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recently used material spaces in ``cache_dir``."""
    entries = sorted(cache_dir.glob("material-*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[keep:]:
        stale.unlink(missing_ok=True)
