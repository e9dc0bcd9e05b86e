"""The expression list of the default dataset: neutral, the 52 ARKit actions, BabyFlow's composites.

Composites (BabyFlow Table B2) and the 12 CoMA labels are ARKit combinations stored in
``resources/expressions.toml`` and ``resources/coma_labels.toml``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources

import numpy as np

from faceforge.errors import FaceForgeError

__all__ = [
    "ARKIT_NAMES",
    "COMA_LABELS",
    "Expression",
    "default_expressions",
    "coma_label_weights",
    "weights_matrix",
]

#: The 52 ARKit blendshape names, in anny's (alphabetical) order.
ARKIT_NAMES = [
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
]  # fmt: skip

#: The 12 CoMA expression labels (Motion3DGAN's training labels).
COMA_LABELS = [
    "bareteeth", "cheeks_in", "eyebrow", "high_smile", "lips_back", "lips_up", "mouth_down",
    "mouth_extreme", "mouth_middle", "mouth_open", "mouth_side", "mouth_up",
]  # fmt: skip

_RESOURCES = resources.files("faceforge.data") / "resources"


@dataclass(frozen=True)
class Expression:
    """A named expression as ARKit weights.

    Attributes:
        name: ``"neutral"``, an ARKit name, or a composite name (``"happy"``...).
        kind: ``"neutral"``, ``"arkit"`` or ``"composite"``.
        weights: ARKit name -> intensity in [0, 1].
    """

    name: str
    kind: str
    weights: dict[str, float]

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "arkit": self.weights}


def _check(weights: dict[str, float], where: str) -> dict[str, float]:
    unknown = sorted(set(weights) - set(ARKIT_NAMES))
    if unknown:
        raise FaceForgeError(f"{where}: unknown ARKit names {unknown}")
    bad = {k: v for k, v in weights.items() if not 0.0 <= float(v) <= 1.0}
    if bad:
        raise FaceForgeError(f"{where}: ARKit weights must lie in [0, 1], got {bad}")
    return {k: float(v) for k, v in weights.items()}


def default_expressions(include_composites: bool = True) -> list[Expression]:
    """Neutral, the 52 ARKit actions at intensity 1, then BabyFlow's composites (Table B2)."""
    out = [Expression("neutral", "neutral", {})]
    out += [Expression(name, "arkit", {name: 1.0}) for name in ARKIT_NAMES]
    if include_composites:
        table = tomllib.loads((_RESOURCES / "expressions.toml").read_text())["composites"]
        for name, row in table.items():
            out.append(Expression(name, "composite", _check(row["arkit"], f"expressions.toml [{name}]")))
    return out


def coma_label_weights() -> dict[str, dict[str, float]]:
    """CoMA label -> ARKit apex weights (``resources/coma_labels.toml``)."""
    table = tomllib.loads((_RESOURCES / "coma_labels.toml").read_text())["labels"]
    if sorted(table) != sorted(COMA_LABELS):
        raise FaceForgeError(f"coma_labels.toml must define exactly {COMA_LABELS}")
    return {label: _check(table[label]["arkit"], f"coma_labels.toml [{label}]") for label in COMA_LABELS}


def weights_matrix(rows: list[dict[str, float]]) -> np.ndarray:
    """``(len(rows), 52)`` float64 ARKit weight matrix of a list of name -> weight dicts."""
    out = np.zeros((len(rows), len(ARKIT_NAMES)))
    for i, row in enumerate(rows):
        for name, value in row.items():
            out[i, ARKIT_NAMES.index(name)] = value
    return out
