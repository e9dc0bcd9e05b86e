"""Meshes and shape keys in bulk: numpy float32 buffers through ``foreach_get``/``foreach_set``.

Nothing here talks to the backend; every function works on any mesh size without per-vertex
Python loops.
"""

from __future__ import annotations

import bpy
import numpy as np

BASIS = "Basis"


def new_mesh_object(context, name: str, vertices: np.ndarray, faces: np.ndarray):
    """A new object with a new mesh of ``vertices (V, 3)`` and triangles ``faces (F, 3)``, linked to
    the active collection and smooth shaded."""
    vertices = np.ascontiguousarray(vertices, dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    mesh.validate()
    mesh.shade_smooth()
    obj = bpy.data.objects.new(name, mesh)
    context.collection.objects.link(obj)
    return obj


def read_vertices(mesh) -> np.ndarray:
    """``(V, 3)`` float32 vertex positions of a mesh (its basis, not the shape-key mix)."""
    out = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", out)
    return out.reshape(-1, 3)


def read_key(block) -> np.ndarray:
    """``(V, 3)`` float32 positions of one shape key."""
    out = np.empty(len(block.data) * 3, dtype=np.float32)
    block.data.foreach_get("co", out)
    return out.reshape(-1, 3)


def write_rig(obj, basis: np.ndarray, names: list[str], keys: np.ndarray) -> None:
    """Make ``basis (V, 3)`` the object's mesh and Basis key and write ``keys (E, V, 3)`` (absolute
    positions) into the shape keys ``names``, creating the missing ones (value 0).

    Existing keys keep their values and animation. Other keys (the user's own) keep their offset
    from the basis, so they follow a new identity instead of snapping back to the old one.
    """
    mesh = obj.data
    basis = np.ascontiguousarray(basis, dtype=np.float32)
    keys = np.ascontiguousarray(keys, dtype=np.float32)
    if basis.shape != (len(mesh.vertices), 3) or keys.shape != (len(names), len(mesh.vertices), 3):
        raise ValueError(
            f"a rig of {len(mesh.vertices)} vertices needs basis ({len(mesh.vertices)}, 3) and keys "
            f"({len(names)}, {len(mesh.vertices)}, 3), got {basis.shape} and {keys.shape}"
        )
    if mesh.shape_keys is None:
        obj.shape_key_add(name=BASIS, from_mix=False)
    blocks = mesh.shape_keys.key_blocks
    reference = mesh.shape_keys.reference_key
    old_basis = read_key(reference)
    wanted = set(names)
    for block in blocks:
        if block != reference and block.name not in wanted:
            block.data.foreach_set("co", (read_key(block) - old_basis + basis).ravel())
    reference.data.foreach_set("co", basis.ravel())
    mesh.vertices.foreach_set("co", basis.ravel())
    for name, positions in zip(names, keys, strict=True):
        block = blocks.get(name)
        if block is None:
            block = obj.shape_key_add(name=name, from_mix=False)
            block.value = 0.0
        block.data.foreach_set("co", positions.ravel())
    mesh.update()


def key_values(obj, names: list[str]) -> np.ndarray:
    """``(E,)`` current values of the shape keys ``names`` (0 for a missing key)."""
    blocks = obj.data.shape_keys.key_blocks if obj.data.shape_keys else {}
    return np.array([blocks[n].value if n in blocks else 0.0 for n in names], dtype=np.float32)


def set_key_values(obj, names: list[str], values: np.ndarray) -> None:
    """Set the values of the shape keys ``names`` (missing keys are skipped)."""
    blocks = obj.data.shape_keys.key_blocks
    for name, value in zip(names, np.asarray(values, dtype=np.float64), strict=True):
        if name in blocks:
            blocks[name].value = float(value)


def remove_object(obj) -> None:
    """Delete an object and its mesh if nothing else uses the mesh, with the part objects
    (eyes, teeth...) FaceForge made for it."""
    for child in list(obj.children):
        if getattr(child, "faceforge", None) is not None and child.faceforge.kind == "part":
            remove_object(child)
    mesh = obj.data if obj.type == "MESH" else None
    bpy.data.objects.remove(obj, do_unlink=True)
    if mesh is not None and mesh.users == 0:
        bpy.data.meshes.remove(mesh)
