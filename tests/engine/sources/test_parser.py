"""FrameParser: every drop reason counted, good trades kept, nothing ever raises."""

from __future__ import annotations

import json
import math

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockup_tui.engine import codec
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.model import SymbolBatch
from stockup_tui.engine.sources import parser as parser_mod
from stockup_tui.engine.sources.dedup import DuplicateFilter
from stockup_tui.engine.sources.parser import FrameParser

T0 = 1_764_085_243_123
GOOD = {"s": "AAPL", "p": 187.43, "t": T0, "v": 100, "c": ["1", "12"]}
TRADE_REASONS = {
    "bad_trade",
    "missing_field",
    "bad_symbol",
    "bad_type",
    "nonfinite_price",
    "bad_price",
    "bad_volume",
    "bad_time",
    "bad_conditions",
    "duplicate",
}


def make(dedup: bool = True, **kw) -> tuple[FrameParser, Drops, None]:
    """A parser whose duplicate filter runs on the receive times the tests give (from 1.0 s)."""
    drops = Drops()
    f = DuplicateFilter(2.0, now=1.0) if dedup else None
    return FrameParser(drops, f, **kw), drops, None


def frame(*trades: object) -> str:
    return json.dumps({"type": "trade", "data": list(trades)})


def trade(**changes: object) -> dict:
    d = dict(GOOD)
    d.update(changes)
    return d


def by_symbol(batches: list[SymbolBatch]) -> dict[str, SymbolBatch]:
    return {b.symbol: b for b in batches}


# --- good input ------------------------------------------------------------------------------


def test_groups_trades_by_symbol_in_columns() -> None:
    p, drops, _ = make()
    p.parse(
        frame(
            trade(s="AAPL", p=1.5, t=T0, v=1),
            trade(s="MSFT", p=2.5, t=T0 + 1, v=2.5, c=None),
            trade(s="AAPL", p=1.75, t=T0 + 2, v=0, c=[]),
        ),
        100.0,
    )
    assert p.pending == 3 and p.trades == 3 and p.frames == 1
    got = by_symbol(p.take())
    assert got["AAPL"] == SymbolBatch(
        "AAPL", [T0, T0 + 2], [1.5, 1.75], [1.0, 0.0], [["1", "12"], []], [(100.0, 2)]
    )
    assert got["MSFT"] == SymbolBatch("MSFT", [T0 + 1], [2.5], [2.5], [None], [(100.0, 1)])
    assert all(type(x) is float for b in got.values() for x in b.p + b.v)
    assert p.pending == 0 and p.take() == []
    assert drops.total == 0


def test_int_price_and_volume_become_floats() -> None:
    p, _, _ = make()
    p.parse(frame(trade(p=97000, v=3)), 1.0)
    (b,) = p.take()
    assert b.p == [97000.0] and type(b.p[0]) is float and type(b.v[0]) is float


def test_recv_runs_per_frame_and_merge_on_equal_time() -> None:
    p, _, _ = make(dedup=False)
    p.parse(frame(trade(t=T0), trade(t=T0 + 1), trade(s="X", t=T0 + 2)), 10.0)
    p.parse(frame(trade(t=T0 + 3)), 11.0)
    p.parse(frame(trade(t=T0 + 4), trade(t=T0 + 5)), 11.0)  # same recv time: merged
    p.parse(frame(trade(s="X", t=T0 + 6)), 10.0)  # clock stepped back: a new run
    p.parse(frame(trade(t=T0 + 7)), 10.0)
    got = by_symbol(p.take())
    assert got["AAPL"].recv == [(10.0, 2), (11.0, 3), (10.0, 1)]
    assert got["X"].recv == [(10.0, 2)]  # its previous run has the same time
    for b in got.values():
        assert sum(n for _, n in b.recv) == len(b)


def test_recv_runs_distinct_times() -> None:
    p, _, _ = make(dedup=False)
    for i in range(5):
        p.parse(frame(trade(t=T0 + i), trade(s="B", t=T0 + i)), 1.0 + i)
    got = by_symbol(p.take())
    assert got["AAPL"].recv == [(1.0 + i, 1) for i in range(5)]
    assert got["B"].t == [T0 + i for i in range(5)]


