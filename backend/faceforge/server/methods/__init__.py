"""The backend's methods, one module per area; :meth:`Registry.discover` imports every module here.

Modules:
    core: ``ping``, ``version`` (the handshake), ``cancel``, ``shutdown``.
    data: ``data.build``, ``data.info``, ``data.load``, ``data.rigid_align``.

A module added here (e.g. ``model.py`` for the face model) is picked up without further edits; see
:mod:`faceforge.server.registry` for how to write a method.
"""

__all__: list[str] = []
