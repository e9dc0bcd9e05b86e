"""The modal path of the job operators (what the UI runs), driven by hand.

Headless Blender never runs the window event loop, so ``invoke`` falls back to ``execute``. Here the
same ``begin`` / ``modal`` methods the UI uses are called directly, with TIMER and ESC events, on an
object that has the operator mixin but reports into a list.
"""

from __future__ import annotations

import time

import bpy
import pytest

pytestmark = pytest.mark.anny


class Event:
    def __init__(self, kind: str) -> None:
        self.type = kind



def modal_operator(addon, job_factory):
    class Driven(addon.operators._JobOperator):
        def __init__(self) -> None:
            self.reports: list[tuple[set, str]] = []

        def report(self, level, message):
            self.reports.append((level, message))

        def make_job(self, context):
            return job_factory(context)

    return Driven()


def drive(op, context, timeout: float = 120.0, escape_after: int | None = None):
    """Send TIMER events (ESC after ``escape_after`` of them) until the operator finishes."""
    assert op.begin(context) == {"RUNNING_MODAL"}
    deadline = time.monotonic() + timeout
    ticks = 0
    while time.monotonic() < deadline:
        event = Event("ESC" if escape_after is not None and ticks >= escape_after else "TIMER")
        result = op.modal(context, event)
        if result != {"RUNNING_MODAL"}:
            return result
        ticks += 1
        time.sleep(0.02)
    raise AssertionError("the modal job did not finish")


def test_modal_generate_face_applies_on_finish(faceforge, small_model_path):
    context = bpy.context
    context.scene.faceforge.model_path = str(small_model_path)
    op = modal_operator(faceforge, lambda c: faceforge.jobs.GenerateFace(c, seed=3, name="modal face"))
    assert drive(op, context) == {"FINISHED"}
    face = bpy.data.objects["modal face"]
    assert len(face.data.shape_keys.key_blocks) > 53
    assert not context.window_manager.faceforge.running
    assert op.reports[-1][0] == {"INFO"}


def test_escape_cancels_and_changes_nothing(faceforge, small_model_path):
    context = bpy.context
    context.scene.faceforge.model_path = str(small_model_path)
    before = set(bpy.data.objects.keys())
    op = modal_operator(faceforge, lambda c: faceforge.jobs.GenerateFace(c, seed=4, name="never"))
    assert drive(op, context, escape_after=0) == {"CANCELLED"}
    assert set(bpy.data.objects.keys()) == before
    assert op.reports[-1] == ({"WARNING"}, "Generate Face cancelled")
    assert not context.window_manager.faceforge.running


def test_modal_errors_are_reported_once(faceforge, tmp_path):
    context = bpy.context
    context.scene.faceforge.model_path = str(tmp_path / "missing.pt")
    op = modal_operator(faceforge, lambda c: faceforge.jobs.GenerateFace(c, seed=1))
    before = set(bpy.data.objects.keys())
    assert drive(op, context) == {"CANCELLED"}
    assert [r for r in op.reports if r[0] == {"ERROR"}][0][1].startswith("no model file at")
    assert set(bpy.data.objects.keys()) == before
