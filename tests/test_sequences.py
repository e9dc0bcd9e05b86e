"""Neutral -> apex clip generation."""

from __future__ import annotations

import numpy as np
from faceforge.data.expressions import (
    ARKIT_NAMES,
    COMA_LABELS,
    coma_label_weights,
    default_expressions,
    weights_matrix,
)
from faceforge.data.sequences import sample_clip_weights


def test_expression_list_is_neutral_arkit_then_composites():
    names = [e.name for e in default_expressions()]
    assert names[0] == "neutral"
    assert names[1:53] == ARKIT_NAMES
    assert {"happy", "surprise", "crying_closed_eyes"} <= set(names[53:])
    assert len(names) == len(set(names))


def test_clips_start_neutral_reach_their_apex_and_vary():
    apexes = weights_matrix([coma_label_weights()[label] for label in COMA_LABELS])
    rng = np.random.default_rng(0)
    for apex in apexes:
        clips = [sample_clip_weights(apex, rng) for _ in range(20)]
        lengths = {len(c) for c in clips}
        assert all(10 <= n <= 80 for n in lengths) and len(lengths) > 5
        for clip in clips:
            assert clip.shape[1] == len(ARKIT_NAMES)
            assert np.all(clip[0] == 0) and np.all((clip >= 0) & (clip <= 1))
            active = apex > 0
            # The last frame holds at least 60% of the apex (intensity 0.7-1 times apex, minus noise).
            assert np.all(clip[-1, active] >= 0.6 * apex[active])
            assert np.all(clip[:, ~active] == 0)
        # Same label, different motions: timing differs between clips.
        halfway = [np.argmax(c.sum(1) >= 0.5 * c.sum(1).max()) / len(c) for c in clips]
        assert np.std(halfway) > 0.03


def test_clips_are_reproducible_from_the_seed():
    apex = weights_matrix([coma_label_weights()["mouth_open"]])[0]
    a = sample_clip_weights(apex, np.random.default_rng(7))
    b = sample_clip_weights(apex, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
