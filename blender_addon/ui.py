"""Panels of the FaceForge tab in the 3D View sidebar."""

from bpy.types import Panel

from .preferences import get_preferences


class VIEW3D_PT_faceforge(Panel):
    """Main FaceForge panel: scene settings and backend status."""

    bl_idname = "VIEW3D_PT_faceforge"
    bl_label = "FaceForge"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "FaceForge"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.faceforge
        layout.prop(settings, "seed")
        layout.prop(settings, "model_path")

        box = layout.box()
        box.label(text="Backend not connected", icon="UNLINKED")
        prefs = get_preferences(context)
        if prefs is not None and not prefs.backend_python:
            box.label(text="Set the backend Python in the add-on preferences", icon="INFO")


classes = (VIEW3D_PT_faceforge,)
