"""Takes: baked shape-key animation in its own action, placed on the NLA so takes layer and blend.

A take is one action with one F-curve per expression shape key (``key_blocks["jawOpen"].value``),
a key on every frame, written in bulk with ``keyframe_points.add`` + ``foreach_set`` through the
Blender 5 channelbag API, and one NLA track of the same name holding it. Re-baking a take of the
same name replaces its track and action.

What the shape keys cannot express (the per-frame residual of the bounded projection) can be kept
exactly in a point cache (``.pc2``) read by a Mesh Cache modifier in *Integrate* mode: the cache
holds basis + residual, so the modifier adds the residual on top of the shape-key mix. A cache
rather than per-frame corrective shape keys, because a take of 300 frames would need 300 keys and
animated key switching, while one cache file plays at any frame and renders on a farm unchanged.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import bpy
import numpy as np

TAKE_PREFIX = "FF "
_LINEAR = 1  # index of 'LINEAR' in Keyframe.interpolation


def take_name(label: str, seed: int) -> str:
    return f"{TAKE_PREFIX}{label} {seed}"


def _remove_take(obj, name: str) -> None:
    key = obj.data.shape_keys
    anim = key.animation_data if key is not None else None
    if anim is not None:
        for track in [t for t in anim.nla_tracks if t.name == name]:
            actions = [s.action for s in track.strips if s.action is not None]
            anim.nla_tracks.remove(track)
            for action in actions:
                if action.users == 0:
                    bpy.data.actions.remove(action)
    for modifier in [m for m in obj.modifiers if m.type == "MESH_CACHE" and m.name == name]:
        obj.modifiers.remove(modifier)


def write_take(obj, name: str, frame_start: int, names: list[str], values: np.ndarray):
    """Write ``values (T, E)`` of the shape keys ``names`` from ``frame_start`` as the take ``name``.

    Returns:
        The NLA strip.
    """
    from bpy_extras import anim_utils

    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != len(names) or len(values) < 1:
        raise ValueError(f"values must have shape (frames, {len(names)}), got {values.shape}")
    key = obj.data.shape_keys
    missing = [n for n in names if n not in key.key_blocks]
    if missing:
        raise ValueError(f"{obj.name} has no shape keys {missing[:5]}")
    _remove_take(obj, name)
    action = bpy.data.actions.new(name)
    slot = action.slots.new(id_type="KEY", name=key.name)
    channelbag = anim_utils.action_ensure_channelbag_for_slot(action, slot)
    n_frames = len(values)
    co = np.empty(2 * n_frames, dtype=np.float32)
    co[0::2] = np.arange(n_frames, dtype=np.float32) + float(frame_start)
    interpolation = np.full(n_frames, _LINEAR, dtype=np.int32)
    for k, shape_key in enumerate(names):
        fcurve = channelbag.fcurves.new(f'key_blocks["{shape_key}"].value')
        fcurve.keyframe_points.add(n_frames)
        co[1::2] = values[:, k]
        fcurve.keyframe_points.foreach_set("co", co)
        fcurve.keyframe_points.foreach_set("interpolation", interpolation)
        fcurve.update()
    anim = key.animation_data or key.animation_data_create()
    track = anim.nla_tracks.new()
    track.name = name
    strip = track.strips.new(name, int(frame_start), action)
    strip.action_frame_start, strip.action_frame_end = float(frame_start), float(frame_start + n_frames - 1)
    strip.frame_start, strip.frame_end = float(frame_start), float(frame_start + n_frames - 1)
    strip.blend_type = "COMBINE"
    strip.extrapolation = "NOTHING"
    return strip


def write_pc2(path: str | os.PathLike, frames: np.ndarray, frame_start: float) -> Path:
    """Write ``frames (T, V, 3)`` float32 positions as a PC2 point cache (atomically)."""
    frames = np.ascontiguousarray(frames, dtype="<f4")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(
        "<12siiffi", b"POINTCACHE2\0", 1, frames.shape[1], float(frame_start), 1.0, len(frames)
    )
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(header)
        fh.write(frames.tobytes())
    os.replace(tmp, path)
    return path


def read_pc2(path: str | os.PathLike) -> np.ndarray:
    """``(T, V, 3)`` positions of a PC2 point cache."""
    data = Path(path).read_bytes()
    _, _, n_points, _, _, n_samples = struct.unpack("<12siiffi", data[:32])
    return np.frombuffer(data[32:], dtype="<f4").reshape(n_samples, n_points, 3)


def attach_residual_cache(
    obj, name: str, basis: np.ndarray, residual: np.ndarray, frame_start: int, folder: str
):
    """Store what the keys cannot express: a PC2 cache of ``basis + residual (T, V, 3)`` played by a
    Mesh Cache modifier (Integrate) from ``frame_start``. Returns the modifier."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{obj.name}_{name}")
    path = write_pc2(Path(folder) / f"{safe}.pc2", basis[None] + residual, frame_start)
    modifier = obj.modifiers.new(name, "MESH_CACHE")
    modifier.cache_format = "PC2"
    modifier.filepath = str(path)
    modifier.deform_mode = "INTEGRATE"
    modifier.time_mode = "FRAME"
    modifier.play_mode = "SCENE"
    modifier.frame_start = float(frame_start)
    # Shape keys evaluate first; the cache must come before any Armature modifier too.
    obj.modifiers.move(obj.modifiers.find(modifier.name), 0)
    return modifier


def cache_folder() -> str:
    """Where residual caches go: ``//faceforge_cache`` next to a saved file, else the temp folder."""
    if bpy.data.filepath:
        return bpy.path.abspath("//faceforge_cache")
    return str(Path(bpy.app.tempdir or "/tmp") / "faceforge_cache")
