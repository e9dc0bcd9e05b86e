"""FaceForge's capabilities as jobs: backend requests prepared from the scene, results applied to it.

A job is made on the main thread from the current context (validating its input: a bad object
raises :class:`FaceForgeInputError` before anything is sent), names one backend request, and
applies the answer on the main thread. :func:`run` does it synchronously (headless Blender, the
Python API); the operators in ``operators.py`` run the same jobs modally with progress and cancel.
``apply`` either changes the scene completely or, on error, not at all.

Python API (each returns what it made or changed)::

    from bl_ext.user_default.faceforge import jobs
    face = jobs.run(jobs.GenerateFace(bpy.context, seed=3))
"""

from __future__ import annotations

import json
from typing import Any

import bpy
import numpy as np

from . import mesh as meshes
from . import session
from .backend_client import BackendError


class FaceForgeInputError(Exception):
    """The scene or the settings cannot do what was asked; the message says why."""


def _face(obj, what: str):
    """``obj`` if it is a FaceForge face with a rig, else a :class:`FaceForgeInputError`."""
    if obj is None:
        raise FaceForgeInputError(f"{what}: no active object; select a FaceForge face")
    if obj.type != "MESH":
        raise FaceForgeInputError(f"{what}: {obj.name} is a {obj.type.lower()}, not a mesh")
    if not obj.faceforge.is_face or not obj.faceforge.z_id:
        raise FaceForgeInputError(f"{what}: {obj.name} is not a FaceForge face (use Generate Face first)")
    return obj


def _model_mesh(obj, what: str):
    """``obj`` if it is a mesh in the model's topology (when a model is loaded)."""
    if obj is None:
        raise FaceForgeInputError(f"{what}: no active object")
    if obj.type != "MESH":
        raise FaceForgeInputError(f"{what}: {obj.name} is a {obj.type.lower()}, not a mesh")
    info = session.model_info()
    if info is not None and len(obj.data.vertices) != info["n_vertices"]:
        raise FaceForgeInputError(
            f"{what}: {obj.name} has {len(obj.data.vertices)} vertices; the model's topology has "
            f"{info['n_vertices']} (only meshes in the FaceForge head topology can be fitted)"
        )
    vertices = meshes.read_vertices(obj.data)
    if not np.all(np.isfinite(vertices)):
        raise FaceForgeInputError(f"{what}: {obj.name} has vertices that are not finite numbers")
    return obj


def _check_topology(obj, n_vertices: int, what: str) -> None:
    if len(obj.data.vertices) != n_vertices:
        raise FaceForgeInputError(
            f"{what}: {obj.name} has {len(obj.data.vertices)} vertices; the model's topology has {n_vertices}"
        )


class Job:
    """One capability: ``request()`` -> backend call, ``apply(result)`` -> scene change."""

    label = "FaceForge"
    needs_model = True

    def __init__(self, context) -> None:
        self.context = context
        self.message = ""

    def request(self) -> tuple[str, dict, dict[str, np.ndarray] | None]:
        raise NotImplementedError

    def apply(self, result: dict) -> Any:
        raise NotImplementedError


def _mark(obj, kind: str, z_id: np.ndarray, names: list[str], source: str = "") -> None:
    settings = obj.faceforge
    settings.is_face = True
    settings.kind = kind
    settings.z_id_json = json.dumps([float(v) for v in np.asarray(z_id).reshape(-1)])
    settings.key_names_json = json.dumps(list(names))
    info = session.model_info() or {}
    settings.topology_hash = str(info.get("topology_hash", ""))
    settings.source = source


def _new_faces(context, names_of_objects, result, kind: str, source: str = "", values=None):
    """Create one rigged face object per identity in a ``model.face`` result; all or none."""
    arrays, names = result["arrays"], result["names"]
    created = []
    try:
        for k, name in enumerate(names_of_objects):
            obj = meshes.new_mesh_object(context, name, arrays["neutral"][k], arrays["faces"])
            created.append(obj)
            meshes.write_rig(obj, arrays["neutral"][k], names, arrays["keys"][k])
            _mark(obj, kind, arrays["z_id"][k], names, source)
            if values is not None:
                meshes.set_key_values(obj, names, values[k])
    except Exception:
        for obj in created:
            meshes.remove_object(obj)
        raise
    return created


