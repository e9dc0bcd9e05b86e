"""Simulate a face over an expression sequence: material space, actuation per frame, solve, skin out.

For each frame the target skin gives the actuation and jaw transform simulation-free
(:mod:`faceforge.physics.actuation`), effects modify them (paralysis blends A toward I, a scaled jaw,
gravity, a force on the skin), and the quasi-static solve (:mod:`faceforge.physics.solver`) returns
the skin, warm-started from the previous frame. Vertices outside the simulated face (back of the
head, neck, tongue, the deep mouth cavity) keep their target positions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from faceforge.errors import FaceForgeError
from faceforge.physics.actuation import ActuationFitter, blend_paralysis
from faceforge.physics.contact import count_intersecting_pairs
from faceforge.physics.material import MaterialSpace, build_material_space
from faceforge.physics.quality import deviation_figures, lip_zone
from faceforge.physics.solver import FaceSolver, PhysicsOptions
from faceforge.progress import ProgressCallback, report
from faceforge.store import cached_material_space

__all__ = ["SimulationResult", "PhysicalFace", "mouth_mesh"]


@dataclass
class SimulationResult:
    """Simulated frames and per-frame figures.

    Attributes:
        frames: ``(T, V, 3)`` simulated heads (m).
        v2v_mm: ``(T,)`` mean sim-vs-target distance over the simulated skin (mm).
        iterations: ``(T,)`` solver iterations; seconds: ``(T,)`` wall time of each frame (actuation
            fit, solve and skin readout).
        jaw: ``(T, 4, 4)`` jaw transforms reached (with contact the jaw can stop short of the
            actuation's when teeth meet lips it cannot push away).
        converged: ``(T,)`` bool.
        quality: per frame, the tail and lip roughness of the deviation from the target
            (:func:`faceforge.physics.quality.deviation_figures`: ``max_mm``, ``p99_mm``,
            ``lip_roughness_mm``, ``lip_roughness_p99_mm``), each ``(T,)``.
    """

    frames: np.ndarray
    v2v_mm: np.ndarray
    iterations: np.ndarray
    seconds: np.ndarray
    jaw: np.ndarray
    converged: np.ndarray
    info: dict = field(default_factory=dict)
    quality: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> dict:
        worst = {f"{k}_worst": float(v.max()) for k, v in self.quality.items() if len(v)}
        return {
            "frames": int(len(self.frames)),
            "v2v_mm_mean": float(self.v2v_mm.mean()) if len(self.v2v_mm) else 0.0,
            **worst,
            "seconds_per_frame": float(self.seconds.mean()) if len(self.seconds) else 0.0,
            "iterations_mean": float(self.iterations.mean()) if len(self.iterations) else 0.0,
            "converged": int(self.converged.sum()),
            **self.info,
        }


def mouth_mesh(
    material: MaterialSpace, head: np.ndarray, jaw: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The mouth collision surface of a head: lips + lining triangles and the teeth proxies.

    Args:
        head: ``(V, 3)`` head positions; jaw: ``(4, 4)`` jaw transform for the lower teeth.

    Returns:
        ``(vertices, faces)`` ready for :func:`count_intersecting_pairs`.
    """
    lip_v = np.unique(material.lip_faces)
    remap = np.full(len(head), -1)
    remap[lip_v] = np.arange(len(lip_v))
    teeth = material.teeth_vertices.copy()
    if jaw is not None:
        teeth[material.teeth_jaw] = teeth[material.teeth_jaw] @ jaw[:3, :3].T + jaw[:3, 3]
    vertices = np.concatenate([head[lip_v], teeth])
    faces = np.concatenate([remap[material.lip_faces], material.teeth_faces + len(lip_v)])
    return vertices, faces


class PhysicalFace:
    """A simulatable face built once from its rest head.

    Args:
        rest: ``(V, 3)`` neutral head (m) in the FaceForge topology; faces: ``(F, 3)``.
        resolution: lattice spacing (m).
        options: :class:`PhysicsOptions` (material, contact, gravity, tolerances).
        jaw_open: ``(V, 3)`` this head's ``jawOpen`` displacement (marks the jaw side), optional.
        progress: called while building.
        cache: keep the material space on disk (:func:`~faceforge.store.cached_material_space`)
            so the same head at the same resolution skips the lattice build next time.
    """

    def __init__(
        self,
        rest: np.ndarray,
        faces: np.ndarray,
        resolution: float = 0.002,
        options: PhysicsOptions | None = None,
        jaw_open: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
        cache: bool = True,
    ) -> None:
        start = time.perf_counter()
        report(progress, 0, 3, "material space")
        if cache:
            self.material = cached_material_space(rest, faces, resolution, jaw_open=jaw_open)
        else:
            self.material = build_material_space(rest, faces, resolution, jaw_open=jaw_open)
        report(progress, 1, 3, f"factoring ({self.material.n_elements} elements)")
        self.options = options or PhysicsOptions()
        self.solver = FaceSolver(self.material, self.options)
        report(progress, 2, 3, "actuation operators")
        self.fitter = ActuationFitter(self.solver)
        report(progress, 3, 3, "ready")
        self.setup_seconds = time.perf_counter() - start

    @classmethod
    def from_material(cls, material: MaterialSpace, options: PhysicsOptions | None = None) -> PhysicalFace:
        """A face on an existing material space (e.g. the same lattice with other options)."""
        face = cls.__new__(cls)
        start = time.perf_counter()
        face.material = material
        face.options = options or PhysicsOptions()
        face.solver = FaceSolver(material, face.options)
        face.fitter = ActuationFitter(face.solver)
        face.setup_seconds = time.perf_counter() - start
        return face

    @property
    def rest(self) -> np.ndarray:
        return self.material.rest_vertices

    @property
    def lip_zone(self) -> np.ndarray:
        """``(V,)`` bool: lips, mouth lining and corners (:func:`faceforge.physics.quality.lip_zone`)."""
        if getattr(self, "_lip_zone", None) is None:
            from faceforge.physics.tissue import head_regions

            self._lip_zone = lip_zone(self.rest, head_regions(len(self.rest)))
        return self._lip_zone

    def element_weights(self, vertex_weights: np.ndarray) -> np.ndarray:
        """``(E,)`` per-element value of a per-head-vertex map (by each element's nearest skin vertex)."""
        w = np.asarray(vertex_weights, dtype=np.float64)
        if w.shape != (len(self.rest),) or not np.isfinite(w).all():
            raise FaceForgeError(f"a vertex weight map needs {len(self.rest)} finite values")
        return w[self.material.element_vertex]

    def simulate(
        self,
        targets: np.ndarray,
        *,
        paralysis: np.ndarray | None = None,
        jaw_scale: float = 1.0,
        gravity: np.ndarray | None = None,
        skin_force: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
    ) -> SimulationResult:
        """Simulate ``targets (T, V, 3)`` (m) frame by frame.

        Args:
            paralysis: ``(V,)`` weights in [0, 1] per head vertex (1 = no actuation there).
            jaw_scale: scale the jaw bone about its centroid (bone reshaping) before replaying.
            gravity: ``(3,)`` m/s^2 in the head's frame (e.g. ``(0, 0, -9.81)`` upright), or None.
            skin_force: ``(V, 3)`` newtons on head vertices (only simulated ones count), or None.
            progress: per-frame progress; returning False cancels (:class:`~faceforge.errors.Cancelled`).
        """
        m = self.material
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim == 2:
            targets = targets[None]
        if targets.ndim != 3 or targets.shape[1:] != self.rest.shape or len(targets) == 0:
            raise FaceForgeError(f"targets must be (T, {len(self.rest)}, 3); got {targets.shape}")
        if not np.isfinite(targets).all():
            raise FaceForgeError("the target sequence contains NaN or infinite values")
        if not 0.5 <= jaw_scale <= 1.5:
            raise FaceForgeError(f"jaw scale {jaw_scale} is outside 0.5-1.5")
        solver = self.solver
        solver.jaw_scale = float(jaw_scale)
        solver.set_gravity(None if gravity is None else np.asarray(gravity, dtype=np.float64))
        solver.set_skin_force(None if skin_force is None else np.asarray(skin_force)[m.skin_vertices])
        para = None if paralysis is None else self.element_weights(paralysis)
        if solver.collisions is not None:
            solver.collisions.stiffness = 0.0
        n = len(targets)
        frames = np.empty_like(targets)
        v2v = np.zeros(n)
        iters = np.zeros(n, dtype=np.int64)
        secs = np.zeros(n)
        conv = np.zeros(n, dtype=bool)
        jaws = np.tile(np.eye(4), (n, 1, 1))
        quality: dict[str, np.ndarray] = {}
        x = m.nodes.copy()
        previous = (np.eye(3), np.zeros(3))
        if jaw_scale != 1.0 or gravity is not None or skin_force is not None:
            # settle the edited anatomy / loads at rest first so frame 0 starts from equilibrium
            x, _ = solver.solve(np.repeat(np.eye(3)[None], m.n_elements, 0), x0=x, previous_jaw=previous)
        report(progress, 0, n, "simulating")
        for i in range(n):
            frame_start = time.perf_counter()
            act = self.fitter(targets[i, m.skin_vertices])
            A = act.A if para is None else blend_paralysis(act.A, para)
            x, info = solver.solve(
                A, act.rotation, act.translation, x0=x, previous_jaw=previous, guess=act.phi
            )
            previous = info.extra["jaw"]  # the pose reached (contact may stop the jaw short)
            head = targets[i].copy()
            head[m.skin_vertices] = m.W_skin @ x
            frames[i] = head
            figures = deviation_figures(head, targets[i], m.faces, m.skin_vertices, self.lip_zone)
            v2v[i] = figures.pop("v2v_mm")
            for key, value in figures.items():
                quality.setdefault(key, np.zeros(n))[i] = value
            iters[i], conv[i] = info.iterations, info.converged
            secs[i] = time.perf_counter() - frame_start
            jaws[i, :3, :3], jaws[i, :3, 3] = previous
            report(progress, i + 1, n, f"frame {i + 1}/{n}: {info.iterations} it, {info.seconds:.2f} s")
        return SimulationResult(frames, v2v, iters, secs, jaws, conv, {"elements": m.n_elements}, quality)

    def penetrations(self, head: np.ndarray, jaw: np.ndarray | None = None) -> int:
        """Intersecting (edge, triangle) pairs of the mouth collision surface of ``head (V, 3)``."""
        v, f = mouth_mesh(self.material, head, jaw)
        return count_intersecting_pairs(v, f)
