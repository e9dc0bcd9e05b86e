"""Complete heads in Blender: part objects parented to the face, moved by its keys (depsgraph),
kept through save and reopen, refitted by Update Identity."""

from __future__ import annotations

import bpy
import numpy as np
import pytest

pytestmark = pytest.mark.anny

PARTS = ("Eye L", "Eye R", "Teeth Upper", "Teeth Lower", "Lashes L", "Lashes R")


def evaluated(obj) -> np.ndarray:
    """``(V, 3)`` world positions of the evaluated mesh (modifiers, keys, drivers)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    ev = obj.evaluated_get(depsgraph)
    mesh = ev.to_mesh()
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    m = np.array(ev.matrix_world)
    ev.to_mesh_clear()
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


def parts_of(head) -> dict:
    from faceforge_addon.parts import part_objects

    return part_objects(head)


def test_generated_face_has_its_parts_driven_by_its_keys(scene, tmp_path):
    assert bpy.ops.faceforge.generate_face(seed=4) == {"FINISHED"}
    head = bpy.context.active_object
    parts = parts_of(head)
    assert set(parts) == set(PARTS)
    for name, obj in parts.items():
        assert obj.parent == head and obj.name == f"{head.name} {name}" and obj.data.materials
    blocks = head.data.shape_keys.key_blocks
    lower, eye, lashes = parts["Teeth Lower"], parts["Eye L"], parts["Lashes L"]
    rest_teeth, rest_eye, rest_lashes = evaluated(lower), evaluated(eye), evaluated(lashes)
    rest_head = evaluated(head)
    low, high = rest_head.min(axis=0), rest_head.max(axis=0)
    for obj in parts.values():
        placed = evaluated(obj)
        assert (placed >= low).all() and (placed <= high).all(), obj.name

    blocks["jawOpen"].value = 1.0
    opened = evaluated(lower)
    assert (opened - rest_teeth)[:, 2].mean() < -2e-3  # the lower teeth go down with the jaw...
    d0 = np.linalg.norm(rest_teeth[:, None] - rest_teeth[None], axis=2)
    d1 = np.linalg.norm(opened[:, None] - opened[None], axis=2)
    assert np.abs(d1 - d0).max() < 1e-5  # ... rigidly
    np.testing.assert_allclose(evaluated(parts["Teeth Upper"]), evaluated(parts["Teeth Upper"]))
    blocks["jawOpen"].value = 0.0

    blocks["eyeLookOutLeft"].value = 1.0
    turned = evaluated(eye)
    centre = rest_eye.mean(axis=0)
    np.testing.assert_allclose(turned.mean(axis=0), centre, atol=2e-4)  # about its centre
    np.testing.assert_allclose(
        np.linalg.norm(turned - centre, axis=1), np.linalg.norm(rest_eye - centre, axis=1), atol=1e-6
    )
    front = rest_eye[np.argmin(rest_eye[:, 1])] - centre
    front_now = turned[np.argmin(rest_eye[:, 1])] - centre
    assert front_now[0] - front[0] > 0.3 * np.linalg.norm(front)  # turned towards the subject's left
    blocks["eyeLookOutLeft"].value = 0.0

    blocks["eyeBlinkLeft"].value = 1.0
    assert (evaluated(lashes) - rest_lashes)[:, 2].min() < -2e-3  # the lashes close with the lid
    blocks["eyeBlinkLeft"].value = 0.0
    np.testing.assert_allclose(evaluated(lashes), rest_lashes, atol=1e-7)

    # Saved, closed and reopened: the parts are there and still follow the keys.
    path, name = tmp_path / "heads.blend", head.name
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    head = bpy.data.objects[name]
    parts = parts_of(head)
    assert set(parts) == set(PARTS)
    head.data.shape_keys.key_blocks["jawOpen"].value = 1.0
    np.testing.assert_allclose(evaluated(parts["Teeth Lower"]), opened, atol=1e-6)


def test_update_identity_refits_the_parts_and_deleting_the_face_deletes_them(scene):
    bpy.ops.faceforge.generate_face(seed=4)
    head = bpy.context.active_object
    before = evaluated(parts_of(head)["Teeth Upper"])
    n_objects = len(bpy.data.objects)
    from faceforge_addon import jobs

    jobs.run(jobs.UpdateIdentity(bpy.context, obj=head, seed=9))
    parts = parts_of(head)
    assert set(parts) == set(PARTS) and len(bpy.data.objects) == n_objects  # refitted, not added
    assert np.abs(evaluated(parts["Teeth Upper"]) - before).max() > 1e-4
    from faceforge_addon import mesh

    mesh.remove_object(head)
    assert not any(o.faceforge.kind == "part" for o in bpy.data.objects)


def test_generated_face_has_uvs_regions_and_a_skin_painted_where_its_lips_are(scene, small_model):
    bpy.ops.faceforge.generate_face(seed=4)
    head = bpy.context.active_object
    mesh = head.data
    layer = mesh.uv_layers["UVMap"]
    uv = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    layer.data.foreach_get("uv", uv)
    uv = uv.reshape(-1, 2)
    assert uv.min() >= 0.0 and uv.max() <= 1.0 and np.ptp(uv, axis=0).min() > 0.1
    regions = small_model.metadata["regions"]
    for name in ("jaw", "upper_lip", "eye_left", "tongue"):
        group = head.vertex_groups[name]
        members = [v.index for v in mesh.vertices if any(g.group == group.index for g in v.groups)]
        assert sorted(members) == sorted(regions[name])
    skin = mesh.materials[0]
    assert skin.name == "FaceForge Skin"
    images = {n.image.name: n.image for n in skin.node_tree.nodes if n.type == "TEX_IMAGE"}
    assert len(images) == 4 and all(i.packed_file is not None for i in images.values())
    # The lips' UVs fall inside the lip mask, the forehead's outside it: UVs and masks agree.
    lips = next(i for n, i in images.items() if "lips" in n)
    w, h = lips.size
    pixels = np.array(lips.pixels[:], dtype=np.float32).reshape(h, w, -1)[..., 0]
    loops = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", loops)

    def mask_at(vertices) -> float:
        at = np.isin(loops, vertices)
        px = np.clip((uv[at] * [w - 1, h - 1]).round().astype(int), 0, [w - 1, h - 1])
        return float(pixels[px[:, 1], px[:, 0]].mean())

    assert mask_at(regions["upper_lip"] + regions["lower_lip"]) > 0.5
    assert mask_at(regions["forehead"]) < 0.05


def test_update_identity_keeps_the_parts_true_size_on_a_scaled_face(scene):
    from faceforge_addon import jobs

    plain = jobs.run(jobs.GenerateFace(bpy.context, seed=4, name="plain"))
    scaled = jobs.run(jobs.GenerateFace(bpy.context, seed=4, name="scaled"))
    scaled.scale = (2.0, 2.0, 2.0)  # its mesh now holds half-metres
    bpy.context.view_layer.update()
    for face in (plain, scaled):
        jobs.run(jobs.UpdateIdentity(bpy.context, obj=face, seed=9))
    np.testing.assert_allclose(evaluated(scaled), evaluated(plain), atol=1e-6)
    for name in PARTS:
        np.testing.assert_allclose(
            evaluated(parts_of(scaled)[name]), evaluated(parts_of(plain)[name]), atol=1e-6
        )