def test_mixed_null_and_list_conditions_on_fast_path() -> None:
    p, _, _ = make()
    p.parse(frame(trade(t=1, c=None), trade(t=2, c=["1"]), trade(t=3, c=[])), 1.0)  # warm
    p.take()
    p.parse(frame(trade(t=4, c=["1"]), trade(t=5, c=None), trade(t=6, c=[]), trade(t=7)), 2.0)
    (b,) = p.take()
    assert b.c == [["1"], None, [], ["1", "12"]]


def test_ping_and_server_error() -> None:
    p, drops, _ = make()
    p.parse('{"type":"ping"}', 1.0)
    p.parse('{"type":"error","msg":"Subscribing to too many symbols"}', 1.0)
    p.parse('{"type":"error"}', 1.0)
    p.parse('{"type":"error","msg":"second"}', 1.0)
    assert p.pings == 1 and p.errors == 3
    assert p.last_error == "second"
    assert drops.get("server_error") == 3
    assert p.take() == []


# --- drops -----------------------------------------------------------------------------------

BAD_TRADES: list[tuple[str, str]] = [
    ("bad_trade", "5"),
    ("bad_trade", "[]"),
    ("bad_trade", '"AAPL"'),
    ("bad_trade", "null"),
    ("missing_field", '{"p": 1.0, "t": 1764085243123, "v": 1}'),
    ("missing_field", '{"s": "A", "t": 1764085243123, "v": 1}'),
    ("missing_field", '{"s": "A", "p": 1.0, "v": 1}'),
    ("missing_field", '{"s": "A", "p": 1.0, "t": 1764085243123}'),
    ("missing_field", "{}"),
]
for _sym in [
    "",
    123,
    None,
    ["A"],
    {"a": 1},
    True,
    "A B",
    "A\tB",
    "A\nB",
    "X" * 51,
    "\u200b",
    "A\x00",
]:
    BAD_TRADES.append(("bad_symbol", json.dumps(trade(s=_sym))))
BAD_TRADES.append(("bad_symbol", '{"s": "\\ud800", "p": 1.0, "t": 1764085243123, "v": 1}'))
for _field, _value in [
    ("p", "1.0"),
    ("p", True),
    ("p", None),
    ("p", [1.0]),
    ("v", False),
    ("v", None),
    ("v", "100"),
    ("t", 1764085243123.0),
    ("t", "1764085243123"),
    ("t", True),
    ("t", None),
]:
    BAD_TRADES.append(("bad_type", json.dumps(trade(**{_field: _value}))))
BAD_TRADES.append(("bad_type", '{"s": "A", "p": 1.0, "t": 1e30, "v": 1}'))
for _value in ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]:
    BAD_TRADES.append(("nonfinite_price", f'{{"s": "A", "p": {_value}, "t": {T0}, "v": 1}}'))
BAD_TRADES.append(("nonfinite_price", f'{{"s": "A", "p": {"9" * 400}, "t": {T0}, "v": 1}}'))
for _value in [0, 0.0, -0.0, -1.5, -5, 1e13]:
    BAD_TRADES.append(("bad_price", json.dumps(trade(p=_value))))
for _value in ["-1", "-0.5", "NaN", "Infinity", "-Infinity", "1e400", "1e16", "9" * 400]:
    BAD_TRADES.append(("bad_volume", f'{{"s": "A", "p": 1.0, "t": {T0}, "v": {_value}}}'))
for _value in [0, -5, 7_258_118_400_001, 10**18, -(10**18)]:
    BAD_TRADES.append(("bad_time", json.dumps(trade(t=_value))))
BAD_TRADES.append(("bad_time", f'{{"s": "A", "p": 1.0, "t": {"9" * 400}, "v": 1}}'))
for _value in ["1", [1], [None], ["1", 2], {"1": "2"}, True, 1.5, ["x" * 33], ["1"] * 65, [["1"]]]:
    BAD_TRADES.append(("bad_conditions", json.dumps(trade(c=_value))))


@pytest.mark.parametrize(("reason", "bad"), BAD_TRADES)
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_bad_trade_dropped_and_good_neighbours_kept(reason: str, bad: str, warm: bool) -> None:
    p, drops, _ = make()
    if warm:  # symbols and conditions cached: the frame starts on the fast path
        p.parse(frame(trade(t=1), trade(s="A", t=1, c=None), trade(s="MSFT", t=1)), 1.0)
        p.take()
    raw = (
        '{"type": "trade", "data": ['
        f"{json.dumps(trade(t=T0 + 1))}, {bad}, {json.dumps(trade(s='MSFT', t=T0 + 2))}"
        "]}"
    )
    p.parse(raw, 5.0)
    assert drops.get(reason) == 1, drops.snapshot()
    assert drops.total == 1, drops.snapshot()
    got = by_symbol(p.take())
    assert got["AAPL"].t == [T0 + 1] and got["MSFT"].t == [T0 + 2]
    assert got["AAPL"].recv == [(5.0, 1)]


