"""Takes: baked shape-key animation in its own action, placed on the NLA so takes layer and blend.

A take is one action with one F-curve per expression shape key (``key_blocks["jawOpen"].value``),
a key on every frame, written in bulk with ``keyframe_points.add`` + ``foreach_set`` through the
Blender 5 channelbag API, and one NLA track of the same name holding it. Re-baking a take of the
same name replaces its track and action.

An exact take (a simulation, or a motion with *Exact* on) also keeps every frame's exact vertex
positions in a point cache (``.pc2``) read by a Mesh Cache modifier in *Overwrite* mode, whose
influence is keyed to 1 on the take's frames and 0 elsewhere: inside the take the mesh is exactly the
computed one, outside it the shape keys (and other takes) drive it. Not *Integrate* with a residual:
Blender's Integrate maps the cache's deformation onto the shape-keyed mesh triangle by triangle
(``BKE_mesh_calc_relative_deform``), not as an offset, which put a simulated mouth 7 mm off.
A cache rather than per-frame corrective shape keys, because a take of 300 frames would need 300
keys and animated key switching, while one cache file plays at any frame and renders on a farm
unchanged. The take's shape-key curves stay (the closest key mix); muting the modifier shows them.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from pathlib import Path

import bpy
import numpy as np

TAKE_PREFIX = "FF "
REST_TRACK = "FF rest"  # the bottom NLA track that holds every animated key at 0
_CONSTANT, _LINEAR, _BEZIER = 0, 1, 2  # indices in Keyframe.interpolation
_AUTO_CLAMPED = 4  # index in Keyframe.handle_left_type / handle_right_type
KEY_TOLERANCE = 0.005  # editable takes: 0.5% of a key's [0, 1] range


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
    channelbag = _object_channelbag(obj, create=False)
    influence = channelbag.fcurves.find(_influence_path(name)) if channelbag is not None else None
    if influence is not None:
        channelbag.fcurves.remove(influence)


def ensure_channelbag(action, slot):
    """The channelbag of ``slot`` in ``action``'s first keyframe strip, created if missing.

    ``bpy_extras.anim_utils.action_ensure_channelbag_for_slot`` does this from Blender 4.5 on;
    4.4 (where slotted actions appeared) has the layered-action API it wraps, used here directly.
    """
    from bpy_extras import anim_utils

    ensure = getattr(anim_utils, "action_ensure_channelbag_for_slot", None)
    if ensure is not None:
        return ensure(action, slot)
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(slot, ensure=True)


def write_take(
    obj, name: str, frame_start: int, names: list[str], values: np.ndarray, tolerance: float | None = None
):
    """Write ``values (T, E)`` of the shape keys ``names`` from ``frame_start`` as the take ``name``.

    Args:
        tolerance: ``None`` writes dense keys (every key on every frame, linear: exact, for takes
            with a residual cache). A number writes an editable take: keys that never leave
            ``[-tolerance, tolerance]`` get no F-curve, and each curve keeps the fewest Bezier
            keyframes (auto-clamped handles) whose evaluated curve stays within ``tolerance`` of the
            values on every frame (checked against Blender's own F-curve evaluation).

    Returns:
        The NLA strip.
    """

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
    channelbag = ensure_channelbag(action, slot)
    n_frames = len(values)
    frames = np.arange(n_frames, dtype=np.float32) + float(frame_start)
    for k, shape_key in enumerate(names):
        if tolerance is not None and float(np.abs(values[:, k]).max()) <= tolerance:
            continue  # the rest track holds this key at 0
        fcurve = channelbag.fcurves.new(f'key_blocks["{shape_key}"].value')
        if tolerance is None:
            _set_keyframes(fcurve, frames, values[:, k], _LINEAR)
        else:
            _write_reduced(fcurve, frames, values[:, k], tolerance)
    anim = key.animation_data or key.animation_data_create()
    ensure_rest_track(key, names)
    track = anim.nla_tracks.new()
    track.name = name
    strip = track.strips.new(name, int(frame_start), action)
    strip.action_frame_start, strip.action_frame_end = float(frame_start), float(frame_start + n_frames - 1)
    strip.frame_start, strip.frame_end = float(frame_start), float(frame_start + n_frames - 1)
    # Takes add their values onto the rest track below (two overlapping takes sum, as key mixes do);
    # outside its frames a take contributes nothing and the rest track holds the face.
    strip.blend_type = "ADD"
    strip.extrapolation = "NOTHING"
    return strip


def _set_keyframes(fcurve, frames: np.ndarray, values: np.ndarray, interpolation: int) -> None:
    """Replace ``fcurve``'s keyframes by ``(frames, values)`` in bulk."""
    points = fcurve.keyframe_points
    if len(points):
        points.clear()
    points.add(len(frames))
    co = np.empty(2 * len(frames), dtype=np.float32)
    co[0::2], co[1::2] = frames, values
    points.foreach_set("co", co)
    points.foreach_set("interpolation", np.full(len(frames), interpolation, dtype=np.int32))
    if interpolation == _BEZIER:
        handles = np.full(len(frames), _AUTO_CLAMPED, dtype=np.int32)
        points.foreach_set("handle_left_type", handles)
        points.foreach_set("handle_right_type", handles)
    fcurve.update()


def reduce_keyframes(values: np.ndarray, tolerance: float) -> np.ndarray:
    """Indices of the fewest samples of ``values (T,)`` whose piecewise-linear interpolation stays
    within ``tolerance`` of every sample (Ramer-Douglas-Peucker on the vertical error); the first
    and last samples are always kept."""
    values = np.asarray(values, dtype=np.float64)
    keep = np.zeros(len(values), dtype=bool)
    keep[[0, -1]] = True
    stack = [(0, len(values) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        t = np.arange(a + 1, b)
        line = values[a] + (values[b] - values[a]) * (t - a) / (b - a)
        error = np.abs(values[a + 1 : b] - line)
        worst = int(np.argmax(error))
        if error[worst] > tolerance:
            split = a + 1 + worst
            keep[split] = True
            stack += [(a, split), (split, b)]
    return np.flatnonzero(keep)


def _write_reduced(fcurve, frames: np.ndarray, values: np.ndarray, tolerance: float) -> None:
    """Bezier keyframes on the turning points and the samples :func:`reduce_keyframes` keeps at 4x
    the tolerance, then add the worst frame until Blender's evaluated curve is within ``tolerance``
    of ``values`` on every frame."""
    # Start coarse (auto-clamped Bezier handles are flat at turning points and follow smooth
    # curves far better than straight lines), then refine where Blender's curve strays.
    slope = np.diff(values)
    turning = np.flatnonzero(np.sign(slope[1:]) != np.sign(slope[:-1])) + 1
    kept = set(reduce_keyframes(values, 4.0 * tolerance).tolist()) | set(turning.tolist())
    for _ in range(len(values)):
        index = np.array(sorted(kept))
        _set_keyframes(fcurve, frames[index], values[index], _BEZIER)
        curve = np.array([fcurve.evaluate(float(f)) for f in frames], dtype=np.float64)
        error = np.abs(curve - values)
        worst = int(np.argmax(error))
        if error[worst] <= tolerance or worst in kept:
            return
        kept.add(worst)


def ensure_rest_track(key, names: list[str]) -> None:
    """Make the bottom NLA track hold every shape key in ``names`` at 0 on every frame.

    Where no strip covers a frame, NLA evaluation resets each channel the strips animate to its RNA
    default, and ``ShapeKey.value`` defaults to 1.0: every expression at full strength. The rest
    track (one keyframe, extrapolation *Hold*, blend *Replace*) covers all frames before, between
    and after the takes. Tracks can only be appended on top, so when the rest track is missing or
    lacks a channel, the tracks above it are re-created over a new one, unchanged.
    """
    from bpy_extras import anim_utils

    anim = key.animation_data or key.animation_data_create()
    tracks = list(anim.nla_tracks)
    rest = tracks[0] if tracks and tracks[0].name == REST_TRACK else None
    action = rest.strips[0].action if rest is not None and len(rest.strips) == 1 else None
    if action is not None and action.slots:
        channelbag = anim_utils.action_get_channelbag_for_slot(action, action.slots[0])
        have = {fc.data_path for fc in channelbag.fcurves} if channelbag is not None else set()
        if all(f'key_blocks["{n}"].value' in have for n in names):
            return
    animated = set(names)
    if action is not None:
        animated |= {p.split('"')[1] for p in have if p.startswith('key_blocks["')}
    above = [_track_state(t) for t in tracks if t is not rest]
    for track in list(anim.nla_tracks):
        anim.nla_tracks.remove(track)
    if action is not None and action.users == 0:
        bpy.data.actions.remove(action)
    action = bpy.data.actions.new(REST_TRACK)
    slot = action.slots.new(id_type="KEY", name=key.name)
    channelbag = ensure_channelbag(action, slot)
    for shape_key in sorted(animated):
        fcurve = channelbag.fcurves.new(f'key_blocks["{shape_key}"].value')
        fcurve.keyframe_points.add(1)
        fcurve.keyframe_points.foreach_set("co", np.array([1.0, 0.0], dtype=np.float32))
        fcurve.update()
    track = anim.nla_tracks.new()
    track.name = REST_TRACK
    track.lock = True
    strip = track.strips.new(REST_TRACK, 1, action)
    strip.blend_type = "REPLACE"
    strip.extrapolation = "HOLD"
    for state in above:
        _restore_track(anim, state)


_STRIP_FIELDS = (
    "name", "action_frame_start", "action_frame_end", "scale", "repeat", "frame_start", "frame_end",
    "blend_type", "extrapolation", "influence", "use_animated_influence", "mute", "use_reverse",
    "blend_in", "blend_out", "use_auto_blend",
)  # fmt: skip


def _track_state(track) -> dict:
    strips = []
    for strip in track.strips:
        state = {f: getattr(strip, f) for f in _STRIP_FIELDS}
        state["action"] = strip.action
        state["action_slot"] = getattr(strip, "action_slot", None)
        strips.append(state)
    return {"name": track.name, "mute": track.mute, "lock": track.lock, "is_solo": track.is_solo,
            "strips": strips}  # fmt: skip


def _restore_track(anim, state: dict) -> None:
    track = anim.nla_tracks.new()
    track.name = state["name"]
    for saved in state["strips"]:
        strip = track.strips.new(saved["name"], int(saved["frame_start"]), saved["action"])
        if saved["action_slot"] is not None:
            strip.action_slot = saved["action_slot"]
        for field in _STRIP_FIELDS:
            if field in ("name", "use_animated_influence", "use_auto_blend"):
                continue  # set by strips.new / derived
            setattr(strip, field, saved[field])
    track.mute, track.lock = state["mute"], state["lock"]
    if state["is_solo"]:
        track.is_solo = True


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


def attach_exact_cache(obj, name: str, frames: np.ndarray, frame_start: int, folder: str):
    """Play ``frames (T, V, 3)`` (exact vertex positions, object space) from ``frame_start`` through a
    Mesh Cache modifier in *Overwrite* mode whose influence is 1 on the take's frames and 0 elsewhere
    (constant keys on the object), so outside the take the mesh is whatever the keys make it.
    Returns the modifier."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{obj.name}_{name}")
    frames = np.asarray(frames, dtype=np.float32)
    # The modifier holds the cache's first/last frame outside it; one held frame on each side keeps
    # subframes just outside the take on the take's ends.
    padded = np.concatenate([frames[:1], frames, frames[-1:]])
    write_pc2(Path(bpy.path.abspath(folder)) / f"{safe}.pc2", padded, frame_start - 1)
    modifier = obj.modifiers.new(name, "MESH_CACHE")
    modifier.cache_format = "PC2"
    modifier.filepath = f"{folder}/{safe}.pc2"  # relative ("//...") in a saved file
    modifier.deform_mode = "OVERWRITE"
    modifier.time_mode = "FRAME"
    modifier.play_mode = "SCENE"
    modifier.frame_start = float(frame_start - 1)
    modifier.factor = 0.0
    # Shape keys evaluate first; the cache must come before any Armature modifier too.
    obj.modifiers.move(obj.modifiers.find(modifier.name), 0)
    _key_influence(obj, modifier.name, frame_start, frame_start + len(frames) - 1)
    return modifier


def _influence_path(modifier_name: str) -> str:
    return f'modifiers["{modifier_name}"].factor'


def _object_channelbag(obj, create: bool):
    """The channelbag of ``obj``'s own action (created with its slot when ``create``), or None."""
    anim = obj.animation_data
    if anim is None or anim.action is None:
        if not create:
            return None
        anim = anim or obj.animation_data_create()
        anim.action = bpy.data.actions.new(f"{obj.name} FaceForge caches")
    if anim.action_slot is None:
        if not create:
            return None
        anim.action_slot = anim.action.slots.new(id_type="OBJECT", name=obj.name)
    return ensure_channelbag(anim.action, anim.action_slot)


def _key_influence(obj, modifier_name: str, first: int, last: int) -> None:
    """Constant keys on the modifier's influence: 0 before ``first``, 1 from ``first`` to ``last``,
    0 after."""
    channelbag = _object_channelbag(obj, create=True)
    path = _influence_path(modifier_name)
    old = channelbag.fcurves.find(path)
    if old is not None:
        channelbag.fcurves.remove(old)
    fcurve = channelbag.fcurves.new(path)
    frames = np.array([first - 1, first, last + 1], dtype=np.float32)
    _set_keyframes(fcurve, frames, np.array([0.0, 1.0, 0.0], dtype=np.float32), _CONSTANT)


CACHE_FOLDER = "//faceforge_cache"


def cache_folder() -> str:
    """Where residual caches go: ``//faceforge_cache`` next to a saved file (a relative path, so the
    project folder can move), else the temp folder until :func:`carry_caches` moves them on save."""
    if bpy.data.filepath:
        return CACHE_FOLDER
    return str(Path(bpy.app.tempdir or tempfile.gettempdir()) / "faceforge_cache")


def carry_caches(filepath: str) -> list[str]:
    """Copy every take's point cache that does not yet lie next to the .blend being saved at
    ``filepath`` into its ``faceforge_cache`` folder and point the modifier there (relative path).

    Run before each save (``save_pre``): caches of an unsaved file live in the temp folder, which
    is gone after Blender quits. Returns the caches carried. A cache that cannot be copied keeps its
    path and is logged, never dropped.
    """
    if not filepath:
        return []
    target_dir = Path(filepath).resolve().parent / "faceforge_cache"
    carried = []
    for obj in bpy.data.objects:
        for modifier in obj.modifiers:
            if modifier.type != "MESH_CACHE" or not modifier.name.startswith(TAKE_PREFIX):
                continue
            if modifier.filepath.startswith("//"):
                continue  # already beside a saved file; Save As remaps relative paths itself
            source = Path(modifier.filepath)
            if not source.is_file():
                continue
            target = target_dir / source.name
            try:
                target_dir.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.tmp")
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            except OSError as error:
                print(f"FaceForge: cannot copy the point cache {source} next to {filepath}: {error}")
                continue
            modifier.filepath = f"{CACHE_FOLDER}/{target.name}"
            carried.append(str(target))
    return carried


@bpy.app.handlers.persistent
def _carry_caches_on_save(filepath, *_args) -> None:
    carry_caches(filepath)


def register_handlers() -> None:
    if _carry_caches_on_save not in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.append(_carry_caches_on_save)


def unregister_handlers() -> None:
    while _carry_caches_on_save in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.remove(_carry_caches_on_save)
