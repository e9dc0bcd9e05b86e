"""Physics methods: simulate a face over its animation and bake the result back on its shape keys.

The face comes as its basis ``neutral (V, 3)``, its shape keys' displacements ``keys (E, V, 3)`` and
the key values of each frame ``values (T, E)`` (its current animation, sampled by the add-on); the
targets are ``neutral + values @ keys``. The answer is the simulated skin baked on the same keys:
``values (T, E)``, the per-frame RMS residual ``rms_mm (T,)`` and the residual ``(T, V, 3)`` that
makes each frame exact. The physical face (material space, factorizations) is kept between calls
for the same neutral, resolution and contact setting.
"""

from __future__ import annotations

import hashlib

import numpy as np

from faceforge.server.registry import ArraySpec, Context, Param, method

__all__ = ["simulate", "simulate_character"]


def _physical_face(  # noqa: ANN202 - PhysicalFace
    ctx: Context,
    neutral: np.ndarray,
    faces: np.ndarray,
    jaw_open: np.ndarray | None,
    resolution_mm: float,
    contact: bool,
    device: str = "auto",
):
    from faceforge.data.annotations import load_annotations
    from faceforge.errors import FaceForgeError
    from faceforge.physics import PhysicalFace, PhysicsOptions

    key = hashlib.sha1(np.ascontiguousarray(neutral, dtype=np.float64).tobytes()).hexdigest()
    key += f"/{resolution_mm:.3f}/{contact}/{device}"
    cache = ctx.state.setdefault("physical_faces", {})
    if key not in cache:
        n = load_annotations()["n_vertices"]
        if len(neutral) != n:
            raise FaceForgeError(
                f"the face has {len(neutral)} vertices; physics needs the FaceForge head topology ({n})"
            )
        cache.clear()  # one face at a time: a 2 mm face holds ~1 GB of factors
        options = PhysicsOptions(contact=contact, device=device)
        cache[key] = PhysicalFace(
            neutral, faces, resolution_mm * 1e-3, options, jaw_open=jaw_open, progress=ctx.progress
        )
    return cache[key]


