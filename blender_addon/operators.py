"""Operators: thin wrappers that make a job from their properties, run it, and report.

Under ``bpy.app.background`` (``blender -b``, the ``bpy`` module) a job runs synchronously in
``execute``. In the UI, ``invoke`` starts it modally: the backend works in its own process, a
timer polls for progress (shown in the status bar and the header) and applies the result on the
main thread; ESC cancels. Either way an error is one report and ``{'CANCELLED'}`` with the scene
unchanged.
"""

from __future__ import annotations

import time

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy.types import Operator

from . import jobs, session
from .backend_call import WATCH_SECONDS
from .backend_client import BackendCancelled, BackendError
from .properties import AGE_GROUP_ITEMS

_FAILURES = (jobs.FaceForgeInputError, BackendError, ValueError)


class _JobOperator:
    """Mixin: run :meth:`make_job`'s job synchronously (background) or modally (UI)."""

    bl_options = {"REGISTER", "UNDO"}

    _timer = None
    _job = None
    _calls = None
    _pending = None

    def make_job(self, context) -> jobs.Job:
        raise NotImplementedError

    # -- synchronous ------------------------------------------------------------------------------
    def execute(self, context):
        try:
            job = self.make_job(context)
            jobs.run(job)
        except _FAILURES as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({job.level}, job.message)
        return {"FINISHED"}

    # -- modal ------------------------------------------------------------------------------------
    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        started = self.begin(context)
        if started != {"RUNNING_MODAL"}:
            return started
        self._timer = context.window_manager.event_timer_add(0.1, window=context.window)
        context.window_manager.modal_handler_add(self)
        return started

    def begin(self, context):
        """Make the job and start the backend without blocking; ``modal`` then drives it."""
        state = context.window_manager.faceforge
        if state.running:
            self.report({"ERROR"}, f"FaceForge is busy with {state.label}; wait or press Esc there")
            return {"CANCELLED"}
        try:
            self._job = self.make_job(context)
        except _FAILURES as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        session.start_async(context)
        self._calls = None
        self._pending = None
        state.running, state.label, state.progress, state.message = True, self._job.label, 0.0, "starting"
        context.window_manager.progress_begin(0.0, 1.0)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            if self._pending is not None:
                self._pending.cancel()
            return self._finish(context, {"WARNING"}, f"{self._job.label} cancelled", cancelled=True)
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            return self._step(context)
        except _FAILURES as error:
            return self._finish(context, {"ERROR"}, str(error), cancelled=True)

    def _step(self, context):
        backend = session.client(context)
        if session.starting():
            return {"RUNNING_MODAL"}
        if not backend.alive:
            _state, text = session.status()
            raise BackendError(text)
        if self._calls is None:
            self._calls = jobs.calls(self._job)
        now = time.monotonic()
        if self._pending is None:
            method, params, arrays = self._calls[0]
            self._pending = backend.submit(method, params, arrays=arrays)
            self._submitted = self._heard = now
        for update in self._pending.poll():
            self._heard = now
            total = max(int(update.get("total", 0)), 1)
            self._show(context, min(int(update.get("done", 0)) / total, 1.0), str(update.get("message", "")))
        if not self._pending.done():
            deadline = self._job.deadline
            if deadline is not None and now - self._submitted > deadline:
                self._pending.cancel()
                raise BackendError(f"{self._job.label}: the backend did not finish within {deadline:g} s")
            if now - self._heard > WATCH_SECONDS:  # silent: ping it; a hung backend fails the call
                self._heard = now
                backend._watchdog(self._pending)
            if not self._pending.done():
                return {"RUNNING_MODAL"}
        method = self._calls.pop(0)[0]
        try:
            result = self._pending.result(timeout=0)
        except BackendCancelled:
            return self._finish(context, {"WARNING"}, f"{self._job.label} cancelled", cancelled=True)
        finally:
            self._pending = None
        jobs.record_load(context, method, result)
        if self._calls:
            return {"RUNNING_MODAL"}
        jobs._recheck(self._job)
        self._job.apply(result)
        return self._finish(context, {self._job.level}, self._job.message)

    def _show(self, context, fraction: float, message: str) -> None:
        state = context.window_manager.faceforge
        state.progress, state.message = fraction, message
        context.window_manager.progress_update(fraction)
        if context.area is not None:
            percent = f"{100 * fraction:.0f}%"
            context.area.header_text_set(f"{self._job.label}: {message} ({percent}) - Esc to cancel")
        for window in context.window_manager.windows:
            for area in window.screen.areas:
                if area.type == "VIEW_3D":
                    area.tag_redraw()

    def _finish(self, context, level, message: str, cancelled: bool = False):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.area is not None:
            context.area.header_text_set(None)
        wm.faceforge.running = False
        wm.faceforge.message = message
        self.report(level, message)
        return {"CANCELLED"} if cancelled else {"FINISHED"}


