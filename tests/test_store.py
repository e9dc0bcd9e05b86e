"""faceforge.store: where every artifact lives and which build configuration it has."""

from __future__ import annotations

from pathlib import Path

from faceforge import store


def test_every_artifact_lives_under_the_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEFORGE_CACHE", str(tmp_path))
    assert store.default_cache_dir() == tmp_path
    assert store.default_data_dir() == tmp_path / "data" / "anny"
    assert store.default_data_dir(small=True) == tmp_path / "data" / "anny-small"
    assert store.default_model_path("infant", small=True) == tmp_path / "models" / "babyflow-infant-small.pt"
    assert store.default_motion_path() == tmp_path / "models" / "motion.pt"
    assert store.default_material_dir() == tmp_path / "physics"
    monkeypatch.delenv("FACEFORGE_CACHE")
    assert store.default_cache_dir() == Path.home() / ".cache" / "faceforge"


def test_a_given_dataset_folder_is_used_as_is(tmp_path):
    assert store.ensure_dataset(str(tmp_path / "mine"), small=True) == tmp_path / "mine"
    assert not (tmp_path / "mine").exists()  # nothing was built


def test_model_build_configs():
    small = store.model_build_config(small=True, population="infant", seed=3, epochs=None)
    full = store.model_build_config(small=False, population="all", seed=0, epochs=7)
    assert (small.population, small.seed, small.expression_samples) == ("infant", 3, 600)
    assert (small.flow.max_epochs, small.flow.patience, small.flow.seed) == (60, 15, 3)
    assert full.expression_samples == 3000 and full.flow.max_epochs == 7
    assert store.dataset_config(small=True) != store.dataset_config(small=False)
