"""Headless use: the demo command, the installable extension zip, and a batch script on a saved file.

Each runs in a fresh interpreter (as ``blender -b`` would), with the backend this interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.anny

REPO_ROOT = Path(__file__).resolve().parents[2]

# The README's batch example, run here through the bpy module instead of `blender -b ... --python-expr`.
BATCH_EXPR = (
    "import bpy; bpy.ops.faceforge.generate_face(seed=7, name='Batch face'); "
    "bpy.ops.faceforge.random_expression(seed=1); bpy.ops.wm.save_mainfile()"
)


BACKEND_ENV = {"FACEFORGE_BACKEND_PYTHON": sys.executable}


@pytest.fixture(scope="module")
def demo(tmp_path_factory, small_model_path, small_motion_model_path):
    """``faceforge demo`` on the small test model, one sample per pixel."""
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "faceforge", "demo", "--model", str(small_model_path), "--out", str(out),
         "--motion", str(small_motion_model_path), "--samples", "1", "--json"],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def test_demo_saves_a_blend_and_renders_a_contact_sheet(demo, fresh_python):
    sheet = Path(demo["contact_sheet"])
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and sheet.stat().st_size > 50_000
    assert demo["rows"][0] == "infant" and demo["rows"][-1] == "elder"
    assert len(demo["faces"]) == len(demo["rows"]) * len(demo["columns"])
    report = fresh_python(f"""
        import json, bpy
        from faceforge.demo import load_addon
        load_addon().register()
        bpy.ops.wm.open_mainfile(filepath={demo["blend"]!r})
        faces = [o for o in bpy.data.objects if o.type == "MESH" and o.faceforge.is_face]
        print(json.dumps({{
            "faces": len(faces),
            "keys": sorted({{len(o.data.shape_keys.key_blocks) for o in faces}}),
            "happy": bpy.data.objects["adult happy"].data.shape_keys.key_blocks["happy"].value,
            "camera": bpy.context.scene.camera is not None,
            "engine": bpy.context.scene.render.engine,
            "take": [t.name for o in faces if o.data.shape_keys.animation_data
                     for t in o.data.shape_keys.animation_data.nla_tracks],
            "frames": [bpy.context.scene.frame_start, bpy.context.scene.frame_end],
        }}))
    """)
    summary = json.loads(report.strip().splitlines()[-1])
    assert summary["faces"] == len(demo["faces"]) and len(summary["keys"]) == 1 and summary["keys"][0] > 53
    assert summary["happy"] == 1.0 and summary["camera"] and summary["engine"] == "CYCLES"
    # One baked, playable take on the adult neutral face, and the scene's range plays it.
    assert summary["take"] == ["FF rest", demo["take"]["name"]] == ["FF rest", "FF high_smile 0"]
    assert summary["frames"] == demo["take"]["frames"] and summary["frames"][1] > summary["frames"][0]


def test_demo_without_a_take_renders_the_faces_and_never_touches_a_motion_model(small_model_path, tmp_path):
    """The first picture needs the face model only: with --no-take (and an empty cache, where a motion
    model would have to be trained) the demo renders the grid and trains nothing."""
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "faceforge", "demo", "--model", str(small_model_path), "--out",
         str(tmp_path / "out"), "--no-take", "--samples", "1", "--json"],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
        env={**os.environ, **BACKEND_ENV, "FACEFORGE_CACHE": str(cache)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    assert result["take"] is None and result["motion_model"] is None
    assert Path(result["contact_sheet"]).stat().st_size > 50_000
    assert result["seconds"]["first_picture"] <= result["seconds"]["total"]
    assert "motion_model" not in result["seconds"]
    assert not list(cache.rglob("motion*.pt"))
    again = subprocess.run(
        [sys.executable, "-m", "faceforge", "demo", "--model", str(small_model_path), "--out",
         str(tmp_path / "out"), "--no-take"], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )  # fmt: skip
    assert again.returncode == 1 and "exists: pass --force" in again.stderr  # refused before any work


def test_extension_zip_installs_enables_and_runs_a_batch_script(demo, tmp_path, fresh_python):
    built = subprocess.run(
        [sys.executable, "build_addon.py", "--out", str(tmp_path / "dist")],
        capture_output=True, text=True, cwd=REPO_ROOT, check=True,
    )  # fmt: skip
    archive = Path(built.stdout.strip().splitlines()[-1])
    assert "blender_manifest.toml" in zipfile.ZipFile(archive).namelist()
    blend = tmp_path / "scene.blend"
    blend.write_bytes(Path(demo["blend"]).read_bytes())
    report = fresh_python(
        f"""
        import json, os, bpy
        repo_dir = {str(tmp_path / "repo")!r}
        os.makedirs(repo_dir)
        bpy.context.preferences.extensions.repos.new(
            name="FaceForge test", module="faceforge_test", custom_directory=repo_dir, source="USER"
        )
        result = bpy.ops.extensions.package_install_files(
            filepath={str(archive)!r}, repo="faceforge_test", enable_on_install=True
        )
        assert result == {{"FINISHED"}}, result
        assert "bl_ext.faceforge_test.faceforge" in bpy.context.preferences.addons
        bpy.ops.wm.open_mainfile(filepath={str(blend)!r})
        exec({BATCH_EXPR!r})
        bpy.ops.wm.open_mainfile(filepath={str(blend)!r})
        face = bpy.data.objects["Batch face"]
        values = [b.value for b in face.data.shape_keys.key_blocks[1:]]
        print(json.dumps({{"keys": len(values), "moving": sum(v > 0.01 for v in values),
                          "package": face.faceforge.__class__.__module__}}))
        """,
        env={"BLENDER_USER_RESOURCES": str(tmp_path / "user"), **BACKEND_ENV},
    )
    summary = json.loads(report.strip().splitlines()[-1])
    assert summary["keys"] > 52 and summary["moving"] >= 1
    assert summary["package"].startswith("bl_ext.faceforge_test.faceforge")
