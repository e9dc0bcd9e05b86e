"""Name profiles: which FaceForge expression becomes which of the character's shape keys.

A profile is a list of :class:`KeyMap` rows ``source -> target`` with a gain (intensity at key
weight 1) and an optional region limit: ``left``/``right`` (the subject's side, blended over
:data:`SIDE_BLEND` across the midline) or a template region (``mouth``, ``eyes``, ``jaw``...). One
source may feed several targets (Character Creator splits ``browInnerUp`` into a left and a right
key). Presets: ``arkit`` (Apple's camelCase names), ``vrm`` (VRM "Perfect Sync": the same names
capitalised), ``cc4`` (Character Creator 4 / iClone names), ``facecap`` (Face Cap / Unity's
``eyeBlink_L`` style). A JSON file gives the user's own:
``{"name": ..., "keys": [{"source": "jawOpen", "target": "JawOpen", "gain": 1.0, "region": null}]}``
or the short form ``{"map": {"jawOpen": "JawOpen", ...}}``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from faceforge.data.expressions import ARKIT_NAMES
from faceforge.errors import FaceForgeError

__all__ = ["KeyMap", "Profile", "PRESETS", "load_profile", "region_weights", "SIDE_BLEND"]

#: Width of the blend between the left and right halves of a side-limited key (metres).
SIDE_BLEND = 0.01

_CC4 = {
    "browDownLeft": "Brow_Drop_L", "browDownRight": "Brow_Drop_R",
    "browOuterUpLeft": "Brow_Raise_Outer_L", "browOuterUpRight": "Brow_Raise_Outer_R",
    "cheekSquintLeft": "Cheek_Raise_L", "cheekSquintRight": "Cheek_Raise_R",
    "eyeBlinkLeft": "Eye_Blink_L", "eyeBlinkRight": "Eye_Blink_R",
    "eyeLookDownLeft": "Eye_L_Look_Down", "eyeLookDownRight": "Eye_R_Look_Down",
    "eyeLookInLeft": "Eye_L_Look_R", "eyeLookInRight": "Eye_R_Look_L",
    "eyeLookOutLeft": "Eye_L_Look_L", "eyeLookOutRight": "Eye_R_Look_R",
    "eyeLookUpLeft": "Eye_L_Look_Up", "eyeLookUpRight": "Eye_R_Look_Up",
    "eyeSquintLeft": "Eye_Squint_L", "eyeSquintRight": "Eye_Squint_R",
    "eyeWideLeft": "Eye_Wide_L", "eyeWideRight": "Eye_Wide_R",
    "jawForward": "Jaw_Forward", "jawLeft": "Jaw_L", "jawOpen": "Jaw_Open", "jawRight": "Jaw_R",
    "mouthClose": "Mouth_Close", "mouthDimpleLeft": "Mouth_Dimple_L", "mouthDimpleRight": "Mouth_Dimple_R",
    "mouthFrownLeft": "Mouth_Frown_L", "mouthFrownRight": "Mouth_Frown_R", "mouthLeft": "Mouth_L",
    "mouthLowerDownLeft": "Mouth_Down_Lower_L", "mouthLowerDownRight": "Mouth_Down_Lower_R",
    "mouthPressLeft": "Mouth_Press_L", "mouthPressRight": "Mouth_Press_R", "mouthRight": "Mouth_R",
    "mouthShrugLower": "Mouth_Shrug_Lower", "mouthShrugUpper": "Mouth_Shrug_Upper",
    "mouthSmileLeft": "Mouth_Smile_L", "mouthSmileRight": "Mouth_Smile_R",
    "mouthStretchLeft": "Mouth_Stretch_L", "mouthStretchRight": "Mouth_Stretch_R",
    "mouthUpperUpLeft": "Mouth_Up_Upper_L", "mouthUpperUpRight": "Mouth_Up_Upper_R",
    "noseSneerLeft": "Nose_Sneer_L", "noseSneerRight": "Nose_Sneer_R", "tongueOut": "Tongue_Out",
}  # fmt: skip
#: Character Creator keys that are one half of an ARKit key (source, left target, right target).
_CC4_SPLIT = [
    ("browInnerUp", "Brow_Raise_Inner_L", "Brow_Raise_Inner_R"),
    ("cheekPuff", "Cheek_Puff_L", "Cheek_Puff_R"),
    ("mouthRollLower", "Mouth_Roll_In_Lower_L", "Mouth_Roll_In_Lower_R"),
    ("mouthRollUpper", "Mouth_Roll_In_Upper_L", "Mouth_Roll_In_Upper_R"),
    ("mouthFunnel", "Mouth_Funnel_L", "Mouth_Funnel_R"),
    ("mouthPucker", "Mouth_Pucker_L", "Mouth_Pucker_R"),
]


@dataclass(frozen=True)
class KeyMap:
    """One shape key of the character: made from ``source`` times ``gain``, limited to ``region``."""

    source: str
    target: str
    gain: float = 1.0
    region: str | None = None


@dataclass(frozen=True)
class Profile:
    """A named list of :class:`KeyMap` rows (targets unique)."""

    name: str
    keys: tuple[KeyMap, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "keys": [asdict(k) for k in self.keys]}

    @property
    def targets(self) -> list[str]:
        return [k.target for k in self.keys]


def _arkit() -> Profile:
    return Profile("arkit", tuple(KeyMap(n, n) for n in ARKIT_NAMES))


def _vrm() -> Profile:
    return Profile("vrm", tuple(KeyMap(n, n[0].upper() + n[1:]) for n in ARKIT_NAMES))


def _facecap() -> Profile:
    def name(n: str) -> str:
        for side, suffix in (("Left", "_L"), ("Right", "_R")):
            # jawLeft and mouthLeft are directions, not sides, and keep their names.
            if n.endswith(side) and n[: -len(side)] not in ("jaw", "mouth"):
                return n[: -len(side)] + suffix
        return n

    return Profile("facecap", tuple(KeyMap(n, name(n)) for n in ARKIT_NAMES))


def _cc4() -> Profile:
    keys = [KeyMap(s, t) for s, t in _CC4.items()]
    for source, left, right in _CC4_SPLIT:
        keys += [KeyMap(source, left, region="left"), KeyMap(source, right, region="right")]
    return Profile("cc4", tuple(keys))


#: Preset name -> profile factory.
PRESETS = {"arkit": _arkit, "vrm": _vrm, "cc4": _cc4, "facecap": _facecap}


def load_profile(name_or_path: str, known: list[str], regions: list[str]) -> Profile:
    """A preset by name or a user's JSON profile, checked against the model's names and regions.

    Args:
        name_or_path: ``arkit``, ``vrm``, ``cc4``, ``facecap`` or a path to a JSON profile.
        known: the model's expression names.
        regions: the template's region names (``left``/``right`` are always allowed).

    Raises:
        FaceForgeError: an unreadable file, an unknown source name or region, a duplicate target,
            a gain that is not a finite number.
    """
    if name_or_path in PRESETS:
        profile = PRESETS[name_or_path]()
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise FaceForgeError(
                f"no profile {name_or_path!r}: use one of {', '.join(PRESETS)} or a JSON file"
            )
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FaceForgeError(f"cannot read the profile {path}: {exc}") from exc
        if not isinstance(data, dict) or not ("keys" in data or "map" in data):
            raise FaceForgeError(f"{path}: a profile needs a 'keys' list or a 'map' object")
        try:
            rows = (
                [KeyMap(s, t) for s, t in data["map"].items()]
                if "map" in data
                else [
                    KeyMap(str(r["source"]), str(r["target"]), float(r.get("gain", 1.0)), r.get("region"))
                    for r in data["keys"]
                ]
            )
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise FaceForgeError(f"{path}: each key needs 'source' and 'target' ({exc})") from exc
        profile = Profile(str(data.get("name", path.stem)), tuple(rows))
    unknown = sorted({k.source for k in profile.keys} - set(known))
    if unknown:
        raise FaceForgeError(f"profile {profile.name!r} names expressions the model has not: {unknown}")
    allowed = set(regions) | {"left", "right"}
    bad_regions = sorted({k.region for k in profile.keys if k.region is not None} - allowed)
    if bad_regions:
        raise FaceForgeError(f"profile {profile.name!r} names unknown regions {bad_regions}")
    targets = profile.targets
    duplicates = sorted({t for t in targets if targets.count(t) > 1})
    if duplicates:
        raise FaceForgeError(f"profile {profile.name!r} makes the keys {duplicates} twice")
    if not all(np.isfinite(k.gain) for k in profile.keys):
        raise FaceForgeError(f"profile {profile.name!r} has a gain that is not a finite number")
    if not profile.keys:
        raise FaceForgeError(f"profile {profile.name!r} makes no keys")
    return profile


def region_weights(
    region: str | None, template_vertices: np.ndarray, regions: dict[str, np.ndarray]
) -> np.ndarray:
    """``(V_t,)`` weight in [0, 1] of each template vertex for a region limit (1 everywhere if None)."""
    x = template_vertices[:, 0]
    if region is None:
        return np.ones(len(template_vertices))
    if region in ("left", "right"):
        side = x if region == "left" else -x  # +X is the subject's left
        return np.clip(0.5 + side / SIDE_BLEND, 0.0, 1.0)
    out = np.zeros(len(template_vertices))
    out[regions[region]] = 1.0
    return out
