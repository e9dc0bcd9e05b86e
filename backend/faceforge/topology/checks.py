"""Surface defects across a character's face: holes and non-manifold edges.

A character's own openings (the eyes, the mouth, a neck cut below the face) are fine; an open edge
elsewhere on the face (a missing patch of cheek) or an edge shared by three or more triangles would
tear under deformation transfer, so :func:`check_face_surface` refuses them with one clear error.
"""

from __future__ import annotations

import numpy as np

from faceforge.data.geometry import connected_components
from faceforge.errors import FaceForgeError

__all__ = [
    "boundary_edges",
    "face_defects",
    "check_face_surface",
    "OPENING_RADIUS",
    "MOUTH_RADIUS",
    "MAX_HOLE_EDGE",
]

#: Open edges within this distance of an eye's landmark centre are its opening (metres) ...
OPENING_RADIUS = 0.025
#: ... and within this distance of the mouth's, the mouth's (an open mouth bag reaches back 4 cm).
MOUTH_RADIUS = 0.045
#: Open edges across the face may add up to this length (metres) before the face counts as holed
#: (a stray missing triangle is tolerated).
MAX_HOLE_EDGE = 0.01


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """``(B, 2)`` edges used by one triangle only."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    return unique[counts == 1]


def face_defects(
    local: np.ndarray,
    faces: np.ndarray,
    face: np.ndarray,
    landmarks: np.ndarray,
    template_boundary: np.ndarray | None = None,
) -> dict[str, float]:
    """Open-edge length (metres) and non-manifold edge count on the face, openings excluded.

    Args:
        local: ``(V, 3)`` character vertices in the template frame (metres).
        faces: ``(F, 3)`` triangles.
        face: ``(V,)`` bool, vertices on the registered face.
        landmarks: ``(68, 3)`` iBUG landmarks (template frame).
        template_boundary: ``(B, 3)`` points on the registered template's own open edges (its neck
            cut): open edges of the character within :data:`OPENING_RADIUS` of them are fine.
    """
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    # Only the skin counts: a component lying wholly on the face (lashes, brow cards) is open by nature.
    labels = connected_components(faces, len(local))
    off_face = np.zeros(labels.max() + 1, dtype=bool)
    off_face[labels[~face]] = True
    on_face = face[unique].all(axis=1) & off_face[labels[unique[:, 0]]]
    openings = np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0), landmarks[48:68].mean(0)])
    radius = np.array([OPENING_RADIUS, OPENING_RADIUS, MOUTH_RADIUS])
    mid = local[unique].mean(axis=1)
    near_opening = (np.linalg.norm(mid[:, None] - openings[None], axis=2) < radius).any(axis=1)
    if template_boundary is not None and len(template_boundary):
        for start in range(0, len(mid), 4096):  # (chunk, B) distances
            block = mid[start : start + 4096]
            gap = np.linalg.norm(block[:, None] - template_boundary[None], axis=2).min(axis=1)
            near_opening[start : start + 4096] |= gap < OPENING_RADIUS
    hole = on_face & (counts == 1) & ~near_opening
    length = np.linalg.norm(local[unique[hole, 0]] - local[unique[hole, 1]], axis=1).sum()
    return {
        "open_edge_length_m": float(length),
        "hole_centre": mid[hole].mean(axis=0).tolist() if hole.any() else None,
        "non_manifold_edges": int((on_face & (counts > 2)).sum()),
    }


def check_face_surface(
    local: np.ndarray,
    faces: np.ndarray,
    face: np.ndarray,
    landmarks: np.ndarray,
    template_boundary: np.ndarray | None = None,
) -> dict:
    """:func:`face_defects`, raising :class:`FaceForgeError` when the face is holed or non-manifold."""
    defects = face_defects(local, faces, face, landmarks, template_boundary)
    if defects["non_manifold_edges"] > 0:
        raise FaceForgeError(
            f"the mesh has {defects['non_manifold_edges']} non-manifold edges (shared by three or more "
            "triangles) across the face; merge or separate them first (Blender: Select > Select All by "
            "Trait > Non Manifold)"
        )
    if defects["open_edge_length_m"] > MAX_HOLE_EDGE:
        raise FaceForgeError(
            f"the mesh has a hole across the face ({defects['open_edge_length_m'] * 100:.1f} cm of open "
            "edges away from the eyes and the mouth); fill it first (Blender: Select > Select All by "
            "Trait > Non Manifold, then Face > Fill)"
        )
    return defects
