# FaceForge: `make demo` sets everything up and runs the demo; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.faceforge-installed
DEMO_OUT ?= out/demo

.PHONY: setup demo test lint addon clean

setup: $(STAMP)

# One virtual environment for the backend, the tests and the `bpy` module (pins: pyproject.toml).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main demo: Blender (bpy) + the add-on make a grid of faces from the default model (built on
# first use), save out/demo/faceforge_demo.blend and render out/demo/contact_sheet.png (replacing
# those of an earlier run).
demo: setup
	$(BIN)/faceforge demo --out $(DEMO_OUT) --force

test: setup
	$(BIN)/ruff check backend blender_addon tests build_addon.py
	$(BIN)/python -m pytest

addon: setup
	$(BIN)/python build_addon.py

clean:
	rm -rf $(VENV) out build dist *.egg-info backend/*.egg-info
