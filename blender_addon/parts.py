"""A FaceForge head's eyeballs, teeth and eyelashes as child objects driven by the head's keys.

Each part is its own mesh object, parented to the head and named after it (``"<head> Eye L"``).
Teeth and eyelashes carry shape keys of the head's expression names whose values are driven by
the head's keys (plain single-property drivers: no Python runs), so sliders, takes and their
keyframes on the head move them. Eyeballs are rigid: their origin is the eye's centre and the
head's ``eyeLook*`` keys drive their rotation (simple-expression drivers, evaluated without Python).
"""

from __future__ import annotations

import bpy
import numpy as np

from . import mesh as meshes

#: Colours of the part materials (base colour, roughness) for Workbench, EEVEE and Cycles.
MATERIALS = {
    "Eye": ((0.92, 0.9, 0.87, 1.0), 0.15),
    "Iris": ((0.18, 0.33, 0.55, 1.0), 0.2),
    "Pupil": ((0.01, 0.01, 0.01, 1.0), 0.1),
    "Teeth": ((0.93, 0.9, 0.8, 1.0), 0.3),
    "Lashes": ((0.04, 0.03, 0.025, 1.0), 0.6),
}


def part_objects(head) -> dict[str, object]:
    """The head's part objects by part name (``"Eye L"``)."""
    return {
        child.faceforge.source: child
        for child in head.children
        if child.faceforge.kind == "part" and child.type == "MESH"
    }


def material(name: str):
    """The shared FaceForge material ``FaceForge <name>`` (created once per file)."""
    full = f"FaceForge {name}"
    mat = bpy.data.materials.get(full)
    if mat is None:
        colour, roughness = MATERIALS.get(name, ((0.8, 0.8, 0.8, 1.0), 0.5))
        mat = bpy.data.materials.new(full)
        mat.diffuse_color = colour
        mat.roughness = roughness
        if mat.node_tree is None:  # Blender 4.x; 5.x materials always have nodes
            mat.use_nodes = True
        bsdf = next((n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
        if bsdf is not None:
            bsdf.inputs["Base Color"].default_value = colour
            bsdf.inputs["Roughness"].default_value = roughness
    return mat


def write_parts(
    context, head, result, index: int, key_targets: dict[str, str], per_metre: float = 1.0
) -> list:
    """Create or update the part objects of ``head`` from a ``model.face`` answer (identity ``index``).

    Args:
        key_targets: the model's expression name -> the head's shape key that holds it.
        per_metre: the head's mesh units per metre (1 for the metric faces FaceForge makes).

    Returns:
        The part objects. A head whose answer has no parts loses the ones it had (they belonged
        to another identity).
    """
    specs = result.get("parts") or []
    if not specs:
        for obj in part_objects(head).values():
            meshes.remove_object(obj)
        return []
    arrays = result["arrays"]
    vertices = np.asarray(arrays["part_vertices"][index], dtype=np.float32) * per_metre
    part_keys = np.asarray(arrays["part_keys"][index], dtype=np.float32) * per_metre
    faces, face_materials = np.asarray(arrays["part_faces"]), np.asarray(arrays["part_materials"])
    centres = np.asarray(arrays["part_centres"][index], dtype=np.float32) * per_metre
    names = list(result["names"])
    column = {n: k for k, n in enumerate(names)}
    existing = part_objects(head)
    out = []
    for j, spec in enumerate(specs):
        v0, v1 = spec["vertices"]
        f0, f1 = spec["faces"]
        rest = vertices[v0:v1]
        centre = centres[j] if spec["kind"].startswith("eye") else np.zeros(3, np.float32)
        local = rest - centre
        part_faces = faces[f0:f1] - v0
        obj = existing.get(spec["name"])
        if obj is not None and len(obj.data.vertices) != len(local):
            meshes.remove_object(obj)
            obj = None
        if obj is None:
            obj = meshes.new_mesh_object(context, f"{head.name} {spec['name']}", local, part_faces)
            obj.faceforge.kind = "part"
            obj.faceforge.source = spec["name"]
            obj.parent = head
            obj.matrix_parent_inverse.identity()
            for name in spec["materials"]:
                obj.data.materials.append(material(name))
            obj.data.polygons.foreach_set("material_index", face_materials[f0:f1].astype(np.int32))
        obj["faceforge_part_kind"] = spec["kind"]
        obj.location = tuple(float(c) for c in centre)
        moving = [n for n in spec["keys"] if n in key_targets]
        if moving:
            meshes.write_rig(
                obj, local, moving, local[None] + part_keys[[column[n] for n in moving]][:, v0:v1]
            )
        else:
            _plain(obj, local)
        _drive_keys(obj, head, moving, key_targets)
        if spec["kind"].startswith("eye"):
            _drive_gaze(obj, head, result.get("gaze", {}).get(spec["kind"], []), key_targets)
        out.append(obj)
    return out


def _drop_keys(obj, keep: set[str]) -> None:
    """Remove the part's shape keys (all FaceForge's) other than the basis and ``keep``."""
    if obj.data.shape_keys is None:
        return
    reference = obj.data.shape_keys.reference_key
    for block in list(obj.data.shape_keys.key_blocks):
        if block != reference and block.name not in keep:
            block.driver_remove("value")
            obj.shape_key_remove(block)


def _plain(obj, vertices: np.ndarray) -> None:
    obj.data.vertices.foreach_set("co", np.ascontiguousarray(vertices, np.float32).ravel())
    obj.data.update()


def _single_prop(driver, name: str, head, data_path: str) -> None:
    var = driver.variables.new()
    var.name = name
    var.type = "SINGLE_PROP"
    var.targets[0].id_type = "KEY"
    var.targets[0].id = head.data.shape_keys
    var.targets[0].data_path = data_path


def _drive_keys(obj, head, names: list[str], key_targets: dict[str, str]) -> None:
    """Each part key's value follows the head key of the same expression."""
    drive_keys(obj, head, [(name, key_targets[name]) for name in names])


def drive_keys(obj, head, pairs: list[tuple[str, str]]) -> None:
    """Drive the shape keys of ``obj`` by the head's: ``pairs`` of (part key, head key) names.

    Plain single-property drivers: the part follows the head's sliders, takes and keyframes, in the
    UI and headless, without running Python. An existing driver on the key is replaced."""
    if obj.data.shape_keys is None or head.data.shape_keys is None:
        return
    blocks, head_blocks = obj.data.shape_keys.key_blocks, head.data.shape_keys.key_blocks
    for name, head_key in pairs:
        block = blocks.get(name)
        if block is None or head_key not in head_blocks:
            continue
        block.driver_remove("value")
        driver = block.driver_add("value").driver
        driver.type = "SUM"
        _single_prop(driver, "v", head, f'key_blocks["{head_key}"].value')


def _drive_gaze(obj, head, gaze: list, key_targets: dict[str, str]) -> None:
    """The eyeball's X and Z rotations from the head's ``eyeLook*`` keys (radians per unit value)."""
    obj.rotation_mode = "XYZ"
    for axis in (0, 2):
        obj.driver_remove("rotation_euler", axis)
        terms = [(n, rate) for n, a, rate in gaze if a == axis and n in key_targets]
        if not terms or head.data.shape_keys is None:
            continue
        driver = obj.driver_add("rotation_euler", axis).driver
        driver.type = "SCRIPTED"
        for k, (name, _) in enumerate(terms):
            _single_prop(driver, f"k{k}", head, f'key_blocks["{key_targets[name]}"].value')
        driver.expression = " + ".join(f"{rate:.6f} * k{k}" for k, (_, rate) in enumerate(terms))
