"""Face model methods: load a BabyFlow model, describe it, sample, decode and fit scans.

The loaded model is kept in the session state between calls (``model.load`` first). Arrays are
float32, metres; codes are the bilinear codes ``w`` (``w_id``, ``w_ex``) unless named ``z``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.server.protocol import ErrorCode, RpcError
from faceforge.server.registry import ArraySpec, Context, Param, method

__all__ = ["decode", "fit_scan", "info", "load", "sample"]


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
    from faceforge.cli import default_model_path
    from faceforge.model import load_model

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
    model = load_model(file)
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
        "seed": Param(int, default=0, minimum=0, doc="random seed"),
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
    }
    if result.z_id is not None:
        out["z_id"] = result.z_id.astype(np.float32)
        out["z_ex"] = result.z_ex.astype(np.float32)
    return out
