"""``faceforge bench model``: decode throughput, scan-fit and flow training time (printed, not asserted)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from faceforge.errors import FaceForgeError

__all__ = ["bench_model", "format_bench"]


def _median_seconds(fn, repeats: int) -> float:  # noqa: ANN001
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(path: Path, small: bool = False, batch: int = 1000, fits: int = 5) -> dict:
    """Measure a model file's speed on this machine.

    - decode: ``batch`` random faces through the bilinear decoder (faces/s; goal >= 1,000 on CPU);
    - fit: :func:`~faceforge.model.fitting.fit_scan` of sampled faces, with and without flows
      (median seconds; goal < 1 s on CPU);
    - flow training: the training time recorded in the model's build report (goal < 5 min on
      the default dataset).
    """
    from faceforge.model import fit_scan, load_model

    if not Path(path).is_file():
        raise FaceForgeError(
            f"no model at {path}: run `faceforge model build{' --small' if small else ''}` first"
        )
    model = load_model(path)
    threads = torch.get_num_threads()
    generator = torch.Generator().manual_seed(0)
    w_id = (
        model.identity_prior[0]
        + torch.randn(batch, model.rank_identity, generator=generator) * model.identity_prior[1].sqrt()
    )
    w_ex = (
        model.expression_prior[0]
        + torch.randn(batch, model.rank_expression, generator=generator) * model.expression_prior[1].sqrt()
    )

    def decode() -> None:
        with torch.no_grad():
            model.decode(w_id, w_ex)

    decode_s = _median_seconds(decode, 5)
    faces = model.sample(fits, seed=1, radius=0.9)["vertices"].numpy()
    noise = np.random.default_rng(0).normal(0.0, 0.0005, size=faces.shape)
    fit_times: dict[str, list[float]] = {"bilinear": [], "bilinear_flow": []}
    fit_errors: dict[str, list[float]] = {"bilinear": [], "bilinear_flow": []}
    for face, eps in zip(faces, noise, strict=True):
        for name, flows in (("bilinear", False), ("bilinear_flow", True)):
            start = time.perf_counter()
            result = fit_scan(model, face + eps, use_flows=flows)
            fit_times[name].append(time.perf_counter() - start)
            fit_errors[name].append(result.error_mm)
    report = model.metadata.get("build_report", {})
    return {
        "model": str(path),
        "device": str(model.device),
        "torch_threads": threads,
        "decode_batch": batch,
        "decode_faces_per_second": batch / decode_s,
        "fit_seconds_median": {k: statistics.median(v) for k, v in fit_times.items()},
        "fit_error_mm_median": {k: statistics.median(v) for k, v in fit_errors.items()},
        "flow_training_seconds": report.get("flow_seconds"),
        "model_build_seconds": report.get("total_seconds"),
        "goals": {
            "decode_faces_per_second": ">= 1000",
            "fit_seconds": "< 1",
            "flow_training_seconds": "< 300",
        },
    }


def format_bench(payload: dict) -> list[str]:
    """Human-readable lines of :func:`bench_model`'s result."""
    fit = payload["fit_seconds_median"]
    return [
        f"model: {payload['model']} on {payload['device']} ({payload['torch_threads']} threads)",
        f"decode: {payload['decode_faces_per_second']:.0f} faces/s in batches of {payload['decode_batch']} "
        "(goal >= 1000)",
        f"scan fit (median): {fit['bilinear']:.3f} s bilinear, {fit['bilinear_flow']:.3f} s with flows "
        "(goal < 1 s); "
        f"error on noisy samples (0.5 mm noise): {payload['fit_error_mm_median']['bilinear']:.3f} / "
        f"{payload['fit_error_mm_median']['bilinear_flow']:.3f} mm",
        f"flow training: {payload['flow_training_seconds']} s (goal < 300 s); whole model build "
        f"{payload['model_build_seconds']} s",
    ]
