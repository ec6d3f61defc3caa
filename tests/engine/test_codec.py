"""Bus codec: exact round trip, and every malformed message rejected with a reason."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from stockup_tui.engine import codec
from stockup_tui.engine.codec import (
    SCHEMA_VERSION,
    CodecError,
    decode_batch,
    decode_record,
    encode_batch,
    encode_group,
    message_key,
)
from stockup_tui.engine.model import SymbolBatch

T0 = 1_764_085_243_123


def batch(n: int = 3, symbol: str = "AAPL") -> SymbolBatch:
    return SymbolBatch(
        symbol=symbol,
        t=[T0 + i for i in range(n)],
        p=[187.43 + i for i in range(n)],
        v=[100.0 * i for i in range(n)],
        c=[["1", "12"] if i % 2 else None for i in range(n)],
        recv=[(1_764_085_244.25, n)] if n else [],
    )


def message(**changes: object) -> dict:
    msg = orjson.loads(encode_batch(batch()))
    msg.update(changes)
    return msg


def reason_of(payload: bytes | dict) -> str:
    if isinstance(payload, dict):
        payload = orjson.dumps(payload)
    with pytest.raises(CodecError) as info:
        decode_batch(payload)
    assert str(info.value).startswith(info.value.reason)
    return info.value.reason


def test_message_layout() -> None:
    raw = encode_batch(batch(2))
    assert orjson.loads(raw) == {
        "v": SCHEMA_VERSION,
        "kind": "trades",
        "s": "AAPL",
        "t": [T0, T0 + 1],
        "p": [187.43, 188.43],
        "q": [0.0, 100.0],
        "c": [None, ["1", "12"]],
        "r": [[1_764_085_244.25, 2]],
    }
    assert message_key(batch(symbol="BINANCE:BTCUSDT")) == b"BINANCE:BTCUSDT"


def test_round_trip_simple() -> None:
    for n in (0, 1, 5):
        b = batch(n)
        got = decode_batch(encode_batch(b))
        assert got == b
        assert all(type(r) is tuple for r in got.recv)


def test_accepts_bytes_like_and_str() -> None:
    raw = encode_batch(batch())
    for payload in (raw, bytearray(raw), memoryview(raw), raw.decode()):
        assert decode_batch(payload) == batch()


def test_int_prices_volumes_and_recv_become_floats() -> None:
    got = decode_batch(orjson.dumps(message(p=[1, 2, 3], q=[0, 5, 1.5], r=[[17, 3]])))
    assert got.p == [1.0, 2.0, 3.0] and all(type(x) is float for x in got.p + got.v)
    assert got.recv == [(17.0, 3)] and type(got.recv[0][0]) is float


def test_bounds_are_inclusive() -> None:
    msg = message(
        s="X" * 50,
        t=[1, codec.MAX_TIME_MS, 2],
        p=[codec.MAX_PRICE, 5e-324, 1.0],
        q=[0.0, codec.MAX_VOLUME, 0],
        c=[[], None, [""]],
        r=[[0.0, 1], [1.0, 1], [1.0, 1]],
    )
    assert len(decode_batch(orjson.dumps(msg))) == 3


@pytest.mark.parametrize(
    "payload", [b"", b"{", b"nul", b"NaN", b'{"v": 1,}', b"\xff\xfe", b"[" * 5000]
)
def test_malformed_json(payload: bytes) -> None:
    assert reason_of(payload) == "malformed_json"


def test_oversized(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = encode_batch(batch(50))
    monkeypatch.setattr(codec, "MAX_MESSAGE_BYTES", len(raw) - 1)
    assert reason_of(raw) == "oversized_message"


@pytest.mark.parametrize("version", [2, 0, "1", 1.0, True, None, [1]])
def test_wrong_version(version: object) -> None:
    assert reason_of(message(v=version)) == "wrong_version"


def test_missing_version() -> None:
    msg = message()
    del msg["v"]
    assert reason_of(msg) == "wrong_version"


WRONG = [
    {"kind": "trade"},
    {"kind": None},
    {"s": ""},
    {"s": "A B"},
    {"s": "X" * 51},
    {"s": "A\n"},
    {"s": 5},
    {"s": None},
    {"t": None},
    {"t": "123"},
    {"t": {"0": 1}},
    {"t": [T0, T0]},  # length
    {"t": [T0, T0, 1.5]},
    {"t": [T0, T0, True]},
    {"t": [T0, T0, "1"]},
    {"t": [T0, T0, None]},
    {"t": [T0, T0, 0]},
    {"t": [T0, T0, -1]},
    {"t": [T0, T0, codec.MAX_TIME_MS + 1]},
    {"p": [1.0, 1.0]},
    {"p": [1.0, 1.0, 0.0]},
    {"p": [1.0, 1.0, -0.0]},
    {"p": [1.0, 1.0, -2.0]},
    {"p": [1.0, 1.0, 1e13]},
    {"p": [1.0, 1.0, True]},
    {"p": [1.0, 1.0, None]},
    {"p": [1.0, 1.0, "1"]},
    {"p": [1.0, 1.0, [1.0]]},
    {"p": 1.0},
    {"q": [1.0, 1.0, -1.0]},
    {"q": [1.0, 1.0, 1e16]},
    {"q": [1.0, 1.0, False]},
    {"q": [1.0, 1.0, 1.0, 1.0]},
    {"q": None},
    {"c": None},
    {"c": [None, None]},
    {"c": [None, None, "1"]},
    {"c": [None, None, [1]]},
    {"c": [None, None, [None]]},
    {"c": [None, None, {"a": "b"}]},
    {"c": [None, None, ["1", ["2"]]]},
    {"r": None},
    {"r": []},
    {"r": [[1.0, 2]]},  # covers 2 of 3
    {"r": [[1.0, 4]]},
    {"r": [[1.0, 3, 0]]},
    {"r": [[1.0]]},
    {"r": [(1.0, 3), []]},
    {"r": [[1.0, 0], [1.0, 3]]},
    {"r": [[1.0, -1], [1.0, 4]]},
    {"r": [[1.0, True], [1.0, 2]]},
    {"r": [[1.0, 3.0]]},
    {"r": [["1.0", 3]]},
    {"r": [[None, 3]]},
    {"r": [[-1.0, 3]]},
    {"r": [[1e300, 3]]},
    {"r": [{"a": 1}]},
    {"r": [1.0, 3]},
    {"extra": 1},
]


@pytest.mark.parametrize("changes", WRONG, ids=[str(w)[:40] for w in WRONG])
def test_wrong_schema(changes: dict) -> None:
    assert reason_of(message(**changes)) == "wrong_schema"


@pytest.mark.parametrize("field", ["kind", "s", "t", "p", "q", "c", "r"])
def test_missing_field(field: str) -> None:
    msg = message()
    del msg[field]
    assert reason_of(msg) == "wrong_schema"


@pytest.mark.parametrize("payload", [b"[]", b"1", b'"x"', b"null", b"[{}]"])
def test_not_an_object(payload: bytes) -> None:
    assert reason_of(payload) == "wrong_schema"


def test_too_many_trades(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "MAX_TRADES_PER_MESSAGE", 4)
    assert len(decode_batch(encode_batch(batch(4)))) == 4
    assert reason_of(encode_batch(batch(5))) == "wrong_schema"


def test_codec_error_is_value_error() -> None:
    assert issubclass(CodecError, ValueError)
    err = CodecError("wrong_schema", "boom")
    assert err.reason == "wrong_schema" and "boom" in str(err)


# --- properties ------------------------------------------------------------------------------

symbols = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")),
    min_size=1,
    max_size=codec.MAX_SYMBOL_LEN,
)
conditions = st.none() | st.lists(st.text(max_size=4), max_size=4)
trade_rows = st.tuples(
    st.integers(min_value=1, max_value=codec.MAX_TIME_MS),
    st.floats(min_value=5e-324, max_value=codec.MAX_PRICE),
    st.floats(min_value=0.0, max_value=codec.MAX_VOLUME) | st.just(-0.0),
    conditions,
)


@st.composite
def batches(draw: st.DrawFn) -> SymbolBatch:
    rows = draw(st.lists(trade_rows, max_size=30))
    n = len(rows)
    recv = []
    left = n
    while left:
        k = draw(st.integers(min_value=1, max_value=left))
        recv.append((draw(st.floats(min_value=0.0, max_value=4e9)), k))
        left -= k
    return SymbolBatch(
        symbol=draw(symbols),
        t=[r[0] for r in rows],
        p=[r[1] for r in rows],
        v=[r[2] for r in rows],
        c=[r[3] for r in rows],
        recv=recv,
    )


@settings(max_examples=300, deadline=None)
@given(batches())
def test_round_trip(b: SymbolBatch) -> None:
    raw = encode_batch(b)
    got = decode_batch(raw)
    assert got == b
    assert [type(x) for x in got.p + got.v] == [float] * (2 * len(b))
    assert encode_batch(got) == raw
    assert message_key(got) == b.symbol.encode()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["v", "kind", "s", "t", "p", "q", "c", "r", "id", "x"]), json_values)
def test_mutated_messages_decode_valid_or_raise_codec_error(field: str, value: object) -> None:
    msg = message(**{field: value})
    try:
        got = decode_batch(orjson.dumps(msg))
    except CodecError as exc:
        assert exc.reason in {"wrong_version", "wrong_schema"}
        return
    # Whatever got through is a valid batch that survives another round trip.
    assert decode_batch(encode_batch(got)) == got
    assert len(got.p) == len(got.v) == len(got.c) == len(got)
    assert sum(n for _, n in got.recv) == len(got)


@settings(max_examples=300, deadline=None)
@given(st.binary() | st.text().map(str.encode) | json_values.map(orjson.dumps))
def test_arbitrary_payloads_raise_only_codec_error(payload: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_batch(payload)


@st.composite
def groups(draw: st.DrawFn) -> list[SymbolBatch]:
    """A flush's batches for one partition: distinct symbols, at least one trade each."""
    out = draw(st.lists(batches().filter(len), min_size=1, max_size=5))
    return list({b.symbol: b for b in out}.values())


