"""``faceforge bench serve|addon|animate|simulate|model``: FaceForge's speed."""

from __future__ import annotations

import argparse
from pathlib import Path

from faceforge.cli._common import (
    _DEVICE_HELP,
    _blender_output_to_stderr,
    _print,
)
from faceforge.errors import FaceForgeError
from faceforge.store import (
    default_model_path,
    default_motion_path,
)


def _cmd_bench_serve(args: argparse.Namespace) -> int:
    from faceforge.server.bench import bench_serve, format_bench

    payload = bench_serve(pings=args.pings, transfers=args.transfers, n_vertices=args.vertices)
    _print(payload, args.json, format_bench(payload))
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


def _cmd_bench_animate(args: argparse.Namespace) -> int:
    from faceforge.animate.bench import bench_animate, format_bench

    path = Path(args.motion) if args.motion else default_motion_path(args.small)
    if not path.is_file():
        raise FaceForgeError(f"no motion model at {path}: build one with `faceforge animate build`")
    with _blender_output_to_stderr(args.json):
        payload = bench_animate(str(path), repeats=args.repeats)
    _print(payload, args.json, format_bench(payload))
    return 0


def _corner_line(corner: dict) -> str:
    return (
        f"mouth corners (jawOpen 0.3, lips pressed 1.5, contact): V2V {corner['v2v_mm']:.3f} mm, max "
        f"{corner['max_mm']:.2f}, 99th percentile {corner['p99_mm']:.2f}, lip roughness "
        f"{corner['lip_roughness_mm']:.2f} (99th percentile {corner['lip_roughness_p99_mm']:.2f}) mm, "
        f"{corner['penetrations']} intersecting mouth pairs"
    )


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
        _corner_line(payload["mouth_corners"]),
        "resolution (mm) | elements | V2V (mm) | max | 99th pct | lip roughness, 99th pct (worst expression)",
    ]
    for res, row in payload["v2v_by_resolution"].items():
        lines.append(
            f"{res:>15} | {row['elements']:>8} | {row['v2v_mm']:8.3f} | {row['max_mm']:.2f} | "
            f"{row['p99_mm']:.2f} | {row['lip_roughness_mm']:.2f}, {row['lip_roughness_p99_mm']:.2f}"
        )
    _print(payload, args.json, lines)
    return 0


def _cmd_bench_model(args: argparse.Namespace) -> int:
    from faceforge.model.bench import bench_model, format_bench

    path = Path(args.model) if args.model else default_model_path("all", args.small)
    payload = bench_model(path, small=args.small)
    _print(payload, args.json, format_bench(payload))
    return 0


def _cmd_bench_retarget(args: argparse.Namespace) -> int:
    from faceforge.cli._common import _model_from_args
    from faceforge.topology.bench import bench_retarget

    model, path = _model_from_args(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = bench_retarget(model, sizes, say=(lambda _m: None) if args.json else print)
    _print({"model": str(path), "rows": rows}, args.json, [])
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the bench command group to ``faceforge``'s subcommands."""
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

    bench_retarget = bench.add_parser(
        "retarget", help="retargeting time, landmarks to last key (52 keys), by character size"
    )
    bench_retarget.add_argument("--sizes", default="20000,100000", help="character sizes (vertices)")
    bench_retarget.add_argument("--model", help="face model file (default: the default model)")
    bench_retarget.add_argument("--small", action="store_true", help="use the small default model")
    bench_retarget.add_argument("--json", action="store_true")
    bench_retarget.set_defaults(func=_cmd_bench_retarget)
