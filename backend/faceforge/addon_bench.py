"""``faceforge bench addon``: how fast the add-on writes a face's expression shape keys in Blender.

Runs Blender as the ``bpy`` module in this process with the checkout's add-on. For the ~4.5k-vertex
head and a copy subdivided twice (4x the faces per level, ~70k vertices) it times creating every
expression shape key from scratch with :func:`mesh.write_rig` (bulk ``foreach_set`` of float32
buffers), and, as the baseline measured in the same run, the same keys written one vertex at a
time from Python on the head.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

__all__ = ["bench_addon", "format_bench", "midpoint_subdivide"]


def midpoint_subdivide(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split every triangle into 4 at its edge midpoints: ``(V', 3)`` vertices, ``(4F, 3)`` faces."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mid = (len(vertices) + inverse.reshape(3, -1)).T  # (F, 3): midpoints of edges 01, 12, 20
    a, b, c = faces.T
    ab, bc, ca = mid.T
    corners = ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))
    new_faces = np.concatenate([np.stack(t, axis=1) for t in corners])
    new_vertices = np.concatenate([vertices, 0.5 * (vertices[unique[:, 0]] + vertices[unique[:, 1]])])
    return new_vertices.astype(np.float32), new_faces.astype(np.int32)


def _timed(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_addon(model_path: str, repeats: int = 5) -> dict:
    """Median seconds to create all expression keys on the head and its 2-level subdivision."""
    import bpy
    import torch

    from faceforge.demo import load_addon
    from faceforge.model import load_model, rig

    addon = load_addon()
    meshes = addon.mesh
    model = load_model(model_path)
    names = rig.key_names(model)
    w_id = rig.identity_codes(model, rig.sample_identity(model, 0)[None])
    with torch.no_grad():
        neutral, keys = rig.expression_rig(model, w_id)
    neutral, keys = neutral[0], keys[0]
    faces = model.faces.cpu().numpy()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    context = bpy.context

    def fresh(vertices: np.ndarray, tris: np.ndarray, name: str):  # noqa: ANN202
        return meshes.new_mesh_object(context, name, vertices, tris)

    def bulk(vertices: np.ndarray, tris: np.ndarray, key_positions: np.ndarray) -> float:
        # Only write_rig is timed: make the object outside the measurement.
        times = []
        for _ in range(repeats):
            obj = fresh(vertices, tris, "bench")
            started = time.perf_counter()
            meshes.write_rig(obj, vertices, names, key_positions)
            times.append(time.perf_counter() - started)
            meshes.remove_object(obj)
        return statistics.median(times)

    head_bulk = bulk(neutral, faces, keys)

    def per_vertex() -> float:
        obj = fresh(neutral, faces, "bench loop")
        started = time.perf_counter()
        obj.shape_key_add(name="Basis", from_mix=False)
        for name, positions in zip(names, keys, strict=True):
            block = obj.shape_key_add(name=name, from_mix=False)
            for vertex, co in zip(block.data, positions.tolist(), strict=True):
                vertex.co = co
        seconds = time.perf_counter() - started
        meshes.remove_object(obj)
        return seconds

    head_loop = statistics.median(per_vertex() for _ in range(max(1, min(repeats, 3))))

    # The subdivided copy: two rounds of midpoint subdivision (each triangle -> 4), ~16x the vertices.
    dense, tris = neutral, faces
    for _ in range(2):
        dense, tris = midpoint_subdivide(dense, tris)
    rng = np.random.default_rng(0)
    dense_keys = dense[None] + rng.normal(0.0, 1e-3, (len(names), *dense.shape)).astype(np.float32)
    dense_bulk = bulk(dense, tris, dense_keys)
    return {
        "keys": len(names),
        "head_vertices": int(len(neutral)),
        "dense_vertices": int(len(dense)),
        "head_bulk_s": round(head_bulk, 4),
        "head_per_vertex_loop_s": round(head_loop, 3),
        "speedup_vs_loop": round(head_loop / head_bulk, 1),
        "dense_bulk_s": round(dense_bulk, 4),
        "goals_s": {"head": 0.1, "dense": 1.0},
        "repeats": repeats,
        "blender": bpy.app.version_string,
    }


def format_bench(payload: dict) -> list[str]:
    """Lines for the terminal."""
    return [
        f"Blender {payload['blender']}, {payload['keys']} expression keys, "
        f"median of {payload['repeats']} runs",
        f"head ({payload['head_vertices']} vertices): {payload['head_bulk_s']:.4f} s bulk "
        f"(goal {payload['goals_s']['head']} s); per-vertex Python loop "
        f"{payload['head_per_vertex_loop_s']:.3f} s ({payload['speedup_vs_loop']}x slower)",
        f"subdivided head ({payload['dense_vertices']} vertices): {payload['dense_bulk_s']:.4f} s bulk "
        f"(goal {payload['goals_s']['dense']} s)",
    ]
