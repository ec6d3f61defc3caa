"""Batch ids: stamped by the publisher, carried by the codec, applied once by the analyzer."""

from __future__ import annotations

import orjson
import pytest

from stockup_tui.engine.analyzer.batch_ids import BatchIds
from stockup_tui.engine.codec import CodecError, decode_batch, encode_batch
from stockup_tui.engine.model import SymbolBatch


def one_trade(bid: object) -> bytes:
    b = SymbolBatch("AAPL", [1_764_000_000_000], [1.0], [2.0], [None], [(1_764_000_000.0, 1)])
    msg = orjson.loads(encode_batch(b))
    msg["id"] = bid
    return orjson.dumps(msg)


def test_the_id_survives_the_codec_and_is_optional() -> None:
    assert decode_batch(one_trade(["9f3a", 41])).bid == ("9f3a", 41)
    b = SymbolBatch("AAPL", [1], [1.0], [1.0], [None], [(1.0, 1)])
    assert b"id" not in encode_batch(b)
    assert decode_batch(encode_batch(b)).bid is None


@pytest.mark.parametrize(
    "bid",
    [["p"], ["p", 1, 2], ["", 1], ["p", -1], ["p", 1.5], ["p", True], [1, 1], "p:1", None,
     ["x" * 65, 1], ["a\nb", 1], ["p", 2**63]],
)  # fmt: skip
def test_bad_ids_are_schema_errors(bid: object) -> None:
    with pytest.raises(CodecError) as info:
        decode_batch(one_trade(bid))
    assert info.value.reason == "wrong_schema"


def test_a_batch_is_applied_once_per_producer_and_symbol() -> None:
    ids = BatchIds()
    assert ids.first_time("p1", "AAPL", 1)
    assert ids.first_time("p1", "AAPL", 2)
    assert not ids.first_time("p1", "AAPL", 2)  # redelivered
    assert not ids.first_time("p1", "AAPL", 1)  # republished after a later one landed
    assert ids.first_time("p1", "MSFT", 1)  # sequences are per producer, checked per symbol
    assert ids.first_time("p2", "AAPL", 1)  # another producer (a restarted query process)
    assert len(ids) == 3


def test_a_batch_resent_after_later_ones_is_applied_once() -> None:
    ids = BatchIds()
    assert ids.first_time("p1", "AAPL", 5)
    assert ids.first_time("p1", "AAPL", 4)  # sent before 5, arrived after it: not a duplicate
    assert not ids.first_time("p1", "AAPL", 4)
    assert not ids.first_time("p1", "AAPL", 5)


def test_only_the_recent_batches_are_remembered() -> None:
    ids = BatchIds(recent=3)
    for seq in (10, 11, 12, 13):
        assert ids.first_time("p", "A", seq)
    assert not ids.first_time("p", "A", 9)  # older than all it remembers: applied long ago
    assert not ids.first_time("p", "A", 13)
    assert ids.first_time("p", "A", 14)
