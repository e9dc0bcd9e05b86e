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
    from faceforge.topology.parts import ASSIGNABLE_PARTS
    from faceforge_addon.jobs import characters

    assert characters.PART_KINDS == ASSIGNABLE_PARTS


def test_a_take_on_a_character_drives_its_keys_like_the_same_take_on_its_proxy(
    scene, small_model_path, small_motion_model_path, small_model, character
):
    from faceforge.animate.bundle import load_motion_model
    from faceforge.animate.motion import project_to_keys
    from faceforge.topology.transfer import proxy_rig
    from faceforge_addon import jobs

    obj, test, sculpt = character
    bpy.context.scene.faceforge.model_path = str(small_model_path)
    assert bpy.ops.faceforge.retarget_character() == {"FINISHED"}
    animate = bpy.context.scene.faceforge_animate
    animate.model_path = str(small_motion_model_path)
    animate.label, animate.seed, animate.start_frame, animate.dense_keys = "mouth_open", 1, 10, True
    animate.seconds, animate.hold_seconds, animate.release, animate.release_seconds = 0.5, 0.0, True, 0.5
    bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = 24, 1.0
    assert bpy.ops.faceforge.bake_take() == {"FINISHED"}
    track = obj.data.shape_keys.animation_data.nla_tracks["FF mouth_open 1"]
    strip = track.strips[0]
    assert strip.frame_start == 10.0

    # The same take made on the character's FaceForge proxy, projected on the proxy's keys.
    sources = json.loads(obj["faceforge_character_sources"])
    assert sources["jawOpen"] == "jawOpen"  # the artist's own jawOpen (kept) is driven by jawOpen
    names = list(dict.fromkeys(sources.values()))
    neutral, keys = proxy_rig(small_model, np.array(json.loads(obj["faceforge_character_identity"])), names)
    motion_model = load_motion_model(small_motion_model_path)
    dense = motion_model.take(neutral, motion_model.landmark_motion("mouth_open", 1), 12, 0, 12, 1.0)
    expected, _ = project_to_keys(keys, dense)
    blocks = obj.data.shape_keys.key_blocks
    mid = 12  # the apex, 12 frames after the take's start
    bpy.context.scene.frame_set(10 + mid)
    for target, source in sources.items():
        assert blocks[target].value == pytest.approx(float(expected[mid, names.index(source)]), abs=1e-4)
    assert max(blocks[t].value for t in sources) > 0.05

    # What the user sees: the evaluated mesh rests before and after the take and moves inside it.
    def shown(frame):
        bpy.context.scene.frame_set(frame)
        evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        out = np.array([v.co[:] for v in evaluated.to_mesh().vertices])
        evaluated.to_mesh_clear()
        return out

    basis = test.vertices.astype(np.float32)
    np.testing.assert_allclose(shown(1), basis, atol=1e-4)
    assert np.linalg.norm(shown(10 + mid) - basis, axis=1).max() > 0.1  # centimetres
    np.testing.assert_allclose(shown(200), basis, atol=1e-4)

    animate.exact = True  # an exact take plays a FaceForge face's frames: one clear error
    with pytest.raises(jobs.FaceForgeInputError, match="Exact off"):
        jobs.BakeTake(bpy.context, obj)
    animate.exact = False


def test_landmarks_proposed_before_the_first_wrap_are_edited_and_registered_from(
    scene, small_model_path, small_model, character
):
    import torch
    from faceforge.topology import Template

    obj, test, _ = character
    bpy.context.scene.faceforge.model_path = str(small_model_path)
    assert bpy.ops.faceforge.propose_landmarks() == {"FINISHED"}
    assert [k.name for k in obj.data.shape_keys.key_blocks] == ["Basis", "jawOpen"]  # no keys yet
    markers = [bpy.data.objects[n] for n in json.loads(obj["faceforge_landmark_markers"])]
    assert len(markers) == 68 and all(m.parent == obj for m in markers)
    # The proposal lies where the character's true landmarks are (the same head, another topology).
    with torch.no_grad():
        neutral = small_model.decode(test.w_id[None], small_model.neutral_expression)[0].numpy()
    truth = test.to_character(neutral[Template.from_model(small_model).landmarks].astype(np.float64))
    proposed = np.array([tuple(m.location) for m in markers])
    assert np.linalg.norm(proposed - truth, axis=1).mean() < 0.1  # centimetres; measured 0.00x
    chin = markers[8]
    chin.location = (chin.location[0], chin.location[1] - 0.3, chin.location[2])  # 3 mm lower
    moved = np.array(tuple(chin.location))
    assert bpy.ops.faceforge.retarget_character() == {"FINISHED"}
    assert "mouthSmileLeft" in obj.data.shape_keys.key_blocks
    markers = [bpy.data.objects[n] for n in json.loads(obj["faceforge_landmark_markers"])]
    np.testing.assert_allclose(tuple(markers[8].location), moved, atol=1e-4)  # the edit is kept


