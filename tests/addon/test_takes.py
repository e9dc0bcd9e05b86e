"""Takes in Blender: bulk F-curves on the channelbag API, NLA tracks, re-bake, exact caches."""

from __future__ import annotations

import bpy
import numpy as np
import pytest


@pytest.fixture
def rigged(faceforge):
    """A small mesh with 6 expression-like keys."""
    rng = np.random.default_rng(0)
    vertices = rng.normal(0.0, 0.05, (60, 3)).astype(np.float32)
    tris = np.stack([np.arange(58), np.arange(1, 59), np.arange(2, 60)], axis=1)
    obj = faceforge.mesh.new_mesh_object(bpy.context, "rigged", vertices, tris)
    names = ["jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp", "eyeBlinkLeft", "eyeBlinkRight"]
    keys = vertices[None] + rng.normal(0.0, 0.003, (len(names), 60, 3)).astype(np.float32)
    faceforge.mesh.write_rig(obj, vertices, names, keys)
    return obj, names, vertices, keys


def _fcurves(key, track="FF jaw 3"):
    from bpy_extras import anim_utils

    strip = key.animation_data.nla_tracks[track].strips[0]
    return anim_utils.action_get_channelbag_for_slot(strip.action, strip.action_slot).fcurves


def test_a_take_writes_one_fcurve_per_key_and_plays_from_the_nla(faceforge, rigged):
    obj, names, _, _ = rigged
    values = np.random.default_rng(1).uniform(0, 1, (40, len(names))).astype(np.float32)
    strip = faceforge.animation.write_take(obj, "FF jaw 3", 11, names, values)
    key = obj.data.shape_keys
    assert [t.name for t in key.animation_data.nla_tracks] == ["FF rest", "FF jaw 3"]
    assert (strip.frame_start, strip.frame_end) == (11.0, 50.0)
    fcurves = _fcurves(key)
    assert [fc.data_path for fc in fcurves] == [f'key_blocks["{n}"].value' for n in names]
    for k, fc in enumerate(fcurves):
        co = np.empty(2 * len(values), np.float32)
        fc.keyframe_points.foreach_get("co", co)
        np.testing.assert_array_equal(co[0::2], np.arange(11, 51, dtype=np.float32))
        np.testing.assert_array_equal(co[1::2], values[:, k])
        assert fc.keyframe_points[3].interpolation == "LINEAR"
    bpy.context.scene.frame_set(11 + 17)
    played = [key.key_blocks[n].value for n in names]
    np.testing.assert_allclose(played, values[17], atol=1e-6)


def test_rebaking_a_take_replaces_it(faceforge, rigged):
    obj, names, _, _ = rigged
    values = np.zeros((10, len(names)), np.float32)
    for _ in range(3):
        faceforge.animation.write_take(obj, "FF jaw 3", 1, names, values)
    faceforge.animation.write_take(obj, "FF smile 0", 1, names, values)
    tracks = [t.name for t in obj.data.shape_keys.animation_data.nla_tracks]
    assert tracks == ["FF rest", "FF jaw 3", "FF smile 0"]
    assert sorted(a.name for a in bpy.data.actions if a.users) == ["FF jaw 3", "FF rest", "FF smile 0"]
    with pytest.raises(ValueError):
        faceforge.animation.write_take(obj, "FF bad", 1, names, values[:, :2])


