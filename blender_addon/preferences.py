"""Add-on preferences: the backend interpreter, its device, the default model file and the log file."""

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy.types import AddonPreferences

# The add-on's package name: ``bl_ext.<repository>.faceforge`` when installed as an extension.
ADDON_PACKAGE = __package__


class FaceForgePreferences(AddonPreferences):
    """Settings shared by every file: where the backend runs and what it loads."""

    bl_idname = ADDON_PACKAGE

    backend_python: StringProperty(
        name="Backend Python",
        description=(
            "Python interpreter that has the faceforge backend and torch installed (not Blender's own "
            "Python), e.g. <FaceForge checkout>/.venv/bin/python"
        ),
        subtype="FILE_PATH",
        default="",
    )
    device: EnumProperty(
        name="Device",
        description="Where the backend computes (takes effect when the backend starts)",
        items=(
            ("auto", "Automatic", "A CUDA GPU when torch sees one, otherwise the CPU"),
            ("cpu", "CPU", "Always the CPU"),
            ("cuda", "CUDA", "The first CUDA GPU (fails clearly when torch sees none)"),
        ),
        default="auto",
    )
    model_path: StringProperty(
        name="Default Model",
        description=(
            "FaceForge model file used when a scene names none (empty: the model `faceforge model build` "
            "caches, or the one Build Default Model makes)"
        ),
        subtype="FILE_PATH",
        default="",
    )
    log_file: StringProperty(
        name="Log File",
        description="Where the backend's log goes (empty: faceforge-backend.log in the temporary folder)",
        subtype="FILE_PATH",
        default="",
    )
    data_dir: StringProperty(
        name="Data Folder",
        description=(
            "Where the backend builds and caches the dataset, models and material spaces "
            "(empty: $FACEFORGE_CACHE or ~/.cache/faceforge)"
        ),
        subtype="DIR_PATH",
        default="",
    )

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        for name in ("backend_python", "device", "model_path", "log_file", "data_dir"):
            layout.prop(self, name)


def get_preferences(context=None):
    """Return the FaceForge preferences, or None when the add-on is not enabled as an add-on.

    Classes registered by hand (as the tests do) have no entry in ``Preferences.addons``.
    """
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return None if addon is None else addon.preferences


classes = (FaceForgePreferences,)
