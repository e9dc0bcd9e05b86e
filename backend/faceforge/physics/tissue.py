"""Head annotations and soft-tissue depth: the regions and landmarks of the FaceForge head, its
vertex normals, and how deep the soft tissue lies under each skin vertex.

The depths are published adult means at craniofacial landmarks (ultrasound and needle studies;
rounded values close to De Greef et al. 2006, Forensic Sci. Int. 159S), set at the head's iBUG-68 /
anatomical landmarks and interpolated over the face by a harmonic (graph Laplacian) fill; the
material space (:mod:`faceforge.physics.material`) puts the bones that deep under the skin.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from faceforge.errors import FaceForgeError

__all__ = ["TISSUE_DEPTH_MM", "graph_laplacian", "head_regions", "tissue_depth", "vertex_normals"]

#: Adult soft-tissue depth (mm) at craniofacial landmarks, keyed by where FaceForge puts them:
#: ``ibug:<i>`` (0-based iBUG-68 index), ``babyfm:<name>``, ``mid:<a>,<b>`` (the vertex nearest to
#: the midpoint of two iBUG points) or ``region:<name>`` (every vertex of a region).
TISSUE_DEPTH_MM: dict[str, float] = {
    "region:forehead": 4.5,  # mid-forehead / frontal eminence
    "region:skull": 5.0,  # vertex and temples (scalp)
    "mid:21,22": 5.5,  # glabella
    "ibug:27": 6.5,  # nasion
    "ibug:29": 3.0,  # end of the nasal bones (rhinion)
    "ibug:30": 10.0,  # nose tip (cartilage: tissue here)
    "ibug:31": 8.0,  # alae
    "ibug:35": 8.0,
    "ibug:33": 12.0,  # subnasale / mid-philtrum
    "ibug:51": 12.5,  # upper lip margin
    "ibug:57": 13.5,  # lower lip margin
    "babyfm:sl": 11.0,  # chin-lip fold (sublabiale)
    "babyfm:pg": 11.5,  # mental eminence (pogonion)
    "ibug:8": 7.0,  # beneath the chin (menton)
    "ibug:19": 6.0,  # supraorbital
    "ibug:24": 6.0,
    "babyfm:oiR": 6.5,  # suborbital (orbitale inferius)
    "babyfm:oiL": 6.5,
    "mid:31,1": 13.0,  # inferior malar
    "mid:35,15": 13.0,
    "ibug:36": 9.0,  # lateral orbit
    "ibug:45": 9.0,
    "ibug:0": 7.0,  # zygomatic arch (in front of the tragion)
    "ibug:16": 7.0,
    "ibug:3": 12.5,  # gonion
    "ibug:13": 12.5,
    "mid:48,3": 19.0,  # occlusal line
    "mid:54,13": 19.0,
    "ibug:48": 14.0,  # cheilion
    "ibug:54": 14.0,
    "region:eyes": 3.0,  # eyelids
    "region:cavity": 6.0,  # mouth lining (lips and cheeks from inside)
}

_MM = 1e-3


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(V, 3)`` unit area-weighted vertex normals (outward for the head crop's winding)."""
    fn = np.cross(
        vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]]
    )
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], fn)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-30)


def head_regions(n_vertices: int) -> dict[str, np.ndarray]:
    """Boolean ``(V,)`` masks of the stored head annotations plus ``cavity`` (mouth lining without
    the lips), ``jaw_weight`` (float) and the landmark index arrays ``ibug68`` / ``babyfm23``."""
    from faceforge.data.annotations import load_annotations, load_jaw_weights

    notes = load_annotations()
    if notes["n_vertices"] != n_vertices:
        raise FaceForgeError(
            f"the physical face needs the FaceForge head topology ({notes['n_vertices']} vertices), "
            f"got {n_vertices}"
        )
    out: dict[str, np.ndarray] = {}
    for name, indices in notes["regions"].items():
        mask = np.zeros(n_vertices, dtype=bool)
        mask[np.asarray(indices, dtype=np.int64)] = True
        out[name] = mask
    out["cavity"] = out["mouth"] & ~out["upper_lip"] & ~out["lower_lip"]
    out["jaw_weight"] = load_jaw_weights(n_vertices)
    out["ibug68"] = np.asarray(notes["landmarks"]["ibug68"], dtype=np.int64)
    babyfm = notes["landmark_names"]["babyfm23"]
    out["babyfm23"] = np.asarray(notes["landmarks"]["babyfm23"], dtype=np.int64)
    out["babyfm23_names"] = np.asarray(babyfm)
    return out


def graph_laplacian(faces: np.ndarray, n: int) -> sp.csr_matrix:
    """``(n, n)`` graph Laplacian (degree - adjacency) of a triangle mesh's edges."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    a = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.float64)
    return sp.diags(np.asarray(a.sum(axis=1)).ravel()) - a


def tissue_depth(vertices: np.ndarray, faces: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """``(V,)`` soft-tissue depth in metres: :data:`TISSUE_DEPTH_MM` at its landmarks, filled
    harmonically over the mesh (a smooth field that takes the published value at each landmark)."""
    n = len(vertices)
    ibug = regions["ibug68"]
    names = list(regions["babyfm23_names"])
    fixed: dict[int, float] = {}
    for key, depth in TISSUE_DEPTH_MM.items():
        kind, _, what = key.partition(":")
        if kind == "region":
            for v in np.flatnonzero(regions[what]):
                fixed.setdefault(int(v), depth)
            continue
        if kind == "ibug":
            v = int(ibug[int(what)])
        elif kind == "babyfm":
            v = int(regions["babyfm23"][names.index(what)])
        else:
            a, b = (int(i) for i in what.split(","))
            mid = 0.5 * (vertices[ibug[a]] + vertices[ibug[b]])
            v = int(np.argmin(np.linalg.norm(vertices - mid, axis=1)))
        fixed[v] = depth  # landmarks win over region defaults
    lap = graph_laplacian(faces, n)
    known = np.zeros(n, dtype=bool)
    values = np.zeros(n)
    for v, depth in fixed.items():
        known[v] = True
        values[v] = depth
    free = np.flatnonzero(~known)
    # Vertices in no triangle keep a default depth: give them a diagonal so the system is regular.
    lff = lap[free][:, free] + sp.eye(len(free)) * 1e-9
    rhs = -lap[free][:, known] @ values[known]
    values[free] = sp.linalg.spsolve(lff.tocsc(), rhs)
    return np.clip(values, 2.0, 25.0) * _MM
