"""Watchlist edits: one message per kind of refusal, undo puts a symbol back where it was."""

from __future__ import annotations

from stockup_tui.watchlists import Watchlists


def lists(limit: int = 4) -> Watchlists:
    return Watchlists.from_settings(["AAPL", "MSFT"], {"tech": ["NVDA"]}, "main", limit)


def test_a_paste_past_the_limit_is_one_message() -> None:
    w = lists()
    added, notes = w.add(["AAPL", "TSLA", "AMZN", *(f"S{i}" for i in range(200))])
    assert added == ["TSLA", "AMZN"]
    assert w.symbols == ["AAPL", "MSFT", "TSLA", "AMZN"]
    assert notes == [
        "already in the watchlist: AAPL",
        "200 not added (S0, S1, S2, S3, S4 and 195 more): the watchlist holds at most 4 symbols",
    ]


def test_insert_puts_a_symbol_back_in_its_place_and_list() -> None:
    w = lists()
    assert w.remove("AAPL")
    w.cycle()
    assert w.active == "tech"
    assert w.insert("AAPL", 0, "main")
    assert w.lists["main"] == ["AAPL", "MSFT"]
    assert not w.insert("AAPL", 0, "main")  # there already
    assert not w.insert("X", 0, "gone")  # no such list
    assert w.insert("AMD", 9)  # past the end: appended to the active list
    assert w.symbols == ["NVDA", "AMD"]
