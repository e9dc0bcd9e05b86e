"""Generating and editing faces with the add-on in the real Blender, against a real backend.

The add-on runs its backend as a subprocess of this interpreter (``FACEFORGE_BACKEND_PYTHON``) and
loads the small test model; the expected arrays come from the same model file loaded in-process.
"""

from __future__ import annotations

import bpy
import numpy as np
import pytest

pytestmark = pytest.mark.anny



def keys_of(obj) -> dict[str, np.ndarray]:
    from faceforge_addon import mesh

    return {block.name: mesh.read_key(block) for block in obj.data.shape_keys.key_blocks}


def expected_rig(model, seed):
    from faceforge.model import rig

    z_id = rig.sample_identity(model, seed)
    neutral, keys = rig.expression_rig(model, rig.identity_codes(model, z_id[None]))
    return neutral[0], dict(zip(rig.key_names(model), keys[0], strict=True))


def test_generate_face_has_every_expression_key_on_the_decoded_neutral(scene, small_model):
    assert bpy.ops.faceforge.generate_face(seed=3) == {"FINISHED"}
    obj = bpy.context.active_object
    blocks = obj.data.shape_keys.key_blocks
    names = [b.name for b in blocks]
    neutral, expected = expected_rig(small_model, 3)
    from faceforge.data.expressions import ARKIT_NAMES

    assert len(ARKIT_NAMES) == 52 and set(ARKIT_NAMES) <= set(names)
    assert names == ["Basis", *expected]  # ARKit names and the composites, in the model's order
    assert all(b.value == 0.0 for b in blocks[1:]) and blocks["jawOpen"].relative_key == blocks["Basis"]
    keys = keys_of(obj)
    np.testing.assert_allclose(keys["Basis"], neutral, atol=1e-5)
    from faceforge_addon import mesh

    np.testing.assert_allclose(mesh.read_vertices(obj.data), neutral, atol=1e-5)
    for name in ("jawOpen", "mouthSmileLeft", "happy"):
        np.testing.assert_allclose(keys[name], expected[name], atol=1e-5)
    assert len(obj.data.polygons) == small_model.faces.shape[0]
    assert obj.faceforge.is_face and len(obj.faceforge.z_id) == small_model.rank_identity


def test_operator_and_python_api_give_identical_arrays(scene):
    from faceforge_addon import jobs

    bpy.ops.faceforge.generate_face(seed=5, name="by operator")
    by_operator = keys_of(bpy.data.objects["by operator"])
    obj = jobs.run(jobs.GenerateFace(bpy.context, seed=5, name="by api"))
    by_api = keys_of(obj)
    assert by_api.keys() == by_operator.keys()
    for name in by_api:
        np.testing.assert_array_equal(by_api[name], by_operator[name])


def test_sliders_set_the_leading_identity_dimensions(scene):
    settings = scene.faceforge
    settings.use_sliders = True
    settings.identity_sliders = (2.0, -1.5, 0, 0, 0, 0, 0, 0)
    bpy.ops.faceforge.generate_face(seed=1)
    z_id = bpy.context.active_object.faceforge.z_id
    n = min(8, len(z_id))  # the small test model has fewer identity dimensions than sliders
    assert z_id[:2] == pytest.approx([2.0, -1.5]) and z_id[2:n] == pytest.approx([0.0] * (n - 2))


def test_update_identity_keeps_keys_values_and_animation_and_replaces(scene, small_model):
    bpy.ops.faceforge.generate_face(seed=3)
    obj = bpy.context.active_object
    blocks = obj.data.shape_keys.key_blocks
    blocks["jawOpen"].value = 0.7
    blocks["jawOpen"].keyframe_insert("value", frame=10)
    custom = obj.shape_key_add(name="My Tweak", from_mix=False)
    from faceforge_addon import mesh

    tweak = mesh.read_key(custom) + np.array([0.0, 0.0, 0.001], np.float32)
    custom.data.foreach_set("co", tweak.ravel())
    count = len(blocks)
    for _ in range(2):  # running it again replaces, never duplicates
        assert bpy.ops.faceforge.update_identity(seed=8) == {"FINISHED"}
    assert len(blocks) == count and blocks["jawOpen"].value == pytest.approx(0.7)
    fcurves = _fcurves(obj.data.shape_keys)
    assert [fc.data_path for fc in fcurves] == ['key_blocks["jawOpen"].value']
    neutral, expected = expected_rig(small_model, 8)
    keys = keys_of(obj)
    np.testing.assert_allclose(keys["Basis"], neutral, atol=1e-5)
    np.testing.assert_allclose(keys["jawOpen"], expected["jawOpen"], atol=1e-5)
    offset = np.tile([0, 0, 0.001], (len(neutral), 1))
    np.testing.assert_allclose(keys["My Tweak"] - keys["Basis"], offset, atol=1e-6)


def _fcurves(id_data):
    """F-curves of an ID's action through the Blender 5 channelbag API."""
    from bpy_extras import anim_utils

    anim = id_data.animation_data
    channelbag = anim_utils.action_get_channelbag_for_slot(anim.action, anim.action_slot)
    return list(channelbag.fcurves)


