"""The one device policy (faceforge.device) and the physics solver's obedience to it.

The solver tests pretend a GPU is present (torch's and Warp's availability checks answer yes), so that
on a CPU-only machine anything that still reaches for CUDA either fails ("Torch not compiled with CUDA")
or shows up in the recorded devices; on a GPU machine the same checks run against the real GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from faceforge import device as device_policy
from faceforge.errors import FaceForgeError
from torch.utils._python_dispatch import TorchDispatchMode


# --- the policy -----------------------------------------------------------------------------------
@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(device_policy.ENV_DEVICE, raising=False)
    return monkeypatch


@pytest.mark.parametrize("gpu", [False, True])
def test_explicit_choice_environment_then_hardware(no_env, gpu):
    no_env.setattr(device_policy, "cuda_available", lambda: gpu)
    assert device_policy.resolve_device("auto") == ("cuda" if gpu else "cpu")
    assert device_policy.resolve_device(None) == ("cuda" if gpu else "cpu")
    assert device_policy.resolve_device("cpu") == "cpu"
    no_env.setenv(device_policy.ENV_DEVICE, "cpu")
    assert device_policy.resolve_device("auto") == "cpu"  # the environment decides "auto"
    if gpu:
        assert device_policy.resolve_device("cuda") == "cuda"  # an explicit choice beats it
        no_env.setenv(device_policy.ENV_DEVICE, "CUDA")
        assert device_policy.resolve_device() == "cuda"


def test_unknown_names_and_a_missing_gpu_are_refused(no_env):
    no_env.setattr(device_policy, "cuda_available", lambda: False)
    with pytest.raises(FaceForgeError, match="unknown physics device 'tpu'"):
        device_policy.resolve_device("tpu", what="physics device")
    with pytest.raises(FaceForgeError, match="no CUDA GPU"):
        device_policy.resolve_device("cuda")
    no_env.setenv(device_policy.ENV_DEVICE, "gpu")
    with pytest.raises(FaceForgeError, match="FACEFORGE_DEVICE"):
        device_policy.resolve_device("auto")
    assert device_policy.resolve_device("cpu") == "cpu"  # an explicit choice ignores the environment


def test_cpu_fallback_only_for_an_automatic_choice(no_env, capsys):
    assert device_policy.cpu_fallback("auto", RuntimeError("out of memory")) == "cpu"
    assert "out of memory" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="out of memory"):
        device_policy.cpu_fallback("cuda", RuntimeError("out of memory"))


def test_the_server_handshake_uses_the_policy(no_env):
    from faceforge.server.service import detect_runtime

    no_env.setattr(device_policy, "cuda_available", lambda: False)
    no_env.setenv(device_policy.ENV_DEVICE, "cpu")
    assert detect_runtime("auto")["device"] == "cpu"
    with pytest.raises(FaceForgeError, match="no CUDA GPU"):
        detect_runtime("cuda")


# --- the physics solver on a small synthetic lattice ----------------------------------------------
def _slab(n: int = 4, h: float = 0.004):
    """A MaterialSpace of n x n x 2 hex cells; the bottom layer is skull, nothing is jaw."""
    from faceforge.physics.material import _CORNERS, MaterialSpace

    shape = (n + 1, n + 1, 3)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    index = np.ravel_multi_index(grid.T, shape)
    lookup = np.empty(len(grid), dtype=np.int64)
    lookup[index] = np.arange(len(grid))
    cells = np.stack(np.meshgrid(np.arange(n), np.arange(n), np.arange(2), indexing="ij"), -1).reshape(-1, 3)
    corners = cells[:, None, :] + _CORNERS[None]
    elements = lookup[np.ravel_multi_index(corners.reshape(-1, 3).T, shape)].reshape(-1, 8)
    nodes = grid[np.argsort(index)] * h
    skin = np.flatnonzero(grid[np.argsort(index)][:, 2] == 2)
    empty = np.zeros(0, dtype=np.int64)
    none3 = np.zeros((0, 3))
    volume = np.full(len(elements), h**3)
    return MaterialSpace(
        resolution=h, origin=np.zeros(3), nodes=nodes.astype(np.float64), elements=elements,
        element_cells=cells, volumes=volume, occupied=volume, element_vertex=np.zeros(len(elements), int),
        skin_vertices=skin, W_skin=sp.csr_matrix((np.ones(len(skin)), (np.arange(len(skin)), skin)),
                                                 shape=(len(skin), len(nodes))),
        skull_nodes=np.flatnonzero(nodes[:, 2] == 0), jaw_nodes=empty, skull_points=none3,
        W_skull=sp.csr_matrix((0, len(nodes))), jaw_points=np.zeros((1, 3)),
        W_jaw=sp.csr_matrix((1, len(nodes))),
        lip_faces=np.zeros((0, 3), int), teeth_vertices=none3, teeth_faces=np.zeros((0, 3), int),
        teeth_jaw=np.zeros(0, bool), depth=np.zeros(len(nodes)), rest_vertices=nodes.copy(),
        faces=np.zeros((0, 3), int),
    )  # fmt: skip


class _DeviceLog(TorchDispatchMode):
    """Every device a torch operation put its results on."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, tuple | list) else (out,):
            if isinstance(value, torch.Tensor):
                self.devices.add(value.device.type)
        return out