@method(
    "physics.simulate",
    params={
        "resolution_mm": Param(float, default=2.0, minimum=0.5, maximum=20.0, doc="lattice spacing (mm)"),
        "contact": Param(bool, default=True, doc="resolve lip-lip and lip-teeth collisions (IPC)"),
        "gravity": Param(list, default=None, items=(int, float), doc="gravity (m/s^2) in the face's frame"),
        "jaw_scale": Param(float, default=1.0, minimum=0.5, maximum=1.5, doc="scale of the jaw bone"),
        "jaw_key": Param(int, default=-1, minimum=-1, doc="index of the jawOpen key (marks the jaw side)"),
        "device": Param(str, default="auto", doc="where the solves run: auto (a CUDA GPU if any), cpu, cuda"),
    },
    arrays={
        "neutral": ArraySpec(("float32", "float64"), ("V", 3), doc="the face's basis (V, 3), metres"),
        "faces": ArraySpec(("int32", "int64"), ("F", 3), doc="the face's triangles (F, 3)"),
        "keys": ArraySpec(("float32", "float64"), ("E", "V", 3), doc="shape-key displacements (E, V, 3)"),
        "values": ArraySpec(("float32", "float64"), ("T", "E"), doc="key values per frame (T, E)"),
        "paralysis": ArraySpec(
            ("float32", "float64"), ("V",), required=False, doc="paralysis weight per vertex in [0, 1]"
        ),
    },
)
def simulate(
    ctx: Context,
    neutral: np.ndarray,
    faces: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray,
    paralysis: np.ndarray | None = None,
    resolution_mm: float = 2.0,
    contact: bool = True,
    gravity: list | None = None,
    jaw_scale: float = 1.0,
    jaw_key: int = -1,
    device: str = "auto",
) -> dict:
    """Simulate the face's animation and bake it on its keys (see the module docstring)."""
    from faceforge.animate.motion import project_to_keys
    from faceforge.errors import FaceForgeError

    neutral = np.asarray(neutral, dtype=np.float64)
    keys = np.asarray(keys, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 1:
        raise FaceForgeError("the frame range is empty")
    if gravity is not None and len(gravity) != 3:
        raise FaceForgeError("gravity needs three components")
    from faceforge.physics.solver import resolve_device

    resolve_device(device)  # an unknown or missing device fails before any work
    jaw_open = keys[jaw_key] if 0 <= jaw_key < len(keys) else None
    face = _physical_face(
        ctx, neutral, np.asarray(faces, dtype=np.int64), jaw_open, resolution_mm, contact, device
    )
    targets = neutral[None] + np.tensordot(values, keys, axes=1)
    result = face.simulate(
        targets,
        paralysis=paralysis,
        jaw_scale=jaw_scale,
        gravity=None if gravity is None else np.asarray(gravity, dtype=np.float64),
        progress=ctx.progress,
    )
    dense = result.frames - neutral[None]
    baked, rms = project_to_keys(keys, dense)
    residual = (dense - np.tensordot(baked, keys, axes=1)).astype(np.float32)
    return {
        "values": baked,
        "rms_mm": rms,
        "residual": residual,
        "frames": int(len(baked)),
        "v2v_mm": result.v2v_mm,
        "seconds": result.seconds,
        "summary": {**result.summary(), **face.material.summary(), "setup_seconds": face.setup_seconds},
    }


@method(
    "physics.simulate_character",
    params={
        "identity": Param(list, items=(int, float), doc="the identity code fitted to the character"),
        "sources": Param(list, items=str, doc="the FaceForge expressions of the values' columns"),
        "to_character": Param(list, items=(int, float), doc="3x3 displacement map model -> character (9)"),
        "resolution_mm": Param(float, default=2.0, minimum=0.5, maximum=20.0, doc="lattice spacing (mm)"),
        "contact": Param(bool, default=True, doc="resolve lip-lip and lip-teeth collisions (IPC)"),
        "gravity": Param(list, default=None, items=(int, float), doc="gravity (m/s^2), character frame"),
        "jaw_scale": Param(float, default=1.0, minimum=0.5, maximum=1.5, doc="scale of the jaw bone"),
        "device": Param(str, default="auto", doc="where the solves run: auto (a CUDA GPU if any), cpu, cuda"),
    },
    arrays={
        "values": ArraySpec(("float32", "float64"), ("T", "E"), doc="source values per frame (T, E)"),
        "map_faces": ArraySpec(("int32", "int64"), ("V",), doc="template triangle under each vertex"),
        "map_weights": ArraySpec(("float32", "float64"), ("V", 3), doc="barycentric coordinates on it"),
        "on_face": ArraySpec(("bool", "int8", "uint8"), ("V",), doc="vertices the template covers"),
    },
)
def simulate_character(
    ctx: Context,
    identity: list,
    sources: list,
    to_character: list,
    values: np.ndarray,
    map_faces: np.ndarray,
    map_weights: np.ndarray,
    on_face: np.ndarray,
    resolution_mm: float = 2.0,
    contact: bool = True,
    gravity: list | None = None,
    jaw_scale: float = 1.0,
    device: str = "auto",
) -> dict:
    """A retargeted character's animation simulated on its FaceForge proxy: ``corrections (T, V,
    3)`` (character units) to add to its shape-key pose, with the proxy's figures."""
    from faceforge.errors import FaceForgeError
    from faceforge.physics.characters import CharacterMap, proxy_head, simulate_character
    from faceforge.physics.solver import resolve_device
    from faceforge.server.methods.model import _model

    if len(to_character) != 9:
        raise FaceForgeError("to_character needs nine numbers (a 3x3 matrix)")
    if gravity is not None and len(gravity) != 3:
        raise FaceForgeError("gravity needs three components")
    if values.shape[1] != len(sources):
        raise FaceForgeError(f"values have {values.shape[1]} columns for {len(sources)} sources")
    resolve_device(device)
    model = _model(ctx)
    w = np.asarray(identity, dtype=np.float32)
    neutral, keys = proxy_head(model, w, sources)
    jaw = keys[sources.index("jawOpen")] if "jawOpen" in sources else None
    triangles = model.faces.cpu().numpy().astype(np.int64)
    face = _physical_face(ctx, neutral, triangles, jaw, resolution_mm, contact, device)
    character_map = CharacterMap(
        np.asarray(map_faces, dtype=np.int64),
        np.asarray(map_weights, dtype=np.float64),
        np.asarray(on_face).astype(bool),
        np.asarray(to_character, dtype=np.float64).reshape(3, 3),
    )
    corrections, result = simulate_character(
        model,
        w,
        sources,
        values,
        character_map,
        physical_face=face,
        gravity=None if gravity is None else np.asarray(gravity, dtype=np.float64),
        jaw_scale=jaw_scale,
        progress=ctx.progress,
    )
    return {
        "corrections": corrections,
        "frames": int(len(corrections)),
        "v2v_mm": result.v2v_mm,
        "seconds": result.seconds,
        "summary": {**result.summary(), **face.material.summary(), "setup_seconds": face.setup_seconds},
    }
