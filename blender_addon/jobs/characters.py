"""Jobs on the user's own characters: FaceForge's expressions as shape keys on a mesh of any topology."""

from __future__ import annotations

import json

import bpy
import numpy as np

from .. import mesh as meshes
from ..parts import drive_keys
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


#: The backend's assignable parts (``ASSIGNABLE_PARTS``). A vertex group ``faceforge_<kind>`` (e.g.
#: ``faceforge_eye_left``) assigns its vertices (weight above one half) to that part; so does a
#: material named ``faceforge_<kind>``, or one whose name says what it is (:data:`MATERIAL_WORDS`).
#: Groups win over materials, materials over what the backend finds.
PART_KINDS = ("skin", "attached", "eye_left", "eye_right", "lower", "held", "tongue", "eye")
PART_GROUP = "faceforge_"
#: Words in a material's name (lower case) and the part its faces are, first match wins: lashes
#: and brows before eyes ("Eyelash" is not an eye), the two rows of teeth apart (lower teeth ride
#: the jaw, upper teeth keep still; "Teeth" alone is left to the backend, which tells them apart).
MATERIAL_WORDS = (
    (("lash", "brow", "eyeline"), "attached"),
    (("cornea", "iris", "sclera", "pupil", "eyeball", "eyewhite", "eyehighlight", "eye"), "eye"),
    (("tongue",), "tongue"),
    (("lower_teeth", "teeth_lower", "lowerteeth", "bottom_teeth", "lower teeth"), "lower"),
    (("upper_teeth", "teeth_upper", "upperteeth", "top_teeth", "upper teeth", "hair"), "held"),
)
#: A material covering more of the mesh than this is its skin, whatever its name.
MATERIAL_MAX_SHARE = 0.5


def material_part(name: str) -> str | None:
    """The part a material's name says its faces are, or None."""
    lower = name.lower()
    if lower.startswith(PART_GROUP) and lower[len(PART_GROUP) :] in PART_KINDS:
        return lower[len(PART_GROUP) :]
    for words, kind in MATERIAL_WORDS:
        if any(w in lower for w in words):
            return kind
    return None


def _material_parts(obj, out: np.ndarray) -> list[str]:
    """Write the parts that the mesh's material names say into ``out``; returns the materials used."""
    mesh = obj.data
    if not mesh.materials or not len(mesh.polygons):
        return []
    index = np.empty(len(mesh.polygons), dtype=np.int32)
    mesh.polygons.foreach_get("material_index", index)
    loops = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", loops)
    starts = np.empty(len(mesh.polygons), dtype=np.int32)
    mesh.polygons.foreach_get("loop_start", starts)
    loop_material = np.repeat(index, np.diff(np.append(starts, len(loops))))
    used = []
    for m, material in enumerate(mesh.materials):
        kind = material_part(material.name) if material is not None else None
        if kind is None:
            continue
        vertices = np.unique(loops[loop_material == m])
        if len(vertices) == 0 or len(vertices) > MATERIAL_MAX_SHARE * len(mesh.vertices):
            continue
        out[vertices] = PART_KINDS.index(kind)
        used.append(f"{material.name} ({kind})")
    return used


def assigned_parts(obj) -> np.ndarray | None:
    """``(V,)`` int8 part index per vertex from the materials' names and the ``faceforge_<kind>``
    vertex groups (-1: not assigned), or None when nothing is assigned."""
    out = np.full(len(obj.data.vertices), -1, dtype=np.int8)
    used = _material_parts(obj, out)
    groups = {
        g.index: PART_KINDS.index(g.name[len(PART_GROUP) :].lower())
        for g in obj.vertex_groups
        if g.name.lower().startswith(PART_GROUP) and g.name[len(PART_GROUP) :].lower() in PART_KINDS
    }
    if not groups and not used:
        return None
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


