"""The correspondence layer: closest points, similarity alignment, non-rigid registration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from faceforge.errors import FaceForgeError
from faceforge.topology import Similarity, Surface, Template, register_character, umeyama
from faceforge.topology.align import coarse_alignment
from faceforge.topology.surface import closest_points_on_triangles

#: A Y-up centimetre export: template frame (Z up) -> character frame (Y up), x100, moved.
Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _brute_force(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    best = np.full(len(points), np.inf)
    for f in range(len(faces)):
        a = np.repeat(tri[f : f + 1], len(points), axis=0)
        c, _ = closest_points_on_triangles(points, a[:, 0], a[:, 1], a[:, 2])
        best = np.minimum(best, np.linalg.norm(c - points, axis=1))
    return best


def test_closest_points_match_brute_force_and_barycentrics_reproduce_them():
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(60, 3))
    faces = rng.integers(0, 60, size=(80, 3))
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    points = rng.normal(size=(200, 3)) * 1.5
    surface = Surface(vertices, faces, candidates=len(faces))
    hit = surface.closest(points)
    np.testing.assert_allclose(hit.distances, _brute_force(points, vertices, faces), atol=1e-9)
    on_surface = surface.points(hit)
    np.testing.assert_allclose(np.linalg.norm(on_surface - points, axis=1), hit.distances, atol=1e-9)
    assert np.all(hit.weights >= -1e-12) and np.allclose(hit.weights.sum(1), 1.0)


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    truth = Similarity(37.0, q, np.array([1.0, -2.0, 3.0]))
    source = rng.normal(size=(50, 3))
    found = umeyama(source, truth.apply(source))
    assert found.scale == pytest.approx(37.0)
    np.testing.assert_allclose(found.rotation, q, atol=1e-9)
    np.testing.assert_allclose(found.inverse(truth.apply(source)), source, atol=1e-9)


@pytest.fixture(scope="module")
def template(small_model):
    return Template.from_model(small_model)


def _character(small_model, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Another identity of the model, in centimetres, Y up, away from the origin."""
    sample = small_model.sample(1, seed=seed, radius=0.5)
    with torch.no_grad():
        neutral = small_model.decode(sample["w_id"], small_model.neutral_expression)[0].numpy()
    return neutral.astype(np.float64), neutral @ Y_UP.T * 100.0 + np.array([3.0, 150.0, 2.0])


def test_coarse_alignment_finds_orientation_and_units(small_model, template):
    _, character = _character(small_model)
    similarity, _ = coarse_alignment(template, Surface(character, template.faces))
    # Units, coarsely: the scale comes from head size, and a sampled head is up to ~10% off the
    # mean face's (the identity fit that follows recovers the rest).
    assert similarity.scale == pytest.approx(0.01, rel=0.15)
    np.testing.assert_allclose(similarity.rotation, Y_UP.T, atol=0.05)


def test_registration_maps_each_vertex_near_its_true_place(small_model, template):
    truth, character = _character(small_model)
    steps = []
    result = register_character(
        small_model, character, template.faces, progress=lambda d, t, m: steps.append(m) or True
    )
    assert steps[-1] == "registered"
    assert set(result.timings) == {
        "alignment",
        "identity fit",
        "non-rigid registration",
        "correspondence",
    }
    # Same topology: character vertex i truly lies at template vertex i of the truth.
    mapped = result.to_template.apply(truth, template.faces)
    error_mm = np.linalg.norm(mapped - truth, axis=1)[result.face] * 1e3
    # Measured 0.02 mm (1.35 mm with the earlier point-to-point identity fit).
    assert error_mm.mean() < 0.3, error_mm.mean()
    assert result.face.sum() > 0.5 * template.skin.sum()
    assert result.figures["registration_mean_mm"] < 0.05  # measured 0.002 mm (0.11 mm before)
    assert result.figures["unit"] == 0.01  # modelled in centimetres, read in centimetres


def test_identity_fit_recovers_a_head_of_no_real_unit_and_its_identity(small_model, template):
    # A head of known identity at 0.63 of its size: no real unit explains it, the alignment scales
    # it to the mean head's size, and identity and size must come from its proportions.
    truth, _ = _character(small_model, seed=9)
    w_true = small_model.sample(1, seed=9, radius=0.5)["w_id"][0].numpy()
    character = (truth - truth.mean(0)) * 0.63 @ Y_UP.T + np.array([0.1, 0.2, 0.3])
    result = register_character(small_model, character, template.faces)
    assert result.figures["unit"] is None
    assert result.similarity.scale == pytest.approx(1 / 0.63, rel=0.01)  # metres per unit
    assert np.linalg.norm(result.w_id - w_true) < 0.02  # measured 0.002 (0.2-0.4 point-to-point)
    assert result.figures["identity_fit_mm"] < 0.1


