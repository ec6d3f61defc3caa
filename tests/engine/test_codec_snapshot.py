"""The metrics-topic message: window snapshots round-trip; anything else is a CodecError."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockup_tui.engine.analyzer.partition import Checkpoint
from stockup_tui.engine.bus.kafka.bus import parse_control
from stockup_tui.engine.bus.kafka.consumer import checkpoint_metadata, checkpoint_of
from stockup_tui.engine.codec import CodecError, decode_snapshot, encode_snapshot
from stockup_tui.engine.model import SymbolSnapshot, WindowMetrics

finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
opt = st.none() | finite
windows = st.builds(
    WindowMetrics,
    window_ms=st.integers(1, 10**9),
    count=st.integers(0, 10**9),
    volume=finite,
    first=opt,
    last=opt,
    min=opt,
    max=opt,
    mean=opt,
    vwap=opt,
    change=opt,
    change_pct=opt,
    rate=finite,
)
snapshots = st.builds(
    SymbolSnapshot,
    symbol=st.sampled_from(["AAPL", "BINANCE:BTCUSDT", "BRK.B"]),
    ts_ms=st.integers(1, 7_258_118_400_000),
    last_price=opt,
    last_trade_ms=st.none() | st.integers(1, 7_258_118_400_000),
    windows=st.lists(windows, min_size=1, max_size=4).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(snapshots)
def test_snapshots_round_trip(snap: SymbolSnapshot) -> None:
    assert decode_snapshot(encode_snapshot(snap)) == snap


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{", "malformed_json"),
        (b'{"v":2}', "wrong_version"),
        (b'{"v":1,"kind":"trades"}', "wrong_schema"),
        (b'{"v":1,"kind":"snapshot","s":"A","ts":1,"lp":null,"lt":null,"w":[]}', "wrong_schema"),
        (b'{"v":1,"kind":"snapshot","s":"A","ts":1,"lp":null,"lt":null,"w":[[1,2]]}',
         "wrong_schema"),
        (b'{"v":1,"kind":"snapshot","s":"A B","ts":1,"lp":null,"lt":null,"w":[[1,0,0,null,null,'
         b'null,null,null,null,null,null,0]]}', "wrong_schema"),
    ],
)  # fmt: skip
def test_bad_snapshots_name_their_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(CodecError) as info:
        decode_snapshot(payload)
    assert info.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.binary() | st.text().map(str.encode))
def test_arbitrary_payloads_raise_only_codec_error(payload: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_snapshot(payload)


def test_control_messages_are_validated_like_the_config() -> None:
    assert parse_control(b'{"v":1,"symbols":["aapl","MSFT","aapl"]}') == ["AAPL", "MSFT"]
    for bad in (b"[]", b'{"v":2,"symbols":[]}', b'{"v":1,"symbols":["a b"]}', b"{"):
        with pytest.raises(ValueError):
            parse_control(bad)
    with pytest.raises(ValueError):
        parse_control(orjson.dumps({"v": 1, "symbols": ["A"] * 1001}))


def test_the_commit_metadata_carries_the_checkpoint() -> None:
    for cp in (Checkpoint(120, 1764000000000), Checkpoint(0, None)):
        meta = checkpoint_metadata(cp)
        assert len(meta) < 100
        assert checkpoint_of(meta, 500) == cp
    # Not ours, from an older version, or pointing after the committed offset: no checkpoint.
    for other in (
        None,
        "",
        "garbage",
        '{"wm": 1764000000000}',
        '{"v": 2, "r": "1"}',
        '{"v": 2, "r": 600}',
        '{"v": 2, "r": 5, "w": -1}',
        "[1]",
    ):
        assert checkpoint_of(other, 500) is None
