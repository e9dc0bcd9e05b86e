"""Motion methods: generated takes (Motion3DGAN + S2D-Dec), interpolated takes, transferred motion.

Each call names the motion model file (``path``; default: the cached one) and is kept loaded
between calls. The face comes as its basis ``neutral (V, 3)`` and its shape keys' displacements
``keys (E, V, 3)``; the answer is the take baked on those keys: ``values (T, E)`` in [0, 1], the
per-frame RMS residual ``rms_mm (T,)`` and, with ``exact``, the residual itself ``(T, V, 3)``.

A retargeted character (any topology) comes instead as the ``identity`` code fitted to it and the
FaceForge expressions its keys were made from (``sources``): the take is made on that identity's
FaceForge head (its proxy, in the model's topology) and baked on the proxy's keys of those
expressions, whose values then drive the character's keys of the same sources. The loaded face
model decodes the proxy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.server.protocol import ErrorCode, RpcError
from faceforge.server.registry import MAX_SEED, ArraySpec, Context, Param, method

__all__ = ["build", "take", "transfer"]

_FACE = {
    "neutral": ArraySpec(
        ("float32", "float64"), ("V", 3), required=False, doc="the face's basis (V, 3), metres"
    ),
    "keys": ArraySpec(
        ("float32", "float64"), ("E", "V", 3), required=False, doc="shape-key displacements (E, V, 3)"
    ),
}
_COMMON = {
    "identity": Param(
        list, default=None, items=(int, float), doc="a retargeted character's identity code (no arrays)"
    ),
    "sources": Param(list, default=None, items=str, doc="the FaceForge expressions of its keys"),
    "path": Param(str, default=None, doc="absolute motion model path (default: the cached one)"),
    "exact": Param(bool, default=False, doc="also return what the keys cannot express"),
    "intensity": Param(float, default=1.0, minimum=0.0, maximum=3.0, doc="scale of the motion"),
}


def _motion_model(ctx: Context, path: str | None):  # noqa: ANN202 - MotionModel
    from faceforge.animate.bundle import load_motion_model
    from faceforge.store import default_motion_path

    if path is None:
        candidates = [default_motion_path(False), default_motion_path(True)]
        file = next((c for c in candidates if c.is_file()), candidates[0])
    else:
        file = Path(path).expanduser()
        if not file.is_absolute():
            raise RpcError(ErrorCode.INVALID_PARAMS, f"'path' must be an absolute path, got {path!r}")
    if not file.is_file():
        raise RpcError(
            ErrorCode.MODEL_MISSING,
            f"no motion model at {file}: build one with `faceforge animate build`",
            {"path": str(file)},
        )
    if ctx.state.get("motion_model_path") != str(file):
        ctx.state["motion_model"] = load_motion_model(file)
        ctx.state["motion_model_path"] = str(file)
    return ctx.state["motion_model"]


def _face_rig(
    ctx: Context,
    neutral: np.ndarray | None,
    keys: np.ndarray | None,
    identity: list | None,
    sources: list | None,
    exact: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The face's ``neutral (V, 3)`` and ``keys (E, V, 3)``: given, or a character's proxy."""
    if identity is None:
        if neutral is None or keys is None:
            raise RpcError(
                ErrorCode.INVALID_PARAMS, "give the face's 'neutral' and 'keys', or a character's 'identity'"
            )
        return neutral, keys
    if neutral is not None or keys is not None:
        raise RpcError(ErrorCode.INVALID_PARAMS, "give either the face's arrays or an 'identity', not both")
    if not sources:
        raise RpcError(ErrorCode.INVALID_PARAMS, "a character's take needs the 'sources' of its keys")
    if exact:
        raise RpcError(
            ErrorCode.INVALID_PARAMS,
            "an exact take is made on a FaceForge face; a character's take drives its shape keys",
        )
    from faceforge.server.methods.model import _model
    from faceforge.topology.transfer import proxy_rig

    return proxy_rig(_model(ctx), np.asarray(identity, dtype=np.float32), sources)


