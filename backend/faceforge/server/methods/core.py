"""Protocol housekeeping: liveness, the version handshake, cancellation and a polite shutdown.

All four run immediately on the reader thread, so they are answered also while a job runs.
"""

from __future__ import annotations

import logging
from typing import Any

from faceforge.server.registry import Context, Param, method

__all__ = ["ping", "version", "cancel", "shutdown"]


@method("ping", immediate=True)
def ping(ctx: Context) -> dict[str, Any]:
    """Liveness check; ``busy`` is the id of the running job or null."""
    return {"pong": True, "busy": ctx.control.running}


@method(
    "version",
    immediate=True,
    params={"client": Param(str, default="", doc="name and version of the client, for the log")},
)
def version(ctx: Context, client: str = "") -> dict[str, Any]:
    """The handshake: protocol and backend versions, device, methods, session directory and limits."""
    if client:
        logging.getLogger("faceforge.server").info("handshake from %s", client[:200])
    return ctx.control.info()


@method(
    "cancel",
    immediate=True,
    params={"id": Param((int, str), default=None, doc="id of the job to cancel (default: the running job)")},
)
def cancel(ctx: Context, id: int | str | None = None) -> dict[str, Any]:
    """Ask a job to stop at its next step; the job then answers with a CANCELLED error."""
    return ctx.control.cancel(id)


@method("shutdown", immediate=True)
def shutdown(ctx: Context) -> dict[str, Any]:
    """Cancel the running job, answer, and exit (removing the session directory)."""
    ctx.control.request_shutdown()
    return {"ok": True}
