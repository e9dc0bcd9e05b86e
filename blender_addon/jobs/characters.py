"""Jobs on the user's own characters: FaceForge's expressions as shape keys on a mesh of any topology."""

from __future__ import annotations

import json

import numpy as np

from .. import mesh as meshes
from .base import FaceForgeInputError, Job

#: Suffix of a FaceForge key written beside a key of the character's own with the same name.
SUFFIX = "_FF"


def _character(obj, what: str):
    if obj is None:
        raise FaceForgeInputError(f"{what}: no active object; select the character's head mesh")
    if obj.type != "MESH":
        raise FaceForgeInputError(f"{what}: {obj.name} is a {obj.type.lower()}, not a mesh")
    if len(obj.data.polygons) == 0:
        raise FaceForgeInputError(f"{what}: {obj.name} has no faces")
    return obj


def _triangles(mesh) -> np.ndarray:
    mesh.calc_loop_triangles()
    out = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
    mesh.loop_triangles.foreach_get("vertices", out)
    return out.reshape(-1, 3)


class RetargetCharacter(Job):
    """Register FaceForge's head onto the active mesh (any topology, units, orientation) and add
    the profile's expression keys, relative to the mesh's basis. The armature modifier, vertex
    groups, UVs, materials and the mesh's other keys are left as they are."""

    label = "Add FaceForge Expressions"
    any_topology = True
    deadline = 1800.0

    def __init__(self, context, obj=None, profile=None, existing=None) -> None:
        super().__init__(context)
        settings = context.scene.faceforge
        self.obj = _character(obj or context.active_object, self.label)
        self.profile = (profile or settings.character_profile).lower()
        #: A key of the character's own with a FaceForge key's name: KEEP it (skip that key),
        #: REPLACE it, or SUFFIX (write FaceForge's beside it as ``name_FF``).
        self.existing = existing or settings.character_existing_keys
        mesh = self.obj.data
        self.basis = (
            meshes.read_key(mesh.shape_keys.reference_key) if mesh.shape_keys else meshes.read_vertices(mesh)
        )
        if not np.all(np.isfinite(self.basis)):
            raise FaceForgeInputError(
                f"{self.label}: {self.obj.name} has vertices that are not finite numbers"
            )
        self.faces = _triangles(mesh)
        stored = self.obj.get("faceforge_landmarks")
        self.landmarks = None if stored is None else np.asarray(json.loads(stored), dtype=np.float32)

    def request(self):
        arrays = {"vertices": self.basis, "faces": self.faces}
        if self.landmarks is not None and self.landmarks.shape == (68, 3):
            arrays["landmarks"] = self.landmarks
        return "topology.retarget", {"profile": self.profile}, arrays

    def apply(self, result):
        deltas = result["arrays"]["deltas"]
        names = list(result["names"])
        if deltas.shape != (len(names), len(self.basis), 3):
            raise FaceForgeInputError(f"{self.label}: {self.obj.name} changed while its keys were made")
        blocks = self.obj.data.shape_keys.key_blocks if self.obj.data.shape_keys else {}
        ours = set(json.loads(self.obj.get("faceforge_character_keys", "[]")))
        own = [n for n in names if n in blocks and n not in ours]
        written, kept = [], []
        for k, name in enumerate(names):
            if name in own and self.existing == "KEEP":
                kept.append(name)
                continue
            target = f"{name}{SUFFIX}" if name in own and self.existing == "SUFFIX" else name
            written.append((k, target))
        if written:
            index = [k for k, _ in written]
            meshes.write_rig(self.obj, self.basis, [t for _, t in written], self.basis[None] + deltas[index])
        self.obj["faceforge_character_keys"] = json.dumps(sorted(ours | {t for _, t in written}))
        self.obj["faceforge_landmarks"] = json.dumps(np.asarray(result["arrays"]["landmarks"]).tolist())
        self.obj["faceforge_profile"] = result["profile"]
        seconds = result["timings_s"].get("total", 0.0)
        self.message = (
            f"{self.obj.name}: {len(written)} FaceForge keys ({result['profile']}) in {seconds:.0f} s"
        )
        if kept:
            self.message += f"; kept your own {', '.join(kept[:4])}{' and more' if len(kept) > 4 else ''}"
        return self.obj
