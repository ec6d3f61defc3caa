"""Price and trade model of the built-in market simulator: pure, no I/O, one seeded `Random`.

Speed matters more than elegance here: the simulator must out-run any pipeline it feeds (at least
300k trades/s on one core), so the hot path avoids per-trade function calls. Random numbers are
drawn as one `randbytes` block per tick and mapped through 256-entry lookup tables (symbol choice,
price step, volume, conditions); prices are walked as integers in 1e-4 units with
`itertools.accumulate`, so they stay exactly on the tick grid and `units / 10000` is the same
float as `round(price, 4)`. Trades are msgspec Structs built by `map` and encoded by msgspec:
a dict per trade and orjson took 1.7x as long (457 against 271 ns a trade, generation and
encoding of 500-trade frames, measured), and the app's own simulator shares its process.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import attrgetter, truediv
from statistics import NormalDist
from typing import NamedTuple

import msgspec


class Trade(msgspec.Struct, gc=False):
    """One wire trade, encoded as Finnhub's `{"s": .., "p": .., "t": .., "v": .., "c": ..}`."""

    s: str
    p: float
    t: int
    v: int | float
    c: list[str] | None


UNITS = 10_000
"""Prices are held as integers in 1e-4 units (the fine tick)."""
COARSE = 100
"""Units per 0.01 tick, the tick of every price >= 1."""
PER_TRADE_VOL = 3e-5
"""Relative standard deviation of one trade's price step (about 0.3% after 10,000 trades)."""
MIN_SIGMA_TICKS = 0.35
"""Floor of a step's standard deviation in ticks, so about 15% of trades move the price."""
MAX_CATCHUP_S = 0.25
"""Longest gap one tick may fill. When the client reads slower than the offered rate (TCP
back-pressure), a longer catch-up would turn into bursts of generation during which nothing is
sent, and throughput would collapse; the feed then offers what the client takes."""

_TABLE = 256
_Z = [NormalDist().inv_cdf((i + 0.5) / _TABLE) for i in range(_TABLE)]
_BY_T = attrgetter("t")
# Conditions: mostly null, often ["1"], now and then something rarer. Shared list objects are fine:
# they are only ever serialized.
_STOCK_CONDITIONS: list[list[str] | None] = [
    *[None] * 150,
    *[["1"]] * 80,
    *[["12"]] * 10,
    *[["1", "12"]] * 8,
    *[["1", "8"]] * 4,
    *[["37"]] * 4,
]
_CRYPTO_CONDITIONS: list[list[str] | None] = [None] * 230 + [["1"]] * 26


def is_crypto(symbol: str) -> bool:
    """Finnhub writes crypto and forex pairs as `EXCHANGE:PAIR`; stocks have no colon."""
    return ":" in symbol


def tick_units(units: int) -> int:
    """Tick size in 1e-4 units: 0.01 at or above 1, 0.0001 below."""
    return COARSE if units >= UNITS else 1


def poisson(rng: random.Random, lam: float) -> int:
    """Draw a Poisson count; Knuth's product method for small means, a normal approximation above.

    Called once per tick and connection, so the small-mean loop (at most ~50 draws) is cheap.
    """
    if lam <= 0.0:
        return 0
    if lam < 50.0:
        limit = math.exp(-lam)
        k = 0
        prod = rng.random()
        while prod > limit:
            k += 1
            prod *= rng.random()
        return k
    return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))


@dataclass(slots=True)
class SymbolState:
    """Walk state of one symbol, shared by every connection that trades it."""

    symbol: str
    units: int  # current price in 1e-4 units, always > 0 and on the tick grid
    weight: float  # relative activity: busier symbols take a larger share of a connection's rate
    steps: list[int]  # 256 price steps in units, drawn from the symbol's per-trade distribution
    steps_ref: int  # price the step table was scaled for; rebuilt when the price drifts away
    volumes: list[int] | list[float]
    conditions: list[list[str] | None]

    @property
    def price(self) -> float:
        """Current price as the float a trade would carry."""
        return self.units / UNITS


def _step_table(units: int) -> list[int]:
    """Normal quantiles scaled to the price, rounded to whole ticks (zero-mean by symmetry).

    The floor keeps cheap symbols moving: below it every step would round to zero ticks.
    """
    tick = tick_units(units)
    sigma = max(units * PER_TRADE_VOL / tick, MIN_SIGMA_TICKS)
    return [round(sigma * z) * tick for z in _Z]


