"""Skull and jaw of the material space: bone points under the skin, embedded in the lattice, and the
lattice nodes each bone holds.

The bones are not in the data, so they are built from it: each outer skin vertex is offset inward along
its normal by its soft-tissue depth (:func:`faceforge.physics.tissue.tissue_depth`). Bone points under
jaw-side skin below the mouth belong to the jaw; the rest to the skull. Eyelids, nose, lips and the mouth
lining get no bone point: there is eyeball, cartilage or teeth behind them, not skull. Nor may a bone
hold a node of an element that carries the lips or the mouth lining, or a point nearer to some skin
than half its own depth: offset inward from the cheeks, bone points beside the mouth corners land in
the mouth or pass through the fold beside it, and skin on bone-held nodes cannot follow its target
(the corner folds into a spike when the lips stretch). Where a lattice is too coarse for any point of
a bone to pass these rules, that bone keeps its points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from faceforge.errors import FaceForgeError
from faceforge.physics.lattice import Lattice

__all__ = ["Bones", "embed_bones"]


@dataclass(frozen=True)
class Bones:
    """Skull and jaw in the lattice (see :class:`~faceforge.physics.material_space.MaterialSpace`).

    Attributes:
        skull_nodes / jaw_nodes: node indices held by the skull and moved by the jaw.
        skull_points: ``(K, 3)`` kept skull bone points, ``W_skull (K, N)`` their embedding;
        jaw_points: ``(J, 3)``, ``W_jaw (J, N)`` the same for the jaw.
        dropped: bone points outside the lattice or on a node of the other bone.
    """

    skull_nodes: np.ndarray
    jaw_nodes: np.ndarray
    skull_points: np.ndarray
    W_skull: sp.csr_matrix
    jaw_points: np.ndarray
    W_jaw: sp.csr_matrix
    dropped: int


def embed_bones(
    vertices: np.ndarray,
    skin_vertices: np.ndarray,
    regions: dict[str, np.ndarray],
    sets: dict,
    normals: np.ndarray,
    depth: np.ndarray,
    lattice: Lattice,
) -> Bones:
    """Bone points under the simulated skin ``skin_vertices`` (``sets``: the mouth sets of
    :func:`faceforge.physics.mouth.mouth_sets`), split into skull and jaw, embedded in ``lattice``.

    Raises:
        FaceForgeError: if the lattice is too coarse to keep points of both bones.
    """
    lips, lower, contact_z = sets["lips"], sets["lower"], sets["contact_z"]
    h = lattice.grid.h
    # bone points: outer skin offset inward by the tissue depth
    no_bone = regions["eyes"] | regions["nose"] | lips | regions["cavity"]
    bone_src = skin_vertices[~no_bone[skin_vertices]]
    bone_pts = vertices[bone_src] - depth[bone_src, None] * normals[bone_src]
    is_jaw = lower[bone_src] & (vertices[bone_src, 2] < contact_z)
    W_bone, ok_bone = lattice.embed(bone_pts, np.where(is_jaw, 2, 1))
    # a bone point nearer to some skin than half its own depth went through a fold of the face (beside
    # the mouth corners): no bone lies there
    near_skin, _ = cKDTree(vertices[skin_vertices]).query(bone_pts)
    clear_of_folds = near_skin >= 0.5 * depth[bone_src]
    # the nodes that carry the mouth (lips and lining): no bone may hold them
    mouth = skin_vertices[(lips | regions["cavity"])[skin_vertices]]
    W_mouth, _ = lattice.embed(vertices[mouth], np.where(lower[mouth], 2, 1))
    mouth_nodes = np.zeros(W_bone.shape[1], dtype=bool)
    mouth_nodes[W_mouth.indices] = True
    on_mouth = np.asarray(W_bone.astype(bool).astype(np.int64) @ mouth_nodes.astype(np.int64)).ravel() > 0
    strict = ok_bone & clear_of_folds & ~on_mouth
    # A lattice too coarse to keep any point of a bone clear of the mouth (every jaw cell of a small
    # face at 6.8 mm touches the lower lip) keeps that bone's points: a bone is needed more.
    for bone in (is_jaw, ~is_jaw):
        if not (strict & bone).any():
            strict |= ok_bone & bone
    ok_bone = strict
    skull_all = np.unique(W_bone[np.flatnonzero(ok_bone & ~is_jaw)].indices)
    jaw_all = np.unique(W_bone[np.flatnonzero(ok_bone & is_jaw)].indices)
    # Nodes claimed by both bones (skull and jaw points in one cell: where the bones meet) are given to
    # one of them; a bone point is kept only if all its nodes are its own bone's, so every kept point
    # is enforced exactly (Eq. 4) and the two bones never pull on one node.
    both = np.intersect1d(skull_all, jaw_all)
    # a node both bones claim goes to the bone whose points weigh more on it
    skull_w = np.asarray(W_bone[np.flatnonzero(ok_bone & ~is_jaw)].sum(axis=0)).ravel()
    jaw_w = np.asarray(W_bone[np.flatnonzero(ok_bone & is_jaw)].sum(axis=0)).ravel()
    to_jaw = both[jaw_w[both] > skull_w[both]]
    skull_nodes = np.setdiff1d(skull_all, to_jaw)
    jaw_nodes = np.setdiff1d(jaw_all, np.setdiff1d(both, to_jaw))
    W_coo = W_bone.tocoo()
    in_own = np.where(is_jaw[W_coo.row], np.isin(W_coo.col, jaw_nodes), np.isin(W_coo.col, skull_nodes))
    foreign = np.bincount(W_coo.row[~in_own], minlength=W_bone.shape[0]) > 0
    keep_skull = ok_bone & ~is_jaw & ~foreign
    keep_jaw = ok_bone & is_jaw & ~foreign
    W_skull = W_bone[np.flatnonzero(keep_skull)]
    W_jaw = W_bone[np.flatnonzero(keep_jaw)]
    if not keep_jaw.any() or not keep_skull.any():
        raise FaceForgeError(
            f"at {h * 1e3:.1f} mm the lattice cannot separate skull and jaw on this face; "
            "use a finer resolution"
        )
    return Bones(
        skull_nodes=skull_nodes,
        jaw_nodes=jaw_nodes,
        skull_points=bone_pts[keep_skull],
        W_skull=W_skull,
        jaw_points=bone_pts[keep_jaw],
        W_jaw=W_jaw,
        dropped=int((ok_bone & foreign).sum() + (~ok_bone).sum()),
    )
