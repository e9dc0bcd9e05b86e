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
            args.out, small=args.small, model=args.model, motion_model=args.motion, samples=args.samples
        )
    times = ", ".join(f"{k} {v} s" for k, v in result["seconds"].items())
    _print(result, args.json, [f"blend: {result['blend']}", f"contact sheet: {result['contact_sheet']}",
                               f"{len(result['faces'])} faces; {times}"])  # fmt: skip
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
    demo.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    demo.add_argument("--json", action="store_true", help="print a machine-readable summary")
    demo.set_defaults(func=_cmd_demo)
