"""Add FaceForge Expressions to Character: keys on a mesh of another topology, in the real Blender."""

from __future__ import annotations

import json

import bpy
import numpy as np
import pytest

pytestmark = pytest.mark.anny


def _keys(obj) -> dict[str, np.ndarray]:
    from faceforge_addon import mesh

    return {block.name: mesh.read_key(block) for block in obj.data.shape_keys.key_blocks}


@pytest.fixture
def character(scene, small_model):
    """A remeshed FaceForge identity in centimetres, rigged: armature modifier, a vertex group, UVs,
    a material and a sculpted key of the artist's own named jawOpen."""
    from faceforge.topology.evaluation import make_test_character
    from faceforge_addon import mesh

    test = make_test_character(small_model, seed=5, remeshed=True, target_vertices=5000)  # resets the scene
    obj = mesh.new_mesh_object(bpy.context, "hero", test.vertices.astype(np.float32), test.faces)
    obj.data.uv_layers.new(name="UVMap")
    obj.data.materials.append(bpy.data.materials.new("skin"))
    group = obj.vertex_groups.new(name="head")
    group.add(list(range(len(test.vertices))), 1.0, "REPLACE")
    armature = bpy.data.objects.new("rig", bpy.data.armatures.new("rig"))
    bpy.context.scene.collection.objects.link(armature)
    modifier = obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature
    obj.shape_key_add(name="Basis", from_mix=False)
    own = obj.shape_key_add(name="jawOpen", from_mix=False)
    sculpt = test.vertices.astype(np.float32) + np.float32(0.5)
    own.data.foreach_set("co", sculpt.ravel())
    own.value = 0.0
    bpy.context.view_layer.objects.active = obj
    return obj, test, sculpt


def test_character_gets_keys_relative_to_its_basis_and_keeps_its_rig(
    scene, small_model_path, character, tmp_path
):
    obj, test, sculpt = character
    bpy.context.scene.faceforge.model_path = str(small_model_path)
    assert bpy.context.scene.faceforge.character_existing_keys == "KEEP"
    assert bpy.ops.faceforge.retarget_character() == {"FINISHED"}
    keys = _keys(obj)
    assert len(keys) == 2 + 51  # Basis, the artist's jawOpen, FaceForge's other 51 ARKit keys
    np.testing.assert_array_equal(keys["jawOpen"], sculpt)  # the artist's own key is kept
    np.testing.assert_array_equal(keys["Basis"], test.vertices.astype(np.float32))
    # The keys move the face, in centimetres, and only the face.
    smile = np.linalg.norm(keys["mouthSmileLeft"] - keys["Basis"], axis=1)
    assert 0.3 < smile.max() < 3.0
    assert (smile < 1e-6).mean() > 0.2  # the skull, the neck, the back of the head are held
    assert [m.type for m in obj.modifiers] == ["ARMATURE"] and obj.modifiers[0].object.name == "rig"
    assert obj.vertex_groups.keys() == ["head"] and obj.data.uv_layers.keys() == ["UVMap"]
    assert [m.name for m in obj.data.materials] == ["skin"]
    markers = [bpy.data.objects[n] for n in json.loads(obj["faceforge_landmark_markers"])]
    assert len(markers) == 68 and all(m.parent == obj and m.type == "EMPTY" for m in markers)
    # What the user sees: the evaluated mesh with a key at 1 is the key's shape.
    obj.data.shape_keys.key_blocks["mouthSmileLeft"].value = 1.0
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    shown = np.array([v.co[:] for v in evaluated.vertices])
    np.testing.assert_allclose(shown, keys["mouthSmileLeft"], atol=1e-4)
    obj.data.shape_keys.key_blocks["mouthSmileLeft"].value = 0.0

    # The user moves the nose-tip marker and deletes another: the rerun registers from the markers.
    from faceforge_addon import jobs

    nose = markers[30]
    nose.location = (nose.location[0] + 0.2, nose.location[1], nose.location[2])
    moved = np.array(tuple(nose.location), dtype=np.float32)
    bpy.data.objects.remove(markers[0])
    job = jobs.RetargetCharacter(bpy.context)
    np.testing.assert_allclose(job.landmarks[30], moved, atol=1e-5)
    assert np.isnan(job.landmarks[0]).all() and np.isfinite(job.landmarks[1:]).all()
    bpy.context.scene.faceforge.character_existing_keys = "SUFFIX"
    assert bpy.ops.faceforge.retarget_character() == {"FINISHED"}
    markers = [bpy.data.objects.get(n) for n in json.loads(obj["faceforge_landmark_markers"])]
    assert all(m is not None for m in markers)  # the deleted one is proposed again
    np.testing.assert_allclose(tuple(markers[30].location), moved, atol=1e-4)  # the edit is kept
    keys = _keys(obj)
    np.testing.assert_array_equal(keys["jawOpen"], sculpt)
    assert "jawOpen_FF" in keys and len(keys) == 2 + 52
    bpy.context.scene.faceforge.character_existing_keys = "REPLACE"
    assert bpy.ops.faceforge.retarget_character() == {"FINISHED"}
    assert not np.allclose(_keys(obj)["jawOpen"], sculpt)
    bpy.context.scene.faceforge.character_existing_keys = "KEEP"

    # Saved, closed and reopened: the keys, the rig and the markers are all there.
    saved = _keys(obj)
    path = str(tmp_path / "hero.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=path)
    hero = bpy.data.objects["hero"]
    reopened = _keys(hero)
    assert list(reopened) == list(saved)
    for name in saved:
        np.testing.assert_array_equal(reopened[name], saved[name])
    assert [m.type for m in hero.modifiers] == ["ARMATURE"] and hero.modifiers[0].object.name == "rig"
    names = json.loads(hero["faceforge_landmark_markers"])
    assert all(bpy.data.objects[n].parent == hero for n in names)


def test_a_cube_gets_one_clear_error_and_nothing_changes(scene, small_model_path):
    bpy.context.scene.faceforge.model_path = str(small_model_path)
    bpy.ops.mesh.primitive_cube_add()
    bpy.ops.object.modifier_add(type="SUBSURF")
    bpy.ops.object.modifier_apply(modifier="Subdivision")
    cube = bpy.context.active_object
    for _ in range(3):
        bpy.ops.object.mode_set(mode="EDIT")
        bpy.ops.mesh.subdivide()
        bpy.ops.object.mode_set(mode="OBJECT")
    with pytest.raises(RuntimeError, match="no face found|lie on the face"):
        bpy.ops.faceforge.retarget_character()
    assert cube.data.shape_keys is None


def test_vertex_groups_assign_parts(scene, small_model_path, character):
    obj, test, _ = character
    bpy.context.scene.faceforge.model_path = str(small_model_path)
    lower_face = np.flatnonzero(test.vertices[:, 1] < np.percentile(test.vertices[:, 1], 30))  # Y up
    group = obj.vertex_groups.new(name="faceforge_held")
    group.add(lower_face.tolist(), 1.0, "REPLACE")
    assert bpy.ops.faceforge.retarget_character() == {"FINISHED"}
    keys = _keys(obj)
    jaw = np.linalg.norm(
        keys["jawOpen_FF" if "jawOpen_FF" in keys else "mouthSmileLeft"] - keys["Basis"], axis=1
    )
    assert jaw[lower_face].max() == 0.0  # the user's held vertices keep still
    assert jaw.max() > 0.1


def test_the_addon_names_the_backends_part_kinds(faceforge):
    from faceforge.topology.parts import PART_KINDS
    from faceforge_addon.jobs import characters

    assert characters.PART_KINDS == PART_KINDS