DATA_CHANGING = ("generate_face", "update_identity", "random_expression", "neutralize", "apply_to_selected",
                 "bake_take", "interpolate_takes", "transfer_motion",
                 "interpolate", "transfer_preview", "retarget_character", "propose_landmarks")  # fmt: skip


def test_undo_restores_the_previous_state(scene):
    for name in DATA_CHANGING:
        assert "UNDO" in getattr(bpy.types, f"FACEFORGE_OT_{name}").bl_options
    # Blender pushes an undo step after each UNDO operator run from the UI; headless, the test does.
    bpy.ops.ed.undo_push(message="before")
    before = set(bpy.data.objects.keys())
    bpy.ops.faceforge.generate_face(seed=2)
    bpy.ops.ed.undo_push(message="Generate Face")
    made = set(bpy.data.objects.keys()) - before
    face = bpy.context.active_object.name
    assert [bpy.data.objects[n].faceforge.kind for n in made].count("part") == len(made) - 1
    basis = keys_of(bpy.data.objects[face])["Basis"]
    bpy.ops.faceforge.update_identity(seed=9)
    bpy.ops.ed.undo_push(message="Update Identity")
    assert not np.allclose(keys_of(bpy.data.objects[face])["Basis"], basis)
    bpy.ops.ed.undo()
    np.testing.assert_array_equal(keys_of(bpy.data.objects[face])["Basis"], basis)
    bpy.ops.ed.undo()
    assert set(bpy.data.objects.keys()) == before


def test_random_expression_sets_bounded_values_or_an_exact_key(scene):
    bpy.ops.faceforge.generate_face(seed=4)
    obj = bpy.context.active_object
    assert bpy.ops.faceforge.random_expression(seed=2) == {"FINISHED"}
    values = np.array([b.value for b in obj.data.shape_keys.key_blocks[1:]])
    assert values.min() >= 0.0 and values.max() <= 1.0 and (values > 0.01).sum() >= 1
    scene.faceforge.exact_expression = True
    count = len(obj.data.shape_keys.key_blocks)
    for _ in range(2):
        bpy.ops.faceforge.random_expression(seed=2)
    blocks = obj.data.shape_keys.key_blocks
    assert len(blocks) == count + 1 and blocks["Sampled"].value == 1.0
    assert all(b.value == 0.0 for b in blocks if b.name not in ("Basis", "Sampled"))
    assert bpy.ops.faceforge.neutralize() == {"FINISHED"}
    assert all(b.value == 0.0 for b in obj.data.shape_keys.key_blocks[1:])


def test_interpolate_makes_in_betweens_and_replaces_them(scene):
    bpy.ops.faceforge.generate_face(seed=1, name="A")
    bpy.ops.faceforge.generate_face(seed=2, name="B")
    a, b = bpy.data.objects["A"], bpy.data.objects["B"]
    b.location.x = 1.0
    a.select_set(True)
    bpy.context.view_layer.objects.active = a
    for _ in range(2):
        assert bpy.ops.faceforge.interpolate(steps=3, mode="OBJECTS") == {"FINISHED"}
    between = [o for o in bpy.data.objects if o.faceforge.kind == "inbetween"]
    assert len(between) == 3
    middle = bpy.data.objects["A 50%"]
    assert middle.location.x == pytest.approx(0.5)
    z = np.array([a.faceforge.z_id, middle.faceforge.z_id, b.faceforge.z_id])
    np.testing.assert_allclose(z[1], 0.5 * (z[0] + z[2]), atol=1e-6)
    assert len(middle.data.shape_keys.key_blocks) == len(a.data.shape_keys.key_blocks)

    b.select_set(True)
    bpy.context.view_layer.objects.active = a
    for _ in range(2):
        assert bpy.ops.faceforge.interpolate(steps=2, mode="KEYED") == {"FINISHED"}
    blends = [k.name for k in a.data.shape_keys.key_blocks if k.name.startswith("Blend ")]
    assert blends == ["Blend 01", "Blend 02", "Blend 03"]  # 2 in-betweens and the other face
    paths = {fc.data_path for fc in _fcurves(a.data.shape_keys)}
    assert {f'key_blocks["{n}"].value' for n in blends} <= paths


def test_cross_age_preview_is_replaced_on_each_run(scene):
    bpy.ops.faceforge.generate_face(seed=1, name="Adult face")
    face = bpy.data.objects["Adult face"]
    face.data.shape_keys.key_blocks["jawOpen"].value = 1.0
    scene.faceforge.target_age = "infant"
    for _ in range(2):
        bpy.context.view_layer.objects.active = face
        assert bpy.ops.faceforge.transfer_preview() == {"FINISHED"}
    previews = [o for o in bpy.data.objects if o.faceforge.kind == "preview"]
    assert [o.name for o in previews] == ["Adult face as infant"]


