"""FaceForge's capabilities as jobs: backend requests prepared from the scene, results applied to it.

A job is made on the main thread from the current context (validating its input: a bad object
raises :class:`FaceForgeInputError` before anything is sent), names one backend request, and
applies the answer on the main thread. :func:`run` does it synchronously (headless Blender, the
Python API); the operators in ``operators.py`` run the same jobs modally with progress and cancel.
``apply`` either changes the scene completely or, on error, not at all.

Python API (each returns what it made or changed)::

    from bl_ext.user_default.faceforge import jobs
    face = jobs.run(jobs.GenerateFace(bpy.context, seed=3))

Modules (one per feature):
    base: :class:`Job`, :class:`FaceForgeInputError`, the input checks, :func:`run`.
    faces: generate, update identity, random expression, neutralize, apply to selected,
        interpolate, cross-age preview.
    model: build and load the face model, build the motion model.
    takes: bake, interpolate and transfer motion takes.
    physics: simulate a take with the physical face model.
    characters: FaceForge's expressions on the user's own character (any topology).
"""

from ..backend_client import BackendError
from .base import FaceForgeInputError, Job, calls, run
from .base import _recheck as _recheck  # the modal operators run a job's steps themselves
from .base import record_load as record_load
from .characters import ProposeLandmarks, RetargetCharacter
from .faces import (
    ApplyToSelected,
    GenerateFace,
    Interpolate,
    Neutralize,
    RandomExpression,
    TransferPreview,
    UpdateIdentity,
)
from .model import BuildModel, BuildMotionModel, LoadModel
from .physics import SimulateCharacter, SimulateTake
from .takes import BakeTake, InterpolateTakes, TransferMotion

__all__ = [
    "ApplyToSelected",
    "BakeTake",
    "InterpolateTakes",
    "TransferMotion",
    "SimulateCharacter",
    "SimulateTake",
    "BackendError",
    "BuildModel",
    "BuildMotionModel",
    "FaceForgeInputError",
    "GenerateFace",
    "Interpolate",
    "Job",
    "LoadModel",
    "Neutralize",
    "RandomExpression",
    "ProposeLandmarks",
    "RetargetCharacter",
    "TransferPreview",
    "UpdateIdentity",
    "calls",
    "run",
]
