"""``faceforge model build|info|sample|fit`` and ``faceforge eval model``: BabyFlow face models."""

from __future__ import annotations

import argparse
from pathlib import Path

from faceforge.cli._common import (
    _ensure_dataset,
    _model_from_args,
    _print,
)
from faceforge.store import (
    default_model_path,
    ensure_model,
)


def _cmd_model_build(args: argparse.Namespace) -> int:
    from faceforge.progress import TerminalProgress

    data = str(_ensure_dataset(args.data, args.small, args.quiet or args.json))
    populations = ["all", "infant"] if args.population == "both" else [args.population]
    results = {}
    for population in populations:
        if args.out and len(populations) == 1:
            path = Path(args.out)
        elif args.out:
            path = Path(args.out) / f"babyflow-{population}.pt"
        else:
            path = default_model_path(population, args.small)
        bar = TerminalProgress(f"faceforge model build ({population})", enabled=not (args.quiet or args.json))
        try:
            results[population] = ensure_model(
                population, args.small, data, path, args.seed, args.epochs, args.force, progress=bar
            )
        finally:
            bar.close()
    lines = []
    for population, r in results.items():
        lines.append(
            f"{population}: {r['path']}{' (cached)' if r.get('cached') else ''}: "
            f"identity rank {r.get('rank_identity')} "
            f"({100 * r.get('identity_variance_kept', float('nan')):.2f}% of variance), expression rank "
            f"{r.get('rank_expression')} ({100 * r.get('expression_variance_kept', float('nan')):.2f}%), "
            f"{r.get('n_train_identities')} training identities, built in {r.get('total_seconds')} s"
        )
    _print(results, args.json, lines)
    return 0


def _cmd_model_info(args: argparse.Namespace) -> int:
    from faceforge.model import load_model

    path = Path(args.path) if args.path else default_model_path("all", args.small)
    info = load_model(path).info()
    info.pop("mirror", None)
    keys = ("name", "population", "n_vertices", "rank_identity", "rank_expression", "topology_hash", "units")
    _print({"path": str(path), **info}, args.json, [f"{k}: {info.get(k)}" for k in keys])
    return 0


def _cmd_model_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from faceforge.data.meshio import write_obj
    from faceforge.outputs import staged_outputs

    model, path = _model_from_args(args)
    drawn = model.sample(args.n, seed=args.seed, radius=args.radius, use_flows=not args.no_flows)
    with torch.no_grad():
        log_prob = model.log_prob(drawn["w_id"], drawn["w_ex"]).cpu().numpy()
    out = Path(args.out)
    faces = model.faces.cpu().numpy()
    names = [f"face_{k:03d}.obj" for k in range(len(drawn["vertices"]))]
    files = [str(out / name) for name in names]
    codes = {key: drawn[key].cpu().numpy().tolist() for key in ("w_id", "w_ex", "z_id", "z_ex")}
    with staged_outputs(out, [*names, "codes.npz"], force=args.force) as staging:
        for name, vertices in zip(names, drawn["vertices"].cpu().numpy(), strict=True):
            write_obj(staging / name, vertices, faces)
        np.savez(staging / "codes.npz", log_prob=log_prob, **{k: np.asarray(v) for k, v in codes.items()})
    payload = {
        "model": str(path),
        "files": files,
        "log_prob": log_prob.tolist(),
        "codes": str(out / "codes.npz"),
    }
    lines = [f"{f}  log p = {lp:.1f} nats" for f, lp in zip(files, log_prob, strict=True)]
    _print(payload, args.json, [*lines, f"codes: {out / 'codes.npz'}"])
    return 0


