"""``faceforge register`` and ``faceforge retarget``: FaceForge's head and expressions on a character."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from faceforge.cli._common import _model_from_args, _print

__all__ = ["add_commands"]


def _landmarks_json(model, positions) -> str:  # noqa: ANN001
    return json.dumps(
        {"names": list(model.metadata["landmark_names"]["ibug68"]), "positions": positions.tolist()}
    )


def _cmd_propose(args: argparse.Namespace) -> int:
    from faceforge.data.meshio import read_mesh
    from faceforge.outputs import check_folder, staged_outputs
    from faceforge.progress import TerminalProgress
    from faceforge.topology import propose_landmarks

    if args.landmarks:
        from faceforge.errors import FaceForgeError

        raise FaceForgeError("--propose proposes landmarks; give --landmarks without it to register")
    names = ["landmarks.json", "report.json"]
    out = Path(args.out)
    check_folder(out, names, args.force)
    vertices, faces = read_mesh(args.character)
    model, path = _model_from_args(args)
    bar = TerminalProgress("faceforge register --propose", enabled=not (args.quiet or args.json))
    try:
        landmarks, figures = propose_landmarks(model, vertices, faces, progress=bar)
    finally:
        bar.close()
    report = {"model": str(path), "character": str(args.character), **figures}
    with staged_outputs(out, names, force=args.force) as staging:
        (staging / "landmarks.json").write_text(_landmarks_json(model, landmarks))
        (staging / "report.json").write_text(json.dumps(report, indent=2))
    lines = [f"{phase}: {seconds:.1f} s" for phase, seconds in figures["timings_s"].items()]
    lines.append(
        f"68 landmarks proposed (identity fit {figures['identity_fit_mm']:.2f} mm); written to "
        f"{out / 'landmarks.json'}: edit them and run `faceforge register` or `retarget` with --landmarks"
    )
    _print({**report, "out": str(out)}, args.json, lines)
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    if args.propose:
        return _cmd_propose(args)
    from faceforge.data.meshio import read_mesh, write_obj
    from faceforge.outputs import check_folder, staged_outputs
    from faceforge.progress import TerminalProgress
    from faceforge.topology import register_character

    names = ["registered_template.obj", "landmarks.json", "report.json"]
    out = Path(args.out)
    check_folder(out, names, args.force)  # before any work
    vertices, faces = read_mesh(args.character)
    landmarks = _read_landmarks(args.landmarks)
    model, path = _model_from_args(args)
    bar = TerminalProgress("faceforge register", enabled=not (args.quiet or args.json))
    try:
        result = register_character(model, vertices, faces, landmarks=landmarks, progress=bar)
    finally:
        bar.close()
    report = {
        "model": str(path),
        "character": str(args.character),
        "n_vertices": int(len(vertices)),
        "similarity": result.similarity.to_json(),
        "timings_s": result.timings,
        **result.figures,
    }
    with staged_outputs(out, names, force=args.force) as staging:
        write_obj(
            staging / "registered_template.obj",
            result.similarity.inverse(result.registered),
            model.faces.cpu().numpy(),
        )
        (staging / "landmarks.json").write_text(_landmarks_json(model, result.landmarks))
        (staging / "report.json").write_text(json.dumps(report, indent=2))
    lines = [f"{phase}: {seconds:.1f} s" for phase, seconds in result.timings.items()]
    lines += [
        f"registration: {result.figures['registration_mean_mm']:.2f} mm mean, "
        f"{result.figures['registration_p95_mm']:.2f} mm p95 "
        f"({result.figures['matched_fraction']:.0%} of the skin matched)",
        f"face region: {result.figures['character_face_vertices']} character vertices; written to {out}",
    ]
    _print({**report, "out": str(out)}, args.json, lines)
    return 0


def _read_landmarks(path: str | None):  # noqa: ANN202
    import numpy as np

    from faceforge.errors import FaceForgeError

    if not path:
        return None
    try:
        return np.asarray(json.loads(Path(path).read_text())["positions"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FaceForgeError(f"cannot read landmarks from {path}: {exc}") from exc


def _cmd_retarget(args: argparse.Namespace) -> int:
    from faceforge.data.gltf import write_glb
    from faceforge.data.meshio import read_mesh
    from faceforge.outputs import check_folder, staged_outputs
    from faceforge.progress import TerminalProgress
    from faceforge.topology.profiles import load_profile
    from faceforge.topology.retarget import retarget_character

    names = ["character.glb", "landmarks.json", "report.json"]
    out = Path(args.out)
    check_folder(out, names, args.force)  # before any work
    vertices, faces = read_mesh(args.character)
    landmarks = _read_landmarks(args.landmarks)
    model, path = _model_from_args(args)
    profile = load_profile(args.profile, model.expression_names, list(model.metadata["regions"]))
    bar = TerminalProgress("faceforge retarget", enabled=not (args.quiet or args.json))
    try:
        result = retarget_character(model, vertices, faces, profile, landmarks=landmarks, progress=bar)
    finally:
        bar.close()
    corr, keys = result.correspondence, result.keys
    report = {
        "model": str(path),
        "character": str(args.character),
        "n_vertices": int(len(vertices)),
        "profile": profile.name,
        "keys": keys.names,
        "similarity": corr.similarity.to_json(),
        "timings_s": result.timings,
        "registration": corr.figures,
        "transfer": keys.figures,
    }
    with staged_outputs(out, names, force=args.force) as staging:
        stem = Path(args.character).stem
        write_glb(staging / "character.glb", vertices, faces, keys.deltas, keys.names, stem)
        (staging / "landmarks.json").write_text(_landmarks_json(model, corr.landmarks))
        (staging / "report.json").write_text(json.dumps(report, indent=2))
    lines = [f"{phase}: {seconds:.1f} s" for phase, seconds in result.timings.items()]
    lines += [
        f"{len(keys.names)} keys ({profile.name}) on {len(vertices)} vertices; parts: "
        + ", ".join(f"{k} {n}" for k, n in keys.figures["parts"].items() if n),
        f"flipped triangles (worst key): {keys.figures['flipped_triangles_max']}; written to {out}",
    ]
    _print({**report, "out": str(out)}, args.json, lines)
    return 0


def _cmd_eval_retarget(args: argparse.Namespace) -> int:
    from faceforge.outputs import check_folder, staged_outputs
    from faceforge.topology.bench import compare_artist, evaluate_pairs, format_pairs

    names = ["report.json"] + (["compare.png"] if args.render else [])
    out = (
        Path(args.out)
        if args.out
        else Path("out") / ("eval-retarget-small" if args.small else "eval-retarget")
    )
    check_folder(out, names, args.force)
    model, path = _model_from_args(args)
    say = (lambda _m: None) if (args.quiet or args.json) else print
    seeds = [int(s) for s in args.seeds.split(",")]
    pairs = evaluate_pairs(model, seeds, args.remeshed_vertices, say)
    if args.held_out:
        from faceforge.data.build import load_built_dataset
        from faceforge.store import default_data_dir
        from faceforge.topology.bench import evaluate_held_out

        dataset = load_built_dataset(args.data or default_data_dir(args.small))
        pairs += evaluate_held_out(model, dataset, args.held_out, say)
    report: dict = {"model": str(path), "pairs": pairs}
    lines = format_pairs(pairs)
    artist = None
    if args.artist:
        figures, character, result = compare_artist(model, args.artist, args.object, args.profile, say)
        report["artist"] = figures
        artist = (character, result)
        lines.append(
            f"{figures['character']} ({args.artist}): FaceForge's keys against the artist's, relative RMS "
            f"median {figures['median']:.0%} "
            f"(after the best gain per key {figures['median_best_gain']:.0%}), "
            f"worst {figures['worst']:.0%} ({figures['worst_key']})"
        )
    with staged_outputs(out, names, force=args.force) as staging:
        if args.render:
            from faceforge.topology.render import render_rows

            rows, expressions = _picture_rows(model, pairs_characters=seeds[:1], artist=artist)
            render_rows(rows, expressions, staging / "compare.png")
        (staging / "report.json").write_text(json.dumps(report, indent=2))
    lines.append(f"written to {out}")
    _print({**report, "out": str(out)}, args.json, lines)
    return 0


def _picture_rows(model, pairs_characters: list[int], artist):  # noqa: ANN001, ANN202
    """Rows for :func:`~faceforge.topology.render.render_rows`: FaceForge's head, each test
    character and the artist's character with FaceForge's and the artist's keys."""
    from faceforge.topology.evaluation import make_test_character
    from faceforge.topology.profiles import load_profile
    from faceforge.topology.render import Row
    from faceforge.topology.retarget import retarget_character
    from faceforge.topology.transfer import expression_sources

    shown = ["jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "mouthPucker"]
    expressions = [
        ("jawOpen", {"jawOpen": 1.0}),
        ("eyeBlink", {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}),
        ("smile", {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}),
        ("mouthPucker", {"mouthPucker": 1.0}),
    ]

    def in_template(result, vertices, deltas_by_name):  # noqa: ANN001, ANN202
        sim = result.correspondence.similarity
        return sim.apply(vertices), {n: sim.scale * d @ sim.rotation.T for n, d in deltas_by_name.items()}

    rows = []
    for seed in pairs_characters:
        character = make_test_character(model, seed=seed, remeshed=True)
        result = retarget_character(model, character.vertices, character.faces, "arkit")
        if not rows:
            rest, deformed = expression_sources(model, result.correspondence, shown, identity="mean")
            rows.append(
                Row(
                    "FaceForge head",
                    rest,
                    model.faces.cpu().numpy(),
                    {n: deformed[i] - rest for i, n in enumerate(shown)},
                )
            )
        keys = {n: result.keys.deltas[k].astype(float) for k, n in enumerate(result.keys.names)}
        v, d = in_template(result, character.vertices, keys)
        rows.append(Row(f"identity {seed}, remeshed", v, character.faces, d))
    if artist is not None:
        character, result = artist
        profile = load_profile(result.profile.name, model.expression_names, [])
        target = {k.source: k.target for k in profile.keys}
        ours = {n: result.keys.deltas[k].astype(float) for k, n in enumerate(result.keys.names)}
        theirs = dict(zip(character.key_names, character.key_deltas, strict=True))
        for label, keys in (("FaceForge keys", ours), ("artist's keys", theirs)):
            named = {n: keys[target[n]] for n in shown if target.get(n) in keys}
            v, d = in_template(result, character.vertices, named)
            rows.append(Row(f"{character.name}: {label}", v, character.faces, d))
    return rows, expressions


def add_eval_command(evaluate: argparse._SubParsersAction) -> None:
    """Add ``faceforge eval retarget``."""
    ev = evaluate.add_parser(
        "retarget",
        help="retarget test characters of known ground truth (other identities, remeshed) and "
        "optionally an artist's character, and report the errors",
    )
    ev.add_argument("--seeds", default="3,5,11", help="identities of the test characters (default 3,5,11)")
    ev.add_argument("--remeshed-vertices", type=int, default=6000, help="size of the remeshed characters")
    ev.add_argument(
        "--held-out",
        type=int,
        default=0,
        help="also this many held-out dataset identities, in FaceForge's and SOMA's topology (truth: "
        "the dataset's own expressions)",
    )
    ev.add_argument("--data", help="the dataset of --held-out (default: the model's default dataset)")
    ev.add_argument("--artist", help="an FBX/GLB/.blend character with its artist's ARKit-named keys")
    ev.add_argument("--object", help="the artist's mesh object (default: the one with the most keys)")
    ev.add_argument("--profile", default="facecap", help="the artist's key names (default facecap)")
    ev.add_argument("--render", action="store_true", help="also render compare.png (Blender, Workbench)")
    ev.add_argument("--out", help="folder for report.json (default out/eval-retarget)")
    ev.add_argument("--model", help="face model file (default: the default model)")
    ev.add_argument("--small", action="store_true", help="use the small default model")
    ev.add_argument("--force", action="store_true", help="replace an earlier run's files")
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.add_argument("--quiet", action="store_true", help="no progress lines")
    ev.set_defaults(func=_cmd_eval_retarget)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``register`` and ``retarget`` to ``faceforge``'s subcommands."""
    retarget = commands.add_parser(
        "retarget",
        help="make FaceForge's expressions as shape keys on a character mesh of any topology "
        "(writes GLB morph targets and a report)",
    )
    retarget.add_argument("character", help="the character mesh (OBJ or PLY), every part in one file")
    retarget.add_argument(
        "--out", required=True, help="folder for character.glb, landmarks.json, report.json"
    )
    retarget.add_argument(
        "--profile",
        default="arkit",
        help="key names: arkit, vrm, cc4, facecap or a JSON profile (default arkit)",
    )
    retarget.add_argument("--landmarks", help="edited landmarks.json to register from")
    retarget.add_argument("--model", help="face model file (default: the default model)")
    retarget.add_argument("--small", action="store_true", help="use the small default model")
    retarget.add_argument("--force", action="store_true", help="replace an earlier run's files")
    retarget.add_argument("--json", action="store_true", help="print the report as JSON")
    retarget.add_argument("--quiet", action="store_true", help="no progress bar")
    retarget.set_defaults(func=_cmd_retarget)

    register = commands.add_parser(
        "register",
        help="propose landmarks on a character mesh (OBJ or PLY, any topology, units, orientation) and "
        "register FaceForge's head onto it",
    )
    register.add_argument("character", help="the character mesh (OBJ or PLY)")
    register.add_argument(
        "--out", required=True, help="folder for registered_template.obj, landmarks.json, report.json"
    )
    register.add_argument(
        "--landmarks", help="edited landmarks.json (as written by an earlier run) to register from"
    )
    register.add_argument(
        "--model", help="face model file (default: the default model of `faceforge model build`)"
    )
    register.add_argument(
        "--propose",
        action="store_true",
        help="only propose the landmarks (landmarks.json, report.json): edit them, then register from them",
    )
    register.add_argument("--small", action="store_true", help="use the small default model")
    register.add_argument("--force", action="store_true", help="replace an earlier run's files")
    register.add_argument("--json", action="store_true", help="print the report as JSON")
    register.add_argument("--quiet", action="store_true", help="no progress bar")
    register.set_defaults(func=_cmd_register)