class ProposeLandmarks(Job):
    """Propose the 68 landmarks on the active mesh (alignment and FaceForge's identity fitted to
    it, no keys yet) as markers to move before the first registration; Add FaceForge Expressions
    then registers from them. Markers already there are moved to the proposal."""

    label = "Propose Landmarks"
    any_topology = True

    def __init__(self, context, obj=None) -> None:
        super().__init__(context)
        self.obj = _character(obj or context.active_object, self.label)
        mesh = self.obj.data
        self.basis = (
            meshes.read_key(mesh.shape_keys.reference_key) if mesh.shape_keys else meshes.read_vertices(mesh)
        )
        if not np.all(np.isfinite(self.basis)):
            raise FaceForgeInputError(
                f"{self.label}: {self.obj.name} has vertices that are not finite numbers"
            )
        self.faces = _triangles(mesh)

    def request(self):
        return "topology.landmarks", {}, {"vertices": self.basis, "faces": self.faces}

    def apply(self, result):
        landmarks = np.asarray(result["arrays"]["landmarks"])
        write_markers(self.context, self.obj, landmarks, result["landmark_names"])
        self.message = (
            f"{self.obj.name}: 68 landmarks proposed (FaceForge's head fits it to "
            f"{result['identity_fit_mm']:.1f} mm); move the wrong ones, then Add FaceForge Expressions"
        )
        return self.obj


#: Mesh attributes holding where each vertex lies on the registered FaceForge template.
MAP_FACE, MAP_WEIGHTS, MAP_ON_FACE = "faceforge_map_face", "faceforge_map_weights", "faceforge_on_face"


def write_character_map(obj, faces, weights, on_face, to_character) -> None:
    """Store the character's correspondence as point attributes (saved with the file) and the
    frames' relation as a property; physics on the proxy is carried back with them."""
    attributes = obj.data.attributes
    for name, kind, field, values in (
        (MAP_FACE, "INT", "value", np.asarray(faces, dtype=np.int32)),
        (MAP_WEIGHTS, "FLOAT_VECTOR", "vector", np.asarray(weights, dtype=np.float32).ravel()),
        (MAP_ON_FACE, "BOOLEAN", "value", np.asarray(on_face).astype(bool)),
    ):
        old = attributes.get(name)
        if old is not None:
            attributes.remove(old)
        attributes.new(name, kind, "POINT").data.foreach_set(field, values)
    obj["faceforge_character_map"] = json.dumps(
        {"to_character": [float(x) for x in to_character], "n_vertices": len(obj.data.vertices)}
    )


def read_character_map(obj, what: str) -> dict:
    """The stored correspondence (arrays and ``to_character``), or one clear error."""
    info = json.loads(obj.get("faceforge_character_map", "{}"))
    attributes = obj.data.attributes
    names = (MAP_FACE, MAP_WEIGHTS, MAP_ON_FACE)
    if not info or any(attributes.get(n) is None for n in names):
        raise FaceForgeInputError(
            f"{what}: {obj.name} has no FaceForge correspondence; run Add FaceForge Expressions first"
        )
    n = len(obj.data.vertices)
    if info["n_vertices"] != n:
        raise FaceForgeInputError(
            f"{what}: {obj.name} has {n} vertices, {info['n_vertices']} when its expressions were "
            "added; run Add FaceForge Expressions again"
        )
    faces = np.empty(n, dtype=np.int32)
    attributes[MAP_FACE].data.foreach_get("value", faces)
    weights = np.empty(3 * n, dtype=np.float32)
    attributes[MAP_WEIGHTS].data.foreach_get("vector", weights)
    on_face = np.empty(n, dtype=bool)
    attributes[MAP_ON_FACE].data.foreach_get("value", on_face)
    return {
        "map_faces": faces,
        "map_weights": weights.reshape(n, 3),
        "on_face": on_face.astype(np.int8),
        "to_character": info["to_character"],
    }


def character_rig(obj) -> dict | None:
    """What a take needs of a retargeted character, or None when ``obj`` is not one.

    Returns ``{"targets": {key: FaceForge expression}, "sources": [expressions], "identity":
    [code]}``; only keys that still exist on the mesh are listed.
    """
    if obj is None or obj.type != "MESH" or "faceforge_character_sources" not in obj:
        return None
    blocks = obj.data.shape_keys.key_blocks if obj.data.shape_keys else {}
    targets = {k: v for k, v in json.loads(obj["faceforge_character_sources"]).items() if k in blocks}
    if not targets:
        raise FaceForgeInputError(f"{obj.name} has none of its FaceForge expression keys left")
    sources = list(dict.fromkeys(targets.values()))
    identity = json.loads(obj["faceforge_character_identity"])
    return {"targets": targets, "sources": sources, "identity": identity}


