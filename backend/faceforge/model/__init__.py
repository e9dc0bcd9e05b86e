"""The BabyFlow face model: HOSVD bilinear identity x expression model with normalizing flows.

Importing this package loads torch; the add-on never imports it (it talks to the backend).
"""

from faceforge.model.build import ModelBuildConfig, build_model
from faceforge.model.face_model import FaceModel, load_model
from faceforge.model.fitting import FitResult, fit_scan
from faceforge.model.flows import FlowTrainingConfig, RealNVP

__all__ = [
    "FaceModel",
    "FitResult",
    "FlowTrainingConfig",
    "ModelBuildConfig",
    "RealNVP",
    "build_model",
    "fit_scan",
    "load_model",
]