def _volume_table(symbol: str, units: int, rng: random.Random) -> list[int] | list[float]:
    """Typical trade sizes: odd and round lots for stocks, fractions of a coin for crypto."""
    if is_crypto(symbol):
        # Aim at a few hundred dollars per trade, so BTC trades are small fractions.
        scale = 300.0 / max(units / UNITS, 1e-4)
        return [round(scale * rng.lognormvariate(0.0, 1.2), 6) or 1e-6 for _ in range(_TABLE)]
    lots = (1, 1, 2, 3, 5, 10, 10, 20, 25, 50, 100, 100, 100, 200, 300, 500, 1000)
    return [rng.choice(lots) if rng.random() < 0.8 else rng.randint(1, 99) for _ in range(_TABLE)]


def _start_units(symbol: str, rng: random.Random) -> int:
    """A plausible opening price for the symbol, on its tick grid."""
    pair = symbol.upper().rpartition(":")[2]
    if is_crypto(symbol):
        if pair.startswith("BTC"):
            price = rng.uniform(20_000.0, 80_000.0)
        elif pair.startswith("ETH"):
            price = rng.uniform(1_000.0, 4_000.0)
        else:
            price = 10.0 ** rng.uniform(-2.0, 2.0)
    else:
        price = rng.uniform(20.0, 500.0)
    units = max(1, round(price * UNITS))
    tick = tick_units(units)
    return max(tick, units // tick * tick)


class Market:
    """Per-symbol random walks plus the seeded generator every draw comes from.

    A symbol opens at a price derived from its name alone (the same in every run); the same
    seed gives the same activity weights and tables for a symbol regardless of which symbols
    were asked for first (derived from `seed` and the name); the same sequence of calls then
    gives the same trades.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**63)
        self.rng = random.Random(self.seed)
        self._symbols: dict[str, SymbolState] = {}

    def state(self, symbol: str) -> SymbolState:
        """The walk state of `symbol`, created deterministically on first use."""
        st = self._symbols.get(symbol)
        if st is None:
            # String seeds are hashed with SHA-512, so this does not depend on PYTHONHASHSEED.
            srng = random.Random(f"{self.seed}:{symbol}")
            # The opening price from the name alone: every run (any seed) opens a symbol at the
            # same price, so a replay or another run over the same topic does not mix markets.
            units = _start_units(symbol, random.Random(f"open:{symbol}"))
            st = SymbolState(
                symbol=symbol,
                units=units,
                weight=srng.lognormvariate(0.0, 0.8),
                steps=_step_table(units),
                steps_ref=units,
                volumes=_volume_table(symbol, units, srng),
                conditions=_CRYPTO_CONDITIONS if is_crypto(symbol) else _STOCK_CONDITIONS,
            )
            self._symbols[symbol] = st
        return st

    def previous_close(self, symbol: str) -> float:
        """Yesterday's close, as Finnhub's REST `/quote` gives it (`pc`): from the name alone,
        within a few percent of the opening price, on its tick grid."""
        units = _start_units(symbol, random.Random(f"open:{symbol}"))
        factor = 1.0 + random.Random(f"close:{symbol}").gauss(0.0, 0.015)
        close = max(1, round(units * factor))
        tick = tick_units(close)
        return max(tick, close // tick * tick) / UNITS

    def price(self, symbol: str) -> float:
        """Current price of `symbol`."""
        return self.state(symbol).price

    def walk(self, st: SymbolState, count: int, t0: int, t1: int, rnd: bytes) -> list[Trade]:
        """Advance one symbol by `count` trades with sorted timestamps in `[t0, t1]`.

        `rnd` must hold `4 * count` random bytes: steps, volumes, conditions, timestamps.
        """
        steps = st.steps
        deltas = [steps[b] for b in rnd[:count]]
        deltas[0] += st.units  # so that accumulate yields absolute prices
        path = list(accumulate(deltas))
        if min(path) <= 0 or (st.steps_ref < UNITS and max(path) >= UNITS):
            path = _repair(deltas)
        last = path[-1]
        st.units = last
        ref = st.steps_ref
        if (last >= UNITS) != (ref >= UNITS) or not 0.8 * ref <= last <= 1.25 * ref:
            st.steps = _step_table(last)
            st.steps_ref = last
        vols = [st.volumes[b] for b in rnd[count : 2 * count]]
        conds = [st.conditions[b] for b in rnd[2 * count : 3 * count]]
        span = t1 - t0 + 1
        ts = [t0 + (b * span >> 8) for b in sorted(rnd[3 * count : 4 * count])]
        prices = map(truediv, path, repeat(UNITS))
        return list(map(Trade, repeat(st.symbol), prices, ts, vols, conds))


def _repair(deltas: list[int]) -> list[int]:
    """Slow path for a walk that left its regime: keep prices positive and >= 1 on the 0.01 grid.

    Rare (a price crossing 1.0 upward with fine ticks, or touching zero), so a Python loop is fine.
    `deltas[0]` already includes the starting price.
    """
    out: list[int] = []
    u = 0
    for d in deltas:
        u += d
        if u <= 0:
            u = max(1, -u)
        if u >= UNITS and u % COARSE:
            u = (u + COARSE // 2) // COARSE * COARSE
        out.append(u)
    return out


class TickResult(NamedTuple):
    """Frames produced by one tick; the first `duplicates` trades (across frames) are re-sends."""

    frames: list[list[Trade]]
    new: int
    duplicates: int


class TradeFeed:
    """One connection's trade stream: Poisson arrivals over its subscribed symbols, duplicates,
    and frames of bounded size.

    The rate is the connection's total; symbols share it by weight, as busy tickers do in the real
    feed. Timestamps continue from the previous tick so they never decrease per symbol (except
    for duplicates, which repeat an earlier trade verbatim, as the real feed does).
    """

    def __init__(
        self,
        market: Market,
        rate: float,
        duplicate_fraction: float = 0.0,
        max_trades_per_frame: int = 500,
    ) -> None:
        self.market = market
        self.rate = rate
        self.duplicate_fraction = duplicate_fraction
        self.max_trades_per_frame = max(1, max_trades_per_frame)
        self._states: list[SymbolState] = []
        self._table: bytes = b""  # 256 entries mapping a random byte to a symbol index
        self._cum: list[float] = []  # cumulative weights, used when there are > 256 symbols
        self._pending: list[Trade] = []  # duplicates waiting for a later frame
        self._last_ms: int | None = None

    @property
    def symbols(self) -> list[str]:
        """Symbols this feed currently trades, in subscription order."""
        return [st.symbol for st in self._states]

    def set_symbols(self, symbols: Iterable[str]) -> None:
        """Replace the traded symbols; pending duplicates of dropped symbols are discarded."""
        self._states = [self.market.state(s) for s in dict.fromkeys(symbols)]
        names = {st.symbol for st in self._states}
        self._pending = [tr for tr in self._pending if tr.s in names]
        self._table = _symbol_table([st.weight for st in self._states])
        self._cum = list(accumulate(st.weight for st in self._states))

    def discard_pending(self) -> None:
        """Forget queued duplicates (used when the stream is paused)."""
        self._pending = []

    def tick(self, elapsed: float, now_ms: int) -> TickResult:
        """Generate the trades of the last `elapsed` seconds, ending at wall time `now_ms`."""
        elapsed = min(max(elapsed, 0.0), MAX_CATCHUP_S)
        t0 = self._last_ms if self._last_ms is not None else now_ms - int(elapsed * 1000)
        t1 = max(now_ms, t0)
        self._last_ms = t1
        states = self._states
        rng = self.market.rng
        n = poisson(rng, self.rate * elapsed) if states else 0
        trades: list[Trade] = []
        if n:
            if len(states) == 1:
                counts = [n]
            elif len(states) <= _TABLE:
                picks = rng.randbytes(n).translate(self._table)
                counts = [picks.count(i) for i in range(len(states))]
            else:
                counts = [0] * len(states)
                for i in rng.choices(range(len(states)), cum_weights=self._cum, k=n):
                    counts[i] += 1
            rnd = rng.randbytes(4 * n)
            off = 0
            for st, k in zip(states, counts, strict=True):
                if k:
                    trades += self.market.walk(st, k, t0, t1, rnd[off : off + 4 * k])
                    off += 4 * k
            if len(states) > 1:
                trades.sort(key=_BY_T)  # interleave symbols; each run is sorted, so this merges
        pending = self._pending
        frac = self.duplicate_fraction
        if frac >= 1.0:
            self._pending = list(trades)
        elif frac > 0.0 and trades:
            d = int(len(trades) * frac + rng.random())
            self._pending = [trades[i] for i in sorted(rng.sample(range(len(trades)), d))]
        else:
            self._pending = []
        batch = pending + trades if pending else trades
        m = self.max_trades_per_frame
        frames = [batch[i : i + m] for i in range(0, len(batch), m)]
        return TickResult(frames, len(trades), len(pending))


def _symbol_table(weights: list[float]) -> bytes:
    """256 symbol indices in proportion to `weights` (largest remainder, every symbol >= 1)."""
    k = len(weights)
    if k == 0 or k > _TABLE:
        return bytes(_TABLE)
    total = sum(weights)
    raw = [w / total * (_TABLE - k) for w in weights]
    slots = [1 + int(r) for r in raw]
    order = sorted(range(k), key=lambda i: raw[i] - int(raw[i]), reverse=True)
    for i in order[: _TABLE - sum(slots)]:
        slots[i] += 1
    return bytes(i for i, s in enumerate(slots) for _ in range(s))
