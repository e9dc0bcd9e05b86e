"""Jobs on faces and on meshes in the model's topology: generate, update identity, random
expression, neutralize, apply to selected, interpolate between two faces, cross-age preview."""

from __future__ import annotations

from typing import Any

import bpy
import numpy as np

from .. import mesh as meshes
from ..parts import write_parts
from .base import (
    FaceForgeInputError,
    Job,
    _check_topology,
    _face,
    _mark,
    _model_mesh,
    _new_faces,
    key_targets,
    metres_per_unit,
    model_key_values,
    new_metric_object,
    set_model_key_values,
)


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
        per_metre = 1.0 / metres_per_unit(self.context, self.obj, self.label)
        targets = key_targets(self.obj, names)  # the keys it has; never a key of the user's own
        written = [k for k, t in enumerate(targets) if t is not None]
        meshes.write_rig(
            self.obj,
            arrays["neutral"][0] * per_metre,
            [targets[k] for k in written],
            arrays["keys"][0][written] * per_metre,
        )
        _mark(self.obj, self.obj.faceforge.kind or "generated", arrays["z_id"][0], names, keys=targets)
        parts = write_parts(self.context, self.obj, result, 0, self.obj.faceforge.key_map, per_metre)
        self.message = f"{self.obj.name}: new identity, {len(written)} shape keys updated" + (
            f", {len(parts)} parts refitted" if parts else ""
        )
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
            vertices = arrays["vertices"] / metres_per_unit(self.context, self.obj, self.label)
            block.data.foreach_set("co", np.ascontiguousarray(vertices, np.float32).ravel())
            set_model_key_values(self.obj, names, np.zeros(len(names)))
            block.value = 1.0
            self.obj.data.update()
            self.message = f"{self.obj.name}: exact sampled expression in the '{self.SAMPLED}' key"
        else:
            set_model_key_values(self.obj, names, arrays["values"])
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
        return "model.rig_scan", {}, {"scan": _scan_in_metres(self.context, self.obj, self.label)}

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
        per_metre = 1.0 / metres_per_unit(self.context, self.obj, self.label)
        neutral = np.ascontiguousarray(arrays["neutral"] * per_metre, np.float32)
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
        self._note_trust(result)
        return self.obj

    def _note_trust(self, result) -> None:
        note = trust_note(result.get("trust"))
        if note:
            self.message += f"; {note}"
            self.level = "WARNING"


def trust_note(trust: dict | None) -> str:
    """What a fit's trust report (``faceforge.model.trust``) tells a user, or "" when the scan
    lies inside the model's space (or the model has no calibrated limits)."""
    if not trust or trust.get("trusted", True):
        return ""
    parts = [f"{row['region']} {row['ratio_to_limit']:.1f}x" for row in trust.get("outside_regions", [])[:3]]
    if trust.get("identity_unlikely"):
        parts.append("an unlikely identity")
    return "outside the model's space (" + ", ".join(parts) + "): check the fit before using it"


class ApplyToSelected(Job):
    """Fit the model to the selected mesh in its topology (e.g. an imported scan) and add the
    expression shape keys of its fitted identity to it; the mesh's own shape stays the basis."""

    label = "Apply to Selected"

    def __init__(self, context, obj=None, existing=None) -> None:
        super().__init__(context)
        self.obj = _model_mesh(obj or context.active_object, self.label)
        #: What happens to a shape key of the user's own with an expression's name: KEEP it (and
        #: skip that expression), REPLACE it, or SUFFIX (the expression beside it as ``name_FF``).
        self.existing = existing or context.scene.faceforge.existing_keys
        if self.existing not in ("KEEP", "REPLACE", "SUFFIX"):
            raise FaceForgeInputError(f"{self.label}: existing keys must be KEEP, REPLACE or SUFFIX")

    def request(self):
        return "model.rig_scan", {}, {"scan": _scan_in_metres(self.context, self.obj, self.label)}

    def apply(self, result):
        arrays, names = result["arrays"], result["names"]
        _check_topology(self.obj, len(arrays["neutral"]), self.label)
        basis = meshes.read_vertices(self.obj.data)
        if self.obj.data.shape_keys is not None:
            basis = meshes.read_key(self.obj.data.shape_keys.reference_key)
        per_metre = 1.0 / metres_per_unit(self.context, self.obj, self.label)
        keys = basis[None] + (arrays["keys"] - arrays["neutral"][None]) * per_metre
        targets = key_targets(self.obj, names, self.existing)
        written = [k for k, t in enumerate(targets) if t is not None]
        kept = [n for n, t in zip(names, targets, strict=True) if t is None]
        beside = [t for n, t in zip(names, targets, strict=True) if t is not None and t != n]
        meshes.write_rig(self.obj, basis, [targets[k] for k in written], keys[written])
        _mark(self.obj, "scan", arrays["z_id"][0], names, keys=targets)
        self.message = (
            f"{self.obj.name}: {len(written)} expression keys, fitted to {result['error_mm']:.2f} mm"
        )
        if kept:
            shown = ", ".join(kept[:4]) + (f" and {len(kept) - 4} more" if len(kept) > 4 else "")
            self.message += f"; kept your own {shown} (Existing Keys: Replace or Suffix writes them)"
        if beside:
            shown = ", ".join(beside[:4]) + (f" and {len(beside) - 4} more" if len(beside) > 4 else "")
            self.message += f"; beside your own keys: {shown}"
        note = trust_note(result.get("trust"))
        if note:
            self.message += f"; {note}"
            self.level = "WARNING"
        return self.obj


def _scan_in_metres(context, obj, what: str) -> np.ndarray:
    """``(V, 3)`` float32 vertices of a scan in metres (its local coordinates in the scene's units)."""
    return meshes.read_vertices(obj.data) * np.float32(metres_per_unit(context, obj, what))


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
        self.source = f"{self.start.name} -> {self.end.name}"

    def request(self):
        # A keyed blend changes only the face's shape keys: no parts for its in-between identities.
        return "model.face", {"parts": self.mode == "OBJECTS"}, {"z_id": self.z}

    def apply(self, result):
        if self.mode == "OBJECTS":
            return self._objects(result)
        return self._keyed(result)

    def _objects(self, result):
        for obj in _made_from(self.source, "inbetween"):
            meshes.remove_object(obj)  # re-running replaces the in-betweens of this pair
        names = [f"{self.start.name} {int(round(100 * t))}%" for t in self.nu]
        expressions = result["names"]  # the in-betweens' key values: the ends' blended, by expression
        first = model_key_values(self.start, expressions)
        last = model_key_values(self.end, expressions)
        values = [(1.0 - t) * first + t * last for t in self.nu]
        created = _new_faces(self.context, names, result, "inbetween", self.source, values)
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
        per_metre = 1.0 / metres_per_unit(self.context, obj, self.label)
        for k, name in enumerate(key_names):
            block = obj.shape_key_add(name=name, from_mix=False)
            neutral = arrays["neutral"][k] * per_metre
            block.data.foreach_set("co", np.ascontiguousarray(neutral, np.float32).ravel())
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
        # In the model's order, all of them (0 for an expression the face has no key for).
        self.values = model_key_values(self.obj, self.obj.faceforge.model_names)

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
        preview = new_metric_object(self.context, name, vertices, loops.reshape(-1, 3))
        preview.faceforge.kind = "preview"
        preview.faceforge.source = self.obj.name
        preview.location = self.obj.location.copy()
        preview.location.x += 0.3 / self.context.scene.unit_settings.scale_length  # 30 cm aside
        self.message = f"{preview.name}: the expression on a typical {self.target} face"
        return preview