def _basis(obj, what: str) -> np.ndarray:
    mesh = obj.data
    basis = meshes.read_key(mesh.shape_keys.reference_key) if mesh.shape_keys else meshes.read_vertices(mesh)
    if not np.all(np.isfinite(basis)):
        raise FaceForgeInputError(f"{what}: {obj.name} has vertices that are not finite numbers")
    return basis


def _write_keys(obj, basis, names, sources, deltas, existing, identity) -> tuple[list, list]:
    """Write FaceForge's keys on one object (Keep / Replace / Suffix against its own keys) and
    remember what a take drives; returns the written ``(index, key name)`` and the kept names."""
    blocks = obj.data.shape_keys.key_blocks if obj.data.shape_keys else {}
    ours = set(json.loads(obj.get("faceforge_character_keys", "[]")))
    own = [n for n in names if n in blocks and n not in ours]
    written, kept = [], []
    for k, name in enumerate(names):
        if name in own and existing == "KEEP":
            kept.append(name)
            continue
        target = f"{name}{SUFFIX}" if name in own and existing == "SUFFIX" else name
        written.append((k, target))
    if written:
        index = [k for k, _ in written]
        meshes.write_rig(obj, basis, [t for _, t in written], basis[None] + deltas[index])
    obj["faceforge_character_keys"] = json.dumps(sorted(ours | {t for _, t in written}))
    # What a take drives: each FaceForge key, and a kept key of the object's own in its place
    # (its artist's version of that expression).
    driven = {t: sources[k] for k, t in written} | {n: sources[names.index(n)] for n in kept}
    obj["faceforge_character_sources"] = json.dumps(driven)
    obj["faceforge_character_identity"] = json.dumps(list(identity))
    return written, kept


#: A part object gets a key only where the key moves it by more than this (its own units).
PART_KEY_MOTION = 1e-6
#: A selected mesh is a part of the head (eyes, teeth...) only if it lies inside the head's box and
#: its box diagonal is below this fraction of the head's: a selected body or second head is not.
PART_MAX_SIZE = 0.8


