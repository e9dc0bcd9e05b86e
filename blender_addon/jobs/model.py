"""Jobs on the backend's models: build the default face or motion model, load the scene's model."""

from __future__ import annotations

from .. import session
from .base import Job


class _BuildJob(Job):
    """Build (or reuse) one of the backend's default artifacts with ``method``: minutes, progress."""

    method = ""
    needs_model = False
    deadline = 6 * 3600.0  # a default model from scratch: tens of minutes on a laptop

    def __init__(self, context, small: bool = False, force: bool = False) -> None:
        super().__init__(context)
        self.small = small
        self.force = force

    def request(self):
        return self.method, {"small": self.small, "force": self.force}, None


class BuildModel(_BuildJob):
    """Build the default model (and the default dataset first if missing) and load it."""

    label = "Build Default Model"
    method = "model.build"

    def apply(self, result):
        # The backend holds the new model; the scene uses it from now on.
        if session.wanted_model(self.context) != result["path"]:
            self.context.scene.faceforge.model_path = result["path"]
        session.model_loaded(result["path"], result.get("info", {}))
        self.message = f"model {'reused' if result.get('cached') else 'built'}: {result['path']}"
        return result["path"]


class BuildMotionModel(_BuildJob):
    """Build (or reuse) the default motion model (Motion3DGAN + S2D-Dec) for the Animate panel."""

    label = "Build Motion Model"
    method = "animate.build"

    def apply(self, result):
        self.context.scene.faceforge_animate.model_path = result["path"]
        self.message = f"motion model {'reused' if result.get('cached') else 'built'}: {result['path']}"
        return result["path"]


class LoadModel(Job):
    """Load the scene's model into the backend (done before any model job when needed)."""

    label = "Load Model"
    needs_model = False

    def request(self):
        path = session.wanted_model(self.context)
        return "model.load", ({} if path is None else {"path": path}), None

    def apply(self, result):
        session.model_loaded(session.wanted_model(self.context), result)
        self.message = f"model loaded: {result.get('path')} ({result.get('n_vertices')} vertices)"
        return result