@settings(max_examples=300, deadline=None)
@given(groups(), st.integers(min_value=0, max_value=2**63 - 1))
def test_a_group_decodes_into_its_batches_with_the_groups_id(
    group: list[SymbolBatch], seq: int
) -> None:
    raw = encode_group(group, "prod-1", seq)
    got = decode_record(raw)
    assert got == [replace(b, bid=("prod-1", seq)) for b in group]
    for b in got:
        assert [type(x) for x in b.p + b.v] == [float] * (2 * len(b))
    assert encode_group(got, "prod-1", seq) == raw


def test_a_group_is_smaller_than_a_message_per_symbol() -> None:
    """The live case: about one trade per symbol per flush."""
    group = [
        SymbolBatch(f"SYM{i:02d}", [1_700_000_000_000 + i], [100.0 + i], [10.0], [None],
                    [(1_700_000_000.5, 1)])
        for i in range(8)
    ]  # fmt: skip
    grouped = len(encode_group(group, "0123456789abcdef", 1))
    alone = sum(len(encode_batch(replace(b, bid=("0123456789abcdef", 1)))) for b in group)
    assert grouped < alone / 2


GROUP = orjson.loads(
    encode_group(
        [
            SymbolBatch("AAPL", [5, 7], [1.0, 2.0], [1.0, 1.0], [None, ["x"]], [(1.0, 2)]),
            SymbolBatch("MSFT", [6], [3.0], [2.0], [None], [(1.5, 1)]),
        ],
        "p",
        1,
    )
)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"s": ["AAPL", "AAPL"]}, "appears twice"),
        ({"s": []}, "non-empty"),
        ({"s": [["AAPL"], "MSFT"]}, "non-empty"),
        ({"s": ["AAPL", "MS FT"]}, "non-empty"),
        ({"n": [2, 2]}, "column lengths"),
        ({"s": ["AAPL"]}, "integers expected"),  # n and rn name two symbols
        ({"s": ["AAPL"], "n": [3], "rn": [2, 0]}, "integers expected"),
        ({"n": [3, 0]}, "counts below 1"),
        ({"rn": [2, 0]}, "counts below 1"),
        ({"r": [[1.0, 1], [1.5, 2]]}, "do not cover"),
        ({"t": [5, -10, 1]}, "time out of range"),
        ({"c": [None]}, "3 entries"),
        ({"id": ["p"]}, "id must be"),
        ({"extra": 1}, "group fields"),
    ],
)
def test_a_bad_group_is_refused_with_the_reason(change: dict, words: str) -> None:
    with pytest.raises(CodecError, match=words) as info:
        decode_record(orjson.dumps(GROUP | change))
    assert info.value.reason == "wrong_schema"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([*sorted(GROUP), "x"]), json_values)
