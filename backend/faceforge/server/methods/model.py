"""Face model methods: load a BabyFlow model, describe it, sample, decode and fit scans.

The loaded model is kept in the session state between calls (``model.load`` first). Arrays are
float32, metres; codes are the bilinear codes ``w`` (``w_id``, ``w_ex``) unless named ``z``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.server.protocol import ErrorCode, RpcError
from faceforge.server.registry import MAX_SEED, ArraySpec, Context, Param, method

__all__ = [
    "age_groups",
    "build",
    "decode",
    "expression_weights",
    "face",
    "fit_scan",
    "info",
    "load",
    "mix",
    "rig_scan",
    "sample",
]


def _model(ctx: Context):  # noqa: ANN202 - FaceModel
    model = ctx.state.get("model")
    if model is None:
        raise RpcError(ErrorCode.MODEL_MISSING, "no face model loaded: call model.load first")
    return model


@method(
    "model.load",
    params={
        "path": Param(
            str, default=None, doc="absolute path of a model file (default: the cached all-ages model)"
        ),
        "population": Param(str, default="all", doc="with no path: 'all' or 'infant'"),
        "small": Param(bool, default=False, doc="with no path: the model of the small dataset"),
    },
)
def load(ctx: Context, path: str | None = None, population: str = "all", small: bool = False) -> dict:
    """Load a model file into the session; the result is :meth:`FaceModel.info`."""
    from faceforge.model import load_model
    from faceforge.store import default_model_path

    if path is None:
        if population not in ("all", "infant"):
            raise RpcError(
                ErrorCode.INVALID_PARAMS, f"population must be 'all' or 'infant', got {population!r}"
            )
        file = default_model_path(population, small)
    else:
        file = Path(path).expanduser()
        if not file.is_absolute():
            raise RpcError(ErrorCode.INVALID_PARAMS, f"'path' must be an absolute path, got {path!r}")
    if not file.is_file():
        raise RpcError(
            ErrorCode.MODEL_MISSING,
            f"no model file at {file}: build one with `faceforge model build{' --small' if small else ''}`",
            {"path": str(file)},
        )
    model = load_model(file, map_location=ctx.state.get("device", "cpu"))
    ctx.state["model"] = model
    ctx.state["model_path"] = str(file)
    return {"path": str(file), **_info(model)}


def _info(model) -> dict:  # noqa: ANN001
    info = model.info()
    info.pop("mirror", None)
    info.pop("identity_spectrum", None)
    info.pop("expression_spectrum", None)
    return info


@method("model.info")
def info(ctx: Context) -> dict:
    """Format, sizes, expression and landmark names of the loaded model."""
    return {"path": ctx.state.get("model_path"), **_info(_model(ctx))}


@method(
    "model.sample",
    params={
        "n": Param(int, default=1, minimum=1, maximum=10_000, doc="number of faces"),
        "seed": Param(int, default=0, minimum=0, maximum=MAX_SEED, doc="random seed"),
        "radius": Param(float, default=None, minimum=1e-6, maximum=0.999999, doc="Eq. 24 confidence level"),
        "use_flows": Param(
            bool, default=True, doc="sample through the flows (BabyFlow) or the Gaussian prior"
        ),
    },
)
def sample(
    ctx: Context, n: int = 1, seed: int = 0, radius: float | None = None, use_flows: bool = True
) -> dict:
    """Random faces: ``vertices (n, V, 3)``, ``faces (F, 3)`` and their codes."""
    model = _model(ctx)
    out = model.sample(n, seed=seed, radius=radius, use_flows=use_flows)
    result = {k: v.cpu().numpy().astype(np.float32) for k, v in out.items()}
    result["faces"] = model.faces.cpu().numpy().astype(np.int32)
    return result


@method(
    "model.decode",
    params={
        "expression": Param(str, default=None, doc="a named expression instead of w_ex (e.g. 'jawOpen')")
    },
    arrays={
        "w_id": ArraySpec(("float32", "float64"), ("N", None), doc="identity codes (N, r_id)"),
        "w_ex": ArraySpec(
            ("float32", "float64"), (None, None), required=False, doc="expression codes (N or 1, r_ex)"
        ),
    },
)
def decode(
    ctx: Context, w_id: np.ndarray, w_ex: np.ndarray | None = None, expression: str | None = None
) -> dict:
    """Vertices ``(N, V, 3)`` of identity codes under expression codes or a named expression."""
    import torch

    model = _model(ctx)
    if w_id.shape[1] != model.rank_identity:
        raise RpcError(
            ErrorCode.INVALID_PARAMS, f"w_id must have {model.rank_identity} columns", {"reason": "shape"}
        )
    if expression is not None:
        if expression not in model.expression_names:
            raise RpcError(
                ErrorCode.INVALID_PARAMS, f"unknown expression {expression!r}", {"param": "expression"}
            )
        codes = model.expression_code(expression)[None]
    elif w_ex is not None:
        if w_ex.shape[1] != model.rank_expression or len(w_ex) not in (1, len(w_id)):
            raise RpcError(
                ErrorCode.INVALID_PARAMS,
                f"w_ex must have shape (1 or {len(w_id)}, {model.rank_expression})",
                {"reason": "shape"},
            )
        codes = torch.as_tensor(w_ex, dtype=torch.float32)
    else:
        codes = model.neutral_expression[None]
    with torch.no_grad():
        vertices = model.decode(torch.as_tensor(w_id, dtype=torch.float32), codes)
    return {"vertices": vertices.cpu().numpy().astype(np.float32)}


@method(
    "model.fit_scan",
    params={
        "use_flows": Param(bool, default=True, doc="refine in the flows' latent space"),
        "prior_weight": Param(float, default=0.01, minimum=0.0, maximum=0.99, doc="gamma2 of Eq. 20"),
    },
    arrays={
        "scan": ArraySpec(
            ("float32", "float64"), ("V", 3), finite=False, doc="scan vertices (V, 3), NaN = missing"
        ),
        "weights": ArraySpec(("float32", "float64"), ("V",), required=False, doc="per-vertex weights (V,)"),
    },
)
def fit_scan(
    ctx: Context,
    scan: np.ndarray,
    weights: np.ndarray | None = None,
    use_flows: bool = True,
    prior_weight: float = 0.01,
) -> dict:
    """Fit the loaded model to a scan in its topology (Procrustes + codes); reports progress."""
    from faceforge.model import fit_scan as fit

    model = _model(ctx)
    if scan.shape[0] != model.n_vertices:
        raise RpcError(
            ErrorCode.INVALID_PARAMS,
            f"the scan has {scan.shape[0]} vertices, the model's topology has {model.n_vertices}",
            {"reason": "topology"},
        )
    result = fit(model, scan, weights, use_flows=use_flows, prior_weight=prior_weight, progress=ctx.progress)
    out = {
        "vertices": result.vertices,
        "w_id": result.w_id.astype(np.float32),
        "w_ex": result.w_ex.astype(np.float32),
        "rotation": result.rotation.astype(np.float32),
        "translation": result.translation.astype(np.float32),
        "error_mm": result.error_mm,
        "trust": result.trust,
    }
    if result.z_id is not None:
        out["z_id"] = result.z_id.astype(np.float32)
        out["z_ex"] = result.z_ex.astype(np.float32)
    return out


@method(
    "model.build",
    params={
        "population": Param(str, default="all", doc="'all' or 'infant'"),
        "small": Param(bool, default=False, doc="the small dataset and short training (about a minute)"),
        "force": Param(bool, default=False, doc="rebuild even if an identical model is cached"),
        "load": Param(bool, default=True, doc="load the model into the session afterwards"),
    },
)
def build(
    ctx: Context, population: str = "all", small: bool = False, force: bool = False, load: bool = True
) -> dict:
    """Build the default model (and the default dataset first if missing), or reuse an identical
    cached one; progress covers both stages and cancel stops either without a half-written file."""
    from faceforge.model import load_model
    from faceforge.store import ensure_model

    if population not in ("all", "infant"):
        raise RpcError(ErrorCode.INVALID_PARAMS, f"population must be 'all' or 'infant', got {population!r}")
    result = ensure_model(population, small, force=force, progress=ctx.progress)
    result = {k: v for k, v in result.items() if k in ("path", "cached", "rank_identity", "rank_expression",
                                                       "n_train_identities", "total_seconds")}  # fmt: skip
    if load:
        model = load_model(result["path"], map_location=ctx.state.get("device", "cpu"))
        ctx.state["model"] = model
        ctx.state["model_path"] = result["path"]
        result["info"] = _info(model)
    return result


_Z_ID = ArraySpec(("float32", "float64"), ("N", None), required=False, doc="latent identity codes (N, r_id)")


@method(
    "model.face",
    params={
        "seed": Param(
            int, default=0, minimum=0, maximum=MAX_SEED, doc="seed of the identity draw (without z_id)"
        ),
        "radius": Param(float, default=None, minimum=1e-6, maximum=0.999999, doc="Eq. 24 confidence level"),
        "parts": Param(bool, default=True, doc="eyeballs, teeth and eyelashes with their keys"),
    },
    arrays={
        "z_id": _Z_ID,
        "leading": ArraySpec(
            ("float32", "float64"), ("K",), required=False, doc="slider values of the first latent dimensions"
        ),
    },
)
def face(
    ctx: Context,
    seed: int = 0,
    radius: float | None = None,
    z_id: np.ndarray | None = None,
    leading: np.ndarray | None = None,
    parts: bool = True,
) -> dict:
    """Expression rigs of identities: the neutral faces ``neutral (N, V, 3)`` (shape-key basis)
    and every named expression ``keys (N, E, V, 3)``, with ``names``, ``faces (F, 3)`` and codes;
    with ``parts`` each head's eyeballs, teeth and eyelashes
    (:func:`faceforge.heads.payload.heads_payload`).

    Without ``z_id`` one identity is drawn from ``seed`` (``radius``, ``leading`` as in
    :func:`faceforge.model.rig.sample_identity`).
    """
    from faceforge.model import rig

    model = _model(ctx)
    if z_id is None:
        z_id = rig.sample_identity(model, seed, radius, leading)[None]
    elif z_id.shape[1] != model.rank_identity:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"z_id must have {model.rank_identity} columns",
                       {"reason": "shape"})  # fmt: skip
    names = rig.key_names(model)
    # Parts (eyes, teeth, lashes) add about 30 % to a rig's arrays.
    size = int(len(z_id) * (len(names) + 1) * model.n_vertices * 12 * (1.3 if parts else 1.0))
    if size > ctx.max_array_bytes:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"{len(z_id)} rigs are {size >> 20} MiB, over the array "
                       "limit: ask for fewer identities per call", {"reason": "size"})  # fmt: skip
    w_id = rig.identity_codes(model, z_id)
    neutral, keys = rig.expression_rig(model, w_id)
    ctx.progress(1, 1, "decoded")
    faces = model.faces.cpu().numpy().astype(np.int32)
    result = {
        "names": names,
        "neutral": neutral,
        "keys": keys,
        "faces": faces,
        "z_id": np.asarray(z_id, dtype=np.float32),
        "w_id": w_id.cpu().numpy().astype(np.float32),
    }
    if parts:
        from faceforge.heads.assets import stored_base_vertex_indices
        from faceforge.heads.payload import heads_payload, surface_payload

        regions = {k: np.asarray(v, dtype=np.int64) for k, v in model.metadata.get("regions", {}).items()}
        needed = {"jaw", "eye_left", "eye_right", "tongue"}
        if needed <= set(regions) and model.n_vertices == len(stored_base_vertex_indices()) and len(z_id):
            for meta, arrays in (
                heads_payload(neutral, keys, names, faces, regions),
                surface_payload(faces, regions, model.n_vertices),
            ):
                result.update(meta)
                result.update(arrays)
    return result


def _one_identity(model, z_id: np.ndarray):  # noqa: ANN001, ANN202
    from faceforge.model import rig

    if z_id.shape != (1, model.rank_identity):
        raise RpcError(ErrorCode.INVALID_PARAMS, f"z_id must have shape (1, {model.rank_identity})",
                       {"reason": "shape"})  # fmt: skip
    return rig.identity_codes(model, z_id)


@method(
    "model.expression_weights",
    params={
        "seed": Param(int, default=0, minimum=0, maximum=MAX_SEED, doc="seed of the expression draw"),
        "radius": Param(float, default=None, minimum=1e-6, maximum=0.999999, doc="Eq. 24 confidence level"),
    },
    arrays={"z_id": ArraySpec(("float32", "float64"), (1, None), doc="latent identity code (1, r_id)")},
)
def expression_weights(ctx: Context, z_id: np.ndarray, seed: int = 0, radius: float | None = None) -> dict:
    """A random expression ``z_ex ~ N(0, I)`` through the expression flow, on identity ``z_id``:
    the exact face ``vertices (V, 3)`` and the shape-key ``values (E,)`` in [0, 1] that best
    reproduce it, with the reproduction's RMS and maximum error in mm."""
    import torch

    from faceforge.model import rig
    from faceforge.model.face_model import project_to_radius

    model = _model(ctx)
    w_id = _one_identity(model, z_id)
    generator = torch.Generator().manual_seed(int(seed))
    z_ex = torch.randn(1, model.rank_expression, generator=generator)
    if radius is not None:
        z_ex = project_to_radius(z_ex, radius)
    with torch.no_grad():
        w_ex = model.expression_flow.inverse(z_ex.to(model.device))
        vertices = model.decode(w_id, w_ex)[0]
    values, rms, worst = rig.expression_weights(model, w_id, w_ex)
    return {
        "names": rig.key_names(model),
        "values": values,
        "rms_mm": rms,
        "max_mm": worst,
        "vertices": vertices.cpu().numpy().astype(np.float32),
        "z_ex": z_ex.cpu().numpy().astype(np.float32),
    }


