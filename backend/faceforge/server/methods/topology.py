"""Character methods: FaceForge's expressions on a mesh of any topology (``topology.retarget``)."""

from __future__ import annotations

import numpy as np

from faceforge.server.methods.model import _model
from faceforge.server.registry import ArraySpec, Context, Param, method

__all__ = ["landmarks", "retarget"]


@method(
    "topology.landmarks",
    arrays={
        "vertices": ArraySpec(
            ("float32", "float64"), ("V", 3), doc="the character's basis (V, 3), its units"
        ),
        "faces": ArraySpec(("int32", "int64"), ("F", 3), doc="its triangles (F, 3), every part"),
    },
)
def landmarks(ctx: Context, vertices: np.ndarray, faces: np.ndarray) -> dict:
    """The 68 landmarks proposed on a character (alignment and identity fit, no registration):
    ``landmarks (68, 3)`` in its frame, their ``landmark_names`` and the fit's figures."""
    from faceforge.topology import propose_landmarks

    model = _model(ctx)
    proposed, figures = propose_landmarks(
        model, vertices.astype(np.float64), faces.astype(np.int64), progress=ctx.progress
    )
    return {
        "landmarks": proposed.astype(np.float32),
        "landmark_names": list(model.metadata["landmark_names"]["ibug68"]),
        **figures,
    }


@method(
    "topology.retarget",
    params={
        "profile": Param(
            str, default="arkit", doc="key names: arkit, vrm, cc4, facecap or a JSON profile path"
        ),
    },
    arrays={
        "vertices": ArraySpec(
            ("float32", "float64"), ("V", 3), doc="the character's basis (V, 3), its units"
        ),
        "faces": ArraySpec(("int32", "int64"), ("F", 3), doc="its triangles (F, 3), every part"),
        "parts": ArraySpec(
            ("int8", "int16", "int32", "int64"),
            ("V",),
            required=False,
            doc="the user's part per vertex (V,): an index into ASSIGNABLE_PARTS, -1 = found automatically",
        ),
        "landmarks": ArraySpec(
            ("float32", "float64"),
            (68, 3),
            finite=False,
            required=False,
            doc="edited landmarks (68, 3), NaN unknown",
        ),
    },
)
def retarget(
    ctx: Context,
    vertices: np.ndarray,
    faces: np.ndarray,
    landmarks: np.ndarray | None = None,
    parts: np.ndarray | None = None,
    profile: str = "arkit",
) -> dict:
    """Register the loaded model's head onto the character and make the profile's keys on it.

    Returns ``deltas (K, V, 3)`` float32 offsets from the basis (the character's units), the key
    ``names`` with their FaceForge ``sources`` and the fitted ``identity`` code, the proposed or
    used ``landmarks (68, 3)``, the part of each vertex and the figures.
    """
    from faceforge.errors import FaceForgeError
    from faceforge.topology.parts import ASSIGNABLE_PARTS
    from faceforge.topology.profiles import load_profile
    from faceforge.topology.retarget import retarget_character

    model = _model(ctx)
    chosen = load_profile(profile, model.expression_names, list(model.metadata["regions"]))
    assigned = None
    if parts is not None:
        if parts.min(initial=-1) < -1 or parts.max(initial=-1) >= len(ASSIGNABLE_PARTS):
            raise FaceForgeError(
                f"part indices run from -1 (found) to {len(ASSIGNABLE_PARTS) - 1} ({ASSIGNABLE_PARTS})"
            )
        assigned = {
            kind: np.flatnonzero(parts == k) for k, kind in enumerate(ASSIGNABLE_PARTS) if (parts == k).any()
        }
    result = retarget_character(
        model,
        vertices.astype(np.float64),
        faces.astype(np.int64),
        chosen,
        landmarks,
        assigned_parts=assigned,
        progress=ctx.progress,
    )
    corr, keys = result.correspondence, result.keys
    return {
        "deltas": keys.deltas.astype(np.float32),
        "landmarks": corr.landmarks.astype(np.float32),
        "landmark_names": list(model.metadata["landmark_names"]["ibug68"]),
        "names": keys.names,
        # The FaceForge expression of each key and the identity fitted to the character: a take
        # is made on that identity's head and drives the keys through these (``animate.take``).
        "sources": [row.source for row in chosen.keys],
        # Where each vertex lies on the registered template and the frames' relation: physics on
        # the proxy is carried onto the character with these (``physics.simulate_character``).
        "map_faces": corr.to_template.faces.astype(np.int32),
        "map_weights": corr.to_template.weights.astype(np.float32),
        "on_face": corr.face.astype(np.int8),
        "to_character": [float(x) for x in corr.model_to_character.ravel()],
        "identity": [float(x) for x in corr.w_source],
        "profile": chosen.name,
        "parts": keys.figures["parts"],
        "registration": corr.figures,
        "transfer": {k: v for k, v in keys.figures.items() if k != "parts"},
        "timings_s": result.timings,
    }