def test_zero_volume_allowed() -> None:
    p, drops, _ = make()
    p.parse(frame(trade(v=0), trade(v=0.0, t=T0 + 1)), 1.0)
    assert drops.total == 0 and p.take()[0].v == [0.0, 0.0]


def test_limits_are_inclusive() -> None:
    p, drops, _ = make()
    p.parse(
        frame(
            trade(s="X" * 50, p=codec.MAX_PRICE, t=codec.MAX_TIME_MS, v=codec.MAX_VOLUME),
            trade(s="B", p=5e-324, t=1, v=0),
        ),
        1.0,
    )
    assert drops.total == 0 and p.trades == 2


@pytest.mark.parametrize(
    ("reason", "raw"),
    [
        ("malformed_json", "{"),
        ("malformed_json", ""),
        ("malformed_json", "nul"),
        ("malformed_json", '{"type": "trade", "data": [1,]}'),
        ("malformed_json", "[" * 100_000),
        ("malformed_json", '{"type": "trade"} x'),
        ("not_an_object", "[]"),
        ("not_an_object", "1"),
        ("not_an_object", '"trade"'),
        ("not_an_object", "null"),
        ("not_an_object", "NaN"),
        ("unknown_type", '{"type": "news", "data": []}'),
        ("unknown_type", "{}"),
        ("unknown_type", '{"type": 5}'),
        ("unknown_type", '{"type": ["trade"]}'),
        ("unknown_type", '{"type": "TRADE", "data": []}'),
        ("bad_data", '{"type": "trade"}'),
        ("bad_data", '{"type": "trade", "data": {"s": "A"}}'),
        ("bad_data", '{"type": "trade", "data": "x"}'),
        ("bad_data", '{"type": "trade", "data": null}'),
    ],
)
def test_bad_frames(reason: str, raw: str) -> None:
    p, drops, _ = make()
    p.parse(raw, 1.0)
    assert drops.snapshot() == {reason: 1}
    assert p.frames == 0 and p.take() == []


def test_binary_and_oversized_frames() -> None:
    p, drops, _ = make(max_frame_bytes=120)
    p.parse(frame(GOOD).encode(), 1.0)
    p.parse(bytearray(b"{}"), 1.0)
    p.parse(frame(GOOD, GOOD), 1.0)  # > 120 chars
    p.parse(None, 1.0)  # type: ignore[arg-type]
    assert drops.snapshot() == {"binary_frame": 3, "oversized_frame": 1}
    size = len(frame(GOOD).encode()) + 2
    assert drops.bytes_snapshot() == {
        "binary_frame": size,
        "oversized_frame": len(frame(GOOD, GOOD)),
    }
    p.parse(frame(GOOD), 1.0)
    assert p.trades == 1 and p.received == 5


def test_empty_data_is_a_good_frame() -> None:
    p, drops, _ = make()
    p.parse('{"type":"trade","data":[]}', 1.0)
    assert p.frames == 1 and drops.total == 0 and p.take() == []


def test_all_bad_trades() -> None:
    p, drops, _ = make()
    p.parse(frame(1, 2, {"s": "A"}), 1.0)
    assert drops.snapshot() == {"bad_trade": 2, "missing_field": 1}
    assert p.take() == [] and p.pending == 0


def test_nan_frame_keeps_other_trades() -> None:
    p, drops, _ = make()
    raw = json.dumps(
        {"type": "trade", "data": [trade(p=math.nan), trade(t=T0 + 1), trade(v=math.inf)]}
    )
    assert "NaN" in raw
    p.parse(raw, 1.0)
    assert drops.snapshot() == {"nonfinite_price": 1, "bad_volume": 1}
    assert p.take()[0].t == [T0 + 1]


# --- dedup -----------------------------------------------------------------------------------


def test_duplicates_in_one_frame_and_across_frames() -> None:
    p, drops, _ = make()
    other = trade(t=T0 + 1, c=None)
    p.parse(frame(GOOD, GOOD, other, GOOD), 1.0)
    p.parse(frame(other, trade(t=T0 + 2)), 2.0)
    assert drops.get("duplicate") == 3
    (b,) = p.take()
    assert b.t == [T0, T0 + 1, T0 + 2]
    assert b.recv == [(1.0, 2), (2.0, 1)]


