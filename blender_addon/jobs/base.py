"""What every job shares: :class:`Job`, :class:`FaceForgeInputError`, the checks of the object a
job works on, marking new faces, and running a job synchronously (:func:`run`)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .. import mesh as meshes
from .. import session
from ..parts import write_parts
from ..skin import write_surface

#: Suffix of a FaceForge key written beside a key of the user's own with the same name.
SUFFIX = "_FF"


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
    #: The job takes a mesh of any topology (a character), not only the model's.
    any_topology = False
    #: Seconds the backend call may take before it is abandoned (and cancelled). Generous: a hung
    #: backend is caught sooner by the client's watchdog (a ping after 15 s of silence).
    deadline: float | None = 900.0

    def __init__(self, context) -> None:
        self.context = context
        self.message = ""
        #: Blender report level of the message: INFO, or WARNING when the result needs a look.
        self.level = "INFO"

    def request(self) -> tuple[str, dict, dict[str, np.ndarray] | None]:
        raise NotImplementedError

    def apply(self, result: dict) -> Any:
        raise NotImplementedError


def metres_per_unit(context, obj, what: str) -> float:
    """Metres per unit of ``obj``'s local coordinates: the scene's Unit Scale times the object's
    world scale. The backend works in metres: a job multiplies the positions it sends by this and
    divides the positions it gets back.

    Raises:
        FaceForgeInputError: the object is scaled unevenly (a face would be distorted, not resized).
    """
    unit = float(context.scene.unit_settings.scale_length)
    scale = np.abs(np.asarray(obj.matrix_world.to_scale(), dtype=np.float64))
    if unit <= 0 or scale.min() <= 0 or scale.max() > 1.01 * scale.min():
        x, y, z = scale
        raise FaceForgeInputError(
            f"{what}: {obj.name} is scaled unevenly ({x:.3g}, {y:.3g}, {z:.3g}); apply its scale "
            "(Object > Apply > Scale) first"
        )
    return unit * float(scale.mean())


def new_metric_object(context, name: str, vertices: np.ndarray, faces: np.ndarray):
    """A new mesh object whose local coordinates are ``vertices (V, 3)`` in metres, scaled by the
    inverse of the scene's Unit Scale so that it has its true size in the scene's units (a 20 cm
    face is 20 units in a centimetre scene) while its keys and caches stay in metres."""
    obj = meshes.new_mesh_object(context, name, vertices, faces)
    obj.scale = (1.0 / float(context.scene.unit_settings.scale_length),) * 3
    return obj


def model_key_values(obj, model_names: list[str]) -> np.ndarray:
    """``(E,)`` values of the model's expressions ``model_names`` on ``obj``, read through its key
    map (a key written as ``name_FF`` holds ``name``); 0 where the object has no key for one."""
    key_map = obj.faceforge.key_map
    return meshes.key_values(obj, [key_map.get(n, "") for n in model_names])


def set_model_key_values(obj, model_names: list[str], values: np.ndarray) -> None:
    """Set the keys that hold the model's expressions ``model_names`` (never a key of the user's
    own that FaceForge did not write); expressions without a key are skipped."""
    key_map = obj.faceforge.key_map
    meshes.set_key_values(obj, [key_map.get(n, "") for n in model_names], values)


def _mark(
    obj, kind: str, z_id: np.ndarray, names: list[str], source: str = "", keys: list | None = None
) -> None:
    """Mark ``obj`` as a FaceForge face of identity ``z_id`` whose shape keys ``keys`` (default: the
    same names; None or "" where it has none) hold the model's expressions ``names``."""
    settings = obj.faceforge
    settings.is_face = True
    settings.kind = kind
    settings.z_id_json = json.dumps([float(v) for v in np.asarray(z_id).reshape(-1)])
    settings.model_names_json = json.dumps(list(names))
    settings.key_names_json = json.dumps([k or "" for k in (names if keys is None else keys)])
    info = session.model_info() or {}
    settings.topology_hash = str(info.get("topology_hash", ""))
    settings.source = source


def key_targets(obj, names: list[str], existing: str = "KEEP") -> list[str | None]:
    """The shape key each of the model's expressions ``names`` is written to on ``obj``: the key
    FaceForge wrote for it before, else a key of its name. Where the mesh has a key of its own (one
    FaceForge did not write) with that name, ``existing`` decides: KEEP skips the expression (None),
    REPLACE writes over the user's key, SUFFIX writes beside it as ``name_FF``."""
    blocks = obj.data.shape_keys.key_blocks if obj.data.shape_keys else {}
    key_map = obj.faceforge.key_map if obj.faceforge.is_face else {}
    ours = set(key_map.values())
    out: list[str | None] = []
    for name in names:
        if existing == "REPLACE":
            out.append(name)
        elif name in key_map:
            out.append(key_map[name])
        elif name in blocks and name not in ours:
            out.append(f"{name}{SUFFIX}" if existing == "SUFFIX" else None)
        else:
            out.append(name)
    return out


def _new_faces(context, names_of_objects, result, kind: str, source: str = "", values=None):
    """Create one rigged face object per identity in a ``model.face`` result (at its true size in
    the scene's units); all or none. ``values (N, E)``: key values in the model's expression order."""
    arrays, names = result["arrays"], result["names"]
    created = []
    try:
        for k, name in enumerate(names_of_objects):
            obj = new_metric_object(context, name, arrays["neutral"][k], arrays["faces"])
            created.append(obj)
            meshes.write_rig(obj, arrays["neutral"][k], names, arrays["keys"][k])
            _mark(obj, kind, arrays["z_id"][k], names, source)
            write_surface(obj, result)
            created.extend(write_parts(context, obj, result, k, obj.faceforge.key_map))
            if values is not None:  # in the model's expression order
                set_model_key_values(obj, names, values[k])
    except Exception:
        for obj in reversed(created):
            meshes.remove_object(obj)
        raise
    return [obj for obj in created if obj.faceforge.kind != "part"]


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
    Each call may take ``timeout`` seconds (default: the job's :attr:`Job.deadline`).

    Raises:
        FaceForgeInputError, BackendError: nothing in the scene was changed.
    """
    backend = session.ensure_started(job.context)
    result = None
    for method, params, arrays in calls(job):
        limit = job.deadline if timeout is None else timeout
        result = backend.call(method, params, arrays=arrays, timeout=limit, progress=progress)
        record_load(job.context, method, result)
    _recheck(job)
    return job.apply(result)


def _recheck(job: Job) -> None:
    """Input checks that need the loaded model (topology), repeated once it is loaded."""
    obj = getattr(job, "obj", None)
    if obj is not None and job.needs_model and not obj.faceforge.is_face and not job.any_topology:
        _model_mesh(obj, job.label)
