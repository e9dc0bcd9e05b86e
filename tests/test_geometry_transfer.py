"""Deformation transfer and geometry on synthetic meshes (no anny needed)."""

from __future__ import annotations

import numpy as np
import pytest
from faceforge.data.geometry import apply_rigid, gradient_operator, rigid_align
from faceforge.data.transfer import CarriedPart, DeformationTransfer, deformation_gradients
from faceforge.errors import FaceForgeError
from scipy.spatial.transform import Rotation


def grid(n: int = 8, z: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A bumpy n x n vertex grid in the XY plane, 1 unit wide, and its triangles."""
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")
    verts = np.stack([u.ravel(), v.ravel(), z + 0.1 * np.sin(3 * u.ravel()) * np.cos(2 * v.ravel())], axis=1)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, (i + 1) * n + j, (i + 1) * n + j + 1, i * n + j + 1
            faces += [[a, b, c], [a, c, d]]
    return verts, np.array(faces)


def test_rigid_align_recovers_rotation_and_translation():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(50, 3))
    rot = Rotation.from_rotvec([0.3, -0.2, 0.9]).as_matrix()
    moved = pts @ rot.T + [1.0, 2.0, -3.0]
    r, t = rigid_align(pts, moved)
    np.testing.assert_allclose(r, rot, atol=1e-10)
    np.testing.assert_allclose(apply_rigid(pts, r, t), moved, atol=1e-10)
    assert np.isclose(np.linalg.det(r), 1.0)


def test_gradient_operator_is_exact_for_linear_fields():
    verts, faces = grid()
    coeff = np.array([0.7, -1.3, 0.0])
    field = verts @ coeff
    grads = (gradient_operator(verts, faces) @ field).reshape(-1, 3)
    # The gradient lives in each triangle's plane: its dot with the in-plane edges matches.
    e1 = verts[faces[:, 1]] - verts[faces[:, 0]]
    np.testing.assert_allclose((grads * e1).sum(1), e1 @ coeff, atol=1e-10)


def bend(verts: np.ndarray, amount: float) -> np.ndarray:
    out = verts.copy()
    out[:, 2] += amount * (verts[:, 0] - 0.5) ** 2
    return out


def test_self_transfer_reproduces_the_source():
    verts, faces = grid()
    held = np.flatnonzero(verts[:, 0] < 0.2)
    deformed = verts.copy()
    deformed[:, 2] += 0.3 * np.clip(verts[:, 0] - 0.2, 0, None) ** 2
    q = deformation_gradients(verts, deformed, faces)
    out = DeformationTransfer(verts, faces, held).transfer(q)
    np.testing.assert_allclose(out, deformed, atol=1e-9)


def test_transferred_displacement_scales_with_the_target():
    verts, faces = grid()
    held = np.flatnonzero(verts[:, 0] < 0.15)
    deformed = verts.copy()
    deformed[:, 2] += 0.3 * np.clip(verts[:, 0] - 0.15, 0, None) ** 2
    q = deformation_gradients(verts, deformed, faces)
    small = DeformationTransfer(0.5 * verts, faces, held).transfer(q)
    np.testing.assert_allclose(small - 0.5 * verts, 0.5 * (deformed - verts), atol=1e-9)
    half = DeformationTransfer(verts, faces, held).transfer(q, intensity=0.5)
    np.testing.assert_allclose(half - verts, 0.5 * (deformed - verts), atol=1e-9)


def test_a_floating_component_must_be_pinned():
    a, fa = grid(5)
    b, fb = grid(4, z=2.0)
    verts = np.concatenate([a, b])
    faces = np.concatenate([fa, fb + len(a)])
    with pytest.raises(FaceForgeError, match="no held or carried vertex"):
        DeformationTransfer(verts, faces, held=np.arange(3))


def test_carried_part_follows_its_carrier():
    a, fa = grid(6)
    b, fb = grid(4, z=0.5)
    b = 0.3 * b + [0.35, 0.35, 0.0]
    verts = np.concatenate([a, b])
    faces = np.concatenate([fa, fb + len(a)])
    part_vertices = np.arange(len(a), len(verts))
    held = np.flatnonzero(a[:, 0] < 0.2)
    carrier = np.flatnonzero(a[:, 0] > 0.6)
    part = CarriedPart(part_vertices, roots=part_vertices[:4], carrier=carrier)
    # Source: the carrier and the part translate up by 0.1 together.
    deformed = verts.copy()
    lift = np.clip((a[:, 0] - 0.2) / 0.4, 0, 1) * 0.1
    deformed[: len(a), 2] += lift
    deformed[len(a) :, 2] += 0.1
    q = deformation_gradients(verts, deformed, faces)
    motion = part.relative_root_motion(verts, deformed[None])
    out = DeformationTransfer(verts, faces, held, [part]).transfer(q[None], carried_motion=motion[:, None])[0]
    np.testing.assert_allclose(out, deformed, atol=1e-8)