@pytest.mark.parametrize("n", [5, 40])
def test_resent_frame_keeps_only_new_trades_in_order(n: int) -> None:
    p, drops, _ = make()
    old = [trade(s=f"S{i % 3}", t=T0 + i) for i in range(n)]
    p.parse(frame(*old), 1.0)
    p.take()
    new = [trade(s=f"S{i % 3}", t=T0 + 1000 + i) for i in range(n)]
    mixed = [x for pair in zip(old, new, strict=True) for x in pair] + old[:3]
    p.parse(frame(*mixed), 2.0)
    assert drops.get("duplicate") == n + 3
    got = by_symbol(p.take())
    assert sorted(t for b in got.values() for t in b.t) == [d["t"] for d in new]
    for b in got.values():
        assert b.t == sorted(b.t) and b.recv == [(2.0, len(b))]


def test_duplicate_key_is_the_whole_trade() -> None:
    p, drops, _ = make()
    variants = [
        GOOD,
        trade(s="MSFT"),
        trade(p=187.44),
        trade(t=T0 + 1),
        trade(v=101),
        trade(c=["1"]),
        trade(c=None),
        trade(c=[]),
    ]
    p.parse(frame(*variants), 1.0)
    assert drops.total == 0 and p.trades == len(variants)
    p.parse(frame(*variants), 1.0)
    assert drops.get("duplicate") == len(variants)


def test_int_and_float_volume_are_the_same_trade() -> None:
    p, drops, _ = make()
    p.parse(frame(trade(v=100)), 1.0)
    p.parse(frame(trade(v=100.0)), 1.0)
    assert drops.get("duplicate") == 1


def test_duplicate_seen_on_slow_then_fast_path() -> None:
    """The first copy goes through the slow path (unknown symbol), the resend the fast one."""
    for c in (None, ["1", "12"], []):
        p, drops, _ = make()
        t = trade(s="NEW", c=c)
        p.parse(frame(t), 1.0)
        p.parse(frame(trade(s="NEW", t=T0 + 5, c=c), t), 2.0)
        assert drops.get("duplicate") == 1, c
        p.parse(frame(trade(s="NEW", t=T0 + 6, c=["1"]), t), 2.0)  # mixed null/list frame
        assert drops.get("duplicate") == 2, c


def test_resend_after_two_horizons_is_kept() -> None:
    p, drops, _ = make()
    p.parse(frame(GOOD), 1.0)
    p.parse(frame(GOOD), 2.9)
    assert drops.get("duplicate") == 1
    p.parse(frame(trade(t=T0 + 9)), 7.0)  # two rotations since the last copy
    p.parse(frame(GOOD), 9.1)
    assert drops.get("duplicate") == 1
    assert p.trades == 3


def test_no_dedup_keeps_duplicates() -> None:
    p, drops, _ = make(dedup=False)
    p.parse(frame(GOOD, GOOD), 1.0)
    p.parse(frame(GOOD), 1.0)
    assert p.trades == 3 and drops.total == 0
    assert p.take()[0].recv == [(1.0, 3)]


# --- caches ----------------------------------------------------------------------------------


def test_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser_mod, "_MAX_CACHED_SYMBOLS", 10)
    monkeypatch.setattr(parser_mod, "_MAX_CACHED_CONDITIONS", 10)
    p, drops, _ = make()
    for i in range(50):
        p.parse(frame(trade(s=f"S{i}", c=[str(i)]), trade(s=f"S{i}", t=T0 + 1)), 1.0)
    assert len(p._sym_ok) <= 10 and len(p._conds) <= 10
    assert p.trades == 100 and drops.total == 0
    got = by_symbol(p.take())
    assert got["S7"].c == [["7"], ["1", "12"]]


# --- robustness ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
field_values = (
    json_values
    | st.sampled_from(["AAPL", "BINANCE:BTCUSDT", "", "A B", 187.43, T0, 0, -1, 100, ["1", "12"]])
    | st.floats()
    | st.integers(min_value=-(10**30), max_value=10**30)
)
trades_ = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={"s": field_values, "p": field_values, "t": field_values, "v": field_values},
    ).map(lambda d: {**d, "c": d.get("c")}),
    st.fixed_dictionaries(
        {
            "s": st.sampled_from(["AAPL", "MSFT", "X:Y"]),
            "p": st.floats(min_value=0.01, max_value=1e6) | field_values,
            "t": st.integers(min_value=1, max_value=codec.MAX_TIME_MS) | field_values,
            "v": st.integers(min_value=0, max_value=10**6) | st.floats(0, 1e6),
        },
        optional={"c": st.none() | st.lists(st.sampled_from(["1", "12", "37"]), max_size=3)},
    ),
)