def test_an_exact_cache_shows_its_frames_over_the_take_keys_and_leaves_other_frames_to_them(
    faceforge, rigged, tmp_path
):
    """The evaluated mesh is the cached frame exactly while the take's own keys move the mesh a lot
    (Blender's Integrate mode would map the cache triangle by triangle onto the keyed mesh instead);
    outside the take the keys drive the mesh; re-baking the take removes the cache and its keys."""
    from bpy_extras import anim_utils

    obj, names, vertices, keys = rigged
    rng = np.random.default_rng(2)
    values = rng.uniform(0.2, 1.0, (12, len(names))).astype(np.float32)
    faceforge.animation.write_take(obj, "FF jaw 3", 5, names, values)
    deltas = keys - vertices[None]
    exact = vertices + np.tensordot(values, deltas, 1) + rng.normal(0.0, 1e-3, (12, 60, 3))
    modifier = faceforge.animation.attach_exact_cache(obj, "FF jaw 3", exact, 5, str(tmp_path))
    cached = faceforge.animation.read_pc2(modifier.filepath)
    np.testing.assert_array_equal(cached[1:-1], exact.astype(np.float32))
    assert obj.modifiers[0] == modifier and modifier.deform_mode == "OVERWRITE"
    for t in (0, 7, 11):
        np.testing.assert_allclose(_evaluated(faceforge, obj, 5 + t), exact[t], atol=1e-6)
    for frame in (1, 4, 5 + 12, 40):  # outside the take: the rest track holds the basis
        np.testing.assert_allclose(_evaluated(faceforge, obj, frame), vertices, atol=1e-6)
    other = np.full((5, len(names)), 0.3, np.float32)
    faceforge.animation.write_take(obj, "FF smile 0", 20, names, other)  # plays through its keys
    played = vertices + np.tensordot(other[2], deltas, 1)
    np.testing.assert_allclose(_evaluated(faceforge, obj, 22), played, atol=1e-5)
    faceforge.animation.write_take(obj, "FF jaw 3", 5, names, values)  # re-bake without a cache
    assert "FF jaw 3" not in obj.modifiers
    anim = obj.animation_data
    channelbag = anim_utils.action_get_channelbag_for_slot(anim.action, anim.action_slot)
    assert not [fc for fc in channelbag.fcurves if "FF jaw 3" in fc.data_path]
    np.testing.assert_allclose(
        _evaluated(faceforge, obj, 5 + 7), vertices + np.tensordot(values[7], deltas, 1), atol=1e-5
    )


def _evaluated(faceforge, obj, frame):
    bpy.context.scene.frame_set(frame)
    return faceforge.mesh.read_vertices(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data)


def test_the_face_rests_before_between_and_after_takes_and_overlapping_takes_add(faceforge, rigged):
    obj, names, vertices, keys = rigged
    a = np.linspace(0.0, 1.0, 10, dtype=np.float32)[:, None] * np.ones(len(names), np.float32)
    faceforge.animation.write_take(obj, "FF jaw 3", 10, names, a)  # frames 10-19
    b = np.full((6, 2), 0.1, np.float32)  # sums stay inside the keys' slider range [0, 1]
    faceforge.animation.write_take(obj, "FF smile 0", 17, names[:2], b)  # frames 17-22
    tracks = obj.data.shape_keys.animation_data.nla_tracks
    assert [t.name for t in tracks] == ["FF rest", "FF jaw 3", "FF smile 0"]
    deltas = keys - vertices[None]

    def expected(values):
        return vertices + np.tensordot(values, deltas, axes=1)

    for frame in (1, 9, 23, 60, 500, -5):  # no take: the rest face, every key at 0
        np.testing.assert_allclose(_evaluated(faceforge, obj, frame), vertices, atol=1e-6)
        assert all(k.value == 0.0 for k in obj.data.shape_keys.key_blocks[1:])
    np.testing.assert_allclose(_evaluated(faceforge, obj, 14), expected(a[4]), atol=1e-6)
    both = a[8].copy()
    both[:2] += 0.1  # frame 18: the second take adds onto the first
    np.testing.assert_allclose(_evaluated(faceforge, obj, 18), expected(both), atol=1e-6)
    late = np.zeros(len(names), np.float32)
    late[:2] = 0.1
    np.testing.assert_allclose(_evaluated(faceforge, obj, 21), expected(late), atol=1e-6)