def _cmd_model_fit(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from faceforge.data.meshio import read_mesh, write_obj
    from faceforge.errors import FaceForgeError
    from faceforge.model.fitting import UNIT_SCALES, fit_scan
    from faceforge.outputs import check_output
    from faceforge.progress import TerminalProgress

    model, path = _model_from_args(args)

    def as_tensor(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values, dtype=torch.float32, device=model.device)[None]

    out = Path(args.out) if args.out else Path(args.scan).with_name(Path(args.scan).stem + "_fit.obj")
    check_output(out, inputs=[args.scan], force=args.force)  # before any work
    vertices, scan_faces = read_mesh(args.scan)
    scale = UNIT_SCALES[args.units]
    weights = None
    if args.weights:
        weights = np.loadtxt(args.weights, dtype=np.float64).reshape(-1)
    bar = TerminalProgress("faceforge model fit", enabled=not (args.quiet or args.json))
    other_topology = len(vertices) != model.n_vertices
    if other_topology and weights is not None:
        raise FaceForgeError("--weights needs a scan in the model's topology (one weight per model vertex)")
    try:
        scan = vertices * scale
        if other_topology:
            # Any topology: register the template onto the scan, fit to the registered skin.
            from faceforge.topology import Template, register_character

            registration = register_character(model, vertices, scan_faces, progress=bar)
            scan = registration.similarity.inverse(registration.registered) * scale
            weights = Template.from_model(model).skin.astype(np.float64)
        result = fit_scan(
            model, scan, weights, use_flows=not args.no_flows, prior_weight=args.prior_weight,
            progress=bar,
        )  # fmt: skip
    finally:
        bar.close()
    write_obj(out, result.vertices / scale, model.faces.cpu().numpy())
    surface_mm = None
    if other_topology:
        from faceforge.topology import Surface

        skin = weights > 0
        hit = Surface(vertices * scale, scan_faces).closest(result.vertices[skin])
        surface_mm = float(hit.distances.mean() * 1e3)
    payload = {
        "model": str(path),
        "scan": str(args.scan),
        "fitted": str(out),
        "error_mm": result.error_mm,
        "point_to_surface_mm": surface_mm,
        "w_id": result.w_id.tolist(),
        "w_ex": result.w_ex.tolist(),
        "z_id": None if result.z_id is None else result.z_id.tolist(),
        "z_ex": None if result.z_ex is None else result.z_ex.tolist(),
        "log_prob": float(model.log_prob(as_tensor(result.w_id), as_tensor(result.w_ex)).detach()[0]),
        "trust": result.trust,
    }
    lines = [f"fitted {args.scan} -> {out}: mean error {result.error_mm:.3f} mm", *trust_lines(result.trust)]
    if surface_mm is not None:
        lines.append(
            f"another topology ({len(vertices)} vertices): "
            f"the fitted skin lies {surface_mm:.3f} mm from the scan"
        )
    _print(payload, args.json, lines)
    return 0


def trust_lines(trust: dict | None) -> list[str]:
    """Human-readable lines of a fit's :func:`faceforge.model.trust.fit_trust` report."""
    if not trust:
        return []
    regions = ", ".join(f"{k} {v:.2f}" for k, v in sorted(trust["region_error_mm"].items()))
    lines = [f"residual per region (mm): {regions}"]
    limits = trust.get("limits")
    if not limits:
        return [*lines, trust.get("note", "")]
    lines.append(
        f"identity log-likelihood {trust['identity_log_prob']:.1f} nats "
        f"(limit {limits['identity_log_prob']:.1f}: the "
        f"{100 * limits.get('false_alarm', 0.05):g}th percentile of held-out faces)"
    )
    for row in trust["outside_regions"]:
        lines.append(
            f"outside the model's space: {row['region']} {row['error_mm']:.2f} mm, "
            f"{row['ratio_to_limit']:.1f}x its limit from held-out faces"
        )
    if trust["identity_unlikely"]:
        lines.append("outside the model's space: the identity is less likely than almost every held-out face")
    if trust["trusted"]:
        lines.append("the scan lies inside the model's space")
    return lines


def _cmd_eval_model(args: argparse.Namespace) -> int:
    from faceforge.model.evaluation import evaluate_models, format_report

    directory = _ensure_dataset(args.data, args.small, args.quiet or args.json)
    out = Path(args.out) if args.out else Path("out") / ("eval-model-small" if args.small else "eval-model")
    results = evaluate_models(directory, out, small=args.small, seed=args.seed, quiet=args.quiet or args.json)
    _print(results, args.json, format_report(results).splitlines())
    return 0


def _cmd_eval_coverage(args: argparse.Namespace) -> int:
    from faceforge.data.build import load_built_dataset
    from faceforge.model.evaluation.coverage import evaluate_coverage, format_coverage
    from faceforge.progress import TerminalProgress

    model, path = _model_from_args(args)
    directory = _ensure_dataset(args.data, args.small, args.quiet or args.json)
    bar = TerminalProgress("faceforge eval coverage", enabled=not (args.quiet or args.json))
    try:
        result = evaluate_coverage(
            model, load_built_dataset(directory), use_flows=not args.no_flows, progress=bar
        )
    finally:
        bar.close()
    result["model"]["path"] = str(path)
    _print(result, args.json, format_coverage(result))
    return 0


def _cmd_eval_reach(args: argparse.Namespace) -> int:
    from faceforge.data.build import load_built_dataset
    from faceforge.model.evaluation.reach import format_reach, leave_one_band_out
    from faceforge.progress import TerminalProgress

    directory = _ensure_dataset(args.data, args.small, args.quiet or args.json)
    bar = TerminalProgress("faceforge eval reach", enabled=not (args.quiet or args.json))
    try:
        result = leave_one_band_out(load_built_dataset(directory), rank_identity=args.rank, progress=bar)
    finally:
        bar.close()
    _print(result, args.json, format_reach(result))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the model command group to ``faceforge``'s subcommands."""
    model = commands.add_parser("model", help="build and inspect BabyFlow face models").add_subparsers(
        dest="model_command", required=True
    )
    model_build = model.add_parser("build", help="HOSVD bilinear model + flows from a dataset")
    model_build.add_argument("--data", help="dataset directory (default: the cached anny dataset)")
    model_build.add_argument("--small", action="store_true", help="small dataset, few epochs (tests, demo)")
    model_build.add_argument("--population", choices=["all", "infant", "both"], default="both")
    model_build.add_argument(
        "--out", help="model file (default: the FaceForge cache); with 'both', a directory"
    )
    model_build.add_argument("--seed", type=int, default=0)
    model_build.add_argument("--epochs", type=int, help="maximum flow training epochs")
    model_build.add_argument("--force", action="store_true", help="rebuild even if the file exists")
    model_build.add_argument("--json", action="store_true")
    model_build.add_argument("--quiet", action="store_true", help="no progress bar")
    model_build.set_defaults(func=_cmd_model_build)
    model_info = model.add_parser("info", help="what a model file holds")
    model_info.add_argument("path", nargs="?", help="model file (default: the cached all-ages model)")
    model_info.add_argument("--small", action="store_true")
    model_info.add_argument("--json", action="store_true")
    model_info.set_defaults(func=_cmd_model_info)

    model_sample = model.add_parser("sample", help="random faces (OBJ files) and their codes")
    model_sample.add_argument("--model", help="model file (default: the cached all-ages model)")
    model_sample.add_argument("--small", action="store_true", help="use the cached small model")
    model_sample.add_argument("--n", type=int, default=4, help="number of faces")
    model_sample.add_argument("--seed", type=int, default=0)
    model_sample.add_argument(
        "--radius", type=float, help="confidence level rho in (0, 1): project onto the Eq. 24 hyperellipsoid"
    )
    model_sample.add_argument("--no-flows", action="store_true", help="sample the bilinear Gaussian prior")
    model_sample.add_argument("--out", required=True, help="output directory")
    model_sample.add_argument("--force", action="store_true", help="replace files of an earlier run")
    model_sample.add_argument("--json", action="store_true")
    model_sample.set_defaults(func=_cmd_model_sample)

    model_fit = model.add_parser("fit", help="fit the model to a scan in its topology (OBJ or PLY)")
    model_fit.add_argument(
        "scan", help="scan mesh: the model's vertices in order, or any topology (registered first)"
    )
    model_fit.add_argument("--model", help="model file (default: the cached all-ages model)")
    model_fit.add_argument("--small", action="store_true", help="use the cached small model")
    model_fit.add_argument("--units", choices=("m", "cm", "mm", "in"), default="m", help="units of the scan")
    model_fit.add_argument("--weights", help="text file of per-vertex weights (0 masks a vertex out)")
    model_fit.add_argument("--prior-weight", type=float, default=0.01, help="gamma2 in [0, 1) (Eq. 22)")
    model_fit.add_argument("--no-flows", action="store_true", help="stop at the bilinear fit")
    model_fit.add_argument("--out", help="fitted mesh (default: <scan>_fit.obj)")
    model_fit.add_argument("--force", action="store_true", help="replace an existing output file")
    model_fit.add_argument("--json", action="store_true")
    model_fit.add_argument("--quiet", action="store_true")
    model_fit.set_defaults(func=_cmd_model_fit)


def add_eval_command(evaluate: argparse._SubParsersAction) -> None:
    """Add ``faceforge eval model``."""
    eval_model = evaluate.add_parser(
        "model", help="BabyFlow protocol: fitting errors, latent Gaussianity, samples"
    )
    eval_model.add_argument("--data", help="dataset directory (default: the cached anny dataset)")
    eval_model.add_argument("--small", action="store_true", help="small dataset and short training")
    eval_model.add_argument("--out", help="directory for plots and results (default: out/eval-model[-small])")
    eval_model.add_argument("--seed", type=int, default=0)
    eval_model.add_argument("--json", action="store_true")
    eval_model.add_argument("--quiet", action="store_true")
    eval_model.set_defaults(func=_cmd_eval_model)

    coverage = evaluate.add_parser(
        "coverage", help="a model's fit error on test vs out-of-distribution identities (minutes)"
    )
    coverage.add_argument("--model", help="model file (default: the cached default model)")
    coverage.add_argument("--data", help="dataset directory (default: the cached anny dataset)")
    coverage.add_argument("--small", action="store_true", help="the small dataset and model")
    coverage.add_argument("--no-flows", action="store_true", help="fit without the latent refinement")
    coverage.add_argument("--json", action="store_true")
    coverage.add_argument("--quiet", action="store_true")
    coverage.set_defaults(func=_cmd_eval_coverage)

    reach = evaluate.add_parser(
        "reach", help="leave-one-age-band-out projection errors of the identity space (minutes)"
    )
    reach.add_argument("--data", help="dataset directory (default: the cached anny dataset)")
    reach.add_argument("--small", action="store_true", help="the small dataset")
    reach.add_argument("--rank", type=int, default=60, help="identity rank (default: the default model's 60)")
    reach.add_argument("--json", action="store_true")
    reach.add_argument("--quiet", action="store_true")
    reach.set_defaults(func=_cmd_eval_reach)
