"""``faceforge animate build|generate`` and ``faceforge eval animate``: dynamic expressions."""

from __future__ import annotations

import argparse
from pathlib import Path

from faceforge.cli._common import (
    _ensure_dataset,
    _model_from_args,
    _print,
)
from faceforge.errors import FaceForgeError
from faceforge.store import (
    default_motion_path,
    ensure_motion_model,
)


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
    from faceforge.outputs import staged_outputs

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
    faces = face_model.faces.cpu().numpy()
    names = [f"frame_{t:04d}.obj" for t in range(len(dense))]
    with staged_outputs(out, [*names, "landmark_motion.npy"], force=args.force) as staging:
        for name, displacement in zip(names, dense, strict=True):
            write_obj(staging / name, neutral + displacement, faces)
        np.save(staging / "landmark_motion.npy", motion)
    _print({"out": str(out), "frames": len(dense)}, args.json, [f"{len(dense)} frames in {out}"])
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


def _cmd_eval_takes(args: argparse.Namespace) -> int:
    import numpy as np

    from faceforge.animate.bundle import load_motion_model
    from faceforge.animate.evaluation import take_amplitude_table, take_amplitudes
    from faceforge.data.build import load_built_dataset
    from faceforge.progress import TerminalProgress

    quiet = args.json
    if args.motion:
        path = Path(args.motion)
    else:
        bar = TerminalProgress("faceforge animate build", enabled=not quiet)
        try:
            path = Path(ensure_motion_model(args.small, args.data, progress=bar)["path"])
        finally:
            bar.close()
    model = load_motion_model(path)
    dataset = load_built_dataset(_ensure_dataset(args.data, args.small, quiet))
    test = np.sort(dataset.split("test"))
    bar = TerminalProgress("faceforge eval takes", enabled=not quiet)
    try:
        result = take_amplitudes(model, dataset, test, seeds=args.seeds, progress=bar)
    finally:
        bar.close()
    _print(result, args.json, [
        f"takes of {path} on the {len(test)} test identities ({args.seeds} seeds each), against "
        "their real clips:",
        *take_amplitude_table(result),
    ])  # fmt: skip
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the animate command group to ``faceforge``'s subcommands."""
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
    animate_generate.add_argument("--force", action="store_true", help="replace the files of an earlier run")
    animate_generate.add_argument("--json", action="store_true")
    animate_generate.set_defaults(func=_cmd_animate_generate)


def add_eval_command(evaluate: argparse._SubParsersAction) -> None:
    """Add ``faceforge eval animate``."""
    eval_animate = evaluate.add_parser(
        "animate", help="Sparse2Dense protocol: S2D-Dec vs PCA fitting, classifier accuracy and FID"
    )
    eval_animate.add_argument("--data", help="dataset directory (default: the cached anny dataset)")
    eval_animate.add_argument("--small", action="store_true", help="small dataset and tiny networks")
    eval_animate.add_argument("--seed", type=int, default=0)
    eval_animate.add_argument("--json", action="store_true")
    eval_animate.set_defaults(func=_cmd_eval_animate)
    eval_takes = evaluate.add_parser(
        "takes", help="the takes' amplitude and locality per label against the real clips"
    )
    eval_takes.add_argument("--data", help="dataset directory (default: the cached anny dataset)")
    eval_takes.add_argument("--small", action="store_true", help="the small dataset and motion model")
    eval_takes.add_argument("--motion", help="motion model file (default: the cached one, built if missing)")
    eval_takes.add_argument("--seeds", type=int, default=2, help="takes per test identity and label")
    eval_takes.add_argument("--json", action="store_true")
    eval_takes.set_defaults(func=_cmd_eval_takes)
