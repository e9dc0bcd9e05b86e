"""The extension zip that ``build_addon.py`` writes."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

REQUIRED_MANIFEST_KEYS = {
    "schema_version",
    "id",
    "version",
    "name",
    "tagline",
    "maintainer",
    "type",
    "blender_version_min",
    "license",
}


def _load_build_addon():
    spec = importlib.util.spec_from_file_location("build_addon", REPO_ROOT / "build_addon.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_addon = _load_build_addon()


@pytest.fixture
def addon_zip(tmp_path, capsys) -> Path:
    assert build_addon.main(["--out", str(tmp_path)]) == 0
    zip_path = Path(capsys.readouterr().out.strip())
    assert zip_path.parent == tmp_path
    return zip_path


def test_zip_has_manifest_and_init_at_its_root(addon_zip):
    with zipfile.ZipFile(addon_zip) as zf:
        names = zf.namelist()
    assert "blender_manifest.toml" in names
    assert "__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    # Every source file of the add-on is in the zip, under the same relative path.
    sources = {p.relative_to(REPO_ROOT / "blender_addon").as_posix() for p in build_addon.iter_addon_files()}
    assert set(names) == sources


def test_zip_name_and_manifest_match(addon_zip):
    with zipfile.ZipFile(addon_zip) as zf:
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))
    assert REQUIRED_MANIFEST_KEYS <= manifest.keys()
    assert manifest["id"] == "faceforge"
    assert manifest["type"] == "add-on"
    assert manifest["schema_version"] == "1.0.0"
    # The real minimum: the slotted-action API of the takes (Blender 4.4), the same the add-on enforces.
    assert tuple(map(int, manifest["blender_version_min"].split("."))) == (4, 4, 0)
    with zipfile.ZipFile(addon_zip) as zf:
        zf_text = zf.read("__init__.py").decode("utf-8")
    assert "MIN_BLENDER = (4, 4, 0)" in zf_text
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert manifest["permissions"]["files"]
    assert "wheels" not in manifest
    assert addon_zip.name == f"faceforge-{manifest['version']}.zip"


def test_command_line_prints_the_zip_path(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "build_addon.py"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    zip_path = Path(proc.stdout.strip())
    assert zip_path.is_file()
    assert zip_path.parent == tmp_path / "out"


def test_python_caches_are_left_out(tmp_path):
    addon_dir = tmp_path / "addon"
    shutil.copytree(REPO_ROOT / "blender_addon", addon_dir, ignore=shutil.ignore_patterns("__pycache__"))
    (addon_dir / "__pycache__").mkdir()
    (addon_dir / "__pycache__" / "ui.cpython-311.pyc").write_bytes(b"\0")
    (addon_dir / "stale.pyc").write_bytes(b"\0")
    zip_path = build_addon.build(tmp_path / "out", addon_dir=addon_dir)
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
    assert "__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_missing_manifest_is_an_error(tmp_path):
    (tmp_path / "addon").mkdir()
    with pytest.raises(FileNotFoundError):
        build_addon.build(tmp_path / "out", addon_dir=tmp_path / "addon")


@pytest.mark.blender
def test_blenders_own_validator_accepts_the_zip(addon_zip):
    """Blender's extension tool (shipped in the bpy module) validates the manifest strictly."""
    bpy_spec = importlib.util.find_spec("bpy")
    if bpy_spec is None or bpy_spec.origin is None:
        pytest.skip("the bpy module is not installed")
    tools = sorted(Path(bpy_spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not tools:
        pytest.skip("this bpy build does not ship blender_ext.py")
    proc = subprocess.run(
        [sys.executable, str(tools[-1]), "validate", str(addon_zip)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout
