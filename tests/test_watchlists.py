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


def test_lists_are_created_renamed_deleted_and_symbols_moved_between_them() -> None:
    w = lists()
    assert w.create(" crypto ") == "crypto" and w.active == "crypto"
    for bad, why in [("", "type a name"), ("main", "top-level"), ("tech", "already"),
                     ("x\x1b", "printable"), ("y" * 65, "printable")]:  # fmt: skip
        try:
            w.create(bad)
        except ValueError as exc:
            assert why in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
    w.active = "main"
    w.move_to("MSFT", "tech")
    assert w.lists["main"] == ["AAPL"] and w.lists["tech"] == ["NVDA", "MSFT"]
    assert w.rename("tech", "chips") == "chips"
    assert list(w.lists) == ["main", "chips", "crypto"]  # the cycle order is kept
    w.active = "chips"
    assert w.delete("chips") == ["NVDA", "MSFT"] and w.active == "main"
    assert w.settings_updates()["watchlists"] == {"crypto": []}
    for call in (lambda: w.rename("main", "x"), lambda: w.delete("main")):
        try:
            call()
        except ValueError as exc:
            assert "'main' cannot" in str(exc)
        else:
            raise AssertionError("main changed")
