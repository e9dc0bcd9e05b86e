"""``faceforge eval retarget`` and ``faceforge bench retarget``: retargeting's accuracy and speed.

:func:`evaluate_pairs` retargets test characters of known ground truth
(:mod:`faceforge.topology.evaluation`) and, when given, an artist's character whose own keys are
compared with FaceForge's (:mod:`faceforge.topology.artist`). :func:`bench_retarget` times the
whole pipeline, landmarks to last key, on characters of growing size against the template's own
4,521-vertex topology measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from faceforge.topology.evaluation import evaluate_retarget, make_test_character
from faceforge.topology.retarget import retarget_character

__all__ = ["evaluate_pairs", "evaluate_held_out", "bench_retarget", "compare_artist", "format_pairs"]


def evaluate_pairs(
    model,  # noqa: ANN001 - FaceModel
    seeds: Sequence[int] = (3, 5, 11),
    remeshed_vertices: int = 6000,
    say: Callable[[str], None] = print,
) -> list[dict]:
    """Figures for each seed's identity, same topology and remeshed (see :func:`evaluate_retarget`)."""
    rows = []
    for seed in seeds:
        for remeshed in (False, True):
            character = make_test_character(
                model, seed=seed, remeshed=remeshed, target_vertices=remeshed_vertices
            )
            say(f"retargeting {character.name}")
            result = retarget_character(model, character.vertices, character.faces, "arkit")
            rows.append(evaluate_retarget(model, character, result))
    return rows


def evaluate_held_out(
    model,  # noqa: ANN001 - FaceModel
    dataset,  # noqa: ANN001 - FaceDataset
    count: int = 2,
    say: Callable[[str], None] = print,
) -> list[dict]:
    """Figures for ``count`` test identities spread over the ages (youngest to oldest), in
    FaceForge's topology and in SOMA's (:func:`~faceforge.topology.dataset_characters.
    make_dataset_character`)."""
    from faceforge.topology.dataset_characters import make_dataset_character

    ids = dataset.split("test")
    ages = np.array([dataset.identity_info[i].get("age_years", np.nan) for i in ids])
    by_age = ids[np.argsort(ages)]
    chosen = by_age[np.unique(np.round(np.linspace(0, len(by_age) - 1, count)).astype(int))]
    rows = []
    for identity in [int(i) for i in chosen]:
        for topology in ("same", "soma"):
            character = make_dataset_character(dataset, identity, topology)
            say(f"retargeting {character.name}")
            result = retarget_character(model, character.vertices, character.faces, "arkit")
            rows.append(evaluate_retarget(model, character, result))
    return rows


def compare_artist(
    model,  # noqa: ANN001 - FaceModel
    path: str | Path,
    object_name: str | None,
    profile: str,
    say: Callable[[str], None] = print,
) -> tuple[dict, object, object]:
    """Delete an artist's keys, retarget onto the basis, compare key by key; also returns the
    character and the retarget (for pictures)."""
    from faceforge.topology.artist import compare_with_artist, read_blender_character

    character = read_blender_character(path, object_name)
    say(
        f"retargeting {character.name} ({len(character.vertices)} vertices, "
        f"{len(character.key_names)} artist keys)"
    )
    result = retarget_character(model, character.vertices, character.faces, profile)
    return compare_with_artist(character, result), character, result


def format_pairs(rows: list[dict]) -> list[str]:
    """One line per test character."""
    lines = []
    for r in rows:
        blink = r["lid_gap"].get("eyeBlinkLeft", {})
        ours, truth, opened = (blink.get(k, np.nan) for k in ("ours_mm", "truth_mm", "open_mm"))
        lines.append(
            f"{r['character']}: correspondence {r['correspondence_mean_mm']:.2f} mm mean, "
            f"{r['correspondence_p95_mm']:.2f} mm p95; keys median {r['transfer_median']:.1%}, "
            f"worst {r['transfer_worst']:.1%} ({r['transfer_worst_key']}); blink lid gap {ours:.2f} mm "
            f"(truth {truth:.2f}, open {opened:.2f}); flipped beyond the truth's "
            f"{r['flipped_triangles_not_in_truth_max']}; held motion {r['held_vertex_motion_mm']:.1e} mm"
        )
    return lines


def bench_retarget(
    model,  # noqa: ANN001 - FaceModel
    sizes: Sequence[int] = (20000, 100000),
    say: Callable[[str], None] = print,
) -> list[dict]:
    """Time :func:`retarget_character` (52 ARKit keys) on remeshed heads of ``sizes`` vertices.

    The first row is the baseline: the template's own topology (4,521 vertices) in the same run.
    Each row: vertex count, phase -> seconds, total seconds, ratio to the baseline's total.
    """
    characters = [make_test_character(model, seed=5)]
    characters += [make_test_character(model, seed=5, remeshed=True, target_vertices=n) for n in sizes]
    rows: list[dict] = []
    for character in characters:
        say(f"retargeting {len(character.vertices)} vertices ...")
        clock = time.perf_counter()
        result = retarget_character(model, character.vertices, character.faces, "arkit")
        total = time.perf_counter() - clock
        rows.append(
            {
                "n_vertices": int(len(character.vertices)),
                "n_keys": len(result.keys.names),
                "phases_s": {k: v for k, v in result.timings.items() if k != "total"},
                "total_s": total,
                "ratio_to_template": total / rows[0]["total_s"] if rows else 1.0,
            }
        )
        say(
            f"  {rows[-1]['n_vertices']} vertices: {total:.1f} s ("
            + ", ".join(f"{k} {v:.1f}" for k, v in rows[-1]["phases_s"].items())
            + f"); x{rows[-1]['ratio_to_template']:.2f} the template's topology"
        )
    return rows
