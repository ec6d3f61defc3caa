"""Built-in market simulator: a real websocket server speaking Finnhub's trades protocol.

`market` holds the pure price/trade model, `server` the websocket server and its fault knobs.
"""

from .market import Market, TickResult, Trade, TradeFeed, poisson
from .server import (
    MALFORMED_KINDS,
    TOO_MANY_SYMBOLS,
    MarketSimulator,
    SimulatorSettings,
    SimulatorStats,
    SimulatorThread,
    run_simulator,
)

__all__ = [
    "MALFORMED_KINDS",
    "TOO_MANY_SYMBOLS",
    "Market",
    "MarketSimulator",
    "SimulatorSettings",
    "SimulatorStats",
    "SimulatorThread",
    "TickResult",
    "Trade",
    "TradeFeed",
    "poisson",
    "run_simulator",
]
