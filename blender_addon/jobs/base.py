"""What every job shares: :class:`Job`, :class:`FaceForgeInputError`, the checks of the object a
job works on, marking new faces, and running a job synchronously (:func:`run`)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .. import mesh as meshes
from .. import session


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
