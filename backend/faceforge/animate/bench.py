"""``faceforge bench animate``: motion generation + dense decoding, and baking a take in Blender."""

from __future__ import annotations

import statistics
import time

import numpy as np

__all__ = ["bench_animate", "format_bench"]


def _median_seconds(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_animate(motion_path: str, repeats: int = 5, frames: int = 300, keys: int = 52) -> dict:
    """Median seconds of (a) one 30-frame motion generated and decoded to dense displacements on the
    CPU, (b) writing a ``frames x keys`` take in Blender (bpy in this process)."""
    import bpy
    import torch

    from faceforge.animate.bundle import load_motion_model
    from faceforge.demo import load_addon

    model = load_motion_model(motion_path)
    rng = np.random.default_rng(0)
    neutral = rng.normal(0.0, 0.05, (model.n_vertices, 3)).astype(np.float32)

    def generate_and_decode() -> None:
        motion = model.landmark_motion(model.labels[0], seed=1)
        model.take(neutral, motion, 30)

    generate_and_decode()  # warm-up (first call allocates)
    with torch.inference_mode():
        decode_s = _median_seconds(generate_and_decode, repeats)

    addon = load_addon()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    vertices = rng.normal(size=(64, 3)).astype(np.float32)
    tris = np.stack([np.arange(62), np.arange(1, 63), np.arange(2, 64)], axis=1)
    obj = addon.mesh.new_mesh_object(bpy.context, "bench", vertices, tris)
    names = [f"key{k:02d}" for k in range(keys)]
    addon.mesh.write_rig(obj, vertices, names, np.repeat(vertices[None], keys, axis=0))
    values = rng.uniform(0.0, 1.0, (frames, keys)).astype(np.float32)
    bake_s = _median_seconds(lambda: addon.animation.write_take(obj, "FF bench", 1, names, values), repeats)
    return {
        "generate_decode_s": round(decode_s, 4),
        "bake_s": round(bake_s, 4),
        "frames": frames,
        "keys": keys,
        "n_vertices": model.n_vertices,
        "goals_s": {"generate_decode": 0.2, "bake": 0.05},
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "blender": bpy.app.version_string,
    }


def format_bench(payload: dict) -> list[str]:
    return [
        f"one 30-frame motion generated and decoded ({payload['n_vertices']} vertices, CPU, "
        f"{payload['torch_threads']} threads): {payload['generate_decode_s']:.4f} s "
        f"(goal {payload['goals_s']['generate_decode']} s)",
        f"bake {payload['frames']} frames x {payload['keys']} keys in Blender {payload['blender']}: "
        f"{payload['bake_s']:.4f} s (goal {payload['goals_s']['bake']} s); median of {payload['repeats']}",
    ]