def test_the_rest_track_is_rebuilt_under_existing_tracks_unchanged(faceforge, rigged):
    obj, names, vertices, _ = rigged
    faceforge.animation.write_take(obj, "FF jaw 3", 10, names[:2], np.full((5, 2), 0.5, np.float32))
    track = obj.data.shape_keys.animation_data.nla_tracks["FF jaw 3"]
    track.mute = True
    # A take animating a key the rest track lacks re-creates the tracks over a larger rest track.
    faceforge.animation.write_take(obj, "FF smile 0", 30, names[2:], np.full((5, 4), 0.5, np.float32))
    tracks = obj.data.shape_keys.animation_data.nla_tracks
    assert [t.name for t in tracks] == ["FF rest", "FF jaw 3", "FF smile 0"]
    assert tracks["FF jaw 3"].mute and tracks["FF jaw 3"].strips[0].frame_start == 10.0
    assert len(_fcurves(obj.data.shape_keys, "FF rest")) == len(names)
    np.testing.assert_allclose(_evaluated(faceforge, obj, 12), vertices, atol=1e-6)  # muted take
    np.testing.assert_allclose(_evaluated(faceforge, obj, 50), vertices, atol=1e-6)


def test_a_cache_baked_in_an_unsaved_file_moves_beside_it_on_save_and_plays_after_reopening(
    faceforge, rigged, tmp_path
):
    obj, names, vertices, _ = rigged
    assert not bpy.data.filepath
    exact = vertices + np.random.default_rng(3).normal(0.0, 1e-4, (8, 60, 3)).astype(np.float32)
    folder = faceforge.animation.cache_folder()
    modifier = faceforge.animation.attach_exact_cache(obj, "FF jaw 3", exact, 5, folder)
    temporary = modifier.filepath
    assert not temporary.startswith("//")
    blend = tmp_path / "project" / "scene.blend"
    blend.parent.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    assert modifier.filepath == "//faceforge_cache/rigged_FF_jaw_3.pc2"
    assert (blend.parent / "faceforge_cache" / "rigged_FF_jaw_3.pc2").is_file()
    import os

    os.remove(temporary)  # the temp folder is gone once Blender quits
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    reopened = bpy.data.objects["rigged"]
    np.testing.assert_allclose(_evaluated(faceforge, reopened, 5 + 3), exact[3], atol=1e-6)
    # A take baked into the saved file goes straight beside it, with a relative path.
    cache = faceforge.animation.attach_exact_cache(
        reopened, "FF smile 0", exact, 1, faceforge.animation.cache_folder()
    )
    assert cache.filepath == "//faceforge_cache/rigged_FF_smile_0.pc2"
    assert (blend.parent / "faceforge_cache" / "rigged_FF_smile_0.pc2").is_file()


def test_reduced_keyframes_reproduce_the_curve_within_tolerance_with_bezier_handles(faceforge, rigged):
    obj, names, _, _ = rigged
    t = np.linspace(0.0, 1.0, 120, dtype=np.float32)
    values = np.zeros((120, len(names)), np.float32)
    values[:, 0] = 0.8 * np.sin(np.pi * t) ** 2  # a smooth rise and fall
    values[:, 1] = np.clip(3 * t - 1, 0, 1)  # a ramp with corners
    values[:, 2] = 0.002 * np.sin(9 * t)  # never leaves the tolerance: no curve
    faceforge.animation.write_take(obj, "FF jaw 3", 1, names, values, tolerance=0.005)
    fcurves = {fc.data_path.split('"')[1]: fc for fc in _fcurves(obj.data.shape_keys)}
    assert set(fcurves) == {names[0], names[1]}
    for k in (0, 1):
        fc = fcurves[names[k]]
        assert 2 <= len(fc.keyframe_points) <= 20
        assert {p.interpolation for p in fc.keyframe_points} == {"BEZIER"}
        assert {p.handle_left_type for p in fc.keyframe_points} == {"AUTO_CLAMPED"}
        played = np.array([fc.evaluate(float(f)) for f in range(1, 121)])
        assert np.abs(played - values[:, k]).max() <= 0.005 + 1e-6
    assert faceforge.animation.reduce_keyframes(np.linspace(0, 1, 50), 1e-6).tolist() == [0, 49]
