"""The cluster view's own logic: status records (encoded, validated, fuzzed), how a process is
judged by the time since its last record, partition owners, and the cluster sections' text."""

from __future__ import annotations

import json
from dataclasses import replace

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockup_tui.engine.cluster import (
    LATE,
    LIVE,
    SILENT,
    STOPPED,
    ClusterView,
    PartitionStatus,
    ProcessIdentity,
    ProcessStatus,
    encode_status,
    health_of,
    parse_status,
)
from stockup_tui.widgets.cluster import cluster_problems, render_cluster, render_partitions
from stockup_tui.widgets.levels import Level


def status(
    role: str = "analyzer",
    pid: int = 7,
    *,
    instance: str = "",
    started: int = 1_000,
    at: int = 2_000,
    state: str = "running",
    interval: float = 2.0,
    parts: tuple[int, ...] = (),
    host: str = "box",
    error: str | None = None,
) -> ProcessStatus:
    return ProcessStatus(
        identity=ProcessIdentity(role, host, pid, started, instance),
        at_ms=at,
        interval=interval,
        state=state,
        source_per_s=0.0,
        published_per_s=0.0,
        analyzed_per_s=10.0,
        snapshots=3,
        drops=0,
        cpu_percent=5.0,
        rss_bytes=1 << 20,
        error=error,
        lag=tuple(PartitionStatus(p, 1, 20, 0.5) for p in parts),
    )


statuses = st.builds(
    status,
    role=st.sampled_from(["all", "query", "analyzer", "monitor"]),
    pid=st.integers(0, 2**31),
    instance=st.text(max_size=40),
    started=st.integers(0, 2**62),
    at=st.integers(0, 2**62),
    state=st.sampled_from(["running", "stopping", "stopped"]),
    interval=st.floats(0.2, 60),
    parts=st.lists(st.integers(0, 5000), max_size=20, unique=True).map(tuple),
    host=st.text(min_size=1, max_size=60),
    error=st.none() | st.text(max_size=200),
)


@given(statuses)
def test_a_status_record_reads_back_as_written(original: ProcessStatus) -> None:
    assert parse_status(encode_status(original)) == replace(original, error=original.error or None)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
GOOD = orjson.loads(encode_status(status(parts=(0, 1))))


@given(
    st.binary(max_size=300)
    | JSON.map(lambda v: json.dumps(v).encode())
    # a valid record with some fields replaced by anything: the validation of each field
    | st.dictionaries(st.sampled_from(sorted(GOOD)), JSON, max_size=4).map(
        lambda change: json.dumps(GOOD | change).encode()
    )
)
def test_anything_on_the_status_topic_is_a_status_or_a_clear_error(value: bytes) -> None:
    try:
        got = parse_status(value)
    except ValueError as exc:
        assert str(exc).startswith("status")
    else:
        assert isinstance(got, ProcessStatus)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, '"v": 1'),
        ({"role": "boss"}, "status role"),
        ({"pid": -1}, "status pid"),
        ({"host": ""}, "status host"),
        ({"cpu": "high"}, "status cpu"),
        ({"lag": [[0, 1, 2]]}, "status lag"),
        ({"lag": [[0, -1, 2, 0.1]]}, "status lag records"),
        ({"lag": [[0, 0, 0, None]] * 10_001}, "at most 10000"),
        ({"error": 5}, "status error"),
    ],
)
def test_a_bad_status_record_is_refused_with_the_reason(change: dict, message: str) -> None:
    good = orjson.loads(encode_status(status(parts=(0,))))
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        parse_status(orjson.dumps(good | change))


def test_long_text_from_the_topic_is_cut() -> None:
    got = parse_status(encode_status(status(host="h" * 5000, error="e" * 5000)))
    assert len(got.identity.host) == 300 and got.error is not None and len(got.error) == 300


def test_health_follows_the_time_since_the_last_record() -> None:
    st2 = status(interval=2.0)
    assert health_of(st2, 3.5) == LIVE  # 1.5 intervals + 0.5 s
    assert health_of(st2, 3.6) == LATE
    assert health_of(st2, 5.0) == LATE  # 2 intervals + 1 s
    assert health_of(st2, 5.1) == SILENT
    assert health_of(replace(st2, state="stopped"), 500) == STOPPED


def test_the_view_judges_by_its_own_clock_and_forgets_the_gone() -> None:
    view = ClusterView("t", 2)
    view.add(status("query", 1), seen=100.0)
    view.add(status("analyzer", 2, parts=(0, 1)), seen=100.0)
    view.add(status("analyzer", 3, state="stopped"), seen=100.0)
    fig = view.figures(now=106.0)
    assert [(r.status.identity.pid, r.health) for r in fig.processes] == [
        (1, SILENT),
        (2, SILENT),
        (3, STOPPED),
    ]
    assert all(p.health == SILENT for p in fig.partitions)
    assert [r.status.identity.pid for r in view.figures(now=100.0 + 61).processes] == [1, 2]
    assert view.figures(now=100.0 + 601).processes == ()


def test_an_older_record_read_late_does_not_replace_a_newer_one() -> None:
    view = ClusterView("t", 1)
    view.add(status(at=5_000, parts=(0,)), seen=50.0)
    view.add(status(at=4_000, state="stopped"), seen=51.0)
    (row,) = view.figures(now=51.0).processes
    assert row.status.at_ms == 5_000 and row.health == LIVE


def test_a_restarted_analyzer_takes_its_predecessors_place() -> None:
    view = ClusterView("t", 2)
    view.add(status(pid=10, instance="box-0", started=1, parts=(0, 1)), seen=10.0)
    view.add(status(pid=11, instance="box-0", started=2, parts=(0, 1)), seen=20.0)
    view.add(status(pid=10, instance="box-0", started=1, at=9_999), seen=21.0)  # late, stale
    fig = view.figures(now=21.0)
    assert [r.status.identity.pid for r in fig.processes] == [11]
    assert {p.owner for p in fig.partitions} == {"box-0"}


def test_a_partition_belongs_to_its_live_claimer_and_unclaimed_ones_are_red() -> None:
    view = ClusterView("trades", 4)
    view.add(status(pid=1, instance="a", parts=(0, 1, 2)), seen=0.0)  # silent by now
    view.add(status(pid=2, instance="b", parts=(1, 2)), seen=9.0)  # took 1 and 2 over
    fig = view.figures(now=10.0)
    assert [(p.owner, p.health) for p in fig.partitions] == [
        ("a", SILENT),
        ("b", LIVE),
        ("b", LIVE),
        (None, None),
    ]
    found = cluster_problems(fig)
    assert (Level.BAD, "analyzer a silent for 10.0s") in found
    assert (Level.BAD, "no live analyzer reads partition 0, 3") in found
    view.add(status(pid=3, parts=(7,)), seen=10.0)  # a partition beyond the configured count
    assert len(view.figures(now=10.0).partitions) == 8


def test_text_from_the_topic_is_shown_as_plain_text() -> None:
    view = ClusterView("t", 1)
    hostile = "[bold red]x[/]\x1b[2J"
    view.add(status(host=hostile, parts=(0,), error="[/" + hostile), seen=0.0)
    fig = view.figures(now=0.5)
    shown = render_cluster(fig).plain + render_partitions(fig).plain
    assert "[bold red]x[/]" in shown  # as typed, not interpreted as markup
    assert "\x1b" not in shown
