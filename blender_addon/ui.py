"""Panels of the FaceForge tab in the 3D View sidebar: Backend, Model, Generate, Edit."""

from bpy.types import Panel

from . import session
from .preferences import get_preferences


class _FaceForgePanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "FaceForge"


class VIEW3D_PT_faceforge(_FaceForgePanel, Panel):
    """Backend: status, start/stop, test; and the job in progress."""

    bl_idname = "VIEW3D_PT_faceforge"
    bl_label = "Backend"

    def draw(self, context):
        layout = self.layout
        state, text = session.status()
        icon = {"RUNNING": "LINKED", "STARTING": "SORTTIME", "ERROR": "ERROR"}.get(state, "UNLINKED")
        box = layout.box()
        for k, line in enumerate(_wrap(text, 48)):
            box.label(text=line, icon=icon if k == 0 else "BLANK1")
        prefs = get_preferences(context)
        if prefs is not None and not prefs.backend_python and not session.settings(context)[0]:
            box.label(text="Set the backend Python in the add-on preferences", icon="INFO")
        row = layout.row(align=True)
        if state == "RUNNING":
            row.operator("faceforge.backend_stop", icon="CANCEL")
        else:
            row.operator("faceforge.backend_start", icon="PLAY")
        row.operator("faceforge.backend_test", icon="CHECKMARK", text="Test")
        job = context.window_manager.faceforge
        if job.running:
            col = layout.column()
            col.label(text=f"{job.label}: {job.message}", icon="TIME")
            col.prop(job, "progress", text="Progress", slider=True)
            col.label(text="Esc cancels")


class VIEW3D_PT_faceforge_model(_FaceForgePanel, Panel):
    """Model: the file, load, or build the default model."""

    bl_idname = "VIEW3D_PT_faceforge_model"
    bl_label = "Model"

    def draw(self, context):
        layout = self.layout
        layout.prop(context.scene.faceforge, "model_path")
        info = session.model_info()
        if info:
            layout.label(
                text=f"{info.get('name', 'model')}: {info.get('n_vertices')} vertices, "
                f"ranks {info.get('rank_identity')} x {info.get('rank_expression')}",
                icon="CHECKMARK",
            )
        row = layout.row(align=True)
        row.operator("faceforge.load_model", icon="FILE_FOLDER")
        row.operator("faceforge.build_model", icon="MODIFIER")


class VIEW3D_PT_faceforge_generate(_FaceForgePanel, Panel):
    """Generate: identity from a seed or sliders; the face with its expression shape keys."""

    bl_idname = "VIEW3D_PT_faceforge_generate"
    bl_label = "Generate"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.faceforge
        col = layout.column(align=True)
        col.prop(settings, "seed")
        col.prop(settings, "radius")
        layout.prop(settings, "use_sliders")
        if settings.use_sliders:
            col = layout.column(align=True)
            for k in range(len(settings.identity_sliders)):
                col.prop(settings, "identity_sliders", index=k, text=f"Identity {k + 1}")
        layout.operator("faceforge.generate_face", icon="USER")
        layout.operator("faceforge.update_identity", icon="FILE_REFRESH")


class VIEW3D_PT_faceforge_edit(_FaceForgePanel, Panel):
    """Edit: expressions, neutralize, interpolate, cross-age preview, scans."""

    bl_idname = "VIEW3D_PT_faceforge_edit"
    bl_label = "Expressions and Faces"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.faceforge
        box = layout.box()
        row = box.row(align=True)
        row.prop(settings, "expression_seed")
        row.prop(settings, "exact_expression", toggle=True)
        box.operator("faceforge.random_expression", icon="MOD_NOISE")
        box.operator("faceforge.neutralize", icon="LOOP_BACK")
        box = layout.box()
        row = box.row(align=True)
        row.prop(settings, "interpolation_steps")
        row.prop(settings, "interpolation_mode", text="")
        box.operator("faceforge.interpolate", icon="IPO_LINEAR")
        box = layout.box()
        row = box.row(align=True)
        row.prop(settings, "target_age", text="")
        row.prop(settings, "transfer_intensity")
        box.operator("faceforge.transfer_preview", icon="COMMUNITY")
        row = layout.row(align=True)
        row.operator("faceforge.apply_to_selected", icon="MOD_MESHDEFORM")
        row.prop(settings, "existing_keys", text="")
        box = layout.box()
        box.label(text="Your Character (any topology)")
        row = box.row(align=True)
        row.prop(settings, "character_profile", text="")
        row.prop(settings, "character_existing_keys", text="")
        box.operator("faceforge.propose_landmarks", icon="EMPTY_AXIS")
        box.operator("faceforge.retarget_character", icon="SHAPEKEY_DATA")


class VIEW3D_PT_faceforge_animate(_FaceForgePanel, Panel):
    """Animate: generated motions baked as takes, interpolated, or transferred from another face."""

    bl_idname = "VIEW3D_PT_faceforge_animate"
    bl_label = "Animate"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.faceforge_animate
        row = layout.row(align=True)
        row.prop(settings, "model_path")
        row.operator("faceforge.build_motion_model", text="", icon="MODIFIER")
        col = layout.column(align=True)
        col.prop(settings, "label")
        col.prop(settings, "seed")
        col = layout.column(align=True)
        col.prop(settings, "start_frame")
        col.prop(settings, "seconds")
        col.prop(settings, "intensity")
        col.prop(settings, "hold_seconds")
        row = col.row(align=True)
        row.prop(settings, "release")
        sub = row.row(align=True)
        sub.active = settings.release
        sub.prop(settings, "release_seconds", text="")
        layout.prop(settings, "exact")
        layout.prop(settings, "dense_keys")
        layout.operator("faceforge.bake_take", icon="ACTION")
        box = layout.box()
        row = box.row(align=True)
        row.prop(settings, "other_label", text="")
        row.prop(settings, "other_seed", text="Seed")
        box.prop(settings, "blend")
        box.operator("faceforge.interpolate_takes", icon="IPO_EASE_IN_OUT")
        layout.operator("faceforge.transfer_motion", icon="CON_TRANSLIKE")


class VIEW3D_PT_faceforge_physics(_FaceForgePanel, Panel):
    """Physics: simulate the face's animation with soft tissue, bones and lip contact; bake a take."""

    bl_idname = "VIEW3D_PT_faceforge_physics"
    bl_label = "Physics"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.faceforge_physics
        row = layout.row(align=True)
        row.prop(settings, "frame_start")
        row.prop(settings, "frame_end")
        layout.prop(settings, "resolution")
        layout.prop(settings, "contact")
        row = layout.row(align=True)
        row.prop(settings, "gravity")
        sub = row.row(align=True)
        sub.active = settings.gravity
        sub.prop(settings, "gravity_direction", text="")
        obj = context.active_object
        if obj is not None and obj.type == "MESH":
            layout.prop_search(settings, "paralysis_group", obj, "vertex_groups")
        else:
            layout.prop(settings, "paralysis_group")
        layout.prop(settings, "jaw_scale")
        layout.prop(settings, "device")
        layout.operator("faceforge.simulate", icon="PHYSICS")


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines or [""]


classes = (
    VIEW3D_PT_faceforge,
    VIEW3D_PT_faceforge_model,
    VIEW3D_PT_faceforge_generate,
    VIEW3D_PT_faceforge_edit,
    VIEW3D_PT_faceforge_animate,
    VIEW3D_PT_faceforge_physics,
)
