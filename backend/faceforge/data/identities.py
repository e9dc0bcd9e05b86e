"""The dataset's identities: sampled (:mod:`faceforge.data.anny_source`), then made plausible.

Every sampled head is checked against its phenotype-only head with
:func:`faceforge.data.plausibility.check_head` (no new fold, no new self-intersection, facial
proportions within the published population spread). A head that fails has its local targets
scaled by 0.8 and is checked again, up to :data:`MAX_ATTEMPTS` times; the phenotype-only head
itself is the last resort and always accepted (it is MakeHuman's own morph). Rejections shrink
the sampled distribution a little towards the phenotype: the build's manifest reports how often.
"""

from __future__ import annotations

import collections
import dataclasses
import re

import numpy as np

from faceforge.progress import ProgressCallback, report

__all__ = ["MAX_ATTEMPTS", "SHRINK", "plausible_identities"]

#: Checks per identity before its local targets are dropped.
MAX_ATTEMPTS = 12
#: Scale of the local targets after each failed check.
SHRINK = 0.8


def plausible_identities(
    head,  # noqa: ANN001 - AnnyHead
    specs: list,
    held: np.ndarray,
    landmarks: dict[str, int],
    progress: ProgressCallback | None = None,
    batch: int = 16,
) -> tuple[list, list[dict], dict]:
    """Check and, where needed, shrink the local targets of ``specs`` (see the module docstring).

    Args:
        head: the :class:`~faceforge.data.anny_source.AnnyHead`.
        specs: sampled :class:`~faceforge.data.anny_source.IdentitySpec` identities.
        held: ``(H,)`` vertices the heads are aligned on (the skull).
        landmarks: BabyFM landmark name -> vertex index.
        progress: ``progress(done, total, message)``; returning False cancels.
        batch: heads per anny evaluation.

    Returns:
        The accepted identities, per identity ``{"attempts", "local_scale", "failures"}`` (the
        failures of the rejected draws) and a summary ``{"identities", "accepted_first",
        "shrunk", "dropped_local_targets", "rejected_draws", "reasons"}``.
    """
    from faceforge.data.geometry import apply_rigid, rigid_align
    from faceforge.data.plausibility import anthropometric_ratios, check_head

    accepted = list(specs)
    records = [{"attempts": 0, "local_scale": 1.0, "failures": []} for _ in specs]
    reasons: collections.Counter[str] = collections.Counter()
    for start in range(0, len(specs), batch):
        rows = list(range(start, min(start + batch, len(specs))))
        baselines = head.neutral_heads([dataclasses.replace(specs[i], local_changes={}) for i in rows])
        pending = rows
        for attempt in range(MAX_ATTEMPTS):
            if not pending:
                break
            scale = SHRINK**attempt
            trial = [_scaled(specs[i], scale) for i in pending]
            heads = head.neutral_heads(trial)
            failed = []
            for k, i in enumerate(pending):
                base = baselines[rows.index(i)]
                rotation, translation = rigid_align(heads[k][held], base[held])
                aligned = apply_rigid(heads[k], rotation, translation)
                result = check_head(
                    aligned, head.faces, base, landmarks, None, anthropometric_ratios(base, landmarks)
                )
                records[i]["attempts"] = attempt + 1
                if result.plausible:
                    accepted[i], records[i]["local_scale"] = trial[k], scale
                else:
                    records[i]["failures"].append(result.failures)
                    reasons.update(_reason_kind(r) for r in result.failures)
                    failed.append(i)
            pending = failed
        for i in pending:  # every draw failed: the phenotype-only head
            accepted[i], records[i]["local_scale"] = dataclasses.replace(specs[i], local_changes={}), 0.0
        report(progress, rows[-1] + 1, len(specs), f"plausibility {rows[-1] + 1}/{len(specs)}")
    summary = {
        "identities": len(specs),
        "accepted_first": sum(r["attempts"] == 1 and r["local_scale"] == 1.0 for r in records),
        "shrunk": sum(0.0 < r["local_scale"] < 1.0 for r in records),
        "dropped_local_targets": sum(r["local_scale"] == 0.0 for r in records),
        "rejected_draws": sum(len(r["failures"]) for r in records),
        "reasons": dict(reasons.most_common()),
    }
    return accepted, records, summary


def _scaled(spec, scale: float):  # noqa: ANN001, ANN202 - IdentitySpec
    return dataclasses.replace(spec, local_changes={k: v * scale for k, v in spec.local_changes.items()})


def _reason_kind(reason: str) -> str:
    """A failure message without its numbers ("12 flipped triangles" -> "flipped triangles")."""
    return re.sub(r"\s+", " ", re.sub(r"[-+]?\d+(\.\d+)?%?", "", reason.split("(")[0])).strip()
