"""How well does a model reach faces unlike its training identities? (``faceforge eval coverage``)

Fits any saved model (the default, an older one, one built on another dataset) to the neutral
face and two expressive faces of every test identity and every ``ood_test`` identity of a
dataset, with :func:`faceforge.model.fitting.fit_scan`'s defaults, and reports the mean
per-vertex error of each set, neutral and expressive apart, their ratio, the identity flow's
log-likelihood of the fitted codes and how often the fit's trust report
(:mod:`faceforge.model.trust`) flags a face as outside the model's space. Unlike
``faceforge eval model`` it builds nothing and chooses no prior weight: it measures a model as a
user runs it, in a few minutes, so two models can be compared on the same faces.
"""

from __future__ import annotations

import time

import numpy as np

from faceforge.data.dataset import FaceDataset
from faceforge.errors import FaceForgeError
from faceforge.model.evaluation.metrics import mean_std
from faceforge.model.evaluation.protocol import held_out_faces
from faceforge.model.face_model import FaceModel
from faceforge.progress import ProgressCallback, report

__all__ = ["COVERAGE_SPLITS", "evaluate_coverage", "format_coverage"]

COVERAGE_SPLITS = ("test", "ood_test")


def evaluate_coverage(
    model: FaceModel,
    dataset: FaceDataset,
    use_flows: bool = True,
    expressive_per_identity: int = 2,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> dict:
    """Fit ``model`` to the test and out-of-distribution faces (module docstring).

    Returns:
        ``{split: {"n_identities", "neutral_mm", "expressive_mm", "all_mm" (mean/std dicts),
        "identity_log_likelihood", "flagged_outside"}, "ratio_ood_vs_test": {...}, "seconds"}``.

    Raises:
        FaceForgeError: the dataset has no ``ood_test`` split or its topology is not the model's.
    """
    from faceforge.model.build import population_split
    from faceforge.model.fitting import fit_scan

    if "ood_test" not in dataset.splits:
        raise FaceForgeError(
            "the dataset has no out-of-distribution identities: rebuild it with `faceforge data build`"
        )
    if dataset.n_vertices != model.n_vertices:
        raise FaceForgeError(
            f"the dataset's faces have {dataset.n_vertices} vertices, the model {model.n_vertices}"
        )
    started = time.perf_counter()
    population = model.metadata.get("population", "all")
    sets = {split: np.sort(population_split(dataset, population, split)) for split in COVERAGE_SPLITS}
    faces = {
        split: held_out_faces(dataset, ids, expressive_per_identity, 1, seed=seed)
        for split, ids in sets.items()
    }
    total = sum(len(f) + len(sets[s]) for s, f in faces.items())
    done = 0
    out: dict = {"population": population, "use_flows": use_flows}
    for split, ids in sets.items():
        rows: dict[str, list] = {"neutral": [], "expressive": [], "log_likelihood": [], "flagged": []}

        def fit(scan: np.ndarray, kind: str, split: str = split, rows: dict = rows) -> None:
            nonlocal done
            result = fit_scan(model, scan, use_flows=use_flows)
            rows[kind].append(result.error_mm)
            rows["log_likelihood"].append(result.trust["identity_log_prob"])
            if "trusted" in result.trust:
                rows["flagged"].append(not result.trust["trusted"])
            done += 1
            report(progress, done, total, f"{split}: {kind}")

        for i in ids:
            fit(np.asarray(dataset.vertices[int(i), 0], dtype=np.float64), "neutral")
        for scan in faces[split].scans:
            fit(scan, "expressive")
        out[split] = {
            "n_identities": int(len(ids)),
            "neutral_mm": mean_std(np.array(rows["neutral"])),
            "expressive_mm": mean_std(np.array(rows["expressive"])),
            "all_mm": mean_std(np.array(rows["neutral"] + rows["expressive"])),
            "identity_log_likelihood": mean_std(np.array(rows["log_likelihood"])),
            "flagged_outside": float(np.mean(rows["flagged"])) if rows["flagged"] else None,
        }
    out["ratio_ood_vs_test"] = {
        key: out["ood_test"][key]["mean"] / out["test"][key]["mean"]
        for key in ("neutral_mm", "expressive_mm", "all_mm")
    }
    out["model"] = {
        "name": model.metadata.get("name"),
        "rank_identity": model.rank_identity,
        "rank_expression": model.rank_expression,
        "dataset": model.metadata.get("dataset"),
    }
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def format_coverage(result: dict) -> list[str]:
    """Text lines of :func:`evaluate_coverage`'s result."""
    m = result["model"]
    lines = [
        f"model {m['name']} ({m['rank_identity']} x {m['rank_expression']}), flows: {result['use_flows']}"
    ]
    for split in COVERAGE_SPLITS:
        r = result[split]
        flagged = "–" if r["flagged_outside"] is None else f"{100 * r['flagged_outside']:.0f}%"
        lines.append(
            f"{split:9s} {r['n_identities']:3d} identities: neutral {r['neutral_mm']['mean']:.3f} mm, "
            f"expressive {r['expressive_mm']['mean']:.3f} mm, identity log-likelihood "
            f"{r['identity_log_likelihood']['mean']:.1f} nats, flagged outside {flagged}"
        )
    ratio = result["ratio_ood_vs_test"]
    lines.append(
        f"out-of-distribution / test: neutral {ratio['neutral_mm']:.2f}, "
        f"expressive {ratio['expressive_mm']:.2f}, all {ratio['all_mm']:.2f} ({result['seconds']:.0f} s)"
    )
    return lines