def _frame_text(data: list) -> str:
    return json.dumps({"type": "trade", "data": data}, allow_nan=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(trades_, max_size=12), st.booleans())
def test_every_trade_is_kept_or_counted_and_output_is_valid(data: list, warm: bool) -> None:
    p, drops, _ = make()
    if warm:
        p.parse(frame(trade(s="MSFT"), trade(s="X:Y", c=None), trade(c=["1"])), 1.0)
        p.take()
        drops = p.drops = Drops()
        p.trades = 0
    p.parse(_frame_text(data), 2.0)
    counted = sum(n for reason, n in drops.snapshot().items() if reason in TRADE_REASONS)
    assert set(drops.snapshot()) <= TRADE_REASONS
    assert p.trades + counted == len(data)
    assert p.pending == p.trades
    for batch in p.take():
        # Everything the parser emits must be a valid bus message.
        assert codec.decode_batch(codec.encode_batch(batch)) == batch


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_never_raises(value: object) -> None:
    p, _, _ = make()
    p.parse(json.dumps(value), 1.0)
    p.parse(json.dumps({"type": "trade", "data": value}), 1.0)
    p.parse(json.dumps({"type": value, "data": [value], "msg": value}), 1.0)
    p.take()


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary())
def test_arbitrary_text_and_bytes_never_raise(raw: str | bytes) -> None:
    p, _, _ = make()
    p.parse(raw, 1.0)
    if isinstance(raw, bytes):
        p.parse(raw.decode("utf-8", "replace"), 1.0)
    p.take()


def test_a_lone_surrogate_is_a_bad_symbol_or_malformed_not_a_crash() -> None:
    """A str frame holding a lone surrogate cannot be read as UTF-8 (msgspec, orjson): the
    stdlib reads it, and the trade is judged like any other."""
    p, drops, _ = make()
    raw = json.dumps({"type": "trade", "data": [trade(s="\ud800"), GOOD]}, ensure_ascii=False)
    assert "\ud800" in raw  # the surrogate itself, not a JSON escape
    p.parse(raw, 1.0)
    p.parse('{"type": "trade", "data": [\ud800', 1.0)
    assert drops.snapshot() == {"bad_symbol": 1, "malformed_json": 1}
    assert p.trades == 1


def test_frames_from_orjson_and_json_agree() -> None:
    data = [trade(t=T0 + i, s=f"S{i % 3}", c=None if i % 2 else ["1"]) for i in range(20)]
    a, _, _ = make()
    b, _, _ = make()
    a.parse(orjson.dumps({"type": "trade", "data": data}).decode(), 1.0)
    b.parse(json.dumps({"type": "trade", "data": data}, indent=2), 1.0)
    assert a.take() == b.take()


# --- timestamps against the receive time -----------------------------------------------------


def test_times_far_from_the_receive_time_are_dropped_with_their_reason() -> None:
    """Judged against the frame's receive time: one bad trade costs one counted drop."""
    p, drops, _ = make(max_future_ms=5_000, max_age_ms=60_000)
    recv = T0 / 1000
    good = [trade(t=T0 - 60_000 + 1), trade(t=T0), trade(t=T0 + 5_000)]
    bad = [trade(t=T0 + 5_001), trade(t=T0 + 3_600_000), trade(t=T0 - 60_000), trade(t=1)]
    for warm in (False, True):  # the first sight of a symbol, then the fast path
        p.parse(frame(*good, *bad), recv)
        assert [p.take()[0].t] == [[t["t"] for t in good]]
        assert drops.get("future_time") == 2 * (1 + warm)
        assert drops.get("too_old") == 2 * (1 + warm)
        p.dedup.clear()


def test_without_bounds_any_time_before_2200_is_kept() -> None:
    p, drops, _ = make()
    p.parse(frame(trade(t=1), trade(t=codec.MAX_TIME_MS)), 1.0)
    assert p.trades == 2 and drops.total == 0


