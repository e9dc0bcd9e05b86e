"""Jobs on the user's own characters: FaceForge's expressions as shape keys on a mesh of any topology."""

from __future__ import annotations

import json

import bpy
import numpy as np

from .. import mesh as meshes
from .base import SUFFIX, FaceForgeInputError, Job


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


#: The backend's part kinds; a vertex group ``faceforge_<kind>`` (e.g. ``faceforge_eye_left``) assigns
#: its vertices (weight above one half) to that part, overriding what is found.
PART_KINDS = ("skin", "attached", "eye_left", "eye_right", "lower", "held", "tongue")
PART_GROUP = "faceforge_"


def assigned_parts(obj) -> np.ndarray | None:
    """``(V,)`` int8 part index per vertex from the ``faceforge_<kind>`` vertex groups (-1: not
    assigned), or None when the character has no such group."""
    groups = {
        g.index: PART_KINDS.index(g.name[len(PART_GROUP) :].lower())
        for g in obj.vertex_groups
        if g.name.lower().startswith(PART_GROUP) and g.name[len(PART_GROUP) :].lower() in PART_KINDS
    }
    if not groups:
        return None
    out = np.full(len(obj.data.vertices), -1, dtype=np.int8)
    for vertex in obj.data.vertices:
        for element in vertex.groups:
            if element.group in groups and element.weight > 0.5:
                out[vertex.index] = groups[element.group]
    return out


#: Collection holding the landmark markers of every character.
MARKERS = "FaceForge Landmarks"


def _markers(obj) -> list:
    """The character's landmark markers (empties parented to it), in landmark order; None where deleted."""
    names = json.loads(obj.get("faceforge_landmark_markers", "[]"))
    return [bpy.data.objects.get(n) for n in names]


def read_markers(obj) -> np.ndarray | None:
    """``(68, 3)`` float32 marker positions in the character's own frame (NaN where a marker was
    deleted), or None when the character has no markers yet."""
    markers = _markers(obj)
    if len(markers) != 68 or all(m is None for m in markers):
        return None
    bpy.context.view_layer.update()  # world matrices of markers moved from Python
    inverse = obj.matrix_world.inverted()
    out = np.full((68, 3), np.nan, dtype=np.float32)
    for i, marker in enumerate(markers):
        if marker is not None:
            out[i] = tuple(inverse @ marker.matrix_world.translation)
    return out


def write_markers(context, obj, landmarks: np.ndarray, names: list[str]) -> None:
    """Place (or move) one small empty per landmark, parented to the character, for the user to edit."""
    collection = bpy.data.collections.get(MARKERS)
    if collection is None:
        collection = bpy.data.collections.new(MARKERS)
        context.scene.collection.children.link(collection)
    size = 0.004 * float(np.linalg.norm(np.ptp(landmarks, axis=0)) or 1.0)
    markers = _markers(obj)
    made = []
    for i, (point, name) in enumerate(zip(landmarks, names, strict=True)):
        marker = markers[i] if i < len(markers) else None
        if marker is None:
            marker = bpy.data.objects.new(f"{obj.name} {i:02d} {name}", None)
            marker.empty_display_type = "SPHERE"
            collection.objects.link(marker)
            marker.parent = obj
        marker.empty_display_size = size
        marker.matrix_parent_inverse.identity()
        marker.location = tuple(float(c) for c in point)
        made.append(marker.name)
    obj["faceforge_landmark_markers"] = json.dumps(made)


class RetargetCharacter(Job):
    """Register FaceForge's head onto the active mesh (any topology, units, orientation) and add
    the profile's expression keys, relative to the mesh's basis. The armature modifier, vertex
    groups, UVs, materials and the mesh's other keys are left as they are. The landmarks become
    markers parented to the character; a rerun registers from them (moved ones included)."""

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
        self.landmarks = read_markers(self.obj)
        self.parts = assigned_parts(self.obj)

    def request(self):
        arrays = {"vertices": self.basis, "faces": self.faces}
        if self.landmarks is not None and self.landmarks.shape == (68, 3):
            arrays["landmarks"] = self.landmarks
        if self.parts is not None:
            arrays["parts"] = self.parts
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
        write_markers(
            self.context, self.obj, np.asarray(result["arrays"]["landmarks"]), result["landmark_names"]
        )
        self.obj["faceforge_profile"] = result["profile"]
        seconds = result["timings_s"].get("total", 0.0)
        self.message = (
            f"{self.obj.name}: {len(written)} FaceForge keys ({result['profile']}) in {seconds:.0f} s"
        )
        if kept:
            self.message += f"; kept your own {', '.join(kept[:4])}{' and more' if len(kept) > 4 else ''}"
        return self.obj
