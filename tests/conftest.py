"""Shared fixtures: one anny model and one small dataset build per test session.

anny's first construction on a machine parses its assets (~100 s) and caches them in
``~/.cache/anny`` (``ANNY_CACHE_DIR``); the fixtures below make every test share one model.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def anny_head():
    from faceforge.data.anny_source import anny_head as build

    return build()


@pytest.fixture(scope="session")
def small_dataset_dir(tmp_path_factory, anny_head):
    from faceforge.data.build import BuildConfig, build_dataset

    out = tmp_path_factory.mktemp("data") / "small"
    build_dataset(out, BuildConfig.small())
    return out


@pytest.fixture(scope="session")
def small_dataset(small_dataset_dir):
    from faceforge.data.build import load_built_dataset

    return load_built_dataset(small_dataset_dir)


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory, small_dataset):
    """A BabyFlow model of the small dataset with short flow training (~30 s), saved once."""
    from faceforge.model import FlowTrainingConfig, ModelBuildConfig, build_model

    # 99% of the identity variance: the tests below were set on a model of that size (the held-out
    # rank rule, which `faceforge model build` uses, has its own tests).
    config = ModelBuildConfig(
        rank_identity=0.99, flow=FlowTrainingConfig(max_epochs=30, patience=10), expression_samples=400
    )
    model, _ = build_model(small_dataset, config)
    return model.save(tmp_path_factory.mktemp("model") / "small.pt")


@pytest.fixture(scope="session")
def small_model(small_model_path):
    from faceforge.model import load_model

    return load_model(small_model_path)


@pytest.fixture(scope="session")
def small_motion_model_path(tmp_path_factory, small_dataset):
    """A motion model (tiny Motion3DGAN + S2D-Dec) of the small dataset (~15 s), saved once."""
    from faceforge.animate.bundle import MotionBuildConfig, build_motion_model

    model, _ = build_motion_model(small_dataset, MotionBuildConfig.default(small=True))
    return model.save(tmp_path_factory.mktemp("motion") / "motion-small.pt")
