"""Dataset methods: build the anny dataset, describe it, load its meshes, align meshes rigidly.

Folder parameters are absolute paths (``~`` is expanded); without one, the dataset in the FaceForge
cache is used, as by ``faceforge data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from faceforge.errors import DataError
from faceforge.progress import report
from faceforge.server.protocol import ErrorCode, RpcError
from faceforge.server.registry import MAX_SEED, ArraySpec, Context, Param, method

__all__ = ["build", "info", "load", "rigid_align"]

_FOLDER_DOC = "absolute path of the dataset folder (default: the FaceForge cache)"
_SMALL_DOC = "with no folder given: the small dataset instead of the default one"


def _folder(value: str | None, small: bool, name: str) -> Path:
    if value is None:
        from faceforge.store import default_data_dir

        return default_data_dir(small)
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise RpcError(
            ErrorCode.INVALID_PARAMS,
            f"{name!r} must be an absolute path, got {value!r}",
            {"param": name},
        )
    return path


@method(
    "data.build",
    params={
        "out": Param(str, default=None, doc=_FOLDER_DOC),
        "small": Param(bool, default=False, doc="seconds-scale build (12 identities) for tests and demos"),
        "seed": Param(int, default=0, minimum=0, maximum=MAX_SEED, doc="seed of every random choice"),
        "force": Param(bool, default=False, doc="rebuild even if an identical build exists"),
    },
)
def build(
    ctx: Context, out: str | None = None, small: bool = False, seed: int = 0, force: bool = False
) -> dict:
    """Build the identity x expression dataset from anny; the result is its manifest plus ``out``.

    Progress is reported per identity; a cancelled build leaves any previous dataset in ``out``
    untouched.
    """
    from faceforge.data.build import BuildConfig, build_dataset

    directory = _folder(out, small, "out")
    config = BuildConfig.small(seed=seed) if small else BuildConfig(seed=seed)
    manifest = build_dataset(directory, config, progress=ctx.progress, force=force)
    return {"out": str(directory.resolve()), **manifest}


@method(
    "data.info",
    params={
        "dir": Param(str, default=None, doc=_FOLDER_DOC),
        "small": Param(bool, default=False, doc=_SMALL_DOC),
        "verify": Param(bool, default=False, doc="check every file's hash against the manifest"),
    },
)
def info(ctx: Context, dir: str | None = None, small: bool = False, verify: bool = False) -> dict:
    """Manifest and summary (sizes, names, splits) of a built dataset, as ``faceforge data info``."""
    from faceforge.data.build import load_built_dataset, read_manifest

    directory = _folder(dir, small, "dir")
    manifest = read_manifest(directory)
    dataset = load_built_dataset(directory, verify=verify)
    return {
        "dir": str(directory.resolve()),
        "manifest": manifest,
        "summary": dataset.summary(),
        "identity_names": dataset.identity_names,
        "expression_names": dataset.expression_names,
        "verified": verify,
    }


def _indices(values: list | None, names: list[str], param: str) -> list[int]:
    """Indices from a list of indices and/or names (``None``: all)."""
    if values is None:
        return list(range(len(names)))
    lookup = {name: i for i, name in enumerate(names)}
    indices = []
    for value in values:
        if isinstance(value, str):
            if value not in lookup:
                raise RpcError(
                    ErrorCode.INVALID_PARAMS, f"{param}: no entry named {value[:80]!r}", {"param": param}
                )
            indices.append(lookup[value])
        elif -len(names) <= value < len(names):
            indices.append(value % len(names))
        else:
            raise RpcError(
                ErrorCode.INVALID_PARAMS,
                f"{param}: index {value} is out of range for {len(names)} entries",
                {"param": param},
            )
    if not indices:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"{param} is empty", {"param": param})
    return indices


@method(
    "data.load",
    params={
        "dir": Param(str, default=None, doc=_FOLDER_DOC),
        "small": Param(bool, default=False, doc=_SMALL_DOC),
        "identities": Param(
            list, default=None, items=(int, str), doc="identity indices or names (default: all)"
        ),
        "expressions": Param(
            list, default=None, items=(int, str), doc="expression indices or names (default: all)"
        ),
    },
)
def load(
    ctx: Context,
    dir: str | None = None,
    small: bool = False,
    identities: list | None = None,
    expressions: list | None = None,
) -> dict[str, Any]:
    """Meshes of a built dataset: ``vertices`` ``(I, E, V, 3)`` float32 metres and ``faces`` ``(F, 3)`` int32.

    Reads one identity at a time, reporting progress, so a large selection can be cancelled.
    """
    from faceforge.data.build import load_built_dataset

    dataset = load_built_dataset(_folder(dir, small, "dir"))
    if dataset.vertices is None:
        raise DataError(f"dataset {dataset.source} has no identity x expression tensor")
    rows = _indices(identities, dataset.identity_names, "identities")
    columns = _indices(expressions, dataset.expression_names, "expressions")
    shape = (len(rows), len(columns), dataset.n_vertices, 3)
    size = int(np.prod(shape)) * 4
    if size > ctx.max_array_bytes:
        raise RpcError(
            ErrorCode.FACEFORGE_ERROR,
            f"{len(rows)} identities x {len(columns)} expressions are {size / 2**20:.0f} MiB, over the "
            f"limit of {ctx.max_array_bytes / 2**20:.0f} MiB: load fewer at once",
            {"reason": "too_large", "size": size, "limit": ctx.max_array_bytes},
        )
    vertices = np.empty(shape, dtype=np.float32)
    for k, row in enumerate(rows):
        report(ctx.progress, k, len(rows), f"identity {row}")
        vertices[k] = dataset.vertices[row][columns]
    report(ctx.progress, len(rows), len(rows), "loaded")
    return {
        "vertices": vertices,
        "faces": dataset.faces.astype(np.int32),
        "identity_names": [dataset.identity_names[i] for i in rows],
        "expression_names": [dataset.expression_names[j] for j in columns],
        "identities": rows,
        "expressions": columns,
    }


@method(
    "data.rigid_align",
    params={"apply": Param(bool, default=True, doc="also return the aligned points as 'aligned'")},
    arrays={
        "source": ArraySpec(("float32", "float64"), ("N", 3), doc="(N, 3) points to move"),
        "target": ArraySpec(("float32", "float64"), ("N", 3), doc="(N, 3) corresponding points"),
        "weights": ArraySpec(("float32", "float64"), ("N",), required=False, doc="(N,) weights >= 0"),
    },
)
def rigid_align(
    ctx: Context,
    source: np.ndarray,
    target: np.ndarray,
    weights: np.ndarray | None = None,
    apply: bool = True,
) -> dict[str, Any]:
    """Rotation and translation (no scale) that best map ``source`` onto ``target`` (Kabsch).

    Use it to bring a scan or a user's mesh into the dataset's canonical frame before fitting
    (with ``weights`` on the skull, as the dataset builder does). Returns ``rotation`` (3x3),
    ``translation`` (3,), the RMS distance before and after (units of the input), and with
    ``apply`` the ``aligned`` points (``(N, 3)``, the dtype of ``source``).
    """
    from faceforge.data.geometry import apply_rigid
    from faceforge.data.geometry import rigid_align as kabsch

    if len(source) < 3:
        raise DataError(f"rigid alignment needs at least 3 corresponding points, got {len(source)}")
    if weights is not None and (weights.min() < 0 or weights.sum() <= 0):
        raise DataError("weights must be non-negative with a positive sum")
    rotation, translation = kabsch(source, target, weights)
    moved = apply_rigid(source.astype(np.float64), rotation, translation)
    result: dict[str, Any] = {
        "rotation": rotation.tolist(),
        "translation": translation.tolist(),
        "rms_before": float(np.sqrt(np.mean(np.sum((source - target) ** 2, axis=1)))),
        "rms_after": float(np.sqrt(np.mean(np.sum((moved - target) ** 2, axis=1)))),
    }
    if apply:
        result["aligned"] = moved.astype(source.dtype)
    return result
