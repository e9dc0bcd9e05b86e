"""The ``faceforge`` command line: argument groups per feature, each calling the library and printing.

``data`` (:mod:`.data`), ``serve`` (:mod:`.serve`), ``animate`` and ``eval animate`` (:mod:`.animate`),
``simulate`` (:mod:`.physics`), ``demo`` (:mod:`.demo`), ``bench`` (:mod:`.bench`), ``model`` and
``eval model`` (:mod:`.model`), ``register``, ``retarget`` and ``eval retarget`` (:mod:`.topology`).
Cache locations and builds live in :mod:`faceforge.store`; nothing in the library imports this package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from faceforge.cli import animate, bench, data, demo, model, physics, serve, topology
from faceforge.errors import FaceForgeError
from faceforge.store import default_cache_dir

__all__ = ["main", "default_cache_dir"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceforge", description="FaceForge compute backend")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (data, serve, animate, physics, demo, bench, model, topology):
        group.add_commands(commands)
    evaluate = commands.add_parser("eval", help="evaluate models").add_subparsers(
        dest="eval_command", required=True
    )
    model.add_eval_command(evaluate)
    animate.add_eval_command(evaluate)
    topology.add_eval_command(evaluate)
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