class FACEFORGE_OT_generate_face(_JobOperator, Operator):
    """Create a face from the model: the identity's neutral face with one shape key per expression"""

    bl_idname = "faceforge.generate_face"
    bl_label = "Generate Face"

    seed: IntProperty(name="Seed", description="Identity seed (-1: the scene's seed)", default=-1, min=-1)
    name: StringProperty(name="Name", default="FaceForge Face")

    def make_job(self, context):
        return jobs.GenerateFace(context, seed=None if self.seed < 0 else self.seed, name=self.name)


class FACEFORGE_OT_update_identity(_JobOperator, Operator):
    """Give the active FaceForge face the identity of the current seed or sliders, keeping its shape
    keys, their values and animation"""

    bl_idname = "faceforge.update_identity"
    bl_label = "Update Identity"

    seed: IntProperty(name="Seed", description="Identity seed (-1: the scene's seed)", default=-1, min=-1)

    def make_job(self, context):
        return jobs.UpdateIdentity(context, seed=None if self.seed < 0 else self.seed)


class FACEFORGE_OT_random_expression(_JobOperator, Operator):
    """Sample an expression from the model and set the active face's shape keys to it"""

    bl_idname = "faceforge.random_expression"
    bl_label = "Random Expression"

    seed: IntProperty(name="Seed", description="Expression seed (-1: the scene's)", default=-1, min=-1)

    def make_job(self, context):
        return jobs.RandomExpression(context, seed=None if self.seed < 0 else self.seed)


class FACEFORGE_OT_neutralize(_JobOperator, Operator):
    """Remove the expression from the active face or scan (scans are fitted with the model)"""

    bl_idname = "faceforge.neutralize"
    bl_label = "Neutralize"

    def make_job(self, context):
        return jobs.Neutralize(context)


class FACEFORGE_OT_apply_to_selected(_JobOperator, Operator):
    """Fit the model to the active mesh in its topology (e.g. a scan) and add expression shape keys"""

    bl_idname = "faceforge.apply_to_selected"
    bl_label = "Apply to Selected"

    def make_job(self, context):
        return jobs.ApplyToSelected(context)


class FACEFORGE_OT_retarget_character(_JobOperator, Operator):
    """Add FaceForge's expressions to the active character mesh (any topology) as shape keys"""

    bl_idname = "faceforge.retarget_character"
    bl_label = "Add FaceForge Expressions to Character"

    def make_job(self, context):
        return jobs.RetargetCharacter(context)


class FACEFORGE_OT_propose_landmarks(_JobOperator, Operator):
    """Propose landmarks on the active character mesh as markers to move before adding expressions"""

    bl_idname = "faceforge.propose_landmarks"
    bl_label = "Propose Landmarks"

    def make_job(self, context):
        return jobs.ProposeLandmarks(context)


class FACEFORGE_OT_interpolate(_JobOperator, Operator):
    """Faces between the active and the other selected FaceForge face (latent interpolation)"""

    bl_idname = "faceforge.interpolate"
    bl_label = "Interpolate"

    steps: IntProperty(name="In-betweens", default=0, min=0, max=32, description="0: the scene's setting")
    mode: EnumProperty(
        name="Result",
        items=(("SCENE", "Scene Setting", ""), ("OBJECTS", "Objects", ""), ("KEYED", "Keyed Blend", "")),
        default="SCENE",
    )

    def make_job(self, context):
        return jobs.Interpolate(
            context, steps=self.steps or None, mode=None if self.mode == "SCENE" else self.mode
        )


class FACEFORGE_OT_transfer_preview(_JobOperator, Operator):
    """Preview the active face's expression on a typical face of another age"""

    bl_idname = "faceforge.transfer_preview"
    bl_label = "Cross-Age Preview"

    target_age: EnumProperty(name="Target Age", items=(("SCENE", "Scene Setting", ""), *AGE_GROUP_ITEMS))
    intensity: FloatProperty(name="Intensity", default=-1.0, min=-1.0, max=3.0, description="-1: the scene's")

    def make_job(self, context):
        return jobs.TransferPreview(
            context,
            target_age=None if self.target_age == "SCENE" else self.target_age,
            intensity=None if self.intensity < 0 else self.intensity,
        )


class FACEFORGE_OT_bake_take(_JobOperator, Operator):
    """Generate a motion of the chosen label and bake it onto the active face's shape keys as a take"""

    bl_idname = "faceforge.bake_take"
    bl_label = "Bake Take"

    seed: IntProperty(name="Seed", description="Motion seed (-1: the panel's)", default=-1, min=-1)

    def make_job(self, context):
        return jobs.BakeTake(context, seed=None if self.seed < 0 else self.seed)


