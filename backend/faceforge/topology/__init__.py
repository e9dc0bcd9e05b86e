"""The correspondence layer: FaceForge's template and its registration onto any mesh.

:class:`Template` (the head, its regions, landmarks and masks), :class:`Surface` (closest points,
barycentric maps), :func:`register_character` (alignment, identity fit, non-rigid ICP) and the
:class:`Correspondence` it returns, :func:`propose_landmarks` (its first two phases, for landmarks
edited before the registration). Retargeting, scan fitting of any topology and capture use it.

Modules: ``surface``, ``template``, ``align``, ``identity`` (FaceForge's identity, pose and size
fitted to a surface), ``nricp``, ``correspondence``, ``checks`` (holes and
non-manifold edges across the face) — the registration; ``parts``, ``transfer`` (deformation
transfer), ``profiles`` (key names), ``retarget`` — the keys; ``evaluation``, ``artist``,
``render``, ``bench`` — ``faceforge eval|bench retarget``.
"""

from faceforge.topology.align import Similarity, umeyama
from faceforge.topology.correspondence import Correspondence, propose_landmarks, register_character
from faceforge.topology.surface import BarycentricMap, Surface
from faceforge.topology.template import Template

__all__ = [
    "BarycentricMap", "Correspondence", "Similarity", "Surface", "Template",
    "propose_landmarks", "register_character", "umeyama",
]  # fmt: skip
