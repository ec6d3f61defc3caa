"""DuplicateFilter: caught within the horizon, forgotten after two, memory bounded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockup_tui.engine.sources.dedup import DuplicateFilter

KEY = ("AAPL", 187.43, 1_764_085_243_123, 100.0, ("1", "12"))


def test_duplicate_within_horizon_dropped() -> None:
    f = DuplicateFilter(2.0, now=0.0)
    assert not f.seen(KEY)
    assert f.seen(KEY)
    f.rotate_if_due(1.99)
    assert f.seen(KEY)
    assert f.rotations == 0


def test_other_keys_are_not_duplicates() -> None:
    f = DuplicateFilter(2.0, now=0.0)
    assert not f.seen(KEY)
    for i, other in enumerate(("MSFT", 187.44, KEY[2] + 1, 101.0, ("1",))):
        changed = list(KEY)
        changed[i] = other
        assert not f.seen(tuple(changed))


def test_kept_after_two_horizons() -> None:
    f = DuplicateFilter(2.0, now=0.0)
    assert not f.seen(KEY)
    f.rotate_if_due(2.0)  # KEY moves to the old generation
    f.rotate_if_due(4.0)  # and is dropped
    assert f.size == 0
    assert not f.seen(KEY)


def test_between_one_and_two_horizons_still_caught_here() -> None:
    f = DuplicateFilter(2.0, now=0.0)
    assert not f.seen(KEY)
    for now in (1.0, 2.0, 2.5):  # frames keep coming
        f.rotate_if_due(now)
    assert f.seen(KEY)  # 2.5 s later, found in the old generation (and refreshed)
    for now in (3.5, 4.5):
        f.rotate_if_due(now)
    assert f.seen(KEY)  # the refreshed copy survived the second rotation


def test_idle_gap_forgets_everything() -> None:
    f = DuplicateFilter(2.0, now=0.0)
    f.rotate_if_due(1.5)
    assert not f.seen(KEY)
    f.rotate_if_due(3.6)  # 2.1 s without a frame: KEY is older than the horizon
    assert f.size == 0
    assert not f.seen(KEY)


def test_frames_flowing_keep_one_generation() -> None:
    f = DuplicateFilter(2.0, now=0.0)
    f.rotate_if_due(1.9)
    assert not f.seen(KEY)
    for now in (2.0, 3.0, 3.8):
        f.rotate_if_due(now)
    assert f.seen(KEY)  # 1.9 s old, in the old generation


def test_rotation_waits_for_the_horizon() -> None:
    f = DuplicateFilter(1.0, now=0.0)
    for now in (0.1, 0.5, 0.99):
        f.rotate_if_due(now)
    assert f.rotations == 0
    f.rotate_if_due(1.0)
    f.rotate_if_due(1.5)  # next one is due at 2.0, one horizon after the last rotation
    assert f.rotations == 1


def test_seen_hash_matches_seen() -> None:
    f = DuplicateFilter(now=0.0)
    assert not f.seen_hash(hash(KEY), KEY[2])
    assert f.seen(KEY)


def test_clear_and_bad_horizon() -> None:
    f = DuplicateFilter(now=0.0)
    f.seen(KEY)
    f.clear()
    assert f.size == 0 and not f.seen(KEY)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            DuplicateFilter(bad)
    with pytest.raises(ValueError, match="granule"):
        DuplicateFilter(granule_ms=0)


def test_without_a_start_the_first_frame_starts_the_clock() -> None:
    f = DuplicateFilter()
    assert f.horizon == 2.0
    f.rotate_if_due(1_764_000_000.0)  # a receive time: the schedule starts here
    assert f.rotations == 0
    f.rotate_if_due(1_764_000_001.9)
    assert f.rotations == 0
    f.rotate_if_due(1_764_000_002.0)
    assert f.rotations == 1


def test_memory_bounded_by_two_generations() -> None:
    """At `rate` keys/s the filter holds at most about 2 * rate * horizon keys."""
    rate, horizon, step = 1000, 2.0, 0.01
    f = DuplicateFilter(horizon, now=0.0)
    per_step = int(rate * step)
    peak = 0
    key = 0
    for i in range(1, 3000):  # 30 s of feed
        f.rotate_if_due(i * step)
        for _ in range(per_step):
            key += 1
            assert not f.seen_hash(key, key)  # a new time each: many granules
        peak = max(peak, f.size)
    assert peak <= 2 * rate * (horizon + step) + per_step
    assert f.size >= rate * horizon * 0.9  # and it does remember a full horizon


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=40),
    st.integers(min_value=0, max_value=39),
    st.floats(min_value=0.0, max_value=0.999),
    st.floats(min_value=0.1, max_value=5.0),
)
def test_resend_within_horizon_always_caught(
    gaps: list[float], at: int, delay_frac: float, horizon: float
) -> None:
    """Whatever the timing of the frames (rotation points), a copy within horizon is caught."""
    f = DuplicateFilter(horizon, now=0.0)
    now = 0.0
    times = []
    for gap in gaps:
        now += gap * horizon
        times.append(now)
    first = times[min(at, len(times) - 1)]
    resend = first + delay_frac * horizon
    events = sorted([(t, 1, None) for t in times] + [(first, 0, "first"), (resend, 2, "resend")])
    for t, _, what in events:
        f.rotate_if_due(t)
        if what == "first":
            assert not f.seen(KEY)
        elif what == "resend":
            assert f.seen(KEY)
        else:
            f.seen(("other", 1.0, int(t * 1000), 1.0, None))


keys_ = st.lists(
    st.tuples(st.integers(0, 30), st.sampled_from([0, 1, 99, 100, 101, 250, 999, 5_000])),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(keys_, st.floats(0.0, 1.5)), min_size=1, max_size=12))
def test_a_frame_at_once_decides_as_key_by_key(frames: list) -> None:
    """`frame` (C-level set operations per granule) and `seen_hash` (one key at a time) agree
    on every frame, whatever the granules its times fall in and the rotations between."""
    fast = DuplicateFilter(1.0, now=0.0)
    slow = DuplicateFilter(1.0, now=0.0)
    now = 0.0
    for pairs, gap in frames:
        now += gap
        fast.rotate_if_due(now)
        slow.rotate_if_due(now)
        # A key is (hash, time): equal hashes come with equal times, as content hashes do.
        keys = [(h * 10_000 + t, t) for h, t in pairs]
        if not keys:
            continue
        seen, repeats = fast.frame([h for h, _ in keys], [t for _, t in keys])
        hashes = [h for h, _ in keys]
        first_time = {}
        expected_seen = set()
        for h, t in keys:
            if h in first_time:
                continue  # a repeat inside the frame: judged by its first occurrence
            first_time[h] = t
            if slow.seen_hash(h, t):
                expected_seen.add(h)
        assert seen == expected_seen
        assert repeats == (len(set(hashes)) < len(hashes))
        assert fast.size == slow.size
