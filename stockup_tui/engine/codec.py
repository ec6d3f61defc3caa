"""The one message format of every bus (memory, Kafka, RabbitMQ): a trade batch or a watermark.

A message is a versioned JSON object encoded with orjson, either one `SymbolBatch`::

    {"v": 1, "kind": "trades", "s": "AAPL", "t": [ms, ...], "p": [price, ...],
     "q": [volume, ...], "c": [["1", "12"] | null, ...], "r": [[recv_epoch_s, n], ...],
     "id": ["producer", seq]}

or one `Watermark`, written by the query side into every partition::

    {"v": 1, "kind": "wm", "wm": ms, "final": false}

or a *group*: the batches of every symbol one flush routes to one partition, in one message
(`encode_group`; what the publisher sends whenever the bus can say where a symbol goes)::

    {"v": 1, "kind": "group", "id": ["producer", seq], "s": ["AAPL", "MSFT"], "n": [2, 1],
     "t": [ms, delta, delta], "p": [...], "q": [...], "r": [[recv, n], ...], "rn": [1, 1],
     "c": [...]}

Its columns hold the symbols' trades one symbol after the other (`n` trades each, `rn` receive
runs each); `t` is delta-encoded (the first absolute); `c` is left out when every trade's is
null. It decodes into one `SymbolBatch` per symbol, each with the group's id: at a live pace a
flush holds about one trade per symbol, and a message per symbol cost more than 100 bytes and a
bus record per trade.

``id`` (optional) names the batch: the producer's random id and a sequence number that grows with
every batch it publishes; the analyzer applies a batch id at most once.

Columns rather than one object per trade keep the payload small and let `decode_batch` validate
with C-level builtins (`set(map(type, col))`, `min`, `max`, `sum`) instead of a Python loop per
trade. A group, the record every bus carries at a live pace, is first read by msgspec into typed
columns with their static bounds (`_GroupWire`, half the time of orjson and the checks after it);
anything it declines is read again the orjson way, which names the fault. Anyone who can write
to a topic can send us bytes, so decoding trusts nothing: every field is checked for exact type,
range and length, and a failure raises `CodecError` whose `reason` is a short drop-counter key.

The trade validity limits (`MAX_PRICE`, `MAX_TIME_MS`, ...) live here because they are part of
the format; the websocket parser imports them so that everything it emits can cross a bus.

Longer than most modules on purpose: it is the whole wire contract, every record kind's encoder
beside its validating decoder, so that a change to one is made next to the other.
"""

from __future__ import annotations

from itertools import accumulate, chain, repeat
from math import isfinite
from operator import itemgetter, sub
from typing import Annotated, Any, Literal

import msgspec
import orjson

from .model import SymbolBatch, SymbolSnapshot, Watermark, WindowMetrics

SCHEMA_VERSION = 1
KIND_TRADES = "trades"
KIND_WATERMARK = "wm"
KIND_GROUP = "group"

MAX_SYMBOL_LEN = 50
#: Prices above this are treated as garbage: it keeps `price * volume` sums far from overflow.
MAX_PRICE = 1e12
#: Volumes above this are garbage for the same reason (crypto lots reach 1e11, not 1e15).
MAX_VOLUME = 1e15
#: 2200-01-01T00:00:00Z in epoch milliseconds; later exchange times are absurd.
MAX_TIME_MS = 7_258_118_400_000
#: Trades per message; the parser flushes far smaller batches.
MAX_TRADES_PER_MESSAGE = 100_000
#: Payload bytes, checked before parsing (100,000 trades with long conditions fit easily).
MAX_MESSAGE_BYTES = 32 * 1024 * 1024

_KEYS = frozenset(("v", "kind", "s", "t", "p", "q", "c", "r"))
_KEYS_ID = _KEYS | {"id"}
MAX_PRODUCER_LEN = 64
_INT = frozenset((int,))
_FLOAT = frozenset((float,))
_NUM = frozenset((int, float))
_STR = frozenset((str,))
_COND = frozenset((list, type(None)))
_LIST = frozenset((list,))
_Count = Annotated[int, msgspec.Meta(ge=1)]
_Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]

