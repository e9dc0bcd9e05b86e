"""Takes in Blender: bulk F-curves on the channelbag API, NLA tracks, re-bake, residual caches."""

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


def _fcurves(key):
    from bpy_extras import anim_utils

    strip = key.animation_data.nla_tracks[0].strips[0]
    return anim_utils.action_get_channelbag_for_slot(strip.action, strip.action_slot).fcurves


def test_a_take_writes_one_fcurve_per_key_and_plays_from_the_nla(faceforge, rigged):
    obj, names, _, _ = rigged
    values = np.random.default_rng(1).uniform(0, 1, (40, len(names))).astype(np.float32)
    strip = faceforge.animation.write_take(obj, "FF jaw 3", 11, names, values)
    key = obj.data.shape_keys
    assert [t.name for t in key.animation_data.nla_tracks] == ["FF jaw 3"]
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
    assert tracks == ["FF jaw 3", "FF smile 0"]
    assert sorted(a.name for a in bpy.data.actions) == ["FF jaw 3", "FF smile 0"]
    with pytest.raises(ValueError):
        faceforge.animation.write_take(obj, "FF bad", 1, names, values[:, :2])


def test_the_residual_cache_round_trips_and_is_played_by_a_mesh_cache(faceforge, rigged, tmp_path):
    obj, names, vertices, _ = rigged
    residual = np.random.default_rng(2).normal(0.0, 1e-4, (12, 60, 3)).astype(np.float32)
    cache = faceforge.animation.attach_residual_cache
    modifier = cache(obj, "FF jaw 3", vertices, residual, 5, str(tmp_path))
    np.testing.assert_allclose(faceforge.animation.read_pc2(modifier.filepath), vertices[None] + residual)
    assert obj.modifiers[0] == modifier and modifier.deform_mode == "INTEGRATE"
    # With all keys at 0 the evaluated mesh is the basis plus that frame's residual.
    bpy.context.scene.frame_set(5 + 7)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    got = faceforge.mesh.read_vertices(evaluated)
    np.testing.assert_allclose(got, vertices + residual[7], atol=2e-5)
