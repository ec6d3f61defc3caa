"""The engine on its own thread, as the screen runs it: snapshots readable from this thread,
symbol changes reach the feed, stop drains."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from stockup_tui.config import ConfigError, Settings
from stockup_tui.engine.host import EngineHost


def wait_sync(cond: Callable[[], bool], timeout: float = 10.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_host_runs_the_pipeline_on_its_own_thread() -> None:
    settings = Settings.model_validate(
        {"symbols": ["AAPL"], "windows": ["1m"], "simulator": {"rate": 1000, "seed": 2}}
    )
    host = EngineHost(settings, live_interval=0.05)
    host.start()
    try:
        wait_sync(lambda: "AAPL" in host.latest, what="AAPL snapshot")
        host.set_symbols(["AAPL", "MSFT"])
        sim = host.pipeline.simulator
        assert sim is not None
        wait_sync(lambda: sim.simulator.subscriptions() == {"AAPL", "MSFT"}, what="subscribe")
        wait_sync(lambda: "MSFT" in host.latest, what="MSFT snapshot")
        # The previous closes come from the simulator's REST endpoint, for the watchlist.
        market = sim.simulator.market
        want = {s: market.previous_close(s) for s in ("AAPL", "MSFT")}
        wait_sync(lambda: dict(host.previous_close) == want, what="the previous closes")
        host.set_symbols(["MSFT"])
        wait_sync(lambda: sim.simulator.subscriptions() == {"MSFT"}, what="unsubscribe")
    finally:
        host.stop()
    pipe = host.pipeline
    # drained: every trade received is in the windows (a removed symbol's last ones too: the
    # analyzer follows the log, the screen the watchlist)
    assert pipe.analyzer.ingested == pipe.parser.trades


def test_host_reports_configuration_errors_at_once(tmp_path) -> None:
    settings = Settings.model_validate({"source": {"record": str(tmp_path)}})  # a directory
    with pytest.raises(ConfigError, match=r"source\.record: cannot write"):
        EngineHost(settings)
