# FaceForge: `make demo` sets everything up and runs the demo; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.faceforge-installed
DEMO_OUT ?= out/demo-data
DEMO_MODEL ?= out/demo-model.pt

.PHONY: setup demo test lint addon clean

setup: $(STAMP)

# One virtual environment for the backend, the tests and the `bpy` module (pins: pyproject.toml).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/faceforge data build --small --out $(DEMO_OUT)
	$(BIN)/faceforge data info $(DEMO_OUT)
	$(BIN)/faceforge model build --small --data $(DEMO_OUT) --out $(DEMO_MODEL)
	$(BIN)/faceforge model sample --model $(DEMO_MODEL) --n 4 --radius 0.9 --out out/demo-faces
	$(BIN)/faceforge model fit out/demo-faces/face_000.obj --model $(DEMO_MODEL)

test: setup
	$(BIN)/ruff check backend blender_addon tests build_addon.py
	$(BIN)/python -m pytest

addon: setup
	$(BIN)/python build_addon.py

clean:
	rm -rf $(VENV) out build dist *.egg-info backend/*.egg-info
