"""Property groups that FaceForge stores on Blender data-blocks (saved with the .blend file)."""

import bpy
from bpy.props import IntProperty, PointerProperty, StringProperty
from bpy.types import PropertyGroup

# Blender 4.5+ warns when a path property that does not declare support for blend-relative paths
# ("//...") is given one; older versions have no such option and accept them anyway.
_BLEND_RELATIVE_PATH = (
    {"PATH_SUPPORTS_BLEND_RELATIVE"}
    if "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties
    else set()
)


class FaceForgeSceneSettings(PropertyGroup):
    """Per-scene FaceForge settings, available as ``scene.faceforge``."""

    seed: IntProperty(
        name="Seed",
        description="Random seed: the same seed and settings give the same result",
        default=0,
        min=0,
    )
    model_path: StringProperty(
        name="Model",
        description="FaceForge model file used by this scene",
        subtype="FILE_PATH",
        default="",
        options=_BLEND_RELATIVE_PATH,
    )


classes = (FaceForgeSceneSettings,)


def attach():
    """Add the ``faceforge`` pointer properties to their ID types (after the classes are registered)."""
    bpy.types.Scene.faceforge = PointerProperty(type=FaceForgeSceneSettings)


def detach():
    """Remove the pointer properties added by :func:`attach` (before the classes are unregistered)."""
    if hasattr(bpy.types.Scene, "faceforge"):
        del bpy.types.Scene.faceforge