class FACEFORGE_OT_interpolate_takes(_JobOperator, Operator):
    """Bake a motion part-way between two generated motions (geodesic on the SRVF sphere)"""

    bl_idname = "faceforge.interpolate_takes"
    bl_label = "Interpolate Takes"

    def make_job(self, context):
        return jobs.InterpolateTakes(context)


class FACEFORGE_OT_transfer_motion(_JobOperator, Operator):
    """Drive the active face with the selected animated face or landmark empties (S2D-Dec)"""

    bl_idname = "faceforge.transfer_motion"
    bl_label = "Transfer Motion"

    def make_job(self, context):
        return jobs.TransferMotion(context)


class FACEFORGE_OT_simulate(_JobOperator, Operator):
    """Simulate the active face's animation over the frame range (soft tissue, bones, lips) as a take"""

    bl_idname = "faceforge.simulate"
    bl_label = "Simulate Take"

    def make_job(self, context):
        obj = context.active_object
        if obj is not None and not obj.faceforge.is_face and "faceforge_character_map" in obj:
            return jobs.SimulateCharacter(context)  # a retargeted character: through its proxy
        return jobs.SimulateTake(context)


class FACEFORGE_OT_load_model(_JobOperator, Operator):
    """Load the scene's model file into the backend"""

    bl_idname = "faceforge.load_model"
    bl_label = "Load Model"
    bl_options = {"REGISTER"}

    def make_job(self, context):
        return jobs.LoadModel(context)


class FACEFORGE_OT_build_model(_JobOperator, Operator):
    """Build the default model (and its dataset first if missing): minutes, with progress; Esc cancels"""

    bl_idname = "faceforge.build_model"
    bl_label = "Build Default Model"
    bl_options = {"REGISTER"}

    small: BoolProperty(name="Small", description="A small model for trying things out (about a minute)")
    force: BoolProperty(name="Rebuild", description="Rebuild even if an identical model is cached")

    def make_job(self, context):
        return jobs.BuildModel(context, small=self.small, force=self.force)


class FACEFORGE_OT_build_motion_model(_JobOperator, Operator):
    """Build the default motion model (Motion3DGAN + S2D-Dec; the dataset first if missing): minutes,
    with progress; Esc cancels"""

    bl_idname = "faceforge.build_motion_model"
    bl_label = "Build Motion Model"
    bl_options = {"REGISTER"}

    small: BoolProperty(name="Small", description="A small motion model for trying things out")
    force: BoolProperty(name="Rebuild", description="Rebuild even if an identical model is cached")

    def make_job(self, context):
        return jobs.BuildMotionModel(context, small=self.small, force=self.force)


class FACEFORGE_OT_backend_start(Operator):
    """Start the FaceForge backend process"""

    bl_idname = "faceforge.backend_start"
    bl_label = "Start Backend"

    def execute(self, context):
        if bpy.app.background:
            try:
                session.ensure_started(context)
            except BackendError as error:
                self.report({"ERROR"}, str(error))
                return {"CANCELLED"}
        else:
            session.start_async(context)
        return {"FINISHED"}


class FACEFORGE_OT_backend_stop(Operator):
    """Stop the FaceForge backend process"""

    bl_idname = "faceforge.backend_stop"
    bl_label = "Stop Backend"

    def execute(self, context):
        session.stop()
        return {"FINISHED"}


class FACEFORGE_OT_backend_test(Operator):
    """Check that the backend answers, and how fast"""

    bl_idname = "faceforge.backend_test"
    bl_label = "Test Backend"

    def execute(self, context):
        try:
            backend = session.ensure_started(context)
            seconds = backend.ping()
        except BackendError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        handshake = backend.handshake or {}
        self.report(
            {"INFO"},
            f"Backend {handshake.get('backend', '?')} on {handshake.get('device', '?')}: "
            f"round trip {1000 * seconds:.1f} ms",
        )
        return {"FINISHED"}


classes = (
    FACEFORGE_OT_backend_start,
    FACEFORGE_OT_backend_stop,
    FACEFORGE_OT_backend_test,
    FACEFORGE_OT_load_model,
    FACEFORGE_OT_build_model,
    FACEFORGE_OT_build_motion_model,
    FACEFORGE_OT_generate_face,
    FACEFORGE_OT_update_identity,
    FACEFORGE_OT_random_expression,
    FACEFORGE_OT_neutralize,
    FACEFORGE_OT_apply_to_selected,
    FACEFORGE_OT_retarget_character,
    FACEFORGE_OT_propose_landmarks,
    FACEFORGE_OT_interpolate,
    FACEFORGE_OT_transfer_preview,
    FACEFORGE_OT_bake_take,
    FACEFORGE_OT_interpolate_takes,
    FACEFORGE_OT_transfer_motion,
    FACEFORGE_OT_simulate,
)
