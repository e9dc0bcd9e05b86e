"""Progress reporting and cancellation for long jobs.

Long loops take ``progress: ProgressCallback | None``; they call it as
``progress(done, total, message)`` between steps and stop with :class:`~faceforge.errors.Cancelled`
when it returns ``False`` (the "continue?" pattern of the backend protocol).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from faceforge.errors import Cancelled

__all__ = ["ProgressCallback", "report", "TerminalProgress"]

ProgressCallback = Callable[[int, int, str], bool | None]


def report(progress: ProgressCallback | None, done: int, total: int, message: str = "") -> None:
    """Call ``progress`` if given; raise :class:`Cancelled` when it returns ``False``."""
    if progress is None:
        return
    if progress(done, total, message) is False:
        raise Cancelled(f"cancelled at step {done}/{total}: {message}")


class TerminalProgress:
    """A tqdm progress bar on stderr as a :data:`ProgressCallback` (silent when disabled)."""

    def __init__(self, description: str, enabled: bool = True) -> None:
        self._description = description
        self._enabled = enabled
        self._bar = None

    def __call__(self, done: int, total: int, message: str = "") -> bool:
        if not self._enabled:
            return True
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self._description, file=sys.stderr, leave=True)
        self._bar.total = total
        self._bar.n = done
        if message:
            self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()
        return True

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
