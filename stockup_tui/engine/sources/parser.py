"""Finnhub websocket frames -> validated trades, grouped into one `SymbolBatch` per symbol.

Frames look like ``{"type":"trade","data":[{"s":"AAPL","p":187.43,"t":1764085243123,"v":100,
"c":["1","12"]}, ...]}``, ``{"type":"ping"}`` or ``{"type":"error","msg":"..."}``.

Nothing here raises or stops on bad input: a bad frame is dropped whole, a bad trade is dropped
alone (the good trades of its frame are kept), and each drop is counted in `Drops` under one of
these reasons:

``binary_frame`` (bytes instead of text), ``oversized_frame`` (longer than `max_frame_bytes`
chars, checked before parsing; the size is counted too), ``malformed_json``, ``not_an_object``,
``unknown_type`` (not trade/ping/error), ``bad_data`` (trade frame whose data is not a list),
``bad_trade`` (element not an object), ``missing_field`` (s/p/t/v absent), ``bad_symbol`` (not a
non-empty str of at most 50 printable chars without spaces), ``bad_type`` (p/v not int/float -
bool is not a number - or t not int), ``nonfinite_price``, ``bad_price`` (<= 0 or > `MAX_PRICE`),
``bad_volume`` (negative, non-finite or > `MAX_VOLUME`; zero is allowed), ``bad_time`` (t <= 0 or
after the year 2200), ``future_time`` (stamped more than `max_future_ms` after the frame's receive
time), ``too_old`` (stamped more than `max_age_ms` before it: no window still open can hold it),
``bad_conditions`` (c neither null nor a list of at most 64 strs of at most 32 chars),
``unsubscribed`` (a valid trade of a symbol not subscribed: see `set_subscribed`), ``duplicate``
(see `DuplicateFilter`) and ``server_error`` (``{"type":"error"}`` frames; the text is also kept
in `last_error`).

Subscriptions: a live feed is only asked for the watchlist, but nothing stops it sending other
symbols, and every symbol that gets through costs state downstream. So once `set_subscribed` has
been called, only those symbols pass, plus, for `UNSUBSCRIBE_GRACE` seconds of receive time,
the ones just removed (trades already in flight when the unsubscribe was sent). A replay is not
filtered: the recording decides what is played.

Times are judged against the receive time given with each frame, never against a clock read
here: replaying a recording makes the same decisions at any speed.

orjson rejects NaN/Infinity literals and numbers like 1e400; such a frame is re-read with the
stdlib ``json`` (which accepts them) only to classify its trades, so one trade with ``"p": NaN``
costs ``nonfinite_price`` for that trade alone.

Speed (the per-trade hot path): a trade frame is decoded by msgspec straight into typed trade
structs, which checks every field's type and the static bounds of prices, times, volumes and
conditions in C; the columns are pulled out with one list comprehension each and the rest is checked
column by column with C-level passes (``min``/``max`` of the times, set inclusion against caches of
already validated symbols and conditions); the structs are frozen, so their C-level hash is the
dedup key (``map(hash, trades)``), and the columns are appended to per-symbol flat lists with
``map(list.extend, ...)``; no other Python code runs per trade. A frame the decoder declines (a
ping, an error, a badly typed or out-of-bounds trade, anything malformed) is read again by orjson
and goes through `_check_trade` trade by trade, which gives the exact drop reason; a decoded frame
the column checks cannot vouch for (a time out of bounds, the first sight of a symbol or conditions
list) goes through `_check_decoded` trade by trade. Both fill the caches, and the trades they keep
are made into the same structs, so a resend is caught whichever path each copy took. Prices and
volumes are always stored as floats.

Conditions lists are shared: every trade with conditions ``["1", "12"]`` refers to the same list
object (less memory, and no garbage-collector tracked object per trade). Treat ``batch.c``
entries as read-only.

Not thread-safe: call `parse` and `take` from the same thread (or event loop), and call `take`
regularly: pending trades are held until then.

Longer than most modules on purpose: the list of drop reasons above is the user's reference, and
the parser is one class whose per-frame loop must not call out to helpers per trade.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from math import isfinite
from operator import ne
from typing import Annotated, Any, Literal

import msgspec
import orjson

from ..codec import MAX_PRICE, MAX_TIME_MS, MAX_VOLUME, symbol_ok
from ..drops import Drops
from ..model import SymbolBatch
from .dedup import DuplicateFilter

#: Conditions per trade and chars per condition; Finnhub codes are short ("1", "12").
MAX_CONDITIONS = 64
MAX_CONDITION_LEN = 32
#: Seconds of receive time during which an unsubscribed symbol's trades still pass.
UNSUBSCRIBE_GRACE = 2.0
# The caches of already validated symbols/conditions are cleared when they grow past this, so
# a feed of random symbols cannot grow memory without bound (without a subscription filter).
_MAX_CACHED_SYMBOLS = 100_000
_MAX_CACHED_CONDITIONS = 10_000

_NUM = frozenset((int, float))
_extend = list.extend
_append = list.append
_Conditions = tuple[str, ...]


class _Trade(msgspec.Struct, frozen=True, gc=False):
    """One trade whose fields have the right types and static bounds. Frozen: its hash (of all
    five fields, in C) is the dedup key; null conditions and ``[]`` are different keys."""

    s: str
    p: Annotated[float, msgspec.Meta(gt=0.0, le=MAX_PRICE)]
    t: Annotated[int, msgspec.Meta(gt=0, le=MAX_TIME_MS)]
    v: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_VOLUME)]
    c: (
        Annotated[
            tuple[Annotated[str, msgspec.Meta(max_length=MAX_CONDITION_LEN)], ...],
            msgspec.Meta(max_length=MAX_CONDITIONS),
        ]
        | None
    ) = None


class _TradeFrame(msgspec.Struct):
    """A trade frame every element of which decodes as a `_Trade` (else the decode fails)."""

    type: Literal["trade"]
    data: list[_Trade]


_decode_trade_frame = msgspec.json.Decoder(_TradeFrame).decode
# UnicodeEncodeError: a str holding a lone surrogate (msgspec reads a str as UTF-8).
_DECODE_FAILED = (msgspec.ValidationError, msgspec.DecodeError, UnicodeEncodeError)


class FrameParser:
    """Accumulates the good trades of successive frames until `take` collects them.

    Counters: `trades` (good trades), `frames` (accepted trade frames), `pings`, `errors`
    (server error frames, text in `last_error`), `received` (everything given to `parse`), and
    `pending` (good trades waiting for `take`).
    """

    def __init__(
        self,
        drops: Drops,
        dedup: DuplicateFilter | None,
        max_frame_bytes: int = 1_048_576,
        *,
        max_future_ms: int | None = None,
        max_age_ms: int | None = None,
    ) -> None:
        self.drops = drops
        self.dedup = dedup  # rotated on the receive times of the frames
        self.max_frame_bytes = max_frame_bytes
        # Trade times allowed around the receive time (None: no bound on that side).
        self.max_future_ms = max_future_ms
        self.max_age_ms = max_age_ms
        self._t_lo = 0  # this frame's bounds: lo < t <= hi
        self._t_hi = MAX_TIME_MS
        # symbol -> flat rows [t, p, v, c, t, p, v, c, ...] (mixed types, split by stride in `take`)
        self._rows: defaultdict[str, list[Any]] = defaultdict(list)
        # one (recv_time, trades per symbol) entry per frame that kept trades: the recv runs
        self._log: list[tuple[float, Counter[str]]] = []
        # Symbols whose trades passed every check (the fast path's proof), within the allowed.
        self._sym_ok: set[str] = set()
        # The subscribed symbols (None: all pass), and the unsubscribed ones still passing until
        # the receive time given (the earliest such time in `_leaving_next`).
        self._allowed: frozenset[str] | None = None
        self._leaving: dict[str, float] = {}
        self._leaving_next = float("inf")
        # Validated conditions -> one shared list per distinct value (None -> None).
        self._conds: dict[_Conditions | None, list[str] | None] = {None: None}
        self.pending = 0
        self.trades = 0
        self.frames = 0
        self.pings = 0
        self.errors = 0
        self.received = 0
        self.last_error: str | None = None

    def set_subscribed(self, symbols: Iterable[str], recv_time: float) -> None:
        """From now on only `symbols` pass, and those removed by this call until `recv_time`
        plus `UNSUBSCRIBE_GRACE` (see the module docstring)."""
        new = frozenset(symbols)
        old = self._allowed
        leaving = self._leaving
        if old is not None:
            until = recv_time + UNSUBSCRIBE_GRACE
            for symbol in old - new:
                leaving[symbol] = until
        for symbol in new & leaving.keys():
            del leaving[symbol]
        self._leaving_next = min(leaving.values(), default=float("inf"))
        self._allowed = new
        self._sym_ok.intersection_update(new | leaving.keys())

    def _expire_leaving(self, recv_time: float) -> None:
        leaving = self._leaving
        for symbol in [s for s, until in leaving.items() if until < recv_time]:
            del leaving[symbol]
            self._sym_ok.discard(symbol)
        self._leaving_next = min(leaving.values(), default=float("inf"))

    def parse(self, frame: str | bytes, recv_time: float) -> None:
        """Validate one websocket frame received at `recv_time` (epoch seconds); never raises."""
        self.received += 1
        drops = self.drops
        if not isinstance(frame, str):
            size = len(frame) if isinstance(frame, bytes | bytearray | memoryview) else 0
            drops.add("binary_frame", detail=f"{type(frame).__name__}, {size} bytes", size=size)
            return
        if len(frame) > self.max_frame_bytes:
            size = len(frame)
            drops.add("oversized_frame", detail=f"{size} chars > {self.max_frame_bytes}", size=size)
            return
        try:
            trades = _decode_trade_frame(frame).data
        except _DECODE_FAILED:
            pass  # anything but a trade frame of well-typed trades: read it again, below
        else:
            self.frames += 1
            if trades:
                self._trades(trades, recv_time, True)
            return
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            # Only to classify NaN/Infinity/1e400 per trade; anything else is malformed.
            try:
                msg = json.loads(frame)
            except Exception:  # ValueError, RecursionError on deep nesting
                drops.add("malformed_json", detail=str(exc))
                return
        if type(msg) is not dict:
            drops.add("not_an_object", detail=type(msg).__name__)
            return
        kind = msg.get("type")
        if kind == "trade":
            data = msg.get("data")
            if type(data) is not list:
                drops.add("bad_data", detail=type(data).__name__)
                return
            self.frames += 1
            if data:
                self._trades(data, recv_time, False)
        elif kind == "ping":
            self.pings += 1
        elif kind == "error":
            self.errors += 1
            text = msg.get("msg")
            text = text if type(text) is str else repr(text)
            self.last_error = text[:500]
            drops.add("server_error", detail=text)
        else:
            drops.add("unknown_type", detail=repr(kind)[:50])

    def _trades(self, data: list[Any], recv_time: float, decoded: bool) -> None:
        """Validate, dedup and append the trades of one frame, column by column: `data` holds
        `_Trade` structs when `decoded`, else the JSON values."""
        if recv_time > self._leaving_next:
            self._expire_leaving(recv_time)
        recv_ms = int(recv_time * 1000)
        self._t_lo = 0 if self.max_age_ms is None else max(0, recv_ms - self.max_age_ms)
        self._t_hi = (
            MAX_TIME_MS
            if self.max_future_ms is None
            else min(MAX_TIME_MS, recv_ms + self.max_future_ms)
        )
        cols = self._fast_columns(data) if decoded else None
        if cols is None:
            data = self._check_each(data, decoded)
            if not data:
                return
            cols = (
                [d.s for d in data],
                [d.p for d in data],
                [d.t for d in data],
                [d.v for d in data],
                list(map(self._shared, [d.c for d in data])),
            )
        ss, ps, ts, vs, cs = cols
        n = len(ss)
        dedup = self.dedup
        if dedup is not None:
            dedup.rotate_if_due(recv_time)
            hs = list(map(hash, data))
            dupset, repeats = dedup.frame(hs, ts)
            if dupset or repeats:
                if repeats:
                    # A hash repeated inside the frame: keep only its first occurrence (the
                    # dict keeps the last write, hence reversed), and none if seen before.
                    first = dict(zip(reversed(hs), range(n - 1, -1, -1), strict=True))
                    for h in dupset:
                        first[h] = -1
                    gone = list(compress(range(n), map(ne, map(first.__getitem__, hs), range(n))))
                else:
                    gone = list(compress(range(n), map(dupset.__contains__, hs)))
                self.drops.add("duplicate", len(gone))
                if len(gone) <= 16:  # the usual few: cheaper than rebuilding five lists
                    for i in reversed(gone):
                        del ss[i], ps[i], ts[i], vs[i], cs[i]
                else:  # many (a whole frame resent): linear, not quadratic
                    keep = [True] * n
                    for i in gone:
                        keep[i] = False
                    ss = list(compress(ss, keep))
                    ps = list(compress(ps, keep))
                    ts = list(compress(ts, keep))
                    vs = list(compress(vs, keep))
                    cs = list(compress(cs, keep))
                n -= len(gone)
                if not n:
                    return
        # One C-level pass: extend each symbol's flat row list (the defaultdict creates new
        # ones) with (t, p, v, c).
        deque(map(_extend, map(self._rows.__getitem__, ss), zip(ts, ps, vs, cs, strict=True)), 0)
        self._log.append((recv_time, Counter(ss)))
        self.trades += n
        self.pending += n

    def _fast_columns(
        self, data: Sequence[_Trade]
    ) -> tuple[list[str], list[float], list[int], list[float], list[list[str] | None]] | None:
        """The columns of decoded trades if every one is certainly valid, else None.

        Types and static bounds were checked by the decoder; what is left is one C-level pass
        per test over a column: times against this frame's bounds, symbols and conditions
        against the caches of validated ones (a hit proves validity, and the cached conditions
        list replaces the trade's own: see the module docstring)."""
        ts = [d.t for d in data]
        if min(ts) <= self._t_lo or max(ts) > self._t_hi:
            return None
        ss = [d.s for d in data]
        if not self._sym_ok.issuperset(ss):
            return None
        try:
            cs = list(map(self._conds.__getitem__, [d.c for d in data]))
        except KeyError:
            return None
        return ss, [d.p for d in data], ts, [d.v for d in data], cs

    def _check_each(self, data: list[Any], decoded: bool) -> list[_Trade]:
        """The good trades of a frame, checking each one and counting the drops by reason."""
        check = self._check_decoded if decoded else self._check_trade
        good: list[_Trade] = []
        reasons: dict[str, int] = {}
        for d in data:
            r = check(d)
            if isinstance(r, str):
                reasons[r] = reasons.get(r, 0) + 1
            else:
                good.append(r)
        drops = self.drops
        for reason, n in reasons.items():
            drops.add(reason, n)
        return good

    def _check_decoded(self, d: _Trade) -> str | _Trade:
        """The checks a decoded trade has not had yet: the drop reason, or the trade."""
        if not symbol_ok(d.s):
            return "bad_symbol"
        return self._admit(d.s, d.p, d.t, d.v, d.c)

    def _check_trade(self, d: object) -> str | _Trade:
        """Full validation of one trade (a JSON value): the drop reason, or the trade."""
        if type(d) is not dict:
            return "bad_trade"
        try:
            s = d["s"]
            p = d["p"]
            t = d["t"]
            v = d["v"]
        except KeyError:
            return "missing_field"
        if not symbol_ok(s):
            return "bad_symbol"
        if type(p) not in _NUM or type(v) not in _NUM or type(t) is not int:
            return "bad_type"
        try:
            p = float(p)
        except OverflowError:  # huge int from the stdlib fallback
            return "nonfinite_price"
        if not isfinite(p):
            return "nonfinite_price"
        if not 0.0 < p <= MAX_PRICE:
            return "bad_price"
        try:
            v = float(v)
        except OverflowError:
            return "bad_volume"
        if not 0.0 <= v <= MAX_VOLUME:  # False for NaN
            return "bad_volume"
        if not 0 < t <= MAX_TIME_MS:
            return "bad_time"
        return self._admit(s, p, t, v, d.get("c"))

    def _admit(self, s: str, p: float, t: int, v: float, c: object) -> str | _Trade:
        """The checks against this frame and this parser's state, for a trade whose fields are
        valid alone; fills the cache of symbols the fast path relies on (the conditions are
        cached when the kept trades' columns are built)."""
        if t > self._t_hi:
            return "future_time"
        if t <= self._t_lo:
            return "too_old"
        conditions: _Conditions | None = None
        if c is not None:
            if not (
                isinstance(c, list | tuple)
                and len(c) <= MAX_CONDITIONS
                and all(type(x) is str and len(x) <= MAX_CONDITION_LEN for x in c)
            ):
                return "bad_conditions"
            conditions = tuple(c)
        sym_ok = self._sym_ok
        if s not in sym_ok:
            allowed = self._allowed
            if allowed is not None and s not in allowed and s not in self._leaving:
                return "unsubscribed"
            if len(sym_ok) >= _MAX_CACHED_SYMBOLS:
                sym_ok.clear()
            sym_ok.add(s)
        return _Trade(s, p, t, v, conditions)

    def _shared(self, conditions: _Conditions | None) -> list[str] | None:
        """The one list shared by every trade with these (valid) conditions, cached."""
        conds = self._conds
        shared = conds.get(conditions)
        if shared is None and conditions is not None:
            if len(conds) >= _MAX_CACHED_CONDITIONS:
                conds.clear()
                conds[None] = None
            shared = conds[conditions] = list(conditions)
        return shared

    def take(self) -> list[SymbolBatch]:
        """Return the pending trades as one batch per symbol (first-seen order) and clear them."""
        pending = self._rows
        if not pending:
            return []
        log = self._log
        self._rows = defaultdict(list)
        self._log = []
        self.pending = 0
        runs: defaultdict[str, list[tuple[float, int]]] = defaultdict(list)
        if len({when for when, _ in log}) == len(log):
            # Distinct receive times (the norm): one run per symbol per frame, built in C.
            for when, counts in log:
                deque(
                    map(_append, map(runs.__getitem__, counts), zip(repeat(when), counts.values())),
                    0,
                )
        else:  # equal receive times: merge a symbol's consecutive runs that share one
            for when, counts in log:
                for symbol, n in counts.items():
                    sym_runs = runs[symbol]
                    if sym_runs and sym_runs[-1][0] == when:
                        sym_runs[-1] = (when, sym_runs[-1][1] + n)
                    else:
                        sym_runs.append((when, n))
        return [
            SymbolBatch(
                symbol=symbol,
                t=rows[0::4],
                p=rows[1::4],
                v=rows[2::4],
                c=rows[3::4],
                recv=runs[symbol],
            )
            for symbol, rows in pending.items()
        ]
