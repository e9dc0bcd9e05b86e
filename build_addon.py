"""Build the installable FaceForge Blender extension zip.

The zip holds the files of ``blender_addon/`` at its root (``blender_manifest.toml`` and ``__init__.py``
at the top level, as Blender extensions require) and is named ``faceforge-<version>.zip`` after the
version in the manifest. Python caches are left out.

Usage:
    python build_addon.py [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
ADDON_DIR = REPO_ROOT / "blender_addon"
MANIFEST_NAME = "blender_manifest.toml"
DEFAULT_OUT_DIR = REPO_ROOT / "dist"

_EXCLUDED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
_EXCLUDED_SUFFIXES = frozenset({".pyc", ".pyo"})


def read_manifest(addon_dir: Path = ADDON_DIR) -> dict[str, object]:
    """Return the parsed ``blender_manifest.toml`` of ``addon_dir``."""
    with (addon_dir / MANIFEST_NAME).open("rb") as fh:
        return tomllib.load(fh)


def iter_addon_files(addon_dir: Path = ADDON_DIR) -> Iterator[Path]:
    """Yield the files to package, sorted, skipping caches and hidden files."""
    for path in sorted(addon_dir.rglob("*")):
        rel_parts = path.relative_to(addon_dir).parts
        if any(part in _EXCLUDED_DIRS or part.startswith(".") for part in rel_parts):
            continue
        if path.is_file() and path.suffix not in _EXCLUDED_SUFFIXES:
            yield path


def build(out_dir: Path = DEFAULT_OUT_DIR, addon_dir: Path = ADDON_DIR) -> Path:
    """Write ``faceforge-<version>.zip`` into ``out_dir`` and return its path."""
    manifest = read_manifest(addon_dir)
    for key in ("id", "version"):
        if not isinstance(manifest.get(key), str):
            raise ValueError(f"{addon_dir / MANIFEST_NAME}: missing string field {key!r}")
    if not (addon_dir / "__init__.py").is_file():
        raise FileNotFoundError(f"{addon_dir} has no __init__.py")

    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in iter_addon_files(addon_dir):
            zf.write(path, path.relative_to(addon_dir).as_posix())
    return zip_path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: build the zip and print its path."""
    parser = argparse.ArgumentParser(description="Build the FaceForge Blender extension zip.")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"output folder (default: {DEFAULT_OUT_DIR})",
    )
    args = parser.parse_args(argv)
    try:
        zip_path = build(args.out)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(zip_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
