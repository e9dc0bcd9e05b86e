"""The physics job: simulate a face's animation with the physical face model, baked as a take."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import animation
from .. import mesh as meshes
from .base import FaceForgeInputError, Job, _face, metres_per_unit
from .characters import character_rig, read_character_map
from .takes import _rig_arrays, _TakeJob


class SimulateTake(_TakeJob):
    """Simulate the active face's current animation over a frame range with the physical face model
    (FEM soft tissue, skull and jaw, lip contact, gravity, paralysis, jaw scale) and bake the
    simulated skin as a take: shape-key F-curves plus an exact per-frame point cache."""

    label = "Simulate"
    deadline = 6 * 3600.0  # long takes at fine lattices: seconds per frame, thousands of frames

    def __init__(self, context, obj=None, frame_start=None, frame_end=None) -> None:
        Job.__init__(self, context)
        self.obj = _face(obj or context.active_object, self.label)
        self.rig = None  # a FaceForge face (a retargeted character simulates in SimulateCharacter)
        self.settings = context.scene.faceforge_physics
        s = self.settings
        self.names, self.basis, self.keys = _rig_arrays(self.obj)
        self.metres = metres_per_unit(context, self.obj, self.label)
        self.exact = True  # the simulated skin is stored exactly: keys + point cache
        self.first = s.frame_start if frame_start is None else int(frame_start)
        self.last = s.frame_end if frame_end is None else int(frame_end)
        self.start = self.first
        if self.last < self.first:
            raise FaceForgeInputError(f"{self.label}: the frame range {self.first}-{self.last} is empty")
        self.paralysis = None
        if s.paralysis_group:
            group = self.obj.vertex_groups.get(s.paralysis_group)
            if group is None:
                raise FaceForgeInputError(
                    f"{self.label}: {self.obj.name} has no vertex group {s.paralysis_group!r}"
                )
            weights = np.zeros(len(self.obj.data.vertices), dtype=np.float32)
            for v in self.obj.data.vertices:
                for g in v.groups:
                    if g.group == group.index:
                        weights[v.index] = g.weight
            self.paralysis = weights
        self.gravity = None
        if s.gravity:
            direction = self.obj.matrix_world.to_3x3().inverted() @ s.gravity_direction
            if direction.length == 0:
                raise FaceForgeInputError(f"{self.label}: the gravity direction is zero")
            self.gravity = [float(c) * 9.81 for c in direction.normalized()]
        self.values = self._sample(context)

    def _silence_sources(self, take: str) -> None:
        """The simulated take replaces the animation it came from: the active action becomes a muted
        NLA track (kept in the file) and the other takes are muted, so the take plays alone."""
        anim = self.obj.data.shape_keys.animation_data
        if anim is None:
            return
        if anim.action is not None:
            source = anim.action
            track = anim.nla_tracks.new()
            track.name = f"FF source {source.name}"
            track.strips.new(source.name, int(source.frame_range[0]), source)
            anim.action = None
        for track in anim.nla_tracks:
            if track.name not in (take, animation.REST_TRACK):
                track.mute = True

    def _sample(self, context) -> np.ndarray:
        """Shape-key values of every frame in the range, as the animation system evaluates them."""
        scene = context.scene
        current = scene.frame_current
        blocks = self.obj.data.shape_keys.key_blocks
        rows = []
        try:
            for frame in range(self.first, self.last + 1):
                scene.frame_set(frame)
                rows.append([blocks[n].value for n in self.names])
        finally:
            scene.frame_set(current)
        return np.asarray(rows, dtype=np.float32)

    def request(self):
        s = self.settings
        jaw = self.obj.faceforge.key_map.get("jawOpen")  # the key holding it (jawOpen_FF beside the user's)
        self.obj.data.calc_loop_triangles()
        tris = np.empty(len(self.obj.data.loop_triangles) * 3, dtype=np.int32)
        self.obj.data.loop_triangles.foreach_get("vertices", tris)
        params: dict[str, Any] = {
            "resolution_mm": float(s.resolution),
            "contact": bool(s.contact),
            "jaw_scale": float(s.jaw_scale),
            "jaw_key": self.names.index(jaw) if jaw in self.names else -1,
            "device": str(s.device),
        }
        if self.gravity is not None:
            params["gravity"] = self.gravity
        arrays = {
            "neutral": self.basis * self.metres,
            "faces": tris.reshape(-1, 3),
            "keys": self.keys * self.metres,
            "values": self.values,
        }
        if self.paralysis is not None:
            arrays["paralysis"] = self.paralysis
        return "physics.simulate", params, arrays

    def apply(self, result):
        name = f"FF physics {self.first}-{self.last}"
        self._silence_sources(name)
        strip = self.bake(result, name)
        summary = result.get("summary", {})
        self.message += (
            f"; simulated on {summary.get('elements', '?')} elements, "
            f"{summary.get('seconds_per_frame', 0.0):.2f} s per frame"
        )
        return strip


class SimulateCharacter(Job):
    """Simulate a retargeted character's animation on its FaceForge proxy (the identity fitted to
    it) and carry the physics back through its correspondence: a point cache over the frame range
    of the character's own shape-key pose plus what the simulation added (lips kept apart, tissue
    sagging under gravity). Its keys and their animation are left as they are."""

    label = "Simulate"
    any_topology = True
    deadline = 6 * 3600.0

    def __init__(self, context, obj=None, frame_start=None, frame_end=None) -> None:
        super().__init__(context)
        self.obj = obj or context.active_object
        self.rig = character_rig(self.obj)
        if self.rig is None:
            raise FaceForgeInputError(f"{self.label}: {self.obj.name} is not a retargeted character")
        self.map = read_character_map(self.obj, self.label)
        s = context.scene.faceforge_physics
        self.settings = s
        self.first = s.frame_start if frame_start is None else int(frame_start)
        self.last = s.frame_end if frame_end is None else int(frame_end)
        if self.last < self.first:
            raise FaceForgeInputError(f"{self.label}: the frame range {self.first}-{self.last} is empty")
        if s.paralysis_group:
            raise FaceForgeInputError(
                f"{self.label}: paralysis is painted on a FaceForge face; a character's simulation "
                "has none (clear Paralysis Group)"
            )
        self.gravity = None
        if s.gravity:
            direction = self.obj.matrix_world.to_3x3().inverted() @ s.gravity_direction
            if direction.length == 0:
                raise FaceForgeInputError(f"{self.label}: the gravity direction is zero")
            self.gravity = [float(c) * 9.81 for c in direction.normalized()]
        self.targets = list(self.rig["targets"])
        self.values, self.poses = self._sample(context)

    def _sample(self, context) -> tuple[np.ndarray, np.ndarray]:
        """Key values ``(T, K)`` and the shape-key pose ``(T, V, 3)`` of every frame (modifiers off:
        the cache replaces the positions before the armature deforms them)."""
        scene = context.scene
        current = scene.frame_current
        blocks = self.obj.data.shape_keys.key_blocks
        shown = [(m, m.show_viewport) for m in self.obj.modifiers]
        values, poses = [], []
        try:
            for modifier, _ in shown:
                modifier.show_viewport = False
            for frame in range(self.first, self.last + 1):
                scene.frame_set(frame)
                values.append([blocks[n].value for n in self.targets])
                evaluated = self.obj.evaluated_get(context.evaluated_depsgraph_get())
                poses.append(meshes.read_vertices(evaluated.data))
        finally:
            for modifier, visible in shown:
                modifier.show_viewport = visible
            scene.frame_set(current)
        return np.asarray(values, dtype=np.float64), np.asarray(poses, dtype=np.float32)

    def request(self):
        s = self.settings
        sources = [self.rig["targets"][n] for n in self.targets]
        names = list(dict.fromkeys(sources))
        # The mean where several keys share one FaceForge expression (a split key's halves).
        values = np.stack(
            [self.values[:, [k for k, x in enumerate(sources) if x == e]].mean(1) for e in names], 1
        )
        params: dict[str, Any] = {
            "identity": self.rig["identity"],
            "sources": names,
            "to_character": self.map["to_character"],
            "resolution_mm": float(s.resolution),
            "contact": bool(s.contact),
            "jaw_scale": float(s.jaw_scale),
            "device": str(s.device),
        }
        if self.gravity is not None:
            params["gravity"] = self.gravity
        arrays = {"values": values.astype(np.float32)}
        arrays.update({k: self.map[k] for k in ("map_faces", "map_weights", "on_face")})
        return "physics.simulate_character", params, arrays

    def apply(self, result):
        corrections = np.asarray(result["arrays"]["corrections"], dtype=np.float32)
        if corrections.shape != self.poses.shape:
            raise FaceForgeInputError(f"{self.label}: {self.obj.name} changed while it was simulated")
        name = f"FF physics {self.first}-{self.last}"
        old = self.obj.modifiers.get(name)
        if old is not None:
            self.obj.modifiers.remove(old)
        #: What the cache plays: the shape-key pose plus the carried physics ``(T, V, 3)``.
        self.frames = self.poses + corrections
        modifier = animation.attach_exact_cache(
            self.obj, name, self.frames, self.first, animation.cache_folder()
        )
        moved = float(np.linalg.norm(corrections, axis=2).max()) if corrections.size else 0.0
        summary = result.get("summary", {})
        self.message = (
            f"{name} on {self.obj.name}: simulated on its FaceForge proxy ({summary.get('elements', '?')} "
            f"elements, {summary.get('seconds_per_frame', 0.0):.2f} s per frame); physics moves the "
            f"character up to {moved:.3g} units beyond its keys"
        )
        return modifier