def test_material_names_assign_parts():
    from faceforge_addon.jobs.characters import material_part

    named = {
        "Std_Eye_L": "eye", "Std_Cornea_R": "eye", "EyeWhite": "eye", "Std_Eyelash": "attached",
        "FaceBrow": "attached", "FaceEyeline": "attached", "Std_Tongue": "tongue",
        "Std_Lower_Teeth": "lower", "Std_Upper_Teeth": "held", "Hair_01": "held",
        "faceforge_lower": "lower", "Std_Skin_Head": None, "Teeth": None, "Face_00_SKIN": None,
    }  # fmt: skip
    assert {name: material_part(name) for name in named} == named


def test_a_material_named_for_a_part_assigns_its_faces(scene, small_model_path, character):
    obj, test, _ = character
    bpy.context.scene.faceforge.model_path = str(small_model_path)
    beard = bpy.data.materials.new("Beard_Hair")
    obj.data.materials.append(beard)
    lower_face = test.vertices[:, 1] < np.percentile(test.vertices[:, 1], 30)  # Y up
    index = np.array([int(lower_face[list(p.vertices)].all()) for p in obj.data.polygons], np.int32)
    obj.data.polygons.foreach_set("material_index", index)
    held = np.unique(np.concatenate([list(p.vertices) for p in obj.data.polygons if p.material_index == 1]))
    assert bpy.ops.faceforge.retarget_character() == {"FINISHED"}
    keys = _keys(obj)
    smile = np.linalg.norm(keys["mouthSmileLeft"] - keys["Basis"], axis=1)
    assert smile[held].max() == 0.0  # the "hair" keeps still
    assert smile.max() > 0.1


