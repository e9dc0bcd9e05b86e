"""Scene units and the user's own shape keys, in the real Blender against a real backend.

The backend works in metres. A scene whose Unit Scale is not 1 (a centimetre scene: 0.01) must get
faces of their true size and keys of the right size, and a mesh with keys of its own must never
lose them: keep, replace or write beside them as ``name_FF``, and every later job (random
expression, interpolate, cross-age preview, takes) must drive FaceForge's keys, not the user's.
"""

from __future__ import annotations

import bpy
import numpy as np
import pytest

pytestmark = pytest.mark.anny

CENTIMETRE = 0.01


def _keys(obj) -> dict[str, np.ndarray]:
    from faceforge_addon import mesh

    return {block.name: mesh.read_key(block) for block in obj.data.shape_keys.key_blocks}


def _neutral(model, seed: int) -> np.ndarray:
    from faceforge.model import rig

    z_id = rig.sample_identity(model, seed)
    neutral, _ = rig.expression_rig(model, rig.identity_codes(model, z_id[None]))
    return neutral[0].astype(np.float32)


def _scan(faceforge, model, vertices: np.ndarray, name: str = "scan"):
    obj = faceforge.mesh.new_mesh_object(bpy.context, name, vertices, model.faces.numpy())
    bpy.context.view_layer.objects.active = obj
    return obj


def _world(obj) -> np.ndarray:
    """World positions of the basis, in scene units."""
    from faceforge_addon import mesh

    local = mesh.read_vertices(obj.data).astype(np.float64)
    matrix = np.array(obj.matrix_world, dtype=np.float64)
    return local @ matrix[:3, :3].T + matrix[:3, 3]


def test_a_centimetre_scene_gets_faces_of_their_true_size(scene, small_model):
    from faceforge_addon import jobs

    metre_face = jobs.run(jobs.GenerateFace(bpy.context, seed=4, name="metres"))
    scene.unit_settings.scale_length = CENTIMETRE
    cm_face = jobs.run(jobs.GenerateFace(bpy.context, seed=4, name="centimetres"))
    bpy.context.view_layer.update()
    assert tuple(cm_face.scale) == pytest.approx((100.0, 100.0, 100.0))
    # In scene units the centimetre face is 100x larger; in real metres both are the same face.
    height_m = np.ptp(_world(metre_face)[:, 2])
    height_cm = np.ptp(_world(cm_face)[:, 2])
    assert height_cm * CENTIMETRE == pytest.approx(height_m, rel=1e-5)
    assert 0.1 < height_m < 0.5
    # The keys and the local coordinates stay in metres (caches are written in them too).
    for name in ("Basis", "jawOpen"):
        np.testing.assert_array_equal(_keys(cm_face)[name], _keys(metre_face)[name])


def test_a_centimetre_scan_is_fitted_in_metres_and_gets_keys_in_centimetres(faceforge, scene, small_model):
    from faceforge_addon import jobs

    neutral = _neutral(small_model, 6)
    in_metres = _scan(faceforge, small_model, neutral, "metres")
    jobs.run(jobs.ApplyToSelected(bpy.context, in_metres))
    scene.unit_settings.scale_length = CENTIMETRE
    in_cm = _scan(faceforge, small_model, neutral * 100.0, "centimetres")
    jobs.run(jobs.ApplyToSelected(bpy.context, in_cm))
    metre_keys, cm_keys = _keys(in_metres), _keys(in_cm)
    assert list(cm_keys) == list(metre_keys)
    np.testing.assert_array_equal(cm_keys["Basis"], neutral * 100.0)  # the scan stays the basis
    for name in ("jawOpen", "mouthSmileLeft", "eyeBlinkRight"):
        motion_m = metre_keys[name] - metre_keys["Basis"]
        motion_cm = cm_keys[name] - cm_keys["Basis"]
        assert np.abs(motion_m).max() > 1e-3  # the key moves the face by millimetres at least
        np.testing.assert_allclose(motion_cm * CENTIMETRE, motion_m, atol=2e-6)  # 2 um

    # Takes send the face in metres too (and divide what comes back).
    bake = jobs.BakeTake(bpy.context, in_cm)
    _, _, arrays = bake.request()
    np.testing.assert_allclose(arrays["neutral"], neutral, atol=1e-6)
    assert bake.metres == pytest.approx(CENTIMETRE)


