"""Shared fixtures: every test gets a private config directory and a clean environment."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keeps the developer's own config file and STOCKUP_* variables out of the tests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))
    for name in list(os.environ):
        if (name.startswith("STOCKUP_") and name != "STOCKUP_REQUIRE_SERVICES") or name == (
            "FINNHUB_TOKEN"
        ):
            monkeypatch.delenv(name)
    yield
