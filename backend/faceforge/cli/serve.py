"""``faceforge serve``: the backend service on stdin/stdout (for the add-on)."""

from __future__ import annotations

import argparse


def _cmd_serve(args: argparse.Namespace) -> int:
    from faceforge.server import serve

    max_bytes = None if args.max_array_mb is None else int(args.max_array_mb * 2**20)
    return serve(
        max_array_bytes=max_bytes,
        session_parent=args.session_parent,
        log_level=args.log_level,
        device=args.device,
    )


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the serve command group to ``faceforge``'s subcommands."""
    serve = commands.add_parser("serve", help="run the backend service on stdin/stdout (for the add-on)")
    serve.add_argument("--max-array-mb", type=float, help="size limit of one request's or result's arrays")
    serve.add_argument("--session-parent", help="where to create the session directory (default: temp)")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda if present"
    )
    serve.set_defaults(func=_cmd_serve)