def test_mutated_groups_decode_valid_or_raise_codec_error(field: str, value: object) -> None:
    try:
        got = decode_record(orjson.dumps(GROUP | {field: value}))
    except CodecError as exc:
        assert exc.reason in {"wrong_version", "wrong_schema"}
        return
    assert type(got) is list
    for b in got:
        assert len(b.t) == len(b.p) == len(b.v) == len(b.c) == len(b)
        assert sum(n for _, n in b.recv) == len(b)


def _checked_json(raw: bytes) -> list[SymbolBatch] | None:
    """The group the orjson path reads from `raw` (None: another kind); raises CodecError."""
    obj = codec._load(raw)
    return codec._group(obj) if obj.get("kind") == codec.KIND_GROUP else None


@settings(max_examples=300, deadline=None)
@given(groups(), st.integers(min_value=0, max_value=2**63 - 1))
def test_the_typed_decoder_reads_a_group_as_the_checked_json_does(
    group: list[SymbolBatch], seq: int
) -> None:
    raw = encode_group(group, "prod-1", seq)
    fast = codec._fast_group(raw)
    assert fast is not None  # a valid group takes the typed way
    assert fast == _checked_json(raw)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([*sorted(GROUP), "x"]), json_values)
def test_the_typed_decoder_declines_what_the_checked_json_refuses(
    field: str, value: object
) -> None:
    """Both ways decide alike: what one refuses the other declines (and the orjson way, which
    says why, reads it again), what both take they read the same."""
    raw = orjson.dumps(GROUP | {field: value})
    fast = codec._fast_group(raw)
    try:
        slow = _checked_json(raw)
    except CodecError:
        assert fast is None
        return
    assert fast is None or fast == slow


def test_the_group_key_is_no_symbols_key() -> None:
    """A symbol's keyed message is never taken for a group (Kafka sends those by partition)."""
    assert not codec.symbol_ok(codec.GROUP_KEY.decode())
