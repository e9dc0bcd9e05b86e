"""The one device policy: where FaceForge's tensors and kernels run.

Every part that chooses a device asks here: the server (``faceforge serve --device``, which the
add-on's Device preference sets), the CLI's ``--device`` options, the physics solver and its
element step, and model loading. The rules, in order:

1. an explicit ``"cpu"`` or ``"cuda"`` wins (and ``"cuda"`` without a usable GPU is an error, never a
   silent CPU run);
2. ``"auto"`` (or nothing) defers to the environment variable ``FACEFORGE_DEVICE`` when it names a
   device (``cpu`` or ``cuda``);
3. otherwise ``"cuda"`` when torch sees a GPU, else ``"cpu"``.

A GPU that ``"auto"`` picked but that then fails (driver, memory, a library without CUDA support)
falls back to the CPU with one message on stderr (:func:`cpu_fallback`); an explicit request fails.
"""

from __future__ import annotations

import os
import sys

from faceforge.errors import FaceForgeError

__all__ = [
    "DEVICES",
    "ENV_DEVICE",
    "cpu_fallback",
    "cuda_available",
    "requested",
    "resolve_device",
    "warp_device",
]

DEVICES = ("auto", "cpu", "cuda")
ENV_DEVICE = "FACEFORGE_DEVICE"


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (the single place that asks; tests replace it)."""
    import torch

    return bool(torch.cuda.is_available())


def requested(device: str | None = None, what: str = "device") -> str:
    """The normalised request (``"auto"``, ``"cpu"`` or ``"cuda"``) before looking at the hardware.

    Raises:
        FaceForgeError: an unknown device name (in ``device`` or in ``$FACEFORGE_DEVICE``).
    """
    wanted = (device or "auto").strip().lower()
    if wanted not in DEVICES:
        raise FaceForgeError(f"unknown {what} {device!r}: use auto, cpu or cuda")
    if wanted == "auto":
        env = os.environ.get(ENV_DEVICE, "").strip().lower()
        if env and env not in DEVICES:
            raise FaceForgeError(f"unknown {what} {env!r} in ${ENV_DEVICE}: use auto, cpu or cuda")
        wanted = env or "auto"
    return wanted


def resolve_device(device: str | None = "auto", what: str = "device") -> str:
    """``"cpu"`` or ``"cuda"`` for a requested device, following the module's rules.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or None (= ``"auto"``).
        what: how error messages name the setting (e.g. ``"physics device"``).

    Raises:
        FaceForgeError: an unknown name, or ``"cuda"`` asked for while torch sees no GPU.
    """
    wanted = requested(device, what)
    available = cuda_available()
    if wanted == "cuda" and not available:
        import torch

        raise FaceForgeError(
            f"the {what} 'cuda' was asked for, but torch sees no CUDA GPU (torch {torch.__version__}): "
            "install a CUDA build of torch, or choose cpu"
        )
    if wanted == "auto":
        return "cuda" if available else "cpu"
    return wanted


def cpu_fallback(requested_device: str | None, reason: BaseException | str) -> str:
    """``"cpu"`` after a GPU failure when the request was automatic, with one message on stderr.

    Raises:
        the original error (``reason`` when it is an exception) when the GPU was asked for explicitly.
    """
    if requested(requested_device) == "cuda":
        if isinstance(reason, BaseException):
            raise reason
        raise FaceForgeError(f"the GPU asked for is unusable: {reason}")
    print(f"faceforge: the GPU is unavailable ({reason}); using the CPU", file=sys.stderr)
    return "cpu"


def warp_device(device: str) -> str:
    """Warp's name for a resolved torch device: ``"cuda:0"`` for ``"cuda"``, else ``"cpu"``."""
    return "cuda:0" if device == "cuda" else "cpu"