@method(
    "model.mix",
    params={
        "age_group": Param(str, default=None, doc="target identity: an age group's mean face (cross-age)"),
        "intensity": Param(float, default=1.0, minimum=0.0, maximum=3.0, doc="delta of Eq. 7"),
    },
    arrays={
        "z_id": ArraySpec(("float32", "float64"), (1, None), required=False, doc="identity (1, r_id)"),
        "values": ArraySpec(("float32", "float64"), ("E",), doc="shape-key values (E,), order of names"),
    },
)
def mix(
    ctx: Context,
    values: np.ndarray,
    z_id: np.ndarray | None = None,
    age_group: str | None = None,
    intensity: float = 1.0,
) -> dict:
    """The face ``vertices (V, 3)`` of a shape-key mix (an exact expression code, see
    :func:`faceforge.model.rig.mix_expression`) on identity ``z_id`` or on an age group's mean
    identity, scaled by BabyFlow's intensity: a cross-age expression transfer."""
    from faceforge.model import rig

    model = _model(ctx)
    if (z_id is None) == (age_group is None):
        raise RpcError(ErrorCode.INVALID_PARAMS, "give exactly one of z_id and age_group")
    w_id = rig.age_group_identity(model, age_group)[None] if age_group else _one_identity(model, z_id)
    w_ex = rig.mix_expression(model, values)
    vertices = model.cross_age_transfer(w_ex[None], w_id, intensity)[0]
    return {"vertices": vertices.cpu().numpy().astype(np.float32)}