def test_apply_to_selected_keeps_the_users_own_shape_keys_unless_told_to_replace(scene, small_model):
    from faceforge_addon import mesh

    neutral, _ = expected_rig(small_model, 6)
    scan = mesh.new_mesh_object(bpy.context, "scan", neutral, small_model.faces.numpy())
    scan.shape_key_add(name="Basis", from_mix=False)
    own = scan.shape_key_add(name="jawOpen", from_mix=False)  # the user's own sculpted jawOpen
    sculpt = neutral.astype(np.float32) + np.float32(0.01)
    own.data.foreach_set("co", sculpt.ravel())
    bpy.context.view_layer.objects.active = scan
    assert bpy.context.scene.faceforge.existing_keys == "KEEP"
    assert bpy.ops.faceforge.apply_to_selected() == {"FINISHED"}
    keys = keys_of(scan)
    np.testing.assert_array_equal(keys["jawOpen"], sculpt)  # kept
    assert "jawOpen" not in scan.faceforge.key_names and "mouthSmileLeft" in scan.faceforge.key_names
    assert bpy.ops.faceforge.apply_to_selected() == {"FINISHED"}  # again: still the user's key
    np.testing.assert_array_equal(keys_of(scan)["jawOpen"], sculpt)
    bpy.context.scene.faceforge.existing_keys = "REPLACE"
    assert bpy.ops.faceforge.apply_to_selected() == {"FINISHED"}
    assert not np.allclose(keys_of(scan)["jawOpen"], sculpt) and "jawOpen" in scan.faceforge.key_names
    bpy.context.scene.faceforge.existing_keys = "KEEP"


def test_apply_to_selected_rigs_a_mesh_in_the_model_topology(scene, small_model):
    from faceforge_addon import mesh

    neutral, expected = expected_rig(small_model, 6)
    scan = mesh.new_mesh_object(bpy.context, "scan", neutral, small_model.faces.numpy())
    bpy.context.view_layer.objects.active = scan
    for _ in range(2):
        assert bpy.ops.faceforge.apply_to_selected() == {"FINISHED"}
    keys = keys_of(scan)
    assert list(keys) == ["Basis", *expected]
    np.testing.assert_array_equal(keys["Basis"], neutral.astype(np.float32))  # the scan stays the basis
    # The fitted identity's jaw motion is close to the true one.
    motion = np.linalg.norm(expected["jawOpen"] - neutral, axis=1)
    error = np.linalg.norm((keys["jawOpen"] - keys["Basis"]) - (expected["jawOpen"] - neutral), axis=1)
    assert error.mean() < 0.5 * motion.mean()


def test_apply_to_selected_warns_when_the_scan_lies_outside_the_model(scene, small_model):
    from faceforge_addon import jobs, mesh

    neutral, _ = expected_rig(small_model, 6)
    inside = mesh.new_mesh_object(bpy.context, "inside", neutral, small_model.faces.numpy())
    job = jobs.ApplyToSelected(bpy.context, inside)
    jobs.run(job)
    assert job.level == "INFO" and "outside" not in job.message
    # Far past the nose's calibrated limit (the tiny test model's limits are several mm).
    pull = max(0.012, 3e-3 * small_model.metadata["fit_calibration"]["region_error_mm"]["nose"])
    long_nose = neutral.copy()
    long_nose[np.asarray(small_model.metadata["regions"]["nose"]), 1] -= pull
    outside = mesh.new_mesh_object(bpy.context, "outside", long_nose, small_model.faces.numpy())
    job = jobs.ApplyToSelected(bpy.context, outside)
    jobs.run(job)
    assert job.level == "WARNING" and "outside the model's space (nose" in job.message, job.message
    assert "expression keys" in job.message  # the keys are still written: the user decides


def _scene_state():
    return sorted((o.name, o.type, len(o.data.vertices) if o.type == "MESH" else 0) for o in bpy.data.objects)


@pytest.mark.parametrize(
    "operator", ["update_identity", "random_expression", "transfer_preview", "apply_to_selected"]
)
def test_a_non_mesh_active_object_is_refused(scene, operator):
    bpy.ops.object.empty_add()
    before = _scene_state()
    with pytest.raises(RuntimeError, match="not a mesh"):
        getattr(bpy.ops.faceforge, operator)()
    assert _scene_state() == before


def test_a_mesh_of_another_topology_is_refused(scene):
    bpy.ops.faceforge.load_model()
    bpy.ops.mesh.primitive_cube_add()
    before = _scene_state()
    for operator in ("apply_to_selected", "neutralize"):
        with pytest.raises(RuntimeError, match="8 vertices; the model's topology has 4521"):
            getattr(bpy.ops.faceforge, operator)()
    assert _scene_state() == before
    with pytest.raises(RuntimeError, match="not a FaceForge face"):
        bpy.ops.faceforge.update_identity()


def test_a_missing_model_or_backend_is_reported_and_changes_nothing(scene, tmp_path, monkeypatch):
    scene.faceforge.model_path = str(tmp_path / "no-model.pt")
    before = _scene_state()
    with pytest.raises(RuntimeError, match="no model file at"):
        bpy.ops.faceforge.generate_face()
    assert _scene_state() == before
    monkeypatch.setenv("FACEFORGE_BACKEND_PYTHON", str(tmp_path / "no-python"))
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.faceforge.generate_face()
    assert _scene_state() == before