#: A decoded message before validation: orjson gives any JSON value for each field, and the
#: checks below test exact types with C-level passes (`set(map(type, col))`) that mypy cannot
#: follow, so the fields stay `Any` until they are checked.
_JSONObject = dict[str, Any]


class CodecError(ValueError):
    """A message that cannot be decoded; `reason` is the drop-counter key.

    Reasons: ``malformed_json``, ``oversized_message``, ``wrong_version``, ``wrong_schema``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def symbol_ok(s: object) -> bool:
    """True for a non-empty str of at most 50 printable chars without spaces.

    `str.isprintable` rejects control chars, line/paragraph separators, non-ASCII spaces, format
    chars and lone surrogates in C; only the ASCII space needs its own test. A valid symbol is
    therefore always encodable as UTF-8 (the partition key).
    """
    return type(s) is str and 0 < len(s) <= MAX_SYMBOL_LEN and s.isprintable() and " " not in s


# Symbols that passed `symbol_ok`, so that a group's symbols are checked in one C-level pass
# (cleared when full: a topic of random symbols cannot grow it without bound).
_SYMBOLS_SEEN: set[str] = set()
_MAX_SYMBOLS_SEEN = 100_000


def _symbols_ok(symbols: list[Any]) -> bool:
    """`symbol_ok` for every element of `symbols`, remembering the ones that passed."""
    seen = _SYMBOLS_SEEN
    try:
        if seen.issuperset(symbols):
            return True
    except TypeError:  # an unhashable element: not a symbol
        return False
    if not all(map(symbol_ok, symbols)):
        return False
    if len(seen) > _MAX_SYMBOLS_SEEN:
        seen.clear()
    seen.update(symbols)
    return True


def encode_batch(batch: SymbolBatch) -> bytes:
    """Serialize one batch; the batch is trusted (it comes from the parser or the decoder)."""
    return orjson.dumps(
        {
            "v": SCHEMA_VERSION,
            "kind": KIND_TRADES,
            "s": batch.symbol,
            "t": batch.t,
            "p": batch.p,
            "q": batch.v,
            "c": batch.c,
            "r": batch.recv,
            **({"id": batch.bid} if batch.bid is not None else {}),
        }
    )


def encode_watermark(mark: Watermark) -> bytes:
    return orjson.dumps(
        {"v": SCHEMA_VERSION, "kind": KIND_WATERMARK, "wm": mark.wm_ms, "final": mark.final}
    )


#: The key of watermark records (they go to every partition explicitly, not by key).
WATERMARK_KEY = b""
#: The key of a group record: its partition is explicit (the bus's `route`), not by key. The
#: space keeps it apart from every symbol's key (`symbol_ok` refuses spaces).
GROUP_KEY = b"~ group"
#: A partition's batches of one flush go out in groups of at most this many trades (a larger
#: `bus.max_batch` would otherwise make one message past the broker's size limit); a single
#: symbol's batch is never split.
GROUP_MAX_TRADES = 10_000


def encode_group(batches: list[SymbolBatch], producer: str, seq: int) -> bytes:
    """One message for the batches of several symbols (distinct, one partition's); trusted."""
    t: list[int] = []
    p: list[float] = []
    q: list[float] = []
    c: list[list[str] | None] = []
    r: list[tuple[float, int]] = []
    for b in batches:
        t += b.t
        p += b.p
        q += b.v
        c += b.c
        r += b.recv
    deltas = t[:1]
    deltas += map(sub, t[1:], t[:-1])
    obj: dict[str, object] = {
        "v": SCHEMA_VERSION,
        "kind": KIND_GROUP,
        "id": (producer, seq),
        "s": [b.symbol for b in batches],
        "n": [len(b.t) for b in batches],
        "t": deltas,
        "p": p,
        "q": q,
        "r": r,
        "rn": [len(b.recv) for b in batches],
    }
    if c.count(None) != len(c):  # some trade has conditions (even an empty list)
        obj["c"] = c
    return orjson.dumps(obj)


def message_key(batch: SymbolBatch) -> bytes:
    """The partition key: the symbol in UTF-8, so one symbol's batches stay in order."""
    return batch.symbol.encode()


def _schema(msg: str) -> CodecError:
    return CodecError("wrong_schema", msg)


def _check_numbers(
    col: list[Any], name: str, low: float, high: float, allow_low: bool
) -> list[float]:
    """Validate a price/volume column with C-level passes; return it as floats."""
    types = set(map(type, col))
    if not types <= _NUM:  # bool, str, None, containers
        raise _schema(f"{name}: non-numeric values")
    if not col:
        return col
    lo = min(col)
    hi = max(col)
    # orjson never yields NaN/inf, but `sum` propagates them, so this costs little and makes the
    # check independent of the JSON library.
    if not isfinite(sum(col)):
        raise _schema(f"{name}: non-finite value")
    if (lo < low if allow_low else lo <= low) or hi > high:
        raise _schema(f"{name}: value out of range [{lo}, {hi}]")
    if types <= _FLOAT:
        return col
    return list(map(float, col))


def _load(payload: bytes | bytearray | memoryview | str) -> _JSONObject:
    """The size, JSON and version checks every message kind starts with."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise CodecError("oversized_message", f"{len(payload)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CodecError("malformed_json", str(exc)) from None
    if type(obj) is not dict:
        raise _schema(f"message is a {type(obj).__name__}, not an object")
    version = obj.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise CodecError("wrong_version", f"version {version!r}, expected {SCHEMA_VERSION}")
    return obj


_WATERMARK_KEYS = frozenset(("v", "kind", "wm", "final"))


def decode_record(
    payload: bytes | bytearray | memoryview | str,
) -> SymbolBatch | Watermark | list[SymbolBatch]:
    """Parse and fully validate one bus message; raise `CodecError` on anything unexpected.
    A group decodes into its symbols' batches."""
    if len(payload) <= MAX_MESSAGE_BYTES:
        batches = _fast_group(payload)
        if batches is not None:
            return batches
    obj = _load(payload)
    kind = obj.get("kind")
    if kind == KIND_GROUP:
        return _group(obj)
    if kind == KIND_WATERMARK:
        if obj.keys() != _WATERMARK_KEYS:
            raise _schema(f"watermark fields {sorted(obj)} != {sorted(_WATERMARK_KEYS)}")
        wm, final = obj["wm"], obj["final"]
        if type(wm) is not int or not 0 < wm <= MAX_TIME_MS or type(final) is not bool:
            raise _schema(f"watermark {wm!r:.40} / final {final!r:.10} invalid")
        return Watermark(wm, final)
    return _batch(obj)


def decode_batch(payload: bytes | bytearray | memoryview | str) -> SymbolBatch:
    """Parse and fully validate one trades message; raise `CodecError` on anything else."""
    return _batch(_load(payload))


def _batch_id(bid: object) -> tuple[str, int]:
    if not (
        type(bid) is list
        and len(bid) == 2
        and type(bid[0]) is str
        and 0 < len(bid[0]) <= MAX_PRODUCER_LEN
        and bid[0].isprintable()
        and type(bid[1]) is int
        and 0 <= bid[1] < 2**63
    ):
        raise _schema(f"id must be [producer, seq], got {bid!r:.80}")
    return bid[0], bid[1]


_GROUP_KEYS = frozenset(("v", "kind", "id", "s", "n", "t", "p", "q", "r", "rn"))
_GROUP_KEYS_C = _GROUP_KEYS | {"c"}


def _counts(col: object, name: str, size: int, low: int) -> list[int]:
    if type(col) is not list or len(col) != size or not set(map(type, col)) <= _INT:
        raise _schema(f"{name}: {size} integers expected")
    if size and min(col) < low:
        raise _schema(f"{name}: counts below {low}")
    return col


class _GroupWire(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A group as msgspec decodes it, types and static bounds checked in C: what `_group`
    checks field by field. Anything it declines is read again by the orjson path, which
    says why (the same decisions; a property test holds both paths to it)."""

    v: Literal[1]
    kind: Literal["group"]
    id: tuple[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PRODUCER_LEN)], _Seq]
    s: list[str]
    n: list[_Count]
    t: list[int]
    p: list[Annotated[float, msgspec.Meta(gt=0.0, le=MAX_PRICE)]]
    q: list[Annotated[float, msgspec.Meta(ge=0.0, le=MAX_VOLUME)]]
    r: list[tuple[Annotated[float, msgspec.Meta(ge=0.0, le=MAX_TIME_MS / 1000.0)], _Count]]
    rn: list[_Count]
    c: list[list[str] | None] | None = None


_decode_group = msgspec.json.Decoder(_GroupWire).decode


def _fast_group(payload: bytes | bytearray | memoryview | str) -> list[SymbolBatch] | None:
    """A group through the typed decoder, or None to read it the slow way (any other kind, or
    anything wrong: the slow way names it)."""
    try:
        g = _decode_group(payload)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    bid = g.id
    if not bid[0].isprintable():
        return None
    try:
        _check_symbols(g.s)
        return _group_batches(bid, g.s, g.n, g.t, g.p, g.q, g.c, g.r, g.rn)
    except CodecError:
        return None


def _check_symbols(symbols: object) -> None:
    if type(symbols) is not list or not symbols or not _symbols_ok(symbols):
        raise _schema("s: a non-empty array of symbols expected")
    if len(set(symbols)) != len(symbols):
        raise _schema("s: a symbol appears twice")


def _group(obj: _JSONObject) -> list[SymbolBatch]:
    keys = obj.keys()
    if keys != _GROUP_KEYS and keys != _GROUP_KEYS_C:
        raise _schema(f"group fields {sorted(obj)} != {sorted(_GROUP_KEYS)} (+ optional c)")
    bid = _batch_id(obj["id"])
    symbols = obj["s"]
    _check_symbols(symbols)
    k = len(symbols)
    sizes = _counts(obj["n"], "n", k, 1)
    t, p, q, r = obj["t"], obj["p"], obj["q"], obj["r"]
    if not (type(t) is list and type(p) is list and type(q) is list and type(r) is list):
        raise _schema("t, p, q and r must be arrays")
    if not set(map(type, t)) <= _INT:
        raise _schema("t: non-integer values")
    if len(p) != len(t) or len(q) != len(t):
        raise _schema(f"column lengths differ: t={len(t)} p={len(p)} q={len(q)}")
    p = _check_numbers(p, "p", 0.0, MAX_PRICE, allow_low=False)
    q = _check_numbers(q, "q", 0.0, MAX_VOLUME, allow_low=True)
    c = obj.get("c")
    if c is not None:
        if type(c) is not list:
            raise _schema(f"c: {len(t)} entries expected")
        if (
            not set(map(type, c)) <= _COND
            or not set(map(type, chain.from_iterable(filter(None, c)))) <= _STR
        ):
            raise _schema("c: entries must be null or arrays of strings")
    runs = _counts(obj["rn"], "rn", k, 1)
    if not set(map(type, r)) <= _LIST or not set(map(len, r)) <= {2}:
        raise _schema("r: runs must be [recv_time, n] pairs")
    if r:
        times, counts = zip(*r, strict=True)
        _counts(list(counts), "r", len(r), 1)
        recv_s = _check_numbers(list(times), "r", 0.0, float(MAX_TIME_MS) / 1000.0, True)
        r = list(zip(recv_s, counts, strict=True))
    return _group_batches(bid, symbols, sizes, t, p, q, c, r, runs)


def _group_batches(
    bid: tuple[str, int],
    symbols: list[Any],
    sizes: list[int],
    deltas: list[int],
    p: list[float],
    q: list[float],
    c: list[list[str] | None] | None,
    recv: list[tuple[float, int]],
    runs: list[int],
) -> list[SymbolBatch]:
    """A group's batches from its columns, each of the right type and static range: the checks
    across columns, the same for both ways of reading one (symbols checked first)."""
    k = len(symbols)
    if len(sizes) != k or len(runs) != k:
        raise _schema(f"n and rn: {k} integers expected, one per symbol")
    n = len(deltas)
    if n > MAX_TRADES_PER_MESSAGE:
        raise _schema(f"{n} trades > {MAX_TRADES_PER_MESSAGE}")
    if sum(sizes) != n or len(p) != n or len(q) != n:
        raise _schema(f"column lengths differ: n={sum(sizes)} t={n} p={len(p)} q={len(q)}")
    t = list(accumulate(deltas))
    if min(t) <= 0 or max(t) > MAX_TIME_MS:
        raise _schema("t: time out of range")
    if c is None:
        c = [None] * n
    elif len(c) != n:
        raise _schema(f"c: {n} entries expected")
    if sum(runs) != len(recv):
        raise _schema(f"rn: {sum(runs)} runs named, r holds {len(recv)}")
    # Each symbol's runs must cover exactly its trades: the trades counted up to its last run
    # are the trades up to its last trade. Column passes, no Python loop per symbol.
    ends = list(accumulate(sizes))
    run_ends = list(accumulate(runs))
    covered = [0, *accumulate(map(itemgetter(1), recv))]  # trades counted before run i
    if list(map(covered.__getitem__, run_ends)) != ends:
        for symbol, size, end, run_end in zip(symbols, sizes, ends, run_ends, strict=True):
            if covered[run_end] != end:
                raise _schema(f"r: the runs of {symbol} do not cover its {size} trades")
    cut = list(map(slice, [0, *ends[:-1]], ends))
    return list(
        map(
            SymbolBatch,
            symbols,
            map(t.__getitem__, cut),
            map(p.__getitem__, cut),
            map(q.__getitem__, cut),
            map(c.__getitem__, cut),
            map(recv.__getitem__, map(slice, [0, *run_ends[:-1]], run_ends)),
            repeat(bid),
        )
    )


def _batch(obj: _JSONObject) -> SymbolBatch:
    keys = obj.keys()
    if keys != _KEYS and keys != _KEYS_ID:
        raise _schema(f"fields {sorted(obj)} != {sorted(_KEYS)} (+ optional id)")
    bid = _batch_id(obj["id"]) if keys == _KEYS_ID else None
    if obj["kind"] != KIND_TRADES:
        raise _schema(f"kind {obj['kind']!r} != {KIND_TRADES!r}")
    symbol = obj["s"]
    if not symbol_ok(symbol):
        raise _schema(f"bad symbol {symbol!r:.80}")
    t = obj["t"]
    p = obj["p"]
    q = obj["q"]
    c = obj["c"]
    r = obj["r"]
    if not (type(t) is list and type(p) is list and type(q) is list and type(c) is list):
        raise _schema("t, p, q and c must be arrays")
    if type(r) is not list:
        raise _schema("r must be an array")
    n = len(t)
    if n > MAX_TRADES_PER_MESSAGE:
        raise _schema(f"{n} trades > {MAX_TRADES_PER_MESSAGE}")
    if not (len(p) == n and len(q) == n and len(c) == n):
        raise _schema(f"column lengths differ: t={n} p={len(p)} q={len(q)} c={len(c)}")

    if n:
        if not set(map(type, t)) <= _INT:  # exact: bool is not an int here
            raise _schema("t: non-integer values")
        if min(t) <= 0 or max(t) > MAX_TIME_MS:
            raise _schema("t: time out of range")
    p = _check_numbers(p, "p", 0.0, MAX_PRICE, allow_low=False)
    q = _check_numbers(q, "q", 0.0, MAX_VOLUME, allow_low=True)
    if not set(map(type, c)) <= _COND:
        raise _schema("c: entries must be null or arrays")
    # `filter(None, c)` skips nulls and empty lists; every remaining element must be a str.
    if not set(map(type, chain.from_iterable(filter(None, c)))) <= _STR:
        raise _schema("c: conditions must be strings")

    if not set(map(type, r)) <= _LIST or not set(map(len, r)) <= {2}:
        raise _schema("r: runs must be [recv_time, n] pairs")
    if r:
        times, counts = zip(*r, strict=True)
        if not set(map(type, counts)) <= _INT or min(counts) < 1:
            raise _schema("r: run lengths must be positive integers")
        if sum(counts) != n:
            raise _schema(f"r: runs cover {sum(counts)} trades, batch has {n}")
        recv_s = _check_numbers(list(times), "r", 0.0, float(MAX_TIME_MS) / 1000.0, True)
        recv = list(zip(recv_s, counts, strict=True))
    elif n:
        raise _schema(f"r: no runs for {n} trades")
    else:
        recv = []
    return SymbolBatch(symbol=symbol, t=t, p=p, v=q, c=c, recv=recv, bid=bid)


# -- window snapshots (the Kafka metrics topic) ------------------------------------------------

KIND_SNAPSHOT = "snapshot"
_SNAPSHOT_KEYS = frozenset(("v", "kind", "s", "ts", "lp", "lt", "w"))
_WINDOW_FIELDS = (
    "window_ms",
    "count",
    "volume",
    "first",
    "last",
    "min",
    "max",
    "mean",
    "vwap",
    "change",
    "change_pct",
    "rate",
)
_MAX_WINDOWS = 32


def encode_snapshot(snap: SymbolSnapshot) -> bytes:
    """One emitted snapshot as versioned JSON; each window as an array in `_WINDOW_FIELDS` order."""
    return orjson.dumps(
        {
            "v": SCHEMA_VERSION,
            "kind": KIND_SNAPSHOT,
            "s": snap.symbol,
            "ts": snap.ts_ms,
            "lp": snap.last_price,
            "lt": snap.last_trade_ms,
            "w": [[getattr(w, f) for f in _WINDOW_FIELDS] for w in snap.windows],
        }
    )


def _opt_number(x: object) -> bool:
    return x is None or ((type(x) is int or type(x) is float) and isfinite(x))


def decode_snapshot(payload: bytes | bytearray | memoryview | str) -> SymbolSnapshot:
    """Parse and validate one metrics-topic message; raise `CodecError` on anything unexpected."""
    obj = _load(payload)
    if obj.keys() != _SNAPSHOT_KEYS or obj["kind"] != KIND_SNAPSHOT:
        raise _schema(f"snapshot fields {sorted(obj)}")
    symbol, ts, lp, lt, windows = obj["s"], obj["ts"], obj["lp"], obj["lt"], obj["w"]
    if not symbol_ok(symbol):
        raise _schema(f"bad symbol {symbol!r:.80}")
    if type(ts) is not int or not 0 < ts <= MAX_TIME_MS:
        raise _schema("ts out of range")
    if not _opt_number(lp) or not (lt is None or (type(lt) is int and 0 < lt <= MAX_TIME_MS)):
        raise _schema("last price / time invalid")
    if type(windows) is not list or not 0 < len(windows) <= _MAX_WINDOWS:
        raise _schema("w must be a non-empty array")
    out = []
    for w in windows:
        if type(w) is not list or len(w) != len(_WINDOW_FIELDS):
            raise _schema("window entries must be arrays of 12 values")
        if type(w[0]) is not int or w[0] <= 0 or type(w[1]) is not int or w[1] < 0:
            raise _schema("window length / count invalid")
        if not all(map(_opt_number, w[2:])) or w[2] is None or w[11] is None:
            raise _schema("window metrics must be finite numbers")
        out.append(WindowMetrics(*w))
    return SymbolSnapshot(symbol, ts, lp, lt, tuple(out))
