"""Identity coverage: plausibility checks, the samplers, the out-of-distribution split, the
identity rank chosen by held-out error and the fit's trust report."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from faceforge.data.plausibility import (
    anthropometric_ratios,
    check_head,
    flipped_triangles,
    self_intersecting_pairs,
)


def _two_triangles(offset: float) -> tuple[np.ndarray, np.ndarray]:
    """A horizontal triangle and a vertical one whose bottom edge sits ``offset`` above it."""
    vertices = np.array(
        [
            [0, 0, 0],
            [1, 0, 0],
            [0, 1, 0],
            [0.2, 0.2, offset],
            [0.2, 0.2, offset + 1],
            [0.3, -0.5, offset + 0.5],
        ],
        dtype=np.float64,
    )
    return vertices, np.array([[0, 1, 2], [3, 4, 5]])


def test_self_intersection_is_found_only_when_triangles_pass_through_each_other():
    crossing, faces = _two_triangles(-0.5)
    apart, _ = _two_triangles(0.5)
    assert self_intersecting_pairs(crossing, faces) == {(0, 1)}
    assert self_intersecting_pairs(apart, faces) == set()
    # Neighbours sharing a vertex never count, however they fold.
    fan = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.5, 0.5, -1]], dtype=np.float64)
    assert self_intersecting_pairs(fan, np.array([[0, 1, 2], [0, 1, 3]])) == set()


def test_flipped_triangles_against_the_reference(anny_head):
    faces = anny_head.faces
    folded = anny_head.template.copy()
    a, b, c = faces[100]
    folded[a] = folded[b] + folded[c] - folded[a]  # reflect one corner across the opposite edge
    assert flipped_triangles(anny_head.template, faces, anny_head.template).size == 0
    assert 100 in flipped_triangles(folded, faces, anny_head.template)


def test_moved_search_matches_the_full_search(anny_head):
    from faceforge.data.annotations import load_annotations

    lips = np.asarray(load_annotations()["regions"]["lower_lip"])
    pushed = anny_head.template.copy()
    pushed[lips] += np.array([0.0, 0.0, 0.004])  # the lower lip pushed up through the upper one
    moved = (np.linalg.norm(pushed - anny_head.template, axis=1) > 0)[anny_head.faces].any(axis=1)
    full = self_intersecting_pairs(pushed, anny_head.faces)
    assert full, "a lower lip pushed 4 mm up must cross the upper lip"
    assert self_intersecting_pairs(pushed, anny_head.faces, moved) == full


def test_a_contact_the_baseline_already_has_may_move_but_not_grow(anny_head):
    from faceforge.data.annotations import load_annotations
    from faceforge.data.plausibility import new_intersections

    lips = np.asarray(load_annotations()["regions"]["lower_lip"])
    faces = anny_head.faces

    def pushed(mm: float) -> np.ndarray:
        out = anny_head.template.copy()
        out[lips, 2] += mm * 1e-3
        return out

    baseline = self_intersecting_pairs(pushed(4.0), faces)
    moved_a_little = self_intersecting_pairs(pushed(4.3), faces)
    assert moved_a_little - baseline, "the contact must change which pairs cross"
    assert new_intersections(moved_a_little, baseline, faces) == set()
    deeper = self_intersecting_pairs(pushed(12.0), faces)  # the crossing's outline spreads
    assert len(deeper) > 1.5 * len(baseline) + 10
    assert new_intersections(deeper, baseline, faces) == deeper - baseline
    assert new_intersections(baseline, set(), faces) == baseline  # no contact before: all new


def _landmarks() -> dict[str, int]:
    from faceforge.data.annotations import load_annotations

    annotations = load_annotations()
    return dict(
        zip(annotations["landmark_names"]["babyfm23"], annotations["landmarks"]["babyfm23"], strict=True)
    )


def test_anny_targets_can_break_a_head_and_the_check_says_how(anny_head):
    from faceforge.data.target_scan import reference_specs

    infant = reference_specs()[0]
    baseline = anny_head.neutral_heads([infant])[0]
    landmarks = _landmarks()
    assert check_head(baseline, anny_head.faces, baseline, landmarks).plausible
    # The upper-lip volume target at full strength drives an infant's upper lip through the lower.
    broken = anny_head.neutral_heads(
        [dataclasses.replace(infant, local_changes={"mouth-upperlip-volume-incr": 1.0})]
    )
    report = check_head(broken[0], anny_head.faces, baseline, landmarks)
    assert not report.plausible
    assert report.new_intersections > 0
    # A mouth twice as wide breaks the published mouth-to-nose spread.
    stretched = baseline.copy()
    ch = [landmarks["chR"], landmarks["chL"]]
    stretched[ch, 0] *= 2.0
    report = check_head(stretched, anny_head.faces, baseline, landmarks)
    assert any("mouth_to_nose" in f for f in report.failures)
    assert set(anthropometric_ratios(baseline, landmarks)) == {
        "intercanthal_index", "nose_to_intercanthal", "mouth_to_nose", "nose_to_lower_face",
    }  # fmt: skip


def test_target_ranges_are_narrower_for_infants_and_interpolate_by_age():
    from faceforge.data.target_ranges import load_target_ranges

    tightest, infant, adult = load_target_ranges(), load_target_ranges(1.0), load_target_ranges(37.5)
    assert set(tightest) == set(infant) == set(adult)
    assert len(tightest) > 120
    for name in tightest:
        assert -1.0 <= tightest[name][0] <= 0.0 <= tightest[name][1] <= 1.0
        for ages in (infant, adult):  # the tightest bounds hold at every age
            assert ages[name][0] <= tightest[name][0] + 1e-9 and ages[name][1] >= tightest[name][1] - 1e-9
    width = {k: np.subtract(*adult[k][::-1]) - np.subtract(*infant[k][::-1]) for k in tightest}
    assert sum(v > 0 for v in width.values()) > 10, "adults must tolerate stronger targets than infants"
    middle = load_target_ranges(0.5 * (1.0 + 8.0) / 1.0)
    child = load_target_ranges(8.0)
    for name in tightest:
        for side in (0, 1):
            low, high = sorted((infant[name][side], child[name][side]))
            assert low - 1e-9 <= middle[name][side] <= high + 1e-9


def test_samplers_stay_in_their_ranges_and_differ(anny_head):
    from faceforge.data.anny_source import sample_identities
    from faceforge.data.target_ranges import load_target_ranges

    coverage = sample_identities(2, 6, seed=3, sampler="coverage")
    artist = sample_identities(2, 6, seed=3, sampler="artist", first_index=8)
    assert [s.name for s in artist][0] == "id0008"
    for spec in coverage + artist:
        ranges = load_target_ranges(spec.age_years)
        for name, value in spec.local_changes.items():
            lo, hi = ranges[name]
            assert lo - 1e-9 <= value <= hi + 1e-9, (name, value, lo, hi)
    dense = np.mean([np.mean([v != 0 for v in s.local_changes.values()]) for s in coverage])
    sparse = np.mean([np.mean([v != 0 for v in s.local_changes.values()]) for s in artist])
    assert dense > 0.5 and sparse < 0.2
    with pytest.raises(Exception, match="unknown identity sampler"):
        sample_identities(1, 1, seed=0, sampler="nope")


def test_implausible_draws_are_shrunk(anny_head):
    from faceforge.data.annotations import load_annotations
    from faceforge.data.identities import plausible_identities
    from faceforge.data.target_scan import reference_specs

    infant = dataclasses.replace(
        reference_specs()[0], local_changes={"nose-scale-depth-incr": 1.0, "nose-hump-incr": 0.2}
    )
    held = np.asarray(load_annotations()["regions"]["held"])
    accepted, records, summary = plausible_identities(anny_head, [infant], held, _landmarks())
    assert records[0]["attempts"] > 1 and records[0]["local_scale"] < 1.0
    assert summary["accepted_first"] == 0 and summary["rejected_draws"] == records[0]["attempts"] - (
        1 if records[0]["local_scale"] > 0 else 0
    )
    scale = records[0]["local_scale"]
    assert accepted[0].local_changes["nose-hump-incr"] == pytest.approx(0.2 * scale)
    assert 0.0 < scale <= 0.64  # the infant's nose passed at a depth of 0.5, failed at 0.75
    assert summary["reasons"]


def test_small_dataset_has_out_of_distribution_splits(small_dataset, small_dataset_dir):
    from faceforge.data.build import read_manifest

    ood = np.concatenate([small_dataset.split("ood_val"), small_dataset.split("ood_test")])
    main = np.concatenate([small_dataset.split(s) for s in ("train", "val", "test")])
    assert len(ood) == 4 and not set(ood) & set(main)
    assert len(main) + len(ood) == small_dataset.vertices.shape[0]
    samplers = [small_dataset.identity_info[i]["sampler"] for i in range(len(small_dataset.identity_info))]
    assert {samplers[i] for i in ood} == {"artist"} and {samplers[i] for i in main} == {"coverage"}
    plausibility = read_manifest(small_dataset_dir)["sizes"]["plausibility"]
    assert plausibility["dataset"]["identities"] == 12 and plausibility["ood"]["identities"] == 4


def test_identity_rank_is_chosen_by_held_out_error():
    from faceforge.model.bilinear import hosvd
    from faceforge.model.ranks import projection_errors, select_identity_rank

    rng = np.random.default_rng(0)
    n_v3, n_ex = 60, 4
    directions = rng.normal(size=(12, n_v3))
    expressions = rng.normal(size=(n_ex, n_v3)) * 0.1

    def faces(codes: np.ndarray) -> np.ndarray:
        identity = codes @ directions
        return identity[:, None] + expressions[None] * (1 + 0.1 * codes[:, :1, None])

    # Training identities vary less and less along the first 8 directions and hardly at all along
    # the last 4; the out-of-distribution ones use the first 8 at full strength and not the rest.
    decay = np.concatenate([np.exp(-np.arange(8) / 3.0), np.full(4, 3e-3)])
    train = faces(rng.normal(size=(40, 12)) * decay)
    basis = hosvd(train, 12, n_ex)
    in_dist = faces(rng.normal(size=(6, 12)) * decay)
    out_dist = faces(rng.normal(size=(6, 12)) * np.r_[np.ones(8), np.zeros(4)])
    errors = projection_errors(basis, out_dist, [2, 6, 12])
    assert errors[2].mean() > errors[6].mean() > errors[12].mean()
    candidates = (2, 4, 6, 9, 12)
    rank_in, curve_in = select_identity_rank(basis, in_dist, None, candidates=candidates, min_gain_mm=5.0)
    rank_ood, curve = select_identity_rank(basis, in_dist, out_dist, candidates=candidates, min_gain_mm=5.0)
    assert curve["selected_on"] == "ood_val" and curve_in["selected_on"] == "val"
    # Rank 9 leaves 10 units of 3,300, rank 12 removes 2.2 more per component: below 5, so 9.
    assert rank_ood == 9, curve
    errors = curve["ood_val_mm"]
    k = curve["ranks"].index(rank_ood)
    assert (errors[k] - errors[k + 1]) / (candidates[k + 1] - candidates[k]) < 5.0
    assert all((errors[j] - errors[j + 1]) / (candidates[j + 1] - candidates[j]) >= 5.0 for j in range(k))
    # A threshold no gain reaches takes the first candidate, one every gain reaches the last.
    assert select_identity_rank(basis, in_dist, out_dist, candidates=candidates, min_gain_mm=1e6)[0] == 2
    assert select_identity_rank(basis, in_dist, out_dist, candidates=candidates, min_gain_mm=0.0)[0] == 12


def test_fit_reports_when_a_scan_lies_outside_the_model(small_model, small_dataset):
    from faceforge.model import fit_scan

    limits = small_model.metadata["fit_calibration"]
    assert limits["faces"] >= 2 and "nose" in limits["region_error_mm"]
    test_id = int(small_dataset.split("test")[0])
    face = np.asarray(small_dataset.vertices[test_id, 0], dtype=np.float64)
    inside = fit_scan(small_model, face, use_flows=False)
    assert set(inside.trust["region_error_mm"]) >= {"nose", "mouth", "eyes"}
    nose = np.asarray(small_model.metadata["regions"]["nose"])
    bumped = face.copy()
    bumped[nose, 1] -= 0.012  # a nose 12 mm longer than any face the model saw
    outside = fit_scan(small_model, bumped, use_flows=False)
    assert not outside.trust["trusted"]
    assert outside.trust["outside_regions"][0]["region"] == "nose"
    assert outside.trust["region_error_mm"]["nose"] > 2 * inside.trust["region_error_mm"]["nose"]


def test_eval_coverage_compares_test_and_out_of_distribution_fits(
    small_model_path, small_dataset_dir, capsys
):
    import json

    from faceforge.cli import main

    args = [
        "eval",
        "coverage",
        "--model",
        str(small_model_path),
        "--data",
        str(small_dataset_dir),
        "--no-flows",
    ]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for split in ("test", "ood_test"):
        row = result[split]
        assert row["n_identities"] >= 1
        assert 0.0 < row["neutral_mm"]["mean"] < 20.0 and 0.0 < row["expressive_mm"]["mean"] < 20.0
        assert 0.0 <= row["flagged_outside"] <= 1.0
    ratio = result["ratio_ood_vs_test"]["all_mm"]
    assert ratio == pytest.approx(result["ood_test"]["all_mm"]["mean"] / result["test"]["all_mm"]["mean"])
    assert main(args) == 0
    assert "out-of-distribution / test" in capsys.readouterr().out


def test_eval_reach_leaves_each_age_band_out(small_dataset_dir, capsys):
    import json

    from faceforge.cli import main

    assert main(["eval", "reach", "--data", str(small_dataset_dir), "--rank", "10", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    infant = result["bands"]["infant"]
    assert infant["n_held_out"] >= 1 and infant["n_train_left_out"] >= 2
    # Infants project worse onto a space that never saw an infant than onto one that did.
    assert infant["left_out_mm"] > 1.2 * infant["seen_mm"]
    for row in result["bands"].values():
        assert row["ratio"] == pytest.approx(row["left_out_mm"] / row["seen_mm"])
