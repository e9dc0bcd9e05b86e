"""Add-on preferences: where the backend interpreter and the FaceForge data live."""

import bpy
from bpy.props import StringProperty
from bpy.types import AddonPreferences

# The add-on's package name: ``bl_ext.<repository>.faceforge`` when installed as an extension.
ADDON_PACKAGE = __package__


class FaceForgePreferences(AddonPreferences):
    """Settings shared by every file: the backend interpreter and the data folder."""

    bl_idname = ADDON_PACKAGE

    backend_python: StringProperty(
        name="Backend Python",
        description=(
            "Python interpreter that has the faceforge backend and torch installed (not Blender's own Python)"
        ),
        subtype="FILE_PATH",
        default="",
    )
    data_dir: StringProperty(
        name="Data Folder",
        description="Folder for FaceForge models and data sets",
        subtype="DIR_PATH",
        default="",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "backend_python")
        layout.prop(self, "data_dir")


def get_preferences(context=None):
    """Return the FaceForge preferences, or None when the add-on is not enabled as an add-on.

    Classes registered by hand (as the tests do) have no entry in ``Preferences.addons``.
    """
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return None if addon is None else addon.preferences


classes = (FaceForgePreferences,)