class GenerateFace(Job):
    """A new face object: the identity's neutral face as the basis and one shape key per named
    expression (the 52 ARKit units and the composites), all at value 0."""

    label = "Generate Face"

    def __init__(
        self,
        context,
        seed: int | None = None,
        radius: float | None = None,
        sliders: list[float] | None = None,
        z_id: np.ndarray | None = None,
        name: str = "FaceForge Face",
        location: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__(context)
        settings = context.scene.faceforge
        self.seed = settings.seed if seed is None else int(seed)
        radius = settings.radius if radius is None else radius
        self.radius = radius if radius and radius > 0 else None
        if sliders is None and settings.use_sliders:
            sliders = list(settings.identity_sliders)
        self.sliders = sliders
        self.z_id = None if z_id is None else np.asarray(z_id, dtype=np.float32).reshape(1, -1)
        self.name = name
        self.location = location

    def request(self):
        params: dict[str, Any] = {"seed": self.seed}
        if self.radius is not None:
            params["radius"] = float(self.radius)
        arrays = {}
        if self.z_id is not None:
            arrays["z_id"] = self.z_id
        elif self.sliders is not None:
            arrays["leading"] = np.asarray(self.sliders, dtype=np.float32)
        return "model.face", params, arrays or None

    def apply(self, result):
        (obj,) = _new_faces(self.context, [self.name], result, "generated")
        if self.location is not None:
            obj.location = self.location
        for other in self.context.view_layer.objects.selected:
            other.select_set(False)
        self.context.view_layer.objects.active = obj
        obj.select_set(True)
        self.message = f"{obj.name}: {len(result['names'])} expression shape keys"
        return obj


class UpdateIdentity(Job):
    """Give the active FaceForge face a new identity (seed or sliders); its shape keys, their
    values and animation stay, their shapes follow the new identity."""

    label = "Update Identity"

    def __init__(self, context, obj=None, seed=None, radius=None, sliders=None, z_id=None) -> None:
        super().__init__(context)
        self.obj = _face(obj or context.active_object, self.label)
        self.generate = GenerateFace(context, seed=seed, radius=radius, sliders=sliders, z_id=z_id)

    def request(self):
        return self.generate.request()

    def apply(self, result):
        arrays, names = result["arrays"], result["names"]
        _check_topology(self.obj, arrays["neutral"].shape[1], self.label)
        meshes.write_rig(self.obj, arrays["neutral"][0], names, arrays["keys"][0])
        _mark(self.obj, self.obj.faceforge.kind or "generated", arrays["z_id"][0], names)
        self.message = f"{self.obj.name}: new identity, {len(names)} shape keys updated"
        return self.obj


class RandomExpression(Job):
    """Sample an expression from the expression flow for the active face and set the shape-key
    values that best reproduce it, or write it exactly as a 'Sampled' key."""

    label = "Random Expression"
    SAMPLED = "Sampled"

    def __init__(self, context, obj=None, seed=None, exact=None) -> None:
        super().__init__(context)
        settings = context.scene.faceforge
        self.obj = _face(obj or context.active_object, self.label)
        self.seed = settings.expression_seed if seed is None else int(seed)
        self.exact = settings.exact_expression if exact is None else bool(exact)

    def request(self):
        z_id = np.asarray(self.obj.faceforge.z_id, dtype=np.float32)[None]
        return "model.expression_weights", {"seed": self.seed}, {"z_id": z_id}

    def apply(self, result):
        arrays, names = result["arrays"], result["names"]
        _check_topology(self.obj, len(arrays["vertices"]), self.label)
        if self.exact:
            blocks = self.obj.data.shape_keys.key_blocks
            block = blocks.get(self.SAMPLED) or self.obj.shape_key_add(name=self.SAMPLED, from_mix=False)
            block.data.foreach_set("co", np.ascontiguousarray(arrays["vertices"], np.float32).ravel())
            meshes.set_key_values(self.obj, names, np.zeros(len(names)))
            block.value = 1.0
            self.obj.data.update()
            self.message = f"{self.obj.name}: exact sampled expression in the '{self.SAMPLED}' key"
        else:
            meshes.set_key_values(self.obj, names, arrays["values"])
            self.message = (
                f"{self.obj.name}: {int((arrays['values'] > 0.01).sum())} keys set; they reproduce the "
                f"sample to {result['rms_mm']:.2f} mm RMS"
            )
        return arrays["values"]


class Neutralize(Job):
    """Remove the expression from the active mesh: a FaceForge face's keys go to 0; any other mesh
    in the model's topology (a scan) is fitted and its basis becomes the neutral face."""

    label = "Neutralize"

    def __init__(self, context, obj=None) -> None:
        super().__init__(context)
        self.obj = obj or context.active_object
        if self.obj is not None and self.obj.type == "MESH" and self.obj.faceforge.is_face:
            self.needs_model = False
        else:
            self.obj = _model_mesh(self.obj, self.label)

    def request(self):
        if not self.needs_model:
            return "ping", {}, None
        return "model.rig_scan", {}, {"scan": meshes.read_vertices(self.obj.data)}

    def apply(self, result):
        if not self.needs_model:
            names = self.obj.faceforge.key_names
            meshes.set_key_values(self.obj, names, np.zeros(len(names)))
            blocks = self.obj.data.shape_keys.key_blocks if self.obj.data.shape_keys else {}
            if RandomExpression.SAMPLED in blocks:
                blocks[RandomExpression.SAMPLED].value = 0.0
            self.message = f"{self.obj.name}: all expression keys at 0"
            return self.obj
        arrays = result["arrays"]
        _check_topology(self.obj, len(arrays["neutral"]), self.label)
        mesh = self.obj.data
        neutral = np.ascontiguousarray(arrays["neutral"], np.float32)
        if mesh.shape_keys is not None:
            reference = mesh.shape_keys.reference_key
            old = meshes.read_key(reference)
            for block in mesh.shape_keys.key_blocks:  # keys keep their offsets from the basis
                if block != reference:
                    block.data.foreach_set("co", (meshes.read_key(block) - old + neutral).ravel())
            reference.data.foreach_set("co", neutral.ravel())
        mesh.vertices.foreach_set("co", neutral.ravel())
        mesh.update()
        self.message = f"{self.obj.name}: expression removed (fit error {result['error_mm']:.2f} mm)"
        return self.obj


class ApplyToSelected(Job):
    """Fit the model to the selected mesh in its topology (e.g. an imported scan) and add the
    expression shape keys of its fitted identity to it; the mesh's own shape stays the basis."""

    label = "Apply to Selected"

    def __init__(self, context, obj=None) -> None:
        super().__init__(context)
        self.obj = _model_mesh(obj or context.active_object, self.label)

    def request(self):
        return "model.rig_scan", {}, {"scan": meshes.read_vertices(self.obj.data)}

    def apply(self, result):
        arrays, names = result["arrays"], result["names"]
        _check_topology(self.obj, len(arrays["neutral"]), self.label)
        basis = meshes.read_vertices(self.obj.data)
        if self.obj.data.shape_keys is not None:
            basis = meshes.read_key(self.obj.data.shape_keys.reference_key)
        keys = basis[None] + (arrays["keys"] - arrays["neutral"][None])
        meshes.write_rig(self.obj, basis, names, keys)
        _mark(self.obj, "scan", arrays["z_id"][0], names)
        self.message = f"{self.obj.name}: {len(names)} expression keys, fitted to {result['error_mm']:.2f} mm"
        return self.obj


def _made_from(source: str, kind: str) -> list:
    return [o for o in bpy.data.objects if o.faceforge.kind == kind and o.faceforge.source == source]


def _selected_pair(context, what: str):
    active = _face(context.active_object, what)
    others = [o for o in context.selected_objects if o != active and o.type == "MESH"]
    others = [o for o in others if o.faceforge.is_face]
    if len(others) != 1:
        raise FaceForgeInputError(f"{what}: select exactly two FaceForge faces (the active one is the start)")
    return active, others[0]


class Interpolate(Job):
    """Faces between the active and the other selected FaceForge face, on the straight line
    between their latent identity codes (BabyFlow Eq. 23): new objects, or a keyed blend."""

    label = "Interpolate"

    def __init__(self, context, steps=None, mode=None, frame_start=None, frame_end=None) -> None:
        super().__init__(context)
        settings = context.scene.faceforge
        self.start, self.end = _selected_pair(context, self.label)
        self.steps = settings.interpolation_steps if steps is None else int(steps)
        if self.steps < 1:
            raise FaceForgeInputError(f"{self.label}: at least one in-between face, got {self.steps}")
        self.mode = settings.interpolation_mode if mode is None else mode
        self.frame_start = context.scene.frame_start if frame_start is None else int(frame_start)
        self.frame_end = context.scene.frame_end if frame_end is None else int(frame_end)
        nu = np.linspace(0.0, 1.0, self.steps + 2)
        self.nu = nu[1:-1] if self.mode == "OBJECTS" else nu[1:]
        z0 = np.asarray(self.start.faceforge.z_id, np.float32)
        z1 = np.asarray(self.end.faceforge.z_id, np.float32)
        self.z = ((1.0 - self.nu)[:, None] * z0 + self.nu[:, None] * z1).astype(np.float32)
        self.values = [
            (1.0 - t) * meshes.key_values(self.start, self.start.faceforge.key_names)
            + t * meshes.key_values(self.end, self.start.faceforge.key_names)
            for t in self.nu
        ]
        self.source = f"{self.start.name} -> {self.end.name}"

    def request(self):
        return "model.face", {}, {"z_id": self.z}

    def apply(self, result):
        if self.mode == "OBJECTS":
            return self._objects(result)
        return self._keyed(result)

    def _objects(self, result):
        for obj in _made_from(self.source, "inbetween"):
            meshes.remove_object(obj)  # re-running replaces the in-betweens of this pair
        names = [f"{self.start.name} {int(round(100 * t))}%" for t in self.nu]
        created = _new_faces(self.context, names, result, "inbetween", self.source, self.values)
        for obj, t in zip(created, self.nu, strict=True):
            obj.location = (1.0 - t) * self.start.location + t * self.end.location
        self.message = f"{len(created)} in-between faces"
        return created

    def _keyed(self, result):
        obj, arrays = self.start, result["arrays"]
        _check_topology(obj, arrays["neutral"].shape[1], self.label)
        key_names = [f"Blend {k + 1:02d}" for k in range(len(self.nu))]
        shape_keys = obj.data.shape_keys
        for block in [b for b in shape_keys.key_blocks if b.name.startswith("Blend ")]:
            obj.shape_key_remove(block)  # re-running replaces the blend
        frames = np.linspace(self.frame_start, self.frame_end, len(self.nu) + 1)
        for k, name in enumerate(key_names):
            block = obj.shape_key_add(name=name, from_mix=False)
            block.data.foreach_set("co", np.ascontiguousarray(arrays["neutral"][k], np.float32).ravel())
            # Hat functions: key k peaks at its frame, so the blend walks the latent line piece by piece
            # (the last key stays at 1 from its frame on).
            hat = [(frames[k], 0.0), (frames[k + 1], 1.0)]
            if k + 2 < len(frames):
                hat.append((frames[k + 2], 0.0))
            for frame, value in hat:
                block.value = value
                block.keyframe_insert("value", frame=float(frame))
            block.value = 0.0
        obj.data.update()
        self.message = (
            f"{obj.name}: {len(key_names)} blend keys keyed over frames {self.frame_start}-{self.frame_end}"
        )
        return obj


class TransferPreview(Job):
    """Show the active face's current expression on the typical face of another age group, with
    BabyFlow's intensity factor: a preview object, replaced on each run."""

    label = "Cross-Age Preview"

    def __init__(self, context, obj=None, target_age=None, intensity=None) -> None:
        super().__init__(context)
        settings = context.scene.faceforge
        self.obj = _face(obj or context.active_object, self.label)
        self.target = settings.target_age if target_age is None else target_age
        self.intensity = settings.transfer_intensity if intensity is None else float(intensity)
        self.values = meshes.key_values(self.obj, self.obj.faceforge.key_names)

    def request(self):
        params = {"age_group": self.target, "intensity": self.intensity}
        return "model.mix", params, {"values": self.values}

    def apply(self, result):
        vertices = result["arrays"]["vertices"]
        _check_topology(self.obj, len(vertices), self.label)
        for old in _made_from(self.obj.name, "preview"):
            meshes.remove_object(old)
        loops = np.empty(len(self.obj.data.loops), dtype=np.int32)
        self.obj.data.loops.foreach_get("vertex_index", loops)  # FaceForge heads are triangle meshes
        name = f"{self.obj.name} as {self.target}"
        preview = meshes.new_mesh_object(self.context, name, vertices, loops.reshape(-1, 3))
        preview.faceforge.kind = "preview"
        preview.faceforge.source = self.obj.name
        preview.location = self.obj.location.copy()
        preview.location.x += 0.3
        self.message = f"{preview.name}: the expression on a typical {self.target} face"
        return preview


class BuildModel(Job):
    """Build the default model (and the default dataset first if missing) and load it."""

    label = "Build Default Model"
    needs_model = False

    def __init__(self, context, small: bool = False, force: bool = False) -> None:
        super().__init__(context)
        self.small = small
        self.force = force

    def request(self):
        return "model.build", {"small": self.small, "force": self.force}, None

    def apply(self, result):
        # The backend holds the new model; the scene uses it from now on.
        if session.wanted_model(self.context) != result["path"]:
            self.context.scene.faceforge.model_path = result["path"]
        session.model_loaded(result["path"], result.get("info", {}))
        self.message = f"model {'reused' if result.get('cached') else 'built'}: {result['path']}"
        return result["path"]


class LoadModel(Job):
    """Load the scene's model into the backend (done before any model job when needed)."""

    label = "Load Model"
    needs_model = False

    def request(self):
        path = session.wanted_model(self.context)
        return "model.load", ({} if path is None else {"path": path}), None

    def apply(self, result):
        session.model_loaded(session.wanted_model(self.context), result)
        self.message = f"model loaded: {result.get('path')} ({result.get('n_vertices')} vertices)"
        return result


def _rig_arrays(obj) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``names``, basis ``(V, 3)`` and key displacements ``(E, V, 3)`` of a FaceForge face."""
    names = obj.faceforge.key_names
    blocks = obj.data.shape_keys.key_blocks if obj.data.shape_keys else {}
    names = [n for n in names if n in blocks]
    if not names:
        raise FaceForgeInputError(f"{obj.name} has no FaceForge expression shape keys")
    basis = meshes.read_key(obj.data.shape_keys.reference_key)
    keys = np.stack([meshes.read_key(blocks[n]) for n in names]) - basis[None]
    return names, basis, keys


class _TakeJob(Job):
    """Shared by the jobs that bake a motion onto the active face as a take."""

    needs_model = False

    def __init__(self, context, obj=None) -> None:
        super().__init__(context)
        self.obj = _face(obj or context.active_object, self.label)
        self.settings = context.scene.faceforge_animate
        self.names, self.basis, self.keys = _rig_arrays(self.obj)
        fps = context.scene.render.fps / context.scene.render.fps_base
        self.fps = fps
        self.exact = self.settings.exact
        self.start = self.settings.start_frame

    def frames(self, seconds: float) -> int:
        return int(round(seconds * self.fps))

    def common(self) -> tuple[dict, dict]:
        params: dict[str, Any] = {"exact": self.exact}
        path = self.settings.model_path
        if path:
            params["path"] = bpy.path.abspath(path)
        return params, {"neutral": self.basis, "keys": self.keys}

    def bake(self, result, name: str):
        from . import animation

        arrays = result["arrays"]
        values = arrays["values"]
        if len(values) < 2:
            raise FaceForgeInputError(f"{self.label}: the take has {len(values)} frame(s)")
        strip = animation.write_take(self.obj, name, self.start, self.names, values)
        if self.exact:
            animation.attach_residual_cache(
                self.obj, name, self.basis, arrays["residual"], self.start, animation.cache_folder()
            )
        rms = arrays["rms_mm"]
        self.message = (
            f"{name}: {len(values)} frames from {self.start} on {self.obj.name}; shape keys reproduce the "
            f"motion to {float(np.mean(rms)):.2f} mm RMS (worst frame {float(np.max(rms)):.2f} mm)"
            + ("; the rest is in a point cache" if self.exact else "")
        )
        return strip


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
        from . import animation

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
        return np.asarray(points, dtype=np.float32)

    def request(self):
        params, arrays = self.common()
        params["intensity"] = float(self.settings.intensity)
        arrays["source"] = self.positions
        return "animate.transfer", params, arrays

    def apply(self, result):
        return self.bake(result, f"FF from {self.source.name}")


class SimulateTake(_TakeJob):
    """Simulate the active face's current animation over a frame range with the physical face model
    (FEM soft tissue, skull and jaw, lip contact, gravity, paralysis, jaw scale) and bake the
    simulated skin as a take: shape-key F-curves plus an exact per-frame point cache."""

    label = "Simulate"

    def __init__(self, context, obj=None, frame_start=None, frame_end=None) -> None:
        Job.__init__(self, context)
        self.obj = _face(obj or context.active_object, self.label)
        self.settings = context.scene.faceforge_physics
        s = self.settings
        self.names, self.basis, self.keys = _rig_arrays(self.obj)
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
            if track.name != take:
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
        self.obj.data.calc_loop_triangles()
        tris = np.empty(len(self.obj.data.loop_triangles) * 3, dtype=np.int32)
        self.obj.data.loop_triangles.foreach_get("vertices", tris)
        params: dict[str, Any] = {
            "resolution_mm": float(s.resolution),
            "contact": bool(s.contact),
            "jaw_scale": float(s.jaw_scale),
            "jaw_key": self.names.index("jawOpen") if "jawOpen" in self.names else -1,
            "device": str(s.device),
        }
        if self.gravity is not None:
            params["gravity"] = self.gravity
        arrays = {
            "neutral": self.basis,
            "faces": tris.reshape(-1, 3),
            "keys": self.keys,
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


def calls(job: Job) -> list[tuple[str, dict, dict | None]]:
    """The backend calls a job needs, a ``model.load`` first when the model is not loaded."""
    out = []
    if job.needs_model:
        load = session.model_request(job.context)
        if load is not None:
            out.append((*load, None))
    out.append(job.request())
    return out


def record_load(context, method: str, result: dict) -> None:
    """Remember a ``model.load`` answer (also checks the topology of the job's object)."""
    if method == "model.load":
        session.model_loaded(session.wanted_model(context), result)


def run(job: Job, progress=None, timeout: float | None = None):
    """Run a job synchronously (headless, Python API): backend calls, then apply; returns apply's result.

    Raises:
        FaceForgeInputError, BackendError: nothing in the scene was changed.
    """
    backend = session.ensure_started(job.context)
    result = None
    for method, params, arrays in calls(job):
        result = backend.call(method, params, arrays=arrays, timeout=timeout, progress=progress)
        record_load(job.context, method, result)
    _recheck(job)
    return job.apply(result)


def _recheck(job: Job) -> None:
    """Input checks that need the loaded model (topology), repeated once it is loaded."""
    obj = getattr(job, "obj", None)
    if obj is not None and job.needs_model and not obj.faceforge.is_face:
        _model_mesh(obj, job.label)


__all__ = [
    "ApplyToSelected",
    "BakeTake",
    "InterpolateTakes",
    "TransferMotion",
    "SimulateTake",
    "BackendError",
    "BuildModel",
    "FaceForgeInputError",
    "GenerateFace",
    "Interpolate",
    "Job",
    "LoadModel",
    "Neutralize",
    "RandomExpression",
    "TransferPreview",
    "UpdateIdentity",
    "calls",
    "run",
]
