"""The headless demo: Blender (the ``bpy`` module) drives the FaceForge add-on to make a grid of faces.

``faceforge demo --out DIR`` loads or builds the default model, starts Blender in this process,
registers the add-on from the checkout's ``blender_addon/`` and, through its Python API (the same
jobs its operators run, talking to a backend subprocess), creates one face per age group of the
model (infant to elder) under several expressions. It saves ``DIR/faceforge_demo.blend`` and
renders ``DIR/contact_sheet.png`` with Cycles on the CPU; then it loads or trains the motion model
and bakes a take on one face (``--no-take`` skips it), saving the file again.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from faceforge.errors import FaceForgeError
from faceforge.outputs import check_output

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
    take_label: str | None = "high_smile",
    samples: int = 16,
    resolution: tuple[int, int] = (1400, 1400),
    log: Callable[[str], None] = print,
    force: bool = False,
) -> dict:
    """Make the demo scene, save it and render the contact sheet; then bake a take.

    The contact sheet is rendered as soon as the face model exists (the first picture); the motion
    model, which takes longer to train than the face model, is loaded or trained only afterwards,
    for the take, and the file is saved again with it.

    Args:
        out: output folder (created).
        small: use (and build if needed) the small model instead of the default one.
        model: a model file to use instead of the default (or small) one.
        motion_model: a motion model file (default: the default or small one, built if missing).
        take_label: the label of the take baked on the adult neutral face; None: no take (and no
            motion model).
        samples: Cycles samples per pixel.
        resolution: the contact sheet's width and its largest height in pixels (it takes the
            grid's aspect ratio).
        log: receives one line per step, with the time since the start.
        force: replace the ``.blend`` and contact sheet of an earlier run (else refused before any work).

    Returns:
        ``{"blend", "contact_sheet", "faces", "rows", "columns", "take", "seconds": {...}}``;
        ``seconds["first_picture"]`` is the time from the start to the written contact sheet.
    """
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    def step(message: str) -> None:
        log(f"[{time.perf_counter() - started:6.1f} s] {message}")

    def lap(name: str, since: float) -> None:
        seconds[name] = round(time.perf_counter() - since, 1)

    out = Path(out)
    blend, sheet, closeup = out / "faceforge_demo.blend", out / "contact_sheet.png", out / "closeup.png"
    for path in (blend, sheet, closeup):
        check_output(path, force=force)
    out.mkdir(parents=True, exist_ok=True)
    model = _ensure("model", model, small, step)
    lap("model", started)

    t0 = time.perf_counter()
    bpy, jobs, session, names, z_ids = _start_blender(model, step)
    lap("startup", t0)
    t0 = time.perf_counter()
    faces = _grid(bpy, jobs, names, z_ids, step)
    lap("faces", t0)
    t0 = time.perf_counter()
    context = bpy.context
    _stage(bpy, len(COLUMNS), len(names), _SPACING[0], _SPACING[1], samples, resolution)
    bpy.context.preferences.filepaths.save_version = 0  # no faceforge_demo.blend1 backups
    _save(bpy, blend, step)
    size = f"{context.scene.render.resolution_x}x{context.scene.render.resolution_y}"
    step(f"rendering the contact sheet with Cycles on the CPU ({size}, {samples} samples per pixel)")
    context.scene.render.filepath = str(sheet)
    bpy.ops.render.render(write_still=True)
    lap("render", t0)
    lap("first_picture", started)
    step(f"wrote {sheet} (the first picture, {seconds['first_picture']:.0f} s after the start)")
    if "adult" in names:
        t0 = time.perf_counter()
        _closeup(bpy, names.index("adult"), "adult", closeup)
        lap("closeup", t0)
        step(f"wrote {closeup} (the adult face, neutral, happy and surprised, close up)")

    take = None
    if take_label:
        t0 = time.perf_counter()
        motion_model = _ensure("motion", motion_model, small, step)
        lap("motion_model", t0)
        t0 = time.perf_counter()
        animated = next((f for f in faces if f.startswith("adult") and f.endswith("neutral")), faces[0])
        take = _bake_take(bpy, jobs, bpy.data.objects[animated], motion_model, take_label, step)
        _save(bpy, blend, step)
        lap("take", t0)
    session.stop()
    lap("total", started)
    return {
        "blend": str(blend),
        "contact_sheet": str(sheet),
        "closeup": str(closeup) if closeup.exists() else None,
        "model": model,
        "motion_model": motion_model if take_label else None,
        "take": take,
        "faces": faces,
        "rows": names,
        "columns": [label for label, _ in COLUMNS],
        "seconds": seconds,
    }


# Grid spacing (m): columns along x, rows down z.
_SPACING = (0.22, 0.28)


def _ensure(kind: str, path: str | os.PathLike | None, small: bool, step: Callable[[str], None]) -> str:
    """The absolute path of a face (``kind="model"``) or motion model: ``path``, or the default (or
    small) one, loaded or built with a progress bar."""
    if path is None:
        from faceforge import store
        from faceforge.progress import TerminalProgress

        face = kind == "model"
        what = "default face model" if face else "motion model (Motion3DGAN + S2D-Dec) for the take"
        step(f"loading or building the {'small ' if small else ''}{what}")
        progress = TerminalProgress("faceforge model" if face else "faceforge animate", enabled=True)
        try:
            if face:
                path = store.ensure_model("all", small, progress=progress)["path"]
            else:
                path = store.ensure_motion_model(small, progress=progress)["path"]
        finally:
            progress.close()
    return str(Path(path).resolve())


def _start_blender(model: str, step: Callable[[str], None]) -> tuple:
    """Blender (bpy) with the add-on registered, the backend started on ``model``:
    ``(bpy, jobs, session, age-group names, their z_id codes)``."""
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
    return bpy, jobs, session, groups["names"], groups["arrays"]["z_id"]


def _grid(bpy, jobs, names: list[str], z_ids, step: Callable[[str], None]) -> list[str]:  # noqa: ANN001
    """One face per age group (rows) and expression (:data:`COLUMNS`), with row and column labels."""
    context = bpy.context
    faces = []
    for row, (group, z_id) in enumerate(zip(names, z_ids, strict=True)):
        step(f"generating {len(COLUMNS)} {group} faces with their expression shape keys")
        for column, (label, values) in enumerate(COLUMNS):
            location = (column * _SPACING[0], 0.0, -row * _SPACING[1])
            face = jobs.run(jobs.GenerateFace(context, z_id=z_id, name=f"{group} {label}", location=location))
            if values is None:
                jobs.run(jobs.RandomExpression(context, obj=face, seed=row))
            else:
                for key, value in values.items():
                    face.data.shape_keys.key_blocks[key].value = value
            faces.append(face.name)
    _labels(bpy, names, *_SPACING)
    return faces


def _bake_take(bpy, jobs, obj, motion_model: str, label: str, step: Callable[[str], None]) -> dict:  # noqa: ANN001
    """Bake a ``label`` take on ``obj`` from frame 1 and set the scene's range to it."""
    context = bpy.context
    step(f"baking a '{label}' take on {obj.name} (Motion3DGAN landmarks, S2D-Dec, shape keys)")
    animate = context.scene.faceforge_animate
    animate.model_path = motion_model
    animate.label, animate.seed, animate.start_frame = label, 0, 1
    animate.seconds, animate.hold_seconds, animate.release, animate.release_seconds = 1.0, 0.5, True, 1.0
    take_job = jobs.BakeTake(context, obj=obj)
    jobs.run(take_job)
    step(take_job.message)
    tracks = obj.data.shape_keys.animation_data.nla_tracks
    strip = tracks[-1].strips[0]  # the newest take (the bottom track holds the rest pose)
    context.scene.frame_start, context.scene.frame_end = int(strip.frame_start), int(strip.frame_end)
    context.scene.frame_set(context.scene.frame_start)
    return {"object": obj.name, "name": strip.name, "frames": [int(strip.frame_start), int(strip.frame_end)]}


