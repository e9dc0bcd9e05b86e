"""The headless demo: Blender (the ``bpy`` module) drives the FaceForge add-on to make a grid of faces.

``faceforge demo --out DIR`` loads or builds the default model, starts Blender in this process,
registers the add-on from the checkout's ``blender_addon/`` and, through its Python API (the same
jobs its operators run, talking to a backend subprocess), creates one face per age group of the
model (infant to elder) under several expressions. It saves ``DIR/faceforge_demo.blend`` and
renders ``DIR/contact_sheet.png`` with Cycles on the CPU.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from faceforge.errors import FaceForgeError

__all__ = ["ADDON_PACKAGE", "COLUMNS", "addon_dir", "load_addon", "run_demo"]

ADDON_PACKAGE = "faceforge_addon"

# Grid columns: a label and the shape-key values of the face (None: a random expression).
COLUMNS: tuple[tuple[str, dict[str, float] | None], ...] = (
    ("neutral", {}),
    ("happy", {"happy": 1.0}),
    ("surprise", {"surprise": 1.0}),
    ("jawOpen + eyeBlink", {"jawOpen": 0.6, "eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}),
    ("random", None),
)


def addon_dir() -> Path:
    """The add-on folder of this checkout (``<checkout>/blender_addon``)."""
    folder = Path(__file__).resolve().parents[2] / "blender_addon"
    if not (folder / "__init__.py").is_file():
        raise FaceForgeError(
            f"the FaceForge add-on is not next to this backend ({folder}): run the demo from a checkout "
            "installed with `pip install -e`"
        )
    return folder


def load_addon(package: str = ADDON_PACKAGE):  # noqa: ANN201 - the add-on module
    """Import the checkout's add-on as ``package`` (once per process) and return it."""
    if package in sys.modules:
        return sys.modules[package]
    folder = addon_dir()
    spec = importlib.util.spec_from_file_location(
        package, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[package]
        raise
    return module


def _import_bpy():  # noqa: ANN202
    try:
        import bpy
    except ImportError as error:
        raise FaceForgeError(
            f"the demo runs Blender as a Python module: install it with `{sys.executable} -m pip install "
            f"bpy==5.0.1` ({error})"
        ) from error
    return bpy


def run_demo(
    out: str | os.PathLike,
    small: bool = False,
    model: str | os.PathLike | None = None,
    motion_model: str | os.PathLike | None = None,
    take_label: str = "high_smile",
    samples: int = 16,
    resolution: tuple[int, int] = (1400, 1400),
    log: Callable[[str], None] = print,
) -> dict:
    """Make the demo scene, save it and render the contact sheet.

    Args:
        out: output folder (created).
        small: use (and build if needed) the small model instead of the default one.
        model: a model file to use instead of the default (or small) one.
        motion_model: a motion model file (default: the default or small one, built if missing);
            the demo bakes one take of ``take_label`` on the adult neutral face.
        take_label: the label of that take.
        samples: Cycles samples per pixel.
        resolution: the contact sheet's width and its largest height in pixels (it takes the
            grid's aspect ratio).
        log: receives one line per step, with the time since the start.

    Returns:
        ``{"blend", "contact_sheet", "faces", "rows", "columns", "seconds": {...}}``.
    """
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    def step(message: str) -> None:
        log(f"[{time.perf_counter() - started:6.1f} s] {message}")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if model is None:
        from faceforge.progress import TerminalProgress
        from faceforge.store import ensure_model

        step(f"loading or building the {'small ' if small else ''}default model")
        bar = TerminalProgress("faceforge model", enabled=True)
        try:
            model = ensure_model("all", small, progress=bar)["path"]
        finally:
            bar.close()
    if motion_model is None:
        from faceforge.progress import TerminalProgress
        from faceforge.store import ensure_motion_model

        step(f"loading or building the {'small ' if small else ''}motion model (Motion3DGAN + S2D-Dec)")
        bar = TerminalProgress("faceforge animate", enabled=True)
        try:
            motion_model = ensure_motion_model(small, progress=bar)["path"]
        finally:
            bar.close()
    seconds["model"] = round(time.perf_counter() - started, 1)
    model = str(Path(model).resolve())
    motion_model = str(Path(motion_model).resolve())

    t0 = time.perf_counter()
    step("starting Blender (bpy) and the FaceForge add-on")
    bpy = _import_bpy()
    addon = load_addon()
    os.environ.setdefault("FACEFORGE_BACKEND_PYTHON", sys.executable)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if not hasattr(bpy.types.Scene, "faceforge"):
        addon.register()
    jobs, session = addon.jobs, addon.session
    context = bpy.context
    context.scene.faceforge.model_path = model
    step("starting the backend and loading the model")
    jobs.run(jobs.LoadModel(context))
    groups = session.ensure_started(context).call("model.age_groups", timeout=60)
    names, z_ids = groups["names"], groups["arrays"]["z_id"]
    seconds["startup"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    spacing_x, spacing_z = 0.3, 0.4
    faces = []
    for row, (group, z_id) in enumerate(zip(names, z_ids, strict=True)):
        step(f"generating {len(COLUMNS)} {group} faces with their expression shape keys")
        for column, (label, values) in enumerate(COLUMNS):
            location = (column * spacing_x, 0.0, -row * spacing_z)
            face = jobs.run(jobs.GenerateFace(context, z_id=z_id, name=f"{group} {label}", location=location))
            if values is None:
                jobs.run(jobs.RandomExpression(context, obj=face, seed=row))
            else:
                for key, value in values.items():
                    face.data.shape_keys.key_blocks[key].value = value
            faces.append(face.name)
    _labels(bpy, names, spacing_x, spacing_z)
    seconds["faces"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    animated = next((f for f in faces if f.startswith("adult") and f.endswith("neutral")), faces[0])
    step(f"baking a '{take_label}' take on {animated} (Motion3DGAN landmarks, S2D-Dec, shape keys)")
    animate = context.scene.faceforge_animate
    animate.model_path = motion_model
    animate.label, animate.seed, animate.start_frame = take_label, 0, 1
    animate.seconds, animate.hold_seconds, animate.release, animate.release_seconds = 1.0, 0.5, True, 1.0
    take_job = jobs.BakeTake(context, obj=bpy.data.objects[animated])
    jobs.run(take_job)
    step(take_job.message)
    tracks = bpy.data.objects[animated].data.shape_keys.animation_data.nla_tracks
    strip = tracks[-1].strips[0]  # the newest take (the bottom track holds the rest pose)
    context.scene.frame_start, context.scene.frame_end = int(strip.frame_start), int(strip.frame_end)
    context.scene.frame_set(context.scene.frame_start)
    seconds["take"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    blend = out / "faceforge_demo.blend"
    _stage(bpy, len(COLUMNS), len(names), spacing_x, spacing_z, samples, resolution)
    bpy.context.preferences.filepaths.save_version = 0  # no faceforge_demo.blend1 backups
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), check_existing=False, compress=True)
    step(f"saved {blend}")
    sheet = out / "contact_sheet.png"
    size = f"{context.scene.render.resolution_x}x{context.scene.render.resolution_y}"
    step(f"rendering the contact sheet with Cycles on the CPU ({size}, {samples} samples per pixel)")
    context.scene.render.filepath = str(sheet)
    bpy.ops.render.render(write_still=True)
    seconds["render"] = round(time.perf_counter() - t0, 1)
    session.stop()
    seconds["total"] = round(time.perf_counter() - started, 1)
    step(f"wrote {sheet}")
    return {
        "blend": str(blend),
        "contact_sheet": str(sheet),
        "model": model,
        "motion_model": motion_model,
        "take": {
            "object": animated,
            "name": strip.name,
            "frames": [int(strip.frame_start), int(strip.frame_end)],
        },
        "faces": faces,
        "rows": names,
        "columns": [label for label, _ in COLUMNS],
        "seconds": seconds,
    }


def _labels(bpy, rows: list[str], spacing_x: float, spacing_z: float) -> None:  # noqa: ANN001
    """Text objects naming the rows (age groups) and columns (expressions)."""
    material = bpy.data.materials.new("FaceForge label")
    material.use_nodes = True
    material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.02, 0.02, 0.03, 1.0)

    def text(body: str, location: tuple[float, float, float], align: str) -> None:
        curve = bpy.data.curves.new(f"label {body}", "FONT")
        curve.body = body
        curve.size = 0.045
        curve.align_x = align
        curve.materials.append(material)
        obj = bpy.data.objects.new(f"label {body}", curve)
        obj.location = location
        obj.rotation_euler = (1.5707963, 0.0, 0.0)  # face the camera (which looks along +Y)
        bpy.context.collection.objects.link(obj)

    for row, name in enumerate(rows):
        text(name, (-0.14, 0.0, -row * spacing_z + 0.02), "RIGHT")
    for column, (label, _) in enumerate(COLUMNS):
        text(label, (column * spacing_x, 0.0, 0.2), "CENTER")


def _stage(
    bpy,  # noqa: ANN001
    columns: int,
    rows: int,
    spacing_x: float,
    spacing_z: float,
    samples: int,
    resolution: tuple[int, int],
) -> None:
    """Skin material, lights, an orthographic camera framing the grid, Cycles on the CPU."""
    import numpy as np
    from mathutils import Vector

    scene = bpy.context.scene
    skin = bpy.data.materials.new("FaceForge skin")
    skin.use_nodes = True
    bsdf = skin.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Base Color"].default_value = (0.80, 0.58, 0.48, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.55
    if "Subsurface Weight" in bsdf.inputs:
        bsdf.inputs["Subsurface Weight"].default_value = 0.15
    for obj in scene.objects:
        if obj.type == "MESH" and obj.faceforge.is_face:
            obj.data.materials.clear()
            obj.data.materials.append(skin)

    # Frame the camera on the world bounds of everything in the grid (faces and labels).
    bpy.context.view_layer.update()
    corners = np.array([
        obj.matrix_world @ Vector(corner) for obj in scene.objects for corner in obj.bound_box
    ])  # fmt: skip
    (x0, _, z0), (x1, _, z1) = corners.min(axis=0), corners.max(axis=0)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.type = "ORTHO"
    # The sheet takes the grid's aspect ratio: its width is resolution[0], its height at most resolution[1].
    height_px = int(min(resolution[1], round(resolution[0] * (z1 - z0) / (x1 - x0))))
    resolution = (resolution[0], max(height_px, 64))
    camera.data.ortho_scale = 1.06 * max(x1 - x0, (z1 - z0) * resolution[0] / resolution[1])
    camera.location = ((x0 + x1) / 2, -2.0, (z0 + z1) / 2)
    camera.rotation_euler = (1.5707963, 0.0, 0.0)
    scene.collection.objects.link(camera)
    scene.camera = camera

    key = bpy.data.objects.new("Key light", bpy.data.lights.new("Key light", "SUN"))
    key.data.energy = 3.0
    key.rotation_euler = (1.2, 0.0, -0.5)
    fill = bpy.data.objects.new("Fill light", bpy.data.lights.new("Fill light", "SUN"))
    fill.data.energy = 1.0
    fill.rotation_euler = (1.4, 0.0, 0.9)
    for light in (key, fill):
        scene.collection.objects.link(light)
    world = bpy.data.worlds.new("FaceForge world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.9, 0.9, 0.92, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    scene.world = world

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.film_transparent = False