def _sphere(centre, radius: float, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    around = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
    theta, phi = np.meshgrid(np.linspace(0.2, np.pi - 0.2, n), around)
    points = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    v = centre + radius * points.reshape(-1, 3)
    faces = []
    for i in range(2 * n):
        for j in range(n - 1):
            a, b = i * n + j, ((i + 1) % (2 * n)) * n + j
            faces += [[a, b, a + 1], [b, b + 1, a + 1]]
    return v, np.array(faces)


def test_selected_eye_and_teeth_objects_are_parts_of_the_head(
    scene, small_model_path, small_motion_model_path, small_model, character
):
    import torch
    from faceforge_addon import jobs, mesh

    obj, test, _ = character
    bpy.context.scene.faceforge.model_path = str(small_model_path)
    lm = small_model.metadata["landmarks"]["ibug68"]
    with torch.no_grad():
        neutral = small_model.decode(test.w_id[None], small_model.neutral_expression)[0].numpy()
    centres = [test.to_character(neutral[lm[i]].mean(0) + np.array([0.0, 0.012, 0.0])) for i in
               (slice(36, 42), slice(42, 48))]  # fmt: skip
    pieces = [_sphere(c, 1.1) for c in centres]
    v = np.concatenate([p[0] for p in pieces])
    f = np.concatenate([pieces[0][1], pieces[1][1] + len(pieces[0][0])])
    # The eyes in an object of their own, moved: its mesh is in its own frame.
    offset = np.array([5.0, -2.0, 1.0])
    eyes = mesh.new_mesh_object(bpy.context, "eyes", (v - offset).astype(np.float32), f)
    eyes.location = tuple(offset)
    body = mesh.new_mesh_object(bpy.context, "body", (test.vertices * 3.0).astype(np.float32), test.faces)
    for o in (obj, eyes, body):
        o.select_set(True)
    bpy.context.view_layer.objects.active = obj
    bpy.context.view_layer.update()
    assert bpy.ops.faceforge.retarget_character() == {"FINISHED"}
    assert json.loads(obj["faceforge_character_parts"]) == ["eyes"]  # the body is no part of the head
    assert body.data.shape_keys is None
    keys = _keys(eyes)
    assert "eyeLookUpLeft" in keys and "mouthSmileLeft" not in keys  # only the keys that move it
    own = (v - offset).astype(np.float32)
    left = np.arange(len(pieces[0][0]), len(v))  # the second sphere: the subject's left eye
    moved = keys["eyeLookUpLeft"][left]
    centre = centres[1] - offset
    np.testing.assert_allclose(
        np.linalg.norm(moved - centre, axis=1), np.linalg.norm(own[left] - centre, axis=1), atol=0.05
    )
    assert np.linalg.norm(moved - own[left], axis=1).max() > 0.3  # 25 degrees on an 11 mm eye (cm)
    # The eyes' keys follow the head's keys of the same expression (drivers): its sliders and its
    # takes move them, and a take needs no keys of its own on them.
    head_keys = obj.data.shape_keys.key_blocks
    head_keys["eyeLookUpLeft"].value = 0.7
    bpy.context.view_layer.update()
    bpy.context.evaluated_depsgraph_get().update()
    assert eyes.data.shape_keys.key_blocks["eyeLookUpLeft"].value == pytest.approx(0.7)
    assert eyes.data.shape_keys.key_blocks["eyeLookDownLeft"].value == 0.0
    animate = bpy.context.scene.faceforge_animate
    animate.model_path = str(small_motion_model_path)
    job = jobs.BakeTake(bpy.context, obj)
    values = np.tile(np.arange(len(job.rig["sources"]), dtype=np.float32), (3, 1))
    assert job.part_takes(values) == []


def test_simulate_on_a_character_plays_its_pose_plus_its_proxys_physics(scene, small_model_path, character):
    from faceforge_addon import jobs

    obj, test, _ = character
    bpy.context.scene.faceforge.model_path = str(small_model_path)
    assert bpy.ops.faceforge.retarget_character() == {"FINISHED"}
    blocks = obj.data.shape_keys.key_blocks
    pressed = ("mouthPressLeft", "mouthPressRight", "mouthRollLower", "mouthRollUpper")
    for frame, value in ((1, 0.0), (2, 1.5)):  # frame 2 presses the lips through each other
        for name in pressed:
            blocks[name].value = value
            blocks[name].keyframe_insert("value", frame=frame)
    physics = bpy.context.scene.faceforge_physics
    physics.frame_start, physics.frame_end, physics.resolution, physics.contact = 1, 2, "6.8", True
    job = jobs.SimulateCharacter(bpy.context)
    jobs.run(job)
    caches = [m for m in obj.modifiers if m.type == "MESH_CACHE"]
    assert [m.name for m in caches] == ["FF physics 1-2"] and obj.modifiers[0] == caches[
        0
    ]  # before the armature

    def shown(frame):
        bpy.context.scene.frame_set(frame)
        evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        return np.array([v.co[:] for v in evaluated.data.vertices])

    for frame in (1, 2):  # what the user sees is the shape-key pose plus the carried physics
        np.testing.assert_allclose(shown(frame), job.frames[frame - 1], atol=1e-4)
    assert np.linalg.norm(job.frames[1] - job.poses[1], axis=1).max() > 0.02  # 0.2 mm: the contact
    assert np.abs(job.frames[0] - job.poses[0]).max() < 0.05  # the rest frame hardly moves
    # After the simulated range the keys alone (they hold frame 2's values).
    np.testing.assert_allclose(shown(8), job.poses[1], atol=1e-4)
    assert bpy.ops.faceforge.simulate() == {"FINISHED"}  # the Physics panel's operator, rebaked
    assert [m.name for m in obj.modifiers if m.type == "MESH_CACHE"] == ["FF physics 1-2"]
