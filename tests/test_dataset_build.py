"""The default anny dataset: build, reproducibility, layout, identity-aware expressions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from faceforge.data.build import BuildConfig, build_dataset, load_built_dataset, read_manifest
from faceforge.data.expressions import ARKIT_NAMES
from faceforge.data.stats import expression_statistics
from faceforge.errors import Cancelled, DataError, FaceForgeError

pytestmark = pytest.mark.anny


def test_small_build_writes_a_complete_manifest(small_dataset_dir):
    manifest = read_manifest(small_dataset_dir)
    sizes = manifest["sizes"]
    assert manifest["format_version"] == 3 and manifest["seed"] == 0
    assert sizes["n_identities"] == 12 + 4 and sizes["n_infants"] == 6 + 2  # with 2 + 2 out of distribution
    assert sizes["n_expressions"] == 1 + 52 + 29
    assert sizes["n_clips"] == 16 * 12
    assert len(manifest["content_hash"]) == 64
    assert set(manifest["files"]) >= {"vertices.npy", "faces.npy", "metadata.json"}


def test_rebuilding_with_the_same_settings_is_a_no_op(small_dataset_dir):
    before = {p.name: p.stat().st_mtime_ns for p in small_dataset_dir.iterdir()}
    manifest = build_dataset(small_dataset_dir, BuildConfig.small())
    after = {p.name: p.stat().st_mtime_ns for p in small_dataset_dir.iterdir()}
    assert before == after
    assert manifest == read_manifest(small_dataset_dir)


def test_build_is_reproducible_from_the_seed(small_dataset_dir, tmp_path):
    again = build_dataset(tmp_path / "again", BuildConfig.small())
    assert again["content_hash"] == read_manifest(small_dataset_dir)["content_hash"]


def test_dataset_layout(small_dataset):
    ds = small_dataset
    assert isinstance(ds.vertices, np.memmap)
    assert ds.vertices.shape == (16, 82, 4521, 3) and ds.vertices.dtype == np.float32
    assert ds.expression_names[0] == "neutral" and ds.expression_names[1:53] == ARKIT_NAMES
    assert np.isfinite(np.asarray(ds.vertices[:, :5])).all()
    # Splits are by identity: disjoint and complete.
    splits = [set(ds.split(s)) for s in ("train", "val", "test", "ood_val", "ood_test")]
    assert all(splits) and set.union(*splits) == set(range(16)) and sum(map(len, splits)) == 16
    ages = np.array([row["age_years"] for row in ds.identity_info])
    assert (ages < 3).sum() == 8 and ages.max() > 10
    # Metres, human head sizes: an infant head is smaller than the oldest identity's.
    heights = np.ptp(np.asarray(ds.vertices[:, 0, :, 2]), axis=1)
    assert 0.1 < heights.min() and heights.max() < 0.5
    assert heights[np.argmin(ages)] < heights[np.argmax(ages)]


def test_neutral_heads_are_rigidly_aligned_without_scaling(small_dataset):
    ds = small_dataset
    held = ds.regions["held"]
    skull = np.asarray(ds.vertices[:, 0][:, held], dtype=np.float64)
    centroids = skull.mean(axis=1)
    spread = np.linalg.norm(centroids - centroids.mean(0), axis=1)
    assert spread.max() < 0.03  # all heads share the canonical frame
    sizes = np.sqrt(((skull - centroids[:, None]) ** 2).sum(-1).mean(-1))
    assert sizes.max() / sizes.min() > 1.2  # size stays identity: nothing was scaled


def test_expressions_are_identity_aware(small_dataset):
    stats = expression_statistics(small_dataset)
    # anny's raw facial actions are identical offsets (share 0); transfer makes them identity-aware.
    assert stats["unexplained_by_shared_offset"] > 0.03
    peaks = stats["mean_peak_displacement_mm"]
    assert peaks["infants"] < 0.85 * peaks["adults"]


def test_skull_stays_put_and_the_tongue_is_carried(small_dataset):
    ds = small_dataset
    jaw_open = ds.expression_names.index("jawOpen")
    for i in range(ds.n_identities):
        neutral, opened = ds.mesh(i, 0), ds.mesh(i, jaw_open)
        assert np.abs(opened[ds.regions["held"]] - neutral[ds.regions["held"]]).max() < 1e-6
        tongue_move = np.linalg.norm(opened[ds.regions["tongue"]] - neutral[ds.regions["tongue"]], axis=1)
        jaw_move = np.linalg.norm(opened[ds.regions["jaw"]] - neutral[ds.regions["jaw"]], axis=1)
        assert 0.001 < tongue_move.mean() < jaw_move.max()


def test_clips_materialise_from_each_identity_blendshapes(small_dataset):
    ds = small_dataset
    clip = ds.clips[5]
    assert clip.frames.shape[1:] == (4521, 3) and 10 <= clip.n_frames <= 80
    np.testing.assert_allclose(clip.frames[0], ds.mesh(clip.identity, 0), atol=1e-6)
    assert np.linalg.norm(clip.frames[-1] - clip.frames[0], axis=1).max() > 1e-3


def test_cancel_leaves_nothing_half_written(tmp_path, anny_head):
    out = tmp_path / "cancelled"
    calls = []

    def stop_after_three(done, total, message):
        calls.append(done)
        return len(calls) < 3

    with pytest.raises(Cancelled):
        build_dataset(out, BuildConfig.small(seed=5), progress=stop_after_three)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_failed_rebuild_keeps_the_previous_dataset(small_dataset_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_dataset_dir, copy)
    with pytest.raises(Cancelled):
        build_dataset(copy, BuildConfig.small(seed=9), progress=lambda d, t, m: d < 2)
    assert read_manifest(copy)["seed"] == 0
    load_built_dataset(copy, verify=True)


def test_refuses_to_overwrite_foreign_data(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(FaceForgeError, match="not empty"):
        build_dataset(tmp_path, BuildConfig.small())
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_corruption_is_detected(small_dataset_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_dataset_dir, copy)
    with open(copy / "vertices.npy", "r+b") as handle:
        handle.seek(-16, 2)
        handle.write(b"\x00" * 16)
    with pytest.raises(DataError, match="does not match"):
        load_built_dataset(copy, verify=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="format version"):
        load_built_dataset(copy)


def test_invalid_settings_are_rejected():
    with pytest.raises(FaceForgeError):
        BuildConfig(n_infants=1, n_others=0).validate()
    with pytest.raises(FaceForgeError):
        BuildConfig(intensity=-1).validate()
