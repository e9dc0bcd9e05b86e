"""Fixtures for the backend service tests: the add-on's client module and a running backend.

The client (``blender_addon/backend_client.py``) is loaded by path, as a stand-alone module: it needs
neither ``bpy`` nor the add-on package. The backends are real ``python -m faceforge serve``
subprocesses of this interpreter.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_PATH = REPO_ROOT / "blender_addon" / "backend_client.py"


def load_client_module():
    from faceforge.server.bench import load_client_module as load

    return load(CLIENT_PATH)


@pytest.fixture(scope="session")
def bc():
    """The client module."""
    return load_client_module()


@pytest.fixture(scope="module")
def backend(bc, tmp_path_factory):
    """One started backend shared by a test module (tests that kill it use their own)."""
    log = tmp_path_factory.mktemp("backend-log") / "backend.log"
    client = bc.BackendClient(sys.executable, log_path=log)
    client.start()
    yield client
    client.shutdown()


@pytest.fixture
def fresh_backend(bc, tmp_path):
    """A backend of its own for a test that kills, stops or limits it."""
    clients = []

    def make(**options):
        client = bc.BackendClient(sys.executable, log_path=tmp_path / "backend.log", **options)
        client.start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(timeout=2)