def _bake(ctx: Context, dense: np.ndarray, keys: np.ndarray, exact: bool) -> dict:
    from faceforge.animate.motion import project_to_keys

    ctx.progress(1, 2, f"projecting {len(dense)} frames on {len(keys)} shape keys")
    values, rms = project_to_keys(keys, dense)
    out = {"values": values, "rms_mm": rms, "frames": int(len(values))}
    if exact:
        out["residual"] = (dense - np.tensordot(values, keys, axes=1)).astype(np.float32)
    ctx.progress(2, 2, "baked")
    return out


@method(
    "animate.take",
    params={
        **_COMMON,
        "label": Param(str, doc="expression label (one of the model's 12 CoMA labels)"),
        "seed": Param(int, default=0, minimum=0, maximum=MAX_SEED, doc="seed of the generated motion"),
        "onset_frames": Param(int, default=30, minimum=2, maximum=100_000, doc="neutral -> apex frames"),
        "hold_frames": Param(int, default=0, minimum=0, maximum=100_000, doc="apex hold frames"),
        "release_frames": Param(int, default=0, minimum=0, maximum=100_000, doc="apex -> neutral frames"),
        "other_label": Param(str, default=None, doc="second motion of a geodesic blend"),
        "other_seed": Param(int, default=0, minimum=0, maximum=MAX_SEED, doc="its seed"),
        "blend": Param(float, default=0.0, minimum=0.0, maximum=1.0, doc="position on the geodesic"),
    },
    arrays=_FACE,
)
def take(
    ctx: Context,
    label: str,
    neutral: np.ndarray | None = None,
    keys: np.ndarray | None = None,
    identity: list | None = None,
    sources: list | None = None,
    path: str | None = None,
    exact: bool = False,
    intensity: float = 1.0,
    seed: int = 0,
    onset_frames: int = 30,
    hold_frames: int = 0,
    release_frames: int = 0,
    other_label: str | None = None,
    other_seed: int = 0,
    blend: float = 0.0,
) -> dict:
    """A generated take on the face's shape keys (see the module docstring)."""
    neutral, keys = _face_rig(ctx, neutral, keys, identity, sources, exact)
    model = _motion_model(ctx, path)
    ctx.progress(0, 2, "generating the motion")
    motion = model.landmark_motion(label, seed, other_label, other_seed, blend)
    dense = model.take(neutral, motion, onset_frames, hold_frames, release_frames, intensity)
    return _bake(ctx, dense, keys, exact)


@method(
    "animate.transfer",
    params=_COMMON,
    arrays={
        **_FACE,
        "source": ArraySpec(
            ("float32", "float64"), ("T", None, 3), doc="source landmarks (T, 68, 3) or meshes (T, V, 3)"
        ),
    },
)
def transfer(
    ctx: Context,
    source: np.ndarray,
    neutral: np.ndarray | None = None,
    keys: np.ndarray | None = None,
    identity: list | None = None,
    sources: list | None = None,
    path: str | None = None,
    exact: bool = False,
    intensity: float = 1.0,
) -> dict:
    """Another face's motion (frame 0 neutral) on this face's shape keys, through S2D-Dec."""
    neutral, keys = _face_rig(ctx, neutral, keys, identity, sources, exact)
    model = _motion_model(ctx, path)
    dense = model.transfer(source, neutral, intensity)
    return _bake(ctx, dense, keys, exact)


@method(
    "animate.build",
    params={
        "small": Param(bool, default=False, doc="the small dataset and tiny networks (a minute)"),
        "force": Param(bool, default=False, doc="rebuild even if an identical model is cached"),
    },
)
def build(ctx: Context, small: bool = False, force: bool = False) -> dict:
    """Build (or reuse) the default motion model, with progress; cancel leaves no file."""
    from faceforge.store import ensure_motion_model

    return ensure_motion_model(small=small, force=force, progress=ctx.progress)
