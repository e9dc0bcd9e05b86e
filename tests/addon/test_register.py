"""Registration of the FaceForge add-on in the real Blender (``bpy``), headless."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import bpy
import pytest

pytestmark = pytest.mark.blender

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDON_DIR = REPO_ROOT / "blender_addon"
# The package name conftest.py imports the add-on under.
ADDON_PACKAGE = "faceforge_addon"

# Loads the add-on the way conftest does, in a fresh interpreter.
_LOAD_ADDON = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location(
    {ADDON_PACKAGE!r}, {str(ADDON_DIR / "__init__.py")!r}, submodule_search_locations=[{str(ADDON_DIR)!r}]
)
addon = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = addon
spec.loader.exec_module(addon)
"""




def assert_nothing_registered(addon) -> None:
    assert not any(cls.is_registered for cls in addon.classes)
    assert not hasattr(bpy.types, "VIEW3D_PT_faceforge")
    for owner in (bpy.types.Scene, bpy.types.Object, bpy.types.WindowManager):
        assert "faceforge" not in owner.bl_rna.properties
        assert not hasattr(owner, "faceforge")
    assert not _operator_registered("generate_face")


def _operator_registered(name: str) -> bool:
    try:
        getattr(bpy.ops.faceforge, name).get_rna_type()
    except KeyError:
        return False
    return True


def test_register_then_unregister_twice_leaves_nothing_behind(addon):
    assert_nothing_registered(addon)
    for _ in range(2):
        addon.register()
        assert all(cls.is_registered for cls in addon.classes)
        assert hasattr(bpy.types, "VIEW3D_PT_faceforge")
        assert "faceforge" in bpy.types.Scene.bl_rna.properties
        assert _operator_registered("generate_face")
        addon.unregister()
        assert_nothing_registered(addon)


def test_registers_in_background_mode(registered_addon):
    assert bpy.app.background
    settings = bpy.context.scene.faceforge
    assert settings.seed == 0
    assert settings.model_path == ""
    settings.seed = 42
    assert bpy.context.scene.faceforge.seed == 42
    # The seed cannot go negative: Blender clamps it to the property's minimum.
    settings.seed = -3
    assert settings.seed == 0
    model_path = type(settings).bl_rna.properties["model_path"]
    assert model_path.subtype == "FILE_PATH"
    if hasattr(model_path, "is_path_supports_blend_relative"):  # Blender 4.5+
        assert model_path.is_path_supports_blend_relative


def test_preferences_bl_idname_is_the_package_name(registered_addon):
    prefs_cls = registered_addon.preferences.FaceForgePreferences
    assert registered_addon.__name__ == ADDON_PACKAGE
    assert prefs_cls.bl_idname == ADDON_PACKAGE
    props = prefs_cls.bl_rna.properties
    assert props["backend_python"].subtype == "FILE_PATH"
    assert props["data_dir"].subtype == "DIR_PATH"
    # Registered by hand, not enabled as an add-on: the helper says so instead of raising.
    assert registered_addon.preferences.get_preferences() is None


def test_panel_is_in_the_faceforge_sidebar_tab(registered_addon):
    panel = bpy.types.VIEW3D_PT_faceforge
    assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "FaceForge")


def test_scene_settings_are_saved_with_the_blend_file(registered_addon, tmp_path):
    blend = tmp_path / "settings.blend"
    bpy.context.scene.faceforge.seed = 7
    bpy.context.scene.faceforge.model_path = "//models/face.ffm"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert bpy.context.scene.faceforge.seed == 0
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert bpy.context.scene.faceforge.seed == 7
    assert bpy.context.scene.faceforge.model_path == "//models/face.ffm"


def _addon_sources() -> list[Path]:
    sources = sorted(ADDON_DIR.rglob("*.py"))
    assert sources
    return sources


@pytest.mark.parametrize("path", _addon_sources(), ids=lambda p: p.name)
def test_addon_module_imports_stay_inside_blender(path):
    """The add-on never imports the backend or torch, and loads no GPU module at import time."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                continue  # relative import: fine
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top not in {"torch", "faceforge", "blender_addon"}, (
                f"{path.name}:{node.lineno} imports {name}"
            )
            if id(node) in module_level:
                assert top not in {"gpu", "gpu_extras", "bgl"}, f"{path.name}:{node.lineno} imports {name}"


def test_register_in_a_fresh_blender_imports_no_torch(fresh_python):
    out = fresh_python(
        "import sys, bpy\n"
        + _LOAD_ADDON
        + """
assert bpy.app.background
addon.register()
bpy.context.scene.faceforge.seed = 1
print(sorted(m for m in ("torch", "faceforge") if m in sys.modules))
addon.unregister()
"""
    )
    assert out.strip().splitlines()[-1] == "[]"


def test_installs_and_enables_as_an_extension(tmp_path, fresh_python):
    """The built zip installs into a user extension repository and enables with the preferences found."""
    spec = importlib.util.spec_from_file_location("build_addon", REPO_ROOT / "build_addon.py")
    assert spec is not None and spec.loader is not None
    build_addon = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_addon)
    zip_path = build_addon.build(tmp_path / "dist")

    # BLENDER_USER_RESOURCES keeps the install away from the real ~/.config/blender.
    out = fresh_python(
        f"""
import bpy
import addon_utils
module = "bl_ext.user_default.faceforge"
result = bpy.ops.extensions.package_install_files(
    filepath={str(zip_path)!r}, repo="user_default", enable_on_install=True
)
assert result == {{"FINISHED"}}, result
prefs = bpy.context.preferences.addons[module].preferences
assert type(prefs).bl_idname == module, type(prefs).bl_idname
assert prefs.backend_python == ""
assert hasattr(bpy.types, "VIEW3D_PT_faceforge")
assert bpy.context.scene.faceforge.seed == 0
addon_utils.disable(module)
assert not hasattr(bpy.types, "VIEW3D_PT_faceforge")
assert "faceforge" not in bpy.types.Scene.bl_rna.properties
print("installed-ok")
""",
        env={"BLENDER_USER_RESOURCES": str(tmp_path / "blender_user")},
    )
    assert "installed-ok" in out
    assert (tmp_path / "blender_user" / "extensions" / "user_default" / "faceforge" / "__init__.py").is_file()


@pytest.mark.parametrize("imports", ["import torch, bpy", "import bpy, torch"])
def test_torch_and_bpy_share_one_process(imports, fresh_python):
    """The whole suite runs in one pytest process: bpy and torch must coexist in either import order."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    out = fresh_python(
        imports
        + """
import numpy as np
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0)
mesh = bpy.context.object.data
co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
mesh.vertices.foreach_get("co", co)
radii = torch.from_numpy(co).view(-1, 3).norm(dim=1)
a = torch.randn(300, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
a = a @ a.T + 300 * torch.eye(300, dtype=torch.float64)
x = torch.linalg.solve(a, torch.ones(300, dtype=torch.float64))
print(float((radii - 1).abs().max()), float((a @ x - 1).abs().max()))
"""
    )
    radius_err, residual = map(float, out.split())
    assert radius_err < 1e-5
    assert residual < 1e-9
