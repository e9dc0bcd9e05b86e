"""``faceforge data build|info|stats|annotate|target-ranges|render``: the identity x expression dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from faceforge.cli._common import (
    _print,
)
from faceforge.store import default_data_dir as _default_data_dir


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
            ("sampler", args.sampler),
            ("n_ood_infants", args.n_ood_infants),
            ("n_ood_others", args.n_ood_others),
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
            *(
                f"plausibility ({part}): {row['accepted_first']}/{row['identities']} accepted as drawn, "
                f"{row['shrunk']} shrunk, {row['dropped_local_targets']} without local targets"
                for part, row in sizes.get("plausibility", {}).items()
                if row["identities"]
            ),
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
    from faceforge.outputs import check_output, write_atomic

    if args.out:
        check_output(args.out, force=args.force)  # before the work
    annotations = derive_annotations(anny_head())
    text = json.dumps(annotations, separators=(",", ":"))
    if args.out:
        write_atomic(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def _cmd_data_target_ranges(args: argparse.Namespace) -> int:
    from faceforge.data.target_scan import scan_target_ranges
    from faceforge.outputs import check_output, write_atomic
    from faceforge.progress import TerminalProgress

    if args.out:
        check_output(args.out, force=args.force)  # before the work
    bar = TerminalProgress("faceforge data target-ranges", enabled=not args.quiet)
    try:
        result = scan_target_ranges(progress=bar)
    finally:
        bar.close()
    text = json.dumps(result, indent=1)
    if args.out:
        write_atomic(args.out, text)
        narrowed = sum(1 for lo, hi in result["ranges"].values() if lo > -1.0 or hi < 1.0)
        print(
            f"wrote {args.out}: {narrowed} of {len(result['ranges'])} targets narrowed, {result['seconds']} s"
        )
    else:
        print(text)
    return 0


def _cmd_data_render(args: argparse.Namespace) -> int:
    from faceforge.data.build import load_built_dataset
    from faceforge.data.plots import render_landmarks
    from faceforge.outputs import check_output

    check_output(args.out, force=args.force)
    directory = Path(args.dir) if args.dir else _default_data_dir(args.small)
    path = render_landmarks(load_built_dataset(directory), args.out)
    print(f"wrote {path}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the data command group to ``faceforge``'s subcommands."""
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
    build.add_argument("--sampler", choices=["coverage", "who", "artist"], help="identity sampler")
    build.add_argument("--n-ood-infants", type=int, help="out-of-distribution infants (artist sampler)")
    build.add_argument("--n-ood-others", type=int, help="out-of-distribution identities of 3 years and older")
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
    annotate.add_argument("--force", action="store_true", help="replace an existing --out file")
    annotate.set_defaults(func=_cmd_data_annotate)

    ranges = data.add_parser(
        "target-ranges", help="measure each anny local face target's plausible range (about 10 min)"
    )
    ranges.add_argument(
        "--out", help="write JSON here (resources/anny_face_target_ranges.json) instead of stdout"
    )
    ranges.add_argument("--force", action="store_true", help="replace an existing --out file")
    ranges.add_argument("--quiet", action="store_true", help="no progress bar")
    ranges.set_defaults(func=_cmd_data_target_ranges)

    render = data.add_parser("render", help="picture of the landmarks on the mean face")
    render.add_argument("dir", nargs="?", help="dataset directory (default: the FaceForge cache)")
    render.add_argument("--small", action="store_true")
    render.add_argument("--out", default="landmarks.png")
    render.add_argument("--force", action="store_true", help="replace an existing --out file")
    render.set_defaults(func=_cmd_data_render)
