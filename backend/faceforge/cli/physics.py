"""``faceforge simulate``: the physical face on a generated face ramping into an expression."""

from __future__ import annotations

import argparse
from pathlib import Path

from faceforge.cli._common import (
    _DEVICE_HELP,
    _model_from_args,
    _print,
)
from faceforge.errors import FaceForgeError


def _parse_weights(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value) if value else 1.0
        except ValueError as exc:
            raise FaceForgeError(f"bad expression weight {item!r}: use name=value") from exc
    return out


def _save_simulation(path: Path, result, targets) -> None:  # noqa: ANN001 - SimulationResult, array
    import numpy as np

    np.savez_compressed(
        path,
        frames=result.frames.astype(np.float32),
        targets=targets.astype(np.float32),
        jaw=result.jaw,
        v2v_mm=result.v2v_mm,
        **result.quality,
    )


def _cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from faceforge.data.meshio import write_obj
    from faceforge.model import rig
    from faceforge.outputs import check_folder, staged_outputs
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
    outputs = [f"frame_{t:04d}.obj" for t in range(args.frames)] + ["simulation.npz"]
    check_folder(args.out, outputs, args.force)  # before the simulation, not after
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
    with staged_outputs(out, outputs, force=args.force) as staging:
        for name, frame in zip(outputs, result.frames, strict=False):
            write_obj(staging / name, frame, faces)
        _save_simulation(staging / "simulation.npz", result, targets)
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
            f"sim-vs-target V2V {payload['v2v_mm_mean']:.3f} mm (worst frame: max "
            f"{payload['max_mm_worst']:.2f}, 99th percentile {payload['p99_mm_worst']:.2f}, "
            f"lip roughness {payload['lip_roughness_mm_worst']:.2f} mm)",
            "intersecting mouth pairs: rest "
            f"{payload['penetrations_rest']}, target {payload['penetrations_target']}, "
            f"simulated {payload['penetrations']}",
        ],
    )
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the physics command group to ``faceforge``'s subcommands."""
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
    simulate.add_argument("--force", action="store_true", help="replace the files of an earlier run")
    simulate.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help=_DEVICE_HELP)
    simulate.add_argument("--json", action="store_true")
    simulate.set_defaults(func=_cmd_simulate)
