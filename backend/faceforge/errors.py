"""The one domain exception type of FaceForge and its specialisations."""

from __future__ import annotations

__all__ = ["FaceForgeError", "DataError", "Cancelled"]


class FaceForgeError(Exception):
    """An error a user can act on: bad input, a missing file, a wrong topology.

    Front ends (CLI, server, add-on) show ``str(error)`` to the user without a traceback.
    """


class DataError(FaceForgeError):
    """Input data is unusable: unreadable, empty, NaN, or of mixed topology. Names the file."""


class Cancelled(FaceForgeError):
    """A long job was cancelled through its progress callback."""