def test_only_subscribed_symbols_pass_once_a_subscription_is_set() -> None:
    p, drops, _ = make(dedup=False)
    p.parse(frame(trade(s="ANY")), 1.0)  # no subscription yet: everything passes
    p.set_subscribed(["AAPL", "MSFT"], 1.0)
    for warm in range(2):  # the second time on the fast path (validated symbols cached)
        p.parse(frame(trade(t=T0 + warm), trade(s="MSFT"), trade(s="ZZZZ"), trade(s="ANY")), 2.0)
    assert drops.snapshot() == {"unsubscribed": 4}
    got = by_symbol(p.take())
    assert sorted(got) == ["AAPL", "ANY", "MSFT"] and len(got["ANY"].t) == 1
    assert len(got["AAPL"].t) == 2 and len(got["MSFT"].t) == 2


def test_an_unsubscribed_symbol_passes_for_the_grace_then_is_dropped() -> None:
    grace = parser_mod.UNSUBSCRIBE_GRACE
    p, drops, _ = make(dedup=False)
    p.set_subscribed(["AAPL", "MSFT"], 10.0)
    p.parse(frame(trade(s="MSFT")), 10.0)  # cached as validated
    p.set_subscribed(["AAPL"], 20.0)
    p.parse(frame(trade(s="MSFT", t=T0 + 1)), 20.0 + grace)  # in flight: still passes
    assert not drops.snapshot()
    p.parse(frame(trade(s="MSFT", t=T0 + 2), trade(t=T0 + 2)), 20.0 + grace + 0.001)
    assert drops.snapshot() == {"unsubscribed": 1}
    p.set_subscribed(["AAPL", "MSFT"], 30.0)  # back in the watchlist: passes at once
    p.parse(frame(trade(s="MSFT", t=T0 + 3)), 30.0)
    assert drops.snapshot() == {"unsubscribed": 1}
    got = by_symbol(p.take())
    assert got["MSFT"].t == [T0, T0 + 1, T0 + 3] and got["AAPL"].t == [T0 + 2]


def test_a_flood_of_unknown_symbols_leaves_no_state() -> None:
    p, drops, _ = make()
    p.set_subscribed(["AAPL"], 1.0)
    for k in range(50):
        p.parse(frame(*(trade(s=f"Z{k}-{i}") for i in range(200)), trade(t=T0 + k)), 1.0 + k / 10)
    assert drops.snapshot() == {"unsubscribed": 10_000}
    assert p._sym_ok == {"AAPL"} and list(p._rows) == ["AAPL"]
    assert p.pending == 50


def _decline(_frame: str) -> object:
    raise msgspec.ValidationError("declined")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(trades_, max_size=8), min_size=1, max_size=4), st.booleans())
def test_the_typed_decoder_and_the_checks_one_by_one_agree(frames: list, warm: bool) -> None:
    """Whatever the frames, the fast path (msgspec into typed structs, checks by column) keeps
    the same trades, drops the same ones for the same reasons and catches the same resends as
    the reference: every frame read by orjson (or json) and checked trade by trade, which is
    what the parser does when the typed decoder declines a frame."""
    fast, _, _ = make()
    reference, _, _ = make()
    texts = [_frame_text(data) for data in frames]
    if warm:
        texts.insert(0, frame(trade(s="MSFT"), trade(s="X:Y", c=None), trade(c=["1"])))
    texts += texts[-1:]  # a resend of the last frame
    for i, text in enumerate(texts):
        fast.parse(text, 1.0 + i)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(parser_mod, "_decode_trade_frame", _decline)
            reference.parse(text, 1.0 + i)
    assert fast.take() == reference.take()
    assert fast.drops.snapshot() == reference.drops.snapshot()
    assert (fast.trades, fast.frames) == (reference.trades, reference.frames)


def test_a_well_typed_frame_takes_the_typed_decoder() -> None:
    """The fast path is taken (not only agreed with): a frame of good trades of known symbols
    is decoded once, by msgspec, and orjson is not called."""
    p, drops, _ = make()
    p.parse(frame(GOOD), 1.0)  # first sight of AAPL and its conditions: the checks one by one
    calls: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parser_mod.orjson, "loads", lambda text: calls.append(text))
        p.parse(frame(trade(t=T0 + 1), trade(t=T0 + 2, v=5)), 2.0)
    assert calls == [] and drops.total == 0
    (batch,) = p.take()
    assert batch.t == [T0, T0 + 1, T0 + 2] and batch.v == [100.0, 100.0, 5.0]
