"""FaceForge: facial animation tools for Blender, backed by a separate torch process.

This package is the Blender side only. It runs inside Blender's own Python (bpy, numpy and the
standard library), uses relative imports so it works under whatever package name Blender installs it
(``bl_ext.<repository>.faceforge``), and never imports torch or the ``faceforge`` backend: heavy work
happens in a backend process started from the interpreter chosen in the add-on preferences.

Modules:
    preferences: add-on preferences (backend interpreter, device, default model, log file).
    properties: property groups on Scene, Object and WindowManager (``.faceforge``).
    session: the one backend client and the model it holds.
    mesh: meshes and shape keys in bulk (numpy buffers).
    jobs: the capabilities (generate, update identity, expressions, interpolate...) and the Python API.
    operators: thin operators running the jobs, modal in the UI, synchronous headless.
    ui: panels in the 3D View sidebar.
"""

import bpy

from . import animation, jobs, mesh, operators, preferences, properties, session, ui  # noqa: F401

# Registration order matters: property groups before the pointers and panels that use them.
classes: tuple[type, ...] = (
    *preferences.classes,
    *properties.classes,
    *operators.classes,
    *ui.classes,
)


# Takes use slotted actions (Action.slots, channelbags), which appeared in Blender 4.4; the manifest's
# blender_version_min says the same.
MIN_BLENDER = (4, 4, 0)


def register():
    """Register every FaceForge class and attach the property groups to their ID types."""
    if tuple(bpy.app.version) < MIN_BLENDER:
        raise RuntimeError(
            f"FaceForge needs Blender {'.'.join(map(str, MIN_BLENDER))} or newer (slotted actions); "
            f"this is Blender {bpy.app.version_string}"
        )
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.attach()
    animation.register_handlers()


def unregister():
    """Stop the backend, remove the property groups and unregister every class, in reverse order."""
    session.stop()
    animation.unregister_handlers()
    properties.detach()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