def test_posterior_code_keeps_what_the_shape_determines_and_no_more():
    from faceforge.topology.identity import posterior_code

    # Two directions: the first moves the neutral head 2 mm per unit code, the second 0.01 mm.
    hessian = np.diag([4.0, 1e-4])
    fit, mu, var = np.array([1.0, 1.0]), np.zeros(2), np.ones(2)
    close = posterior_code(fit, hessian, mu, var, noise_mm=0.01)  # a head inside the model
    np.testing.assert_allclose(close, [1.0, 1.0], atol=0.05)
    far = posterior_code(fit, hessian, mu, var, noise_mm=1.5)  # an artist's head
    assert far[0] > 0.95 and far[1] < 0.05  # the undetermined direction falls back to the mean


def test_registration_refuses_what_is_not_a_head(small_model):
    # A finely tessellated cube the size of a head.
    n = 12
    g = np.linspace(-0.1, 0.1, n)
    verts, faces = [], []
    for axis in range(3):
        for side in (-0.1, 0.1):
            base = len(verts)
            for a in g:
                for b in g:
                    p = [a, b]
                    p.insert(axis, side)
                    verts.append(p)
            for i in range(n - 1):
                for j in range(n - 1):
                    k = base + i * n + j
                    faces += [[k, k + 1, k + n], [k + 1, k + n + 1, k + n]]
    with pytest.raises(FaceForgeError, match="no face found"):
        register_character(small_model, np.array(verts), np.array(faces))


@pytest.mark.parametrize(
    ("vertices", "faces", "message"),
    [
        (np.zeros((0, 3)), np.zeros((0, 3), int), "shape"),
        (np.full((400, 3), np.nan), np.array([[0, 1, 2]]), "non-finite"),
        (np.random.default_rng(0).normal(size=(400, 3)), np.array([[0, 1, 400]]), "does not have"),
        (np.random.default_rng(0).normal(size=(50, 3)), np.array([[0, 1, 2]]), "at least 300"),
    ],
)
def test_bad_characters_get_one_clear_error(small_model, vertices, faces, message):
    with pytest.raises(FaceForgeError, match=message):
        register_character(small_model, vertices, faces)


def test_register_command_writes_landmarks_and_reruns_from_them(small_model, small_model_path, tmp_path):
    from faceforge.cli import main
    from faceforge.data.meshio import read_mesh, write_obj

    truth, character = _character(small_model, seed=7)
    path = tmp_path / "character.obj"
    write_obj(path, character, small_model.faces.numpy())
    out = tmp_path / "reg"
    args = ["register", str(path), "--out", str(out), "--model", str(small_model_path), "--quiet"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["registration_mean_mm"] < 0.3
    registered, _ = read_mesh(out / "registered_template.obj")
    assert np.linalg.norm(registered - character, axis=1).mean() < 0.3  # centimetres, the character's units
    assert main(args) == 1  # an earlier run's files are kept without --force
    edited = tmp_path / "landmarks.json"
    edited.write_text((out / "landmarks.json").read_text())
    assert main([*args, "--landmarks", str(edited), "--force"]) == 0


def test_register_propose_writes_landmarks_only_and_registration_starts_from_them(
    small_model, small_model_path, template, tmp_path
):
    from faceforge.cli import main
    from faceforge.data.meshio import write_obj

    truth, character = _character(small_model, seed=7)
    path = tmp_path / "character.obj"
    write_obj(path, character, small_model.faces.numpy())
    out = tmp_path / "proposed"
    common = ["--model", str(small_model_path), "--quiet"]
    assert main(["register", str(path), "--out", str(out), "--propose", *common]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["landmarks.json", "report.json"]
    proposed = np.array(json.loads((out / "landmarks.json").read_text())["positions"])
    true_landmarks = truth[template.landmarks] @ Y_UP.T * 100.0 + np.array([3.0, 150.0, 2.0])
    assert np.linalg.norm(proposed - true_landmarks, axis=1).mean() < 0.1  # cm
    # The user moves one and registers from the file.
    edited = json.loads((out / "landmarks.json").read_text())
    edited["positions"][30][2] += 0.2
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    reg = tmp_path / "reg"
    args = ["register", str(path), "--out", str(reg), "--landmarks", str(tmp_path / "edited.json"), *common]
    assert main(args) == 0
    kept = np.array(json.loads((reg / "landmarks.json").read_text())["positions"])
    np.testing.assert_allclose(kept[30], edited["positions"][30], atol=1e-9)
