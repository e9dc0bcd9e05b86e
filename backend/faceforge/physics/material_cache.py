"""The material space on disk: its cache key, and ``.npz`` writing and reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from faceforge.physics.material_space import MaterialSpace

__all__ = ["load_material_space", "material_cache_key", "save_material_space"]

_SPARSE_FIELDS = ("W_skin", "W_skull", "W_jaw")

#: The modules (of this package) whose source builds, describes or stores a material space: ``material``
#: and every physics module it imports, directly or not (``tests/test_physics.py`` walks the imports and
#: fails on one missing here). The cache key hashes them all, so an edit to any invalidates old entries.
_BUILDER_MODULES = (
    "material",
    "material_space",
    "tissue",
    "mouth",
    "contact",
    "lattice",
    "bones",
    "material_cache",
)
#: Modules of :mod:`faceforge.heads` the build reaches (the head's own teeth).
_HEAD_MODULES = ("assets", "parts")


def material_cache_key(
    vertices: np.ndarray, faces: np.ndarray, resolution: float, jaw_open: np.ndarray | None = None
) -> str:
    """Hex digest naming a material space: the head, its triangles, the resolution, the jaw marker,
    and the code and annotations that build it (an edit to either invalidates old entries)."""
    import hashlib
    from importlib import resources

    h = hashlib.sha1()
    h.update(np.ascontiguousarray(vertices, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(faces, dtype=np.int64).tobytes())
    h.update(f"{resolution:.9f}".encode())
    if jaw_open is not None:
        h.update(np.ascontiguousarray(jaw_open, dtype=np.float64).tobytes())
    for module in _BUILDER_MODULES:
        h.update((Path(__file__).parent / f"{module}.py").read_bytes())
    for module in _HEAD_MODULES:  # the teeth the mouth collides with
        h.update((Path(__file__).parent.parent / "heads" / f"{module}.py").read_bytes())
    folder = resources.files("faceforge.data") / "resources"
    for name in ("anny_head_annotations.json", "anny_head_jaw_weights.txt", "anny_head_base_vertices.txt"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()


def save_material_space(material: MaterialSpace, path: str | Path) -> Path:
    """Write ``material`` to ``path`` (``.npz``, written to a temporary file and renamed)."""
    import dataclasses
    import json
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(material):
        value = getattr(material, f.name)
        if f.name in _SPARSE_FIELDS:
            csr = sp.csr_matrix(value)
            arrays[f"{f.name}.data"] = csr.data
            arrays[f"{f.name}.indices"] = csr.indices
            arrays[f"{f.name}.indptr"] = csr.indptr
            arrays[f"{f.name}.shape"] = np.asarray(csr.shape, dtype=np.int64)
        elif f.name == "stats":
            arrays["stats"] = np.asarray(json.dumps(value))
        else:
            arrays[f.name] = np.asarray(value)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_material_space(path: str | Path) -> MaterialSpace:
    """Read a material space written by :func:`save_material_space`."""
    import dataclasses
    import json

    with np.load(Path(path), allow_pickle=False) as z:
        values: dict = {}
        for f in dataclasses.fields(MaterialSpace):
            if f.name in _SPARSE_FIELDS:
                shape = tuple(int(s) for s in z[f"{f.name}.shape"])
                values[f.name] = sp.csr_matrix(
                    (z[f"{f.name}.data"], z[f"{f.name}.indices"], z[f"{f.name}.indptr"]), shape=shape
                )
            elif f.name == "stats":
                values["stats"] = json.loads(str(z["stats"]))
            elif f.name == "resolution":
                values["resolution"] = float(z["resolution"])
            else:
                values[f.name] = z[f.name]
    return MaterialSpace(**values)
