"""Shared fixtures: every test gets a private config directory and a clean environment; with
`STOCKUP_CPU_HOG=1` (as `.ci/run` sets) the integration tests run with every core busy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

#: Markers of the tests that talk to real servers (the integration suite).
INTEGRATION = ("kafka", "rabbitmq", "influx")


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


@pytest.fixture(scope="module", autouse=True)
def _cpu_hog(request: pytest.FixtureRequest) -> Iterator[None]:
    """One busy-loop process per core around each integration module: results must not depend
    on the load (a timing-dependent output, or a wait that is really a race, shows up here)."""
    wanted = os.environ.get("STOCKUP_CPU_HOG") == "1"
    if not wanted or not any(request.node.iter_markers(m) for m in INTEGRATION):
        yield
        return
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
