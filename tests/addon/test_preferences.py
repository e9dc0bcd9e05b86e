"""Add-on preferences reach the backend: the data folder becomes the backend's cache root."""

from __future__ import annotations

import types


def test_the_data_folder_preference_is_the_backend_cache(faceforge, monkeypatch, tmp_path):
    session = faceforge.session
    prefs = types.SimpleNamespace(
        backend_python="/usr/bin/python3", device="cpu", log_file="", data_dir=str(tmp_path / "ff")
    )
    monkeypatch.setattr(session, "get_preferences", lambda context=None: prefs)
    session.stop()
    try:
        client = session.client()
        assert session.settings()[3] == str(tmp_path / "ff")
        assert client.env == {"FACEFORGE_CACHE": str(tmp_path / "ff")}
        prefs.data_dir = ""
        assert session.client().env == {}  # empty: the backend's own default
    finally:
        session.stop()
