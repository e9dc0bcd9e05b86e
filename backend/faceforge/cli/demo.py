"""``faceforge demo``: Blender (bpy) and the add-on, a grid of faces saved and rendered."""

from __future__ import annotations

import argparse

from faceforge.cli._common import (
    _blender_output_to_stderr,
    _print,
)


def _cmd_demo(args: argparse.Namespace) -> int:
    from faceforge.demo import run_demo

    with _blender_output_to_stderr(args.json):
        result = run_demo(
            args.out,
            small=args.small,
            model=args.model,
            motion_model=args.motion,
            take_label=None if args.no_take else args.take,
            samples=args.samples,
            force=args.force,
        )
    times = ", ".join(f"{k} {v} s" for k, v in result["seconds"].items())
    take = result["take"]
    lines = [f"blend: {result['blend']}", f"contact sheet: {result['contact_sheet']}",
             f"{len(result['faces'])} faces" + (f"; take {take['name']} on {take['object']}" if take else ""),
             times]  # fmt: skip
    _print(result, args.json, lines)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the demo command group to ``faceforge``'s subcommands."""
    demo = commands.add_parser(
        "demo", help="Blender (bpy) and the add-on: a grid of faces, saved and rendered"
    )
    demo.add_argument("--out", required=True, help="output folder for the .blend and contact_sheet.png")
    demo.add_argument("--small", action="store_true", help="the small model (built in about a minute)")
    demo.add_argument("--model", help="a model file instead of the default (or small) one")
    demo.add_argument("--motion", help="a motion model file instead of the default (or small) one")
    demo.add_argument("--take", default="high_smile", help="label of the take baked after the first picture")
    demo.add_argument("--no-take", action="store_true", help="no take (and no motion model): faces only")
    demo.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    demo.add_argument("--force", action="store_true", help="replace the .blend and sheet of an earlier run")
    demo.add_argument("--json", action="store_true", help="print a machine-readable summary")
    demo.set_defaults(func=_cmd_demo)