class RetargetCharacter(Job):
    """Register FaceForge's head onto the active mesh (any topology, units, orientation) and add
    the profile's expression keys, relative to the mesh's basis. The armature modifier, vertex
    groups, UVs, materials and the mesh's other keys are left as they are. The landmarks become
    markers parented to the character; a rerun registers from them (moved ones included).

    Other selected meshes are parts of the same head (eyes, teeth, tongue, lashes in objects of
    their own): they are registered with it as extra components, and each gets the keys that
    move it (eyeballs their gaze rotations, lower teeth the jaw's)."""

    label = "Add FaceForge Expressions"
    any_topology = True
    deadline = 1800.0

    def __init__(self, context, obj=None, profile=None, existing=None, part_objects=None) -> None:
        super().__init__(context)
        settings = context.scene.faceforge
        self.obj = _character(obj or context.active_object, self.label)
        self.profile = (profile or settings.character_profile).lower()
        #: A key of the character's own with a FaceForge key's name: KEEP it (skip that key),
        #: REPLACE it, or SUFFIX (write FaceForge's beside it as ``name_FF``).
        self.existing = existing or settings.character_existing_keys
        if part_objects is None:
            others = [o for o in context.selected_objects if o is not self.obj and o.type == "MESH"]
            part_objects = [o for o in others if o.data.polygons]
        self.part_objects = list(part_objects)
        self.basis = _basis(self.obj, self.label)
        self.faces = _triangles(self.obj.data)
        self.landmarks = read_markers(self.obj)
        parts = [assigned_parts(self.obj)]
        vertices, faces = [self.basis], [self.faces]
        offset = len(self.basis)
        #: Per part object: its basis (own frame) and the linear map of offsets head -> part frame.
        self.part_frames = []
        to_head = self.obj.matrix_world.inverted()
        low, high = self.basis.min(axis=0), self.basis.max(axis=0)
        margin = 0.1 * (high - low)
        #: Selected meshes that cannot be parts of this head (larger than it, or outside it).
        self.ignored = []
        for part in list(self.part_objects):
            basis = _basis(part, self.label)
            m = np.array(to_head @ part.matrix_world, dtype=np.float64)
            placed = basis @ m[:3, :3].T + m[:3, 3]
            inside = (placed.min(axis=0) >= low - margin).all() and (
                placed.max(axis=0) <= high + margin
            ).all()
            if not inside or np.linalg.norm(np.ptp(placed, axis=0)) > PART_MAX_SIZE * np.linalg.norm(
                high - low
            ):
                self.part_objects.remove(part)
                self.ignored.append(part.name)
                continue
            vertices.append(placed)
            faces.append(_triangles(part.data) + offset)
            parts.append(assigned_parts(part))
            self.part_frames.append((basis, np.linalg.inv(m[:3, :3])))
            offset += len(basis)
        self.all_vertices = np.concatenate(vertices).astype(np.float32)
        self.all_faces = np.concatenate(faces)
        if any(p is not None for p in parts):
            sizes = [len(v) for v in vertices]
            self.parts = np.concatenate(
                [np.full(n, -1, np.int8) if p is None else p for p, n in zip(parts, sizes, strict=True)]
            )
        else:
            self.parts = None

    def request(self):
        arrays = {"vertices": self.all_vertices, "faces": self.all_faces}
        if self.landmarks is not None and self.landmarks.shape == (68, 3):
            arrays["landmarks"] = self.landmarks
        if self.parts is not None:
            arrays["parts"] = self.parts
        return "topology.retarget", {"profile": self.profile}, arrays

    def apply(self, result):
        deltas = result["arrays"]["deltas"]
        names, sources = list(result["names"]), list(result["sources"])
        if deltas.shape != (len(names), len(self.all_vertices), 3):
            raise FaceForgeInputError(f"{self.label}: {self.obj.name} changed while its keys were made")
        n0 = len(self.basis)
        written, kept = _write_keys(
            self.obj, self.basis, names, sources, deltas[:, :n0], self.existing, result["identity"]
        )
        offset, moved_parts = n0, []
        head_sources = json.loads(self.obj["faceforge_character_sources"])
        head_key = {source: key for key, source in head_sources.items()}
        for part, (basis, to_part) in zip(self.part_objects, self.part_frames, strict=True):
            d = deltas[:, offset : offset + len(basis)].astype(np.float64) @ to_part.T
            offset += len(basis)
            moving = [k for k in range(len(names)) if np.abs(d[k]).max(initial=0.0) > PART_KEY_MOTION]
            if not moving:
                continue
            _write_keys(
                part,
                basis,
                [names[k] for k in moving],
                [sources[k] for k in moving],
                d[moving].astype(np.float32),
                self.existing,
                result["identity"],
            )
            moved_parts.append(part.name)
            # The part's keys follow the head's keys of the same source expression (drivers), as
            # a FaceForge face's eyes and teeth do: sliders and takes on the head move it.
            part_sources = json.loads(part["faceforge_character_sources"]).items()
            drive_keys(part, self.obj, [(key, head_key[s]) for key, s in part_sources if s in head_key])
        self.obj["faceforge_character_parts"] = json.dumps(moved_parts)
        arrays = result["arrays"]
        write_character_map(
            self.obj,
            np.asarray(arrays["map_faces"])[:n0],
            np.asarray(arrays["map_weights"])[:n0],
            np.asarray(arrays["on_face"])[:n0],
            result["to_character"],
        )
        write_markers(
            self.context, self.obj, np.asarray(result["arrays"]["landmarks"]), result["landmark_names"]
        )
        self.obj["faceforge_profile"] = result["profile"]
        seconds = result["timings_s"].get("total", 0.0)
        self.message = (
            f"{self.obj.name}: {len(written)} FaceForge keys ({result['profile']}) in {seconds:.0f} s"
            + (f"; parts with keys: {', '.join(moved_parts)}" if moved_parts else "")
        )
        if kept:
            self.message += f"; kept your own {', '.join(kept[:4])}{' and more' if len(kept) > 4 else ''}"
        if self.ignored:
            self.message += f"; not parts of this head (larger, or outside it): {', '.join(self.ignored)}"
        return self.obj
