"""The physical face: shape-targeting FEM with skull, jaw, soft tissue and lip contact.

Generalized Physical Face Model (Yang et al. 2024), Sec. 3, 4.1, 6.2 and 7: a material space between
skin and bones (:mod:`.material`), the shape-targeting energy (:mod:`.fem`), its quasi-static solve
with IPC contact (:mod:`.solver`, :mod:`.contact`), simulation-free actuation from a target
expression (:mod:`.actuation`) and sequences with physical effects (:mod:`.simulate`).
"""

from faceforge.physics.material import RESOLUTIONS_MM, MaterialSpace, build_material_space
from faceforge.physics.simulate import PhysicalFace, SimulationResult
from faceforge.physics.solver import FaceSolver, PhysicsOptions

__all__ = [
    "RESOLUTIONS_MM",
    "FaceSolver",
    "MaterialSpace",
    "PhysicalFace",
    "PhysicsOptions",
    "SimulationResult",
    "build_material_space",
]
