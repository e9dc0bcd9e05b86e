"""The plausible range of each of anny's local face targets, measured on reference phenotypes.

anny's local targets are MakeHuman's modelling sliders, each in [-1, 1]; many break a head well
before their end (the lip-volume targets push the lower lip through the upper one, the nostril
targets fold the alae). :func:`~faceforge.data.target_scan.scan_target_ranges` applies each
target alone, in each direction, at decreasing values, on five reference phenotypes from an
infant to an elder, and keeps for each reference head the largest value it passes
:func:`faceforge.data.plausibility.check_head` at; a sampled identity's bounds are
interpolated by age between the reference heads' (anny's targets are offsets in metres, so an
infant's small face folds long before an adult's). The result ships as
``resources/anny_face_target_ranges.json`` (``faceforge data target-ranges`` rebuilds it with
:func:`faceforge.data.target_scan.scan_target_ranges`) and bounds the identity samplers of
:mod:`faceforge.data.anny_source`.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

import numpy as np

__all__ = ["RANGES_FILE", "REFERENCE_PHENOTYPES", "SCAN_VALUES", "load_target_ranges"]

RANGES_FILE = "anny_face_target_ranges.json"

#: (name, age in years, gender) of the reference heads; the other phenotypes stay at 0.5.
REFERENCE_PHENOTYPES = (
    ("infant", 1.0, 0.5),
    ("child", 8.0, 0.5),
    ("adult_female", 30.0, 0.0),
    ("adult_male", 45.0, 1.0),
    ("elder", 75.0, 0.5),
)

#: Values tried per direction, largest first.
SCAN_VALUES = (1.0, 0.75, 0.5, 0.25, 0.125)


def load_target_ranges(age_years: float | None = None) -> dict[str, tuple[float, float]]:
    """``{target: (lowest, highest)}`` plausible values of each local face target (shipped).

    Args:
        age_years: the identity's age: each bound is interpolated (linearly in years, clamped at
            the ends) between the reference heads' (the two adults' tighter one at their mean
            age). None gives the tightest bound over all reference heads.
    """
    payload = _shipped()
    if age_years is None:
        return {name: (float(lo), float(hi)) for name, (lo, hi) in payload["ranges"].items()}
    ages, columns = _reference_ages(payload["by_reference"])
    out = {}
    for name, per_reference in payload["by_reference"].items():
        bounds = np.array(
            [per_reference[c] if isinstance(c, str) else _tighter(per_reference, c) for c in columns]
        )
        out[name] = (
            float(np.interp(age_years, ages, bounds[:, 0])),
            float(np.interp(age_years, ages, bounds[:, 1])),
        )
    return out


@functools.lru_cache(maxsize=1)
def _shipped() -> dict:
    return json.loads((resources.files("faceforge.data") / "resources" / RANGES_FILE).read_text())


def _tighter(per_reference: dict, names: tuple[str, ...]) -> list[float]:
    return [max(per_reference[n][0] for n in names), min(per_reference[n][1] for n in names)]


def _reference_ages(by_reference: dict) -> tuple[np.ndarray, list]:
    """The interpolation ages and, per age, the reference name (or names, for the adults)."""
    years = {name: age for name, age, _ in REFERENCE_PHENOTYPES}
    adults = tuple(n for n in years if n.startswith("adult"))
    columns: list = [n for n in years if not n.startswith("adult")]
    columns.insert(2, adults)
    ages = [years[c] if isinstance(c, str) else float(np.mean([years[n] for n in c])) for c in columns]
    return np.asarray(ages), columns
