"""FaceForge compute backend: face models, data, fitting, physics and the stdio server.

Layers point one way: ``cli``/``server`` -> services -> ``data``/models/physics. Nothing here
imports Blender.
"""

from faceforge.errors import FaceForgeError

__version__ = "0.1.0"

__all__ = ["FaceForgeError", "__version__"]
