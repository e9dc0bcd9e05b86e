"""Physics on a retargeted character: simulated on its FaceForge proxy, carried by the correspondence."""

from __future__ import annotations

import numpy as np
import pytest
from faceforge.errors import FaceForgeError
from faceforge.physics import PhysicalFace, PhysicsOptions
from faceforge.physics.characters import CharacterMap, proxy_head, simulate_character, source_values
from faceforge.topology.evaluation import make_test_character
from faceforge.topology.retarget import retarget_character

pytestmark = pytest.mark.anny

SOURCES = ["jawOpen", "mouthPressLeft", "mouthPressRight", "mouthRollLower", "mouthRollUpper"]


@pytest.fixture(scope="module")
def simulated(small_model):
    character = make_test_character(small_model, seed=5)  # same topology, centimetres, Y up
    result = retarget_character(small_model, character.vertices, character.faces, "arkit")
    corr = result.correspondence
    character_map = CharacterMap.from_correspondence(corr)
    neutral, keys = proxy_head(small_model, corr.w_source, SOURCES)
    faces = small_model.faces.numpy().astype(np.int64)
    face = PhysicalFace(neutral, faces, 0.0068, PhysicsOptions(contact=True), jaw_open=keys[0], cache=False)
    values = np.array([[0.0] * 5, [0.2, 1.5, 1.5, 1.5, 1.5]])  # the lips pressed through each other
    corrections, sim = simulate_character(
        small_model, corr.w_source, SOURCES, values, character_map, physical_face=face
    )
    targets = neutral[None] + np.tensordot(values, keys, axes=1)
    return character, character_map, corrections, sim, targets, face


def test_the_proxys_physics_reaches_the_character_in_its_frame_and_units(simulated):
    character, character_map, corrections, sim, targets, face = simulated
    assert corrections.shape == (2, len(character.vertices), 3)
    assert np.abs(corrections[:, ~character_map.on_face]).max() == 0.0  # off the face: nothing
    # The contact pushes the pressed lips apart on the proxy (millimetres) ...
    proxy = sim.frames - targets
    assert np.linalg.norm(proxy[1], axis=1).max() > 5e-4
    # ... and the same topology lies vertex on vertex: each character vertex takes its own vertex's
    # correction, rotated into Y up and in centimetres (x 100).
    expected = proxy @ character_map.to_character
    on = character_map.on_face
    error = np.linalg.norm(corrections[:, on] - expected[:, on], axis=2)
    assert error.max() < 0.02 * np.linalg.norm(expected, axis=2).max() + 1e-4
    np.testing.assert_allclose(np.abs(np.linalg.det(character_map.to_character)), 100.0**3, rtol=1e-3)
    # The lips the contact kept apart on the proxy are apart: no intersections in its frames.
    assert face.penetrations(sim.frames[1], sim.jaw[1]) == 0


def test_split_keys_drive_their_expression_with_the_mean_of_their_halves():
    values = np.array([[0.2, 0.4, 1.0]])
    out, names = source_values(
        values, ["BrowUp_L", "BrowUp_R", "JawOpen"], ["browInnerUp", "browInnerUp", "jawOpen"]
    )
    assert names == ["browInnerUp", "jawOpen"]
    np.testing.assert_allclose(out, [[0.3, 1.0]])


def test_a_map_of_another_model_is_one_clear_error(small_model):
    bad = CharacterMap(np.array([10**7]), np.ones((1, 3)) / 3, np.ones(1, bool), np.eye(3))
    with pytest.raises(FaceForgeError, match="retarget the character again"):
        simulate_character(
            small_model, np.zeros(small_model.rank_identity), ["jawOpen"], np.zeros((1, 1)), bad
        )
