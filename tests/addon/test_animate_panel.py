"""Baking generated motions onto a FaceForge face in Blender (the Animate panel's operators)."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest

pytestmark = pytest.mark.anny


@pytest.fixture
def face(faceforge, small_model_path, small_motion_model_path):
    scene = bpy.context.scene
    scene.faceforge.model_path = str(small_model_path)
    animate = scene.faceforge_animate
    animate.model_path = str(small_motion_model_path)
    animate.label, animate.seed, animate.start_frame = "high_smile", 2, 5
    animate.seconds, animate.hold_seconds, animate.release, animate.release_seconds = 0.5, 0.25, True, 0.5
    scene.render.fps, scene.render.fps_base = 24, 1.0
    bpy.ops.faceforge.generate_face(seed=3, name="animated")
    return bpy.data.objects["animated"]


def _strip_fcurves(obj, track_name):
    from bpy_extras import anim_utils

    track = obj.data.shape_keys.animation_data.nla_tracks[track_name]
    strip = track.strips[0]
    return strip, anim_utils.action_get_channelbag_for_slot(strip.action, strip.action_slot).fcurves


def test_bake_take_writes_a_take_on_the_nla_and_rebake_replaces_it(face):
    bpy.context.scene.faceforge_animate.dense_keys = True
    for _ in range(2):
        assert bpy.ops.faceforge.bake_take() == {"FINISHED"}
    tracks = face.data.shape_keys.animation_data.nla_tracks
    assert [t.name for t in tracks] == ["FF rest", "FF high_smile 2"]
    strip, fcurves = _strip_fcurves(face, "FF high_smile 2")
    n_frames = 12 + 6 + 12  # 0.5 s + 0.25 s + 0.5 s at 24 fps
    assert (strip.frame_start, strip.frame_end) == (5.0, 5.0 + n_frames - 1)
    assert len(fcurves) == len(face.faceforge.key_names)
    values = np.empty((len(fcurves), n_frames), np.float32)
    for k, fc in enumerate(fcurves):
        assert len(fc.keyframe_points) == n_frames
        co = np.empty(2 * n_frames, np.float32)
        fc.keyframe_points.foreach_get("co", co)
        values[k] = co[1::2]
    assert values.min() >= 0.0 and values.max() <= 1.0 and values.max() > 0.0
    assert values[:, 0].max() < 0.05 and values[:, -1].max() < 0.05  # starts and ends near neutral
    # Playing the NLA sets the shape keys to the baked values.
    bpy.context.scene.frame_set(5 + 15)
    played = face.data.shape_keys.key_blocks[fcurves[0].data_path.split('"')[1]].value
    assert played == pytest.approx(values[0, 15], abs=1e-6)


def test_interpolated_takes_and_exact_residual_cache(face):
    animate = bpy.context.scene.faceforge_animate
    animate.other_label, animate.other_seed, animate.blend = "mouth_open", 1, 0.5
    assert bpy.ops.faceforge.interpolate_takes() == {"FINISHED"}
    animate.exact = True
    assert bpy.ops.faceforge.bake_take() == {"FINISHED"}
    names = [t.name for t in face.data.shape_keys.animation_data.nla_tracks]
    assert names == ["FF rest", "FF high_smile 2 + mouth_open 1 @0.50", "FF high_smile 2"]
    cache = face.modifiers["FF high_smile 2"]
    assert cache.type == "MESH_CACHE" and cache.deform_mode == "OVERWRITE"


def test_transfer_motion_from_an_animated_face(face):
    bpy.ops.faceforge.bake_take()
    bpy.ops.faceforge.generate_face(seed=8, name="target")
    target = bpy.data.objects["target"]
    face.select_set(True)
    target.select_set(True)
    bpy.context.view_layer.objects.active = target
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 5, 34
    assert bpy.ops.faceforge.transfer_motion() == {"FINISHED"}
    strip, fcurves = _strip_fcurves(target, "FF from animated")
    assert strip.frame_end - strip.frame_start == 29
    assert 0 < len(fcurves) <= len(target.faceforge.key_names)  # an editable take: the keys that move


def test_bad_input_is_reported_and_changes_nothing(face):
    bpy.ops.mesh.primitive_cube_add()
    actions = len(bpy.data.actions)
    with pytest.raises(RuntimeError, match="not a FaceForge face"):
        bpy.ops.faceforge.bake_take()
    bpy.context.view_layer.objects.active = face
    bpy.context.scene.faceforge_animate.seconds = 0.05  # one frame at 24 fps
    with pytest.raises(RuntimeError, match="at least 2"):
        bpy.ops.faceforge.bake_take()
    bpy.context.scene.faceforge_animate.seconds = 0.5
    bpy.context.scene.faceforge_animate.model_path = "/nonexistent/motion.pt"
    with pytest.raises(RuntimeError, match="no motion model"):
        bpy.ops.faceforge.bake_take()
    assert len(bpy.data.actions) == actions and face.data.shape_keys.animation_data is None


def test_an_editable_take_keys_fewer_frames_and_plays_the_dense_take_within_tolerance(face):
    animate = bpy.context.scene.faceforge_animate
    animate.dense_keys = True
    bpy.ops.faceforge.bake_take()
    _, dense = _strip_fcurves(face, "FF high_smile 2")
    n_frames = len(dense[0].keyframe_points)
    values = {}
    for fc in dense:
        co = np.empty(2 * n_frames, np.float32)
        fc.keyframe_points.foreach_get("co", co)
        values[fc.data_path] = co[1::2]
    n_curves, n_keys = len(dense), sum(len(fc.keyframe_points) for fc in dense)
    animate.dense_keys = False
    bpy.ops.faceforge.bake_take()  # the same seed: the same motion, re-baked as an editable take
    strip, sparse = _strip_fcurves(face, "FF high_smile 2")
    assert 0 < len(sparse) < n_curves  # keys that never move get no curve
    assert sum(len(fc.keyframe_points) for fc in sparse) < 0.5 * n_keys
    blocks = face.data.shape_keys.key_blocks
    for t in range(n_frames):
        bpy.context.scene.frame_set(int(strip.frame_start) + t)
        for path, series in values.items():
            played = blocks[path.split('"')[1]].value
            assert abs(played - series[t]) <= 0.005 + 1e-6, (path, t)


def test_build_motion_model_from_blender_sets_the_panel_model(faceforge, monkeypatch, tmp_path):
    faceforge.session.stop()
    monkeypatch.setenv("FACEFORGE_CACHE", str(tmp_path))  # the backend builds into a private cache
    try:
        assert bpy.ops.faceforge.build_motion_model(small=True) == {"FINISHED"}
        path = bpy.context.scene.faceforge_animate.model_path
        assert path.startswith(str(tmp_path)) and Path(path).is_file()
    finally:
        faceforge.session.stop()
