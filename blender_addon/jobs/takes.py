"""Jobs that bake a motion onto a face as a take: generated, interpolated, transferred."""

from __future__ import annotations

import json
from typing import Any

import bpy
import numpy as np

from .. import mesh as meshes
from .base import FaceForgeInputError, Job, _face, metres_per_unit
from .characters import character_rig


def _rig_arrays(obj) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``names`` (shape keys), basis ``(V, 3)`` and key displacements ``(E, V, 3)`` of a FaceForge
    face, in its local coordinates."""
    names = obj.faceforge.key_names
    blocks = obj.data.shape_keys.key_blocks if obj.data.shape_keys else {}
    names = [n for n in names if n in blocks]
    if not names:
        raise FaceForgeInputError(f"{obj.name} has no FaceForge expression shape keys")
    basis = meshes.read_key(obj.data.shape_keys.reference_key)
    keys = np.stack([meshes.read_key(blocks[n]) for n in names]) - basis[None]
    return names, basis, keys


class _TakeJob(Job):
    """Shared by the jobs that bake a motion onto the active face as a take.

    The face is a FaceForge face (its keys are sent) or a retargeted character: the take is then
    made on the character's FaceForge proxy (its fitted identity, decoded by the loaded face
    model) and each of the character's keys takes the value of the FaceForge expression it was
    made from."""

    needs_model = False

    def __init__(self, context, obj=None) -> None:
        super().__init__(context)
        obj = obj or context.active_object
        self.settings = context.scene.faceforge_animate
        self.exact = self.settings.exact
        self.rig = character_rig(obj) if obj is not None and not obj.faceforge.is_face else None
        if self.rig is None:
            self.obj = _face(obj, self.label)
            self.names, self.basis, self.keys = _rig_arrays(self.obj)
            self.metres = metres_per_unit(context, self.obj, self.label)  # the backend works in metres
        else:
            self.obj = obj
            self.needs_model = True  # the proxy is decoded by the face model
            self.any_topology = True
            self.names = list(self.rig["targets"])
            if self.exact:
                raise FaceForgeInputError(
                    f"{self.label}: an exact take plays a FaceForge face's frames; on the character "
                    f"{obj.name} the take drives its shape keys (turn Exact off)"
                )
        fps = context.scene.render.fps / context.scene.render.fps_base
        self.fps = fps
        self.start = self.settings.start_frame

    def frames(self, seconds: float) -> int:
        return int(round(seconds * self.fps))

    def common(self) -> tuple[dict, dict]:
        params: dict[str, Any] = {"exact": self.exact}
        path = self.settings.model_path
        if path:
            params["path"] = bpy.path.abspath(path)
        if self.rig is not None:
            params.update(identity=self.rig["identity"], sources=self.rig["sources"])
            return params, {}
        return params, {"neutral": self.basis * self.metres, "keys": self.keys * self.metres}

    def part_takes(self, values: np.ndarray) -> list:
        """``(object, key names, (T, K) values)`` of a character's part objects (eyes, teeth...)."""
        if self.rig is None:
            return []
        column = {name: k for k, name in enumerate(self.rig["sources"])}
        out = []
        for name in json.loads(self.obj.get("faceforge_character_parts", "[]")):
            part = bpy.data.objects.get(name)
            rig = character_rig(part) if part is not None else None
            if rig is None:
                continue
            driven = _driven_keys(part)  # keys that follow the head by drivers need no take
            names = [n for n, source in rig["targets"].items() if source in column and n not in driven]
            if names:
                out.append((part, names, values[:, [column[rig["targets"][n]] for n in names]]))
        return out

    def key_values(self, values: np.ndarray) -> np.ndarray:
        """``(T, len(names))`` values of the object's keys from the backend's ``values``."""
        if self.rig is None:
            return values
        column = {name: k for k, name in enumerate(self.rig["sources"])}
        return values[:, [column[self.rig["targets"][n]] for n in self.names]]

    def bake(self, result, name: str):
        from .. import animation

        arrays = result["arrays"]
        values = self.key_values(arrays["values"])
        if len(values) < 2:
            raise FaceForgeInputError(f"{self.label}: the take has {len(values)} frame(s)")
        # Editable (reduced Bezier) keys unless the take is exact (its cache plays the frames and the
        # dense keys show the closest key mix when it is muted) or dense keys were asked for.
        dense = self.exact or getattr(self.settings, "dense_keys", False)
        tolerance = None if dense else animation.KEY_TOLERANCE
        strip = animation.write_take(self.obj, name, self.start, self.names, values, tolerance)
        for part, part_names, part_values in self.part_takes(arrays["values"]):
            animation.write_take(part, name, self.start, part_names, part_values, tolerance)
        if self.exact:  # the frames exactly: key mix + residual
            exact = (
                self.basis[None]
                + np.tensordot(values.astype(np.float64), self.keys, 1)
                + arrays["residual"] / self.metres
            )
            animation.attach_exact_cache(self.obj, name, exact, self.start, animation.cache_folder())
        rms = arrays["rms_mm"]
        self.message = (
            f"{name}: {len(values)} frames from {self.start} on {self.obj.name}; shape keys reproduce the "
            f"motion to {float(np.mean(rms)):.2f} mm RMS (worst frame {float(np.max(rms)):.2f} mm)"
            + ("; the rest is in a point cache" if self.exact else "")
        )
        return strip