def _save(bpy, blend: Path, step: Callable[[str], None]) -> None:  # noqa: ANN001
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), check_existing=False, compress=True)
    step(f"saved {blend}")


def _labels(bpy, rows: list[str], spacing_x: float, spacing_z: float) -> None:  # noqa: ANN001
    """Text objects naming the rows (age groups) and columns (expressions)."""
    material = bpy.data.materials.new("FaceForge label")
    material.use_nodes = True
    material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.02, 0.02, 0.03, 1.0)

    def text(body: str, location: tuple[float, float, float], align: str) -> None:
        curve = bpy.data.curves.new(f"label {body}", "FONT")
        curve.body = body
        curve.size = 0.032
        curve.align_x = align
        curve.materials.append(material)
        obj = bpy.data.objects.new(f"label {body}", curve)
        obj.location = location
        obj.rotation_euler = (1.5707963, 0.0, 0.0)  # face the camera (which looks along +Y)
        bpy.context.collection.objects.link(obj)

    for row, name in enumerate(rows):
        text(name, (-0.12, 0.0, -row * spacing_z + 0.02), "RIGHT")
    for column, (label, _) in enumerate(COLUMNS):
        text(label, (column * spacing_x, 0.0, 0.16), "CENTER")


def _closeup(bpy, row: int, row_name: str, path: Path) -> None:  # noqa: ANN001
    """Render the first three faces of grid row ``row`` close up (the same scene, camera moved,
    the other rows and the labels hidden for it); the scene is left as it was."""
    scene = bpy.context.scene
    camera = scene.camera
    prefix = f"{row_name} "
    hidden = [o for o in scene.objects if o.type in ("MESH", "FONT") and not o.name.startswith(prefix)]
    saved = (camera.location.copy(), camera.data.ortho_scale, scene.render.filepath,
             scene.render.resolution_x, scene.render.resolution_y)  # fmt: skip
    try:
        for obj in hidden:
            obj.hide_render = True
        width = 3 * _SPACING[0]
        camera.data.ortho_scale = width
        camera.location = (_SPACING[0], -2.0, -row * _SPACING[1] + 0.005)
        scene.render.resolution_x, scene.render.resolution_y = 1500, int(1500 * 0.31 / width)
        scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
    finally:
        for obj in hidden:
            obj.hide_render = False
        camera.location, camera.data.ortho_scale, scene.render.filepath = saved[:3]
        scene.render.resolution_x, scene.render.resolution_y = saved[3:]


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
    for obj in scene.objects:  # faces without FaceForge's own skin (older models) get a plain one
        if obj.type == "MESH" and obj.faceforge.is_face and not obj.data.materials:
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
