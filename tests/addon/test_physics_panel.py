"""The Physics panel: simulate a FaceForge face's animation and bake it as an exact take."""

from __future__ import annotations

import bpy
import numpy as np
import pytest

pytestmark = pytest.mark.anny


@pytest.fixture(scope="module", autouse=True)
def physics_cache(tmp_path_factory):
    """The backend keeps material spaces in a cache of its own for these tests, not the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FACEFORGE_CACHE", str(tmp_path_factory.mktemp("faceforge-cache")))
    yield
    mp.undo()


@pytest.fixture
def face(faceforge, small_model_path):
    scene = bpy.context.scene
    scene.faceforge.model_path = str(small_model_path)
    bpy.ops.faceforge.generate_face(seed=4, name="physical")
    obj = bpy.data.objects["physical"]
    blocks = obj.data.shape_keys.key_blocks
    # an animation whose last frame pushes the lips through each other
    for frame, (jaw, press) in zip((1, 2, 3), ((0.0, 0.0), (0.1, 0.8), (0.2, 1.5)), strict=True):
        for name, value in (("jawOpen", jaw), ("mouthPressLeft", press), ("mouthPressRight", press),
                            ("mouthRollLower", press), ("mouthRollUpper", press)):  # fmt: skip
            blocks[name].value = value
            blocks[name].keyframe_insert("value", frame=frame)
    physics = scene.faceforge_physics
    physics.frame_start, physics.frame_end, physics.resolution, physics.contact = 1, 3, "6.8", True
    return obj


def _evaluated(obj, frame: int) -> np.ndarray:
    bpy.context.scene.frame_set(frame)
    data = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    out = np.empty(len(data.vertices) * 3, np.float32)
    data.vertices.foreach_get("co", out)
    return out.reshape(-1, 3)


def test_simulate_bakes_an_exact_take_and_rebake_replaces_it(face, faceforge):
    target = _evaluated(face, 3)
    for _ in range(2):
        assert bpy.ops.faceforge.simulate() == {"FINISHED"}
    anim = face.data.shape_keys.animation_data
    tracks = {t.name: t for t in anim.nla_tracks}
    assert "FF physics 1-3" in tracks and len(tracks) == 3  # rest, the take and the muted source
    assert anim.action is None  # the source animation is kept as a muted track
    assert all(t.mute for n, t in tracks.items() if n not in ("FF physics 1-3", "FF rest"))
    assert not tracks["FF rest"].mute
    caches = [m for m in face.modifiers if m.type == "MESH_CACHE"]
    assert [m.name for m in caches] == ["FF physics 1-3"]
    # Outside the simulated frames the source is muted and the cache adds nothing: the rest face.
    rest = np.empty(len(face.data.vertices) * 3, np.float32)
    face.data.shape_keys.key_blocks[0].data.foreach_get("co", rest)
    for frame in (0, 4, 40):
        np.testing.assert_allclose(_evaluated(face, frame), rest.reshape(-1, 3), atol=1e-6)
    simulated = _evaluated(face, 3)
    # the simulation follows the animation (V2V of a few mm at 6.8 mm) but is not a copy of it
    distance = np.linalg.norm(simulated - target, axis=1)
    assert 0.0 < distance.mean() < 0.004


def test_the_evaluated_mesh_is_the_backend_simulation_on_every_frame(face, faceforge):
    """What Blender shows is what the physics computed: on every simulated frame the evaluated mesh
    (shape keys + point cache, through the depsgraph) is the simulated skin, computed again here from
    the very request the operator sends, within 0.01 mm; and its lips do not pass through each other
    although the animation's own lips do."""
    from faceforge.physics import PhysicalFace, PhysicsOptions
    from faceforge.physics.contact import count_intersecting_pairs

    _, params, arrays = faceforge.jobs.SimulateTake(bpy.context, obj=face).request()
    animated = [_evaluated(face, frame).astype(np.float64) for frame in (1, 2, 3)]
    assert bpy.ops.faceforge.simulate() == {"FINISHED"}
    neutral, keys = arrays["neutral"].astype(np.float64), arrays["keys"].astype(np.float64)
    physical = PhysicalFace(
        neutral,
        arrays["faces"],
        params["resolution_mm"] * 1e-3,
        PhysicsOptions(contact=params["contact"]),
        jaw_open=keys[params["jaw_key"]],
    )
    expected = physical.simulate(neutral[None] + np.tensordot(arrays["values"].astype(np.float64), keys, 1))
    lips = physical.material.lip_faces
    assert count_intersecting_pairs(animated[-1], lips) > 0  # the animation pushes the lips through
    for i, frame in enumerate((1, 2, 3)):
        shown = _evaluated(face, frame).astype(np.float64)
        assert np.abs(shown - expected.frames[i]).max() < 1e-5, f"frame {frame}"
        assert count_intersecting_pairs(shown, lips) == 0, f"frame {frame}"


def test_simulate_refuses_bad_input_and_changes_nothing(face):
    physics = bpy.context.scene.faceforge_physics
    physics.frame_start, physics.frame_end = 5, 2
    with pytest.raises(RuntimeError, match="empty"):
        bpy.ops.faceforge.simulate()
    assert not [t for t in face.data.shape_keys.animation_data.nla_tracks]
    physics.frame_start, physics.frame_end = 1, 3
    import torch

    if not torch.cuda.is_available():
        physics.device = "cuda"
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            bpy.ops.faceforge.simulate()
        physics.device = "auto"
    physics.paralysis_group = "missing"
    with pytest.raises(RuntimeError, match="vertex group"):
        bpy.ops.faceforge.simulate()
    physics.paralysis_group = ""
    bpy.ops.object.select_all(action="DESELECT")
    bpy.context.view_layer.objects.active = None
    with pytest.raises(RuntimeError, match="no active object"):
        bpy.ops.faceforge.simulate()
    assert not [m for m in face.modifiers if m.type == "MESH_CACHE"]