@method(
    "model.rig_scan",
    params={"use_flows": Param(bool, default=True, doc="refine the fit in the flows' latent space")},
    arrays={
        "scan": ArraySpec(("float32", "float64"), ("V", 3), finite=False, doc="scan vertices, NaN = missing"),
        "weights": ArraySpec(("float32", "float64"), ("V",), required=False, doc="per-vertex weights (V,)"),
    },
)
def rig_scan(
    ctx: Context, scan: np.ndarray, weights: np.ndarray | None = None, use_flows: bool = True
) -> dict:
    """Fit a scan in the model's topology and build its own expression rig: ``neutral (V, 3)``
    (the scan without its expression), ``keys (E, V, 3)``, the ``values (E,)`` that give the scan's
    expression back, and the fit's codes and error."""
    import torch

    from faceforge.model import rig

    model = _model(ctx)
    if scan.shape[0] != model.n_vertices:
        raise RpcError(
            ErrorCode.INVALID_PARAMS,
            f"the mesh has {scan.shape[0]} vertices, the model's topology has {model.n_vertices}",
            {"reason": "topology"},
        )
    result = rig.rig_scan(model, scan, weights, use_flows=use_flows, progress=ctx.progress)
    z_id = result.fit.z_id
    if z_id is None:
        with torch.no_grad():
            z_id = model.identity_flow(torch.as_tensor(result.fit.w_id, device=model.device)[None])[0]
            z_id = z_id.cpu().numpy()
    return {
        "names": rig.key_names(model),
        "neutral": result.neutral,
        "keys": result.keys,
        "values": result.values,
        "z_id": np.asarray(z_id, dtype=np.float32).reshape(1, -1),
        "w_id": result.fit.w_id.astype(np.float32).reshape(1, -1),
        "error_mm": result.fit.error_mm,
        "trust": result.fit.trust,
    }


@method("model.age_groups")
def age_groups(ctx: Context) -> dict:
    """The model's age groups (youngest first): ``names``, ``years`` ``[lo, hi)``, training
    identity ``counts`` and ``z_id (G, r_id)``, the latent code of each group's mean identity."""
    import torch

    model = _model(ctx)
    groups = model.metadata.get("age_groups") or {}
    if not groups:
        raise RpcError(ErrorCode.MODEL_MISSING, "this model has no age groups: rebuild it with "
                       "`faceforge model build --force`")  # fmt: skip
    names = list(groups)
    w_id = torch.tensor([groups[n]["w_id"] for n in names], dtype=torch.float32, device=model.device)
    with torch.no_grad():
        z_id = model.identity_flow(w_id)[0]
    return {
        "names": names,
        "years": [groups[n]["years"] for n in names],
        "counts": [groups[n]["count"] for n in names],
        "z_id": z_id.cpu().numpy().astype(np.float32),
    }