@pytest.fixture
def gpu_everywhere(no_env):
    """Make every availability check say a GPU is present (a no-op where one is)."""
    from faceforge.physics import kernels

    no_env.setattr(device_policy, "cuda_available", lambda: True)
    no_env.setattr(torch.cuda, "is_available", lambda: True)
    k = kernels._kernels()
    if k is not None:
        no_env.setattr(k[0], "is_cuda_available", lambda: True)
    return no_env


def _solve_and_record(solver) -> set[str]:
    """Run the energy and a full solve; the torch devices used and the element step's device."""
    rng = np.random.default_rng(0)
    ne = solver.material.n_elements
    A = np.eye(3)[None].repeat(ne, 0) + 0.05 * rng.normal(size=(ne, 3, 3))
    with _DeviceLog() as log:
        x, info = solver.solve(A)
        solver.energy(x, A)
    assert np.isfinite(x).all() and info.iterations > 0
    kernel = solver._element_kernel()
    used = set(log.devices)
    if kernel is not None:
        used.add(str(kernel.device).split(":")[0])
    return used


def test_a_cpu_request_keeps_every_tensor_and_the_element_step_on_the_cpu(gpu_everywhere):
    from faceforge.physics.solver import FaceSolver, PhysicsOptions

    solver = FaceSolver(_slab(), PhysicsOptions(contact=False, device="cpu"))
    assert solver.device == "cpu" and solver._device_energy is None
    assert _solve_and_record(solver) <= {"cpu"}


def test_after_the_automatic_fallback_everything_runs_on_the_cpu(gpu_everywhere, capsys):
    from faceforge.physics import solver as solver_module

    real_factor = solver_module._Factor

    def factor(M, device="cpu"):  # noqa: ANN001, ANN202
        if device == "cuda":
            raise RuntimeError("CUDA driver version is insufficient")
        return real_factor(M, device)

    gpu_everywhere.setattr(solver_module, "_Factor", factor)
    solver = solver_module.FaceSolver(_slab(), solver_module.PhysicsOptions(contact=False, device="auto"))
    assert solver.device == "cpu" and "using the CPU" in capsys.readouterr().err
    assert _solve_and_record(solver) <= {"cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_request_runs_the_energy_on_the_gpu():
    from faceforge.physics.solver import FaceSolver, PhysicsOptions

    solver = FaceSolver(_slab(), PhysicsOptions(contact=False, device="cuda"))
    assert solver.device == "cuda" and solver._device_energy is not None
    cpu = FaceSolver(_slab(), PhysicsOptions(contact=False, device="cpu"))
    A = np.eye(3)[None].repeat(cpu.material.n_elements, 0) * 1.02
    x = cpu.material.nodes * 1.01
    e_gpu, g_gpu = solver.energy(x, A)
    e_cpu, g_cpu = cpu.energy(x, A)
    assert e_gpu == pytest.approx(e_cpu, rel=1e-9) and np.allclose(g_gpu, g_cpu, atol=1e-9)
