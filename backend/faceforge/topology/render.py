"""A picture of retargeted keys: rows of characters, columns of expressions, rendered by Blender.

Each row is a character put into the template frame by its correspondence (metres, Z up, facing
-Y), each column an expression (key name -> weight) made from that row's keys, as Blender would
show them. Workbench on the CPU: studio light, no textures, so what is seen is the shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.errors import FaceForgeError

__all__ = ["Row", "render_rows"]


@dataclass
class Row:
    """One character of the picture.

    Attributes:
        label: text at the row's left.
        vertices: ``(V, 3)`` its basis in the template frame (metres, Z up, -Y forward).
        faces: ``(F, 3)`` triangles.
        keys: key name -> ``(V, 3)`` offsets in the same frame.
    """

    label: str
    vertices: np.ndarray
    faces: np.ndarray
    keys: dict[str, np.ndarray]


def render_rows(
    rows: Sequence[Row],
    expressions: Sequence[tuple[str, dict[str, float]]],
    path: str | Path,
    pixels_per_cell: int = 360,
) -> Path:
    """Render ``rows x (neutral + expressions)`` heads to a PNG at ``path`` (resets Blender's scene).

    Args:
        rows: the characters.
        expressions: ``(title, {key name: weight})``; a row without one of the keys shows a gap.
        path: the PNG to write (replaced).
        pixels_per_cell: size of one head's cell.
    """
    try:
        import bpy
    except ImportError as exc:  # pragma: no cover - bpy is a dev dependency
        raise FaceForgeError("rendering needs the bpy module (pip install bpy)") from exc
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    columns = [("neutral", {})] + list(expressions)
    spacing = 0.26
    for r, row in enumerate(rows):
        centre = (row.vertices.max(axis=0) + row.vertices.min(axis=0)) / 2
        for c, (_title, weights) in enumerate(columns):
            if any(name not in row.keys for name in weights):
                continue
            shape = row.vertices - centre
            for name, weight in weights.items():
                shape = shape + weight * row.keys[name]
            mesh = bpy.data.meshes.new(f"{row.label} {c}")
            mesh.from_pydata((shape + [c * spacing, 0.0, -r * spacing]).tolist(), [], row.faces.tolist())
            mesh.shade_smooth()
            obj = bpy.data.objects.new(mesh.name, mesh)
            scene.collection.objects.link(obj)
        _text(bpy, scene, row.label, (-0.6 * spacing, 0.0, -r * spacing), "RIGHT")
    for c, (title, _) in enumerate(columns):
        _text(bpy, scene, title, (c * spacing, 0.0, 0.6 * spacing), "CENTER")
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    camera.data.type = "ORTHO"
    width, height = (len(columns) + 1.2) * spacing, (len(rows) + 0.5) * spacing
    camera.data.ortho_scale = max(width, height)
    camera.location = ((len(columns) - 2.2) * spacing / 2, -3.0, (0.6 - (len(rows) - 1)) * spacing / 2)
    camera.rotation_euler = (np.pi / 2, 0.0, 0.0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "SINGLE"
    scene.render.resolution_x = int(pixels_per_cell * width / spacing)
    scene.render.resolution_y = int(pixels_per_cell * height / spacing)
    scene.render.image_settings.file_format = "PNG"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return path


def _text(bpy, scene, body: str, location: tuple[float, float, float], align: str) -> None:  # noqa: ANN001
    curve = bpy.data.curves.new(body, "FONT")
    curve.body = body
    curve.size = 0.022
    curve.align_x = align
    curve.align_y = "CENTER"
    obj = bpy.data.objects.new(body, curve)
    obj.location = location
    obj.rotation_euler = (np.pi / 2, 0.0, 0.0)  # face the camera (looking along +Y)
    scene.collection.objects.link(obj)
