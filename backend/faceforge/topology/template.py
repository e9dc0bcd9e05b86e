"""FaceForge's head as a registration template: topology, regions, landmarks and masks.

Everything comes from the face model file (its faces, the annotations stored in its metadata), so
a template needs no dataset and no anny. Frame: metres, +X the subject's left, -Y forward, +Z up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceforge.data.geometry import connected_components
from faceforge.errors import FaceForgeError

__all__ = ["Template", "FIT_WEIGHTS"]

#: Data weight per region in the non-rigid registration. Ears, the mouth's inside and the tongue
#: do not pull the fit (a character's ears, hair and mouth bag differ from FaceForge's); the eye
#: regions pull weakly (sockets differ, lids matter).
FIT_WEIGHTS = {"ear_left": 0.0, "ear_right": 0.0, "mouth_inside": 0.0, "tongue": 0.0, "eyes": 0.3}


@dataclass(frozen=True)
class Template:
    """The template head.

    Attributes:
        vertices: ``(V, 3)`` neutral positions (metres).
        faces: ``(F, 3)`` triangles.
        regions: region name -> vertex indices (``jaw``, ``held``, ``eyes``, ``upper_lip``...).
        landmarks: ``(L,)`` vertex indices of the 68 iBUG landmarks.
        landmark_names: their names.
        skin: ``(V,)`` bool, the head's surface (the largest component: no tongue).
    """

    vertices: np.ndarray
    faces: np.ndarray
    regions: dict[str, np.ndarray]
    landmarks: np.ndarray
    landmark_names: list[str]
    skin: np.ndarray

    @classmethod
    def from_model(cls, model, neutral: np.ndarray | None = None) -> Template:  # noqa: ANN001 - FaceModel
        """The template of a face model: its mean neutral face (or ``neutral (V, 3)``)."""
        meta = model.metadata
        if "regions" not in meta or "landmarks" not in meta:
            raise FaceForgeError("the model file has no regions or landmarks; rebuild it with this FaceForge")
        faces = np.asarray(model.faces.cpu().numpy(), np.int64)
        if neutral is None:
            import torch

            with torch.no_grad():
                neutral = model.decode(model.identity_prior[0], model.neutral_expression)[0].cpu().numpy()
        n = model.n_vertices
        labels = connected_components(faces, n)
        skin = labels == np.bincount(labels).argmax()
        regions = {k: np.asarray(v, dtype=np.int64) for k, v in meta["regions"].items()}
        return cls(
            vertices=np.asarray(neutral, dtype=np.float64),
            faces=faces,
            regions=regions,
            landmarks=np.asarray(meta["landmarks"]["ibug68"], dtype=np.int64),
            landmark_names=list(meta["landmark_names"]["ibug68"]),
            skin=skin,
        )

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    def mask(self, name: str) -> np.ndarray:
        """``(V,)`` bool mask of a region (``mouth_inside`` = mouth minus lips)."""
        out = np.zeros(self.n_vertices, dtype=bool)
        if name == "mouth_inside":
            out[self.regions["mouth"]] = True
            out[self.regions["upper_lip"]] = False
            out[self.regions["lower_lip"]] = False
            return out
        out[self.regions[name]] = True
        return out

    def fit_weights(self) -> np.ndarray:
        """``(V,)`` data weights of the non-rigid registration (:data:`FIT_WEIGHTS`; 0 off the skin)."""
        w = self.skin.astype(np.float64)
        for name, value in FIT_WEIGHTS.items():
            w[self.mask(name)] = np.minimum(w[self.mask(name)], value)
        w[self.landmarks] = np.maximum(w[self.landmarks], 0.3 * self.skin[self.landmarks])
        return w

    def size(self) -> float:
        """RMS distance of the skin vertices from their centroid (metres)."""
        p = self.vertices[self.skin]
        return float(np.sqrt(((p - p.mean(axis=0)) ** 2).sum(axis=1).mean()))
