"""Fixtures for the add-on tests, which run the real Blender (the PyPI ``bpy`` module) in-process.

The add-on folder ``blender_addon/`` is loaded as the package ``faceforge_addon``: a name different from
the folder, as when Blender installs it as ``bl_ext.<repository>.faceforge``, so any code that hard-codes
its package name instead of using ``__package__`` fails here.

``bpy`` and ``torch`` can share one process in either import order (checked with bpy 5.0.1 and torch
2.13 CPU; ``test_register.py`` keeps checking it), so these tests run in the same pytest process as the
backend tests. ``bpy`` is imported here, at collection time, so that Blender's libraries load before any
test runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy", reason="the add-on tests need the bpy module (pip install bpy==5.0.1)")

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDON_DIR = REPO_ROOT / "blender_addon"
ADDON_PACKAGE = "faceforge_addon"
_HERE = Path(__file__).resolve().parent


def load_addon(package: str = ADDON_PACKAGE):
    """Import ``blender_addon/`` as the package ``package`` (once per process) and return it."""
    from faceforge.demo import load_addon as load

    return load(package)


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run ``code`` in a fresh interpreter (this one's executable); return stdout, fail with stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc.stdout


def addon_is_registered(addon) -> bool:
    """True when any class of the add-on is registered with Blender."""
    return any(cls.is_registered for cls in addon.classes)


def pytest_collection_modifyitems(config, items):
    """Mark every test in this folder ``blender``, so ``-m "not blender"`` deselects them all."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.blender)


@pytest.fixture(scope="session")
def addon():
    """The add-on package, imported as ``faceforge_addon`` but not registered."""
    return load_addon()


@pytest.fixture(autouse=True)
def factory_startup():
    """Start every test from an empty factory-settings file, so no scene state leaks between tests."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield


@pytest.fixture
def registered_addon(addon):
    """The add-on, registered for the duration of one test and unregistered afterwards."""
    addon.register()
    try:
        yield addon
    finally:
        if addon_is_registered(addon):
            addon.unregister()


@pytest.fixture(scope="module")
def faceforge(addon):
    """The add-on registered for a whole test module, its backend this interpreter."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FACEFORGE_BACKEND_PYTHON", sys.executable)
    addon.register()
    try:
        yield addon
    finally:
        addon.unregister()
        mp.undo()


@pytest.fixture
def fresh_python():
    """:func:`run_python`: run code in a fresh interpreter, as ``blender -b --python`` would."""
    return run_python


@pytest.fixture
def scene(faceforge, small_model_path):
    """The current scene, the add-on registered and using the small test model."""
    scene = bpy.context.scene
    scene.faceforge.model_path = str(small_model_path)
    return scene