def _driven_keys(obj) -> set[str]:
    """Names of the object's shape keys whose value is driven."""
    keys = obj.data.shape_keys if obj.type == "MESH" else None
    drivers = keys.animation_data.drivers if keys is not None and keys.animation_data else []
    return {d.data_path.split('"')[1] for d in drivers if d.data_path.startswith("key_blocks[")}


class BakeTake(_TakeJob):
    """Generate a motion (Motion3DGAN landmarks densified by S2D-Dec) and bake it onto the active
    face's expression shape keys as a take on the NLA."""

    label = "Bake Take"

    def __init__(self, context, obj=None, label=None, seed=None) -> None:
        super().__init__(context, obj)
        s = self.settings
        self.motion = s.label if label is None else label
        self.seed = s.seed if seed is None else int(seed)
        self.onset = self.frames(s.seconds)
        self.hold = self.frames(s.hold_seconds)
        self.release = self.frames(s.release_seconds) if s.release else 0
        if self.onset < 2:
            raise FaceForgeInputError(
                f"{self.label}: a length of {s.seconds:g} s is {self.onset} frame(s) at {self.fps:g} fps; "
                "a take needs at least 2"
            )

    def request(self):
        params, arrays = self.common()
        params.update(
            label=self.motion, seed=self.seed, onset_frames=self.onset, hold_frames=self.hold,
            release_frames=self.release, intensity=float(self.settings.intensity),
        )  # fmt: skip
        return "animate.take", params, arrays

    def apply(self, result):
        from .. import animation

        return self.bake(result, animation.take_name(self.motion, self.seed))


class InterpolateTakes(BakeTake):
    """Bake the motion part-way along the sphere geodesic between two generated motions."""

    label = "Interpolate Takes"

    def request(self):
        method, params, arrays = super().request()
        s = self.settings
        params.update(other_label=s.other_label, other_seed=int(s.other_seed), blend=float(s.blend))
        return method, params, arrays

    def apply(self, result):
        s = self.settings
        name = f"FF {self.motion} {self.seed} + {s.other_label} {s.other_seed} @{s.blend:.2f}"
        return self.bake(result, name)


class TransferMotion(_TakeJob):
    """Drive the active face with the motion of another: an animated face in the model's topology
    or an empty whose 68 child empties are animated landmarks (iBUG order by name), densified
    by S2D-Dec and baked as a take."""

    label = "Transfer Motion"

    def __init__(self, context, obj=None, source=None, frame_start=None, frame_end=None) -> None:
        super().__init__(context, obj)
        others = [o for o in context.selected_objects if o != self.obj]
        self.source = source or (others[0] if len(others) == 1 else None)
        if self.source is None:
            raise FaceForgeInputError(
                f"{self.label}: select the source (an animated face or landmark empties)"
            )
        scene = context.scene
        first = scene.frame_start if frame_start is None else int(frame_start)
        last = scene.frame_end if frame_end is None else int(frame_end)
        if last <= first:
            raise FaceForgeInputError(f"{self.label}: the frame range {first}-{last} is empty")
        self.positions = self._sample(context, first, last)

    def _sample(self, context, first: int, last: int) -> np.ndarray:
        scene = context.scene
        current = scene.frame_current
        points = []
        children = sorted((c for c in self.source.children if c.type == "EMPTY"), key=lambda c: c.name)
        if self.source.type == "EMPTY" and len(children) != 68:
            raise FaceForgeInputError(
                f"{self.label}: {self.source.name} has {len(children)} child empties; 68 landmarks are needed"
            )
        if self.source.type not in ("EMPTY", "MESH"):
            raise FaceForgeInputError(
                f"{self.label}: {self.source.name} is neither a mesh nor landmark empties"
            )
        # Landmark empties are read in the world (scene units), a mesh in its own coordinates.
        if self.source.type == "EMPTY":
            metres = float(scene.unit_settings.scale_length)
        else:
            metres = metres_per_unit(context, self.source, self.label)
        try:
            for frame in range(first, last + 1):
                scene.frame_set(frame)
                if self.source.type == "EMPTY":
                    points.append([list(c.matrix_world.translation) for c in children])
                else:
                    depsgraph = context.evaluated_depsgraph_get()
                    evaluated = self.source.evaluated_get(depsgraph)
                    points.append(meshes.read_vertices(evaluated.data))
        finally:
            scene.frame_set(current)
        return np.asarray(points, dtype=np.float32) * np.float32(metres)

    def request(self):
        params, arrays = self.common()
        params["intensity"] = float(self.settings.intensity)
        arrays["source"] = self.positions
        return "animate.transfer", params, arrays

    def apply(self, result):
        return self.bake(result, f"FF from {self.source.name}")
