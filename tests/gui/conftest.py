"""Shared by the app's tests: each test gets its own analysis cache and settings file, no sound
device (tests/helpers.py: isolate_gui), "tester" as the annotator, and QMessageBox calls
recorded instead of shown (``dialogs``)."""

from __future__ import annotations

import pytest

from helpers import isolate_gui, record_dialogs


@pytest.fixture(autouse=True)
def _isolated(qapp, tmp_path, monkeypatch):
    isolate_gui(qapp, tmp_path, monkeypatch)
    monkeypatch.setenv("AVSTUDIO_WHO", "tester")


@pytest.fixture
def dialogs(monkeypatch):
    """Record QMessageBox calls (``(kind, title, text)``) instead of showing them."""
    return record_dialogs(monkeypatch)