def test_an_unevenly_scaled_mesh_is_refused_before_anything_is_sent(faceforge, scene, small_model):
    from faceforge_addon import jobs

    scan = _scan(faceforge, small_model, _neutral(small_model, 6))
    scan.scale = (1.0, 2.0, 1.0)
    bpy.context.view_layer.update()
    with pytest.raises(jobs.FaceForgeInputError, match="scaled unevenly"):
        jobs.run(jobs.ApplyToSelected(bpy.context, scan))
    assert scan.data.shape_keys is None


def _with_own_jaw(faceforge, model):
    neutral = _neutral(model, 6)
    scan = _scan(faceforge, model, neutral)
    scan.shape_key_add(name="Basis", from_mix=False)
    own = scan.shape_key_add(name="jawOpen", from_mix=False)  # the user's own sculpted jawOpen
    sculpt = neutral + np.float32(0.01)
    own.data.foreach_set("co", sculpt.ravel())
    return scan, sculpt


def test_suffix_writes_beside_the_users_key_and_later_jobs_drive_faceforges(faceforge, scene, small_model):
    from faceforge_addon import jobs

    scan, sculpt = _with_own_jaw(faceforge, small_model)
    jobs.run(jobs.ApplyToSelected(bpy.context, scan, existing="SUFFIX"))
    keys = _keys(scan)
    np.testing.assert_array_equal(keys["jawOpen"], sculpt)
    assert "jawOpen_FF" in keys and not np.allclose(keys["jawOpen_FF"], sculpt)
    assert scan.faceforge.key_map["jawOpen"] == "jawOpen_FF"
    assert "jawOpen" not in scan.faceforge.key_names
    jobs.run(jobs.ApplyToSelected(bpy.context, scan, existing="SUFFIX"))  # again: the same keys
    assert sorted(_keys(scan)) == sorted(keys)

    # Random expression sets FaceForge's jaw, never the user's.
    blocks = scan.data.shape_keys.key_blocks
    blocks["jawOpen"].value = 0.25  # the user's own setting
    for seed in range(6):
        values = jobs.run(jobs.RandomExpression(bpy.context, scan, seed=seed, exact=False))
        assert blocks["jawOpen"].value == 0.25
        jaw = scan.faceforge.model_names.index("jawOpen")
        assert blocks["jawOpen_FF"].value == pytest.approx(float(values[jaw]))
    # The cross-age preview reads FaceForge's keys in the model's order.
    blocks["jawOpen"].value = 1.0
    blocks["jawOpen_FF"].value = 0.0
    job = jobs.TransferPreview(bpy.context, scan)
    assert len(job.values) == len(scan.faceforge.model_names)
    assert job.values[scan.faceforge.model_names.index("jawOpen")] == 0.0


def test_interpolating_towards_a_face_that_kept_its_own_key(faceforge, scene, small_model):
    from faceforge_addon import jobs

    scan, _ = _with_own_jaw(faceforge, small_model)
    jobs.run(jobs.ApplyToSelected(bpy.context, scan, existing="KEEP"))
    assert "jawOpen" not in scan.faceforge.key_map  # kept: the scan has no FaceForge jawOpen
    face = jobs.run(jobs.GenerateFace(bpy.context, seed=2, name="generated"))
    face.data.shape_keys.key_blocks["mouthSmileLeft"].value = 0.8
    scan.data.shape_keys.key_blocks["jawOpen"].value = 1.0  # the user's key: not an expression value
    for obj in (face, scan):
        obj.select_set(True)
    bpy.context.view_layer.objects.active = face
    (middle,) = jobs.run(jobs.Interpolate(bpy.context, steps=1, mode="OBJECTS"))
    blocks = middle.data.shape_keys.key_blocks
    assert blocks["mouthSmileLeft"].value == pytest.approx(0.4, abs=1e-6)
    assert blocks["jawOpen"].value == 0.0
