"""FaceForge's keys against an artist's own keys of the same names on the artist's character.

A rigged character made by another artist (Face Cap's live avatar: a 2,803-vertex head with 51
ARKit keys sculpted by its artist) is the closest thing to ground truth a real topology has: its
keys are deleted, FaceForge retargets onto its basis, and each FaceForge key is compared with the
artist's key of the same name. The artist's keys are one artist's reading of ARKit, not a
measurement, so two figures are given per key: the relative RMS of the displacement as is, and
after the best single gain (how much of the difference is intensity rather than shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.errors import FaceForgeError

__all__ = ["ArtistCharacter", "read_blender_character", "compare_with_artist"]


@dataclass
class ArtistCharacter:
    """A mesh object read from a scene file with its shape keys.

    Attributes:
        name: the object's name.
        vertices: ``(V, 3)`` the basis in the object's own frame and units.
        faces: ``(F, 3)`` triangles (Blender's loop triangles).
        key_names: the artist's key names (Basis excluded).
        key_deltas: ``(K, V, 3)`` their offsets from the basis.
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    key_names: list[str]
    key_deltas: np.ndarray


def read_blender_character(path: str | Path, object_name: str | None = None) -> ArtistCharacter:
    """Read a mesh and its shape keys from an FBX, glTF/GLB or .blend file through Blender (``bpy``).

    Resets Blender's scene. ``object_name`` defaults to the mesh with the most shape keys.
    """
    try:
        import bpy
    except ImportError as exc:  # pragma: no cover - bpy is a dev dependency
        raise FaceForgeError("reading scene files needs the bpy module (pip install bpy)") from exc
    path = Path(path)
    if not path.is_file():
        raise FaceForgeError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".blend":
        bpy.ops.wm.open_mainfile(filepath=str(path))
    else:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        if suffix == ".fbx":
            bpy.ops.import_scene.fbx(filepath=str(path))
        elif suffix in (".glb", ".gltf"):
            bpy.ops.import_scene.gltf(filepath=str(path))
        else:
            raise FaceForgeError(f"{path}: read .fbx, .glb, .gltf or .blend files")
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    if object_name is not None:
        meshes = [o for o in meshes if o.name == object_name]
        if not meshes:
            raise FaceForgeError(f"{path} has no mesh object named {object_name!r}")
    if not meshes:
        raise FaceForgeError(f"{path} has no mesh object")
    obj = max(meshes, key=lambda o: len(o.data.shape_keys.key_blocks) if o.data.shape_keys else 0)
    mesh = obj.data
    n = len(mesh.vertices)
    basis = np.empty(n * 3)
    mesh.vertices.foreach_get("co", basis)
    mesh.calc_loop_triangles()
    faces = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
    mesh.loop_triangles.foreach_get("vertices", faces)
    names, deltas = [], []
    if mesh.shape_keys is not None:
        for block in mesh.shape_keys.key_blocks[1:]:
            co = np.empty(n * 3)
            block.data.foreach_get("co", co)
            names.append(block.name)
            deltas.append((co - basis).reshape(-1, 3))
    return ArtistCharacter(
        name=obj.name,
        vertices=basis.reshape(-1, 3),
        faces=faces.reshape(-1, 3),
        key_names=names,
        key_deltas=np.stack(deltas) if deltas else np.zeros((0, n, 3)),
    )


def compare_with_artist(character: ArtistCharacter, result, min_motion: float = 0.0) -> dict:  # noqa: ANN001
    """Per-key comparison of a :class:`~faceforge.topology.retarget.Retarget` with the artist's keys.

    Args:
        character: the artist's character (its keys are the reference).
        result: FaceForge's retarget onto ``character.vertices`` (targets named as the artist's keys).
        min_motion: keys whose largest artist displacement is below this (character units) are skipped.

    Returns:
        ``{"per_key": {name: {"relative_rms", "relative_rms_best_gain", "best_gain"}}, "median",
        "median_best_gain", "worst", "worst_key", "missing"}`` over the face vertices.
    """
    mask = result.correspondence.face & (result.keys.parts.kind == "skin")
    ours = {n: result.keys.deltas[k].astype(np.float64)[mask] for k, n in enumerate(result.keys.names)}
    per_key, missing = {}, []
    for k, name in enumerate(character.key_names):
        if name not in ours:
            missing.append(name)
            continue
        theirs = character.key_deltas[k][mask]
        if np.linalg.norm(theirs, axis=1).max() <= min_motion:
            continue
        denom = max((theirs**2).sum(), 1e-30)
        gain = float((ours[name] * theirs).sum() / max((ours[name] ** 2).sum(), 1e-30))
        per_key[name] = {
            "relative_rms": float(np.sqrt(((ours[name] - theirs) ** 2).sum() / denom)),
            "relative_rms_best_gain": float(np.sqrt(((gain * ours[name] - theirs) ** 2).sum() / denom)),
            "best_gain": gain,
        }
    if not per_key:
        raise FaceForgeError("none of the artist's keys has a FaceForge key of the same name")
    raw = {n: v["relative_rms"] for n, v in per_key.items()}
    return {
        "character": character.name,
        "n_vertices": int(len(character.vertices)),
        "face_vertices": int(mask.sum()),
        "per_key": per_key,
        "median": float(np.median(list(raw.values()))),
        "median_best_gain": float(np.median([v["relative_rms_best_gain"] for v in per_key.values()])),
        "worst": max(raw.values()),
        "worst_key": max(raw, key=raw.get),
        "missing": missing,
        "timings_s": result.timings,
    }
