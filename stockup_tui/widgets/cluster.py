"""The cluster sections of the health pane on a `--role monitor` screen (pure: figures in,
Content out).

Every process of the deployment with its health (live / late amber / silent red / stopped), its
rates, lag, CPU and memory; then every partition of the trades topic with its owner and lag. A
process that stops reporting turns red, and so do the partitions it held until another
analyzer takes them. Host names, instance ids and errors come from the status topic: shown as
plain text through `one_line`, never as markup.
"""

from __future__ import annotations

from textual.content import Content

from stockup_tui.config import Role
from stockup_tui.engine.cluster import (
    LATE,
    LIVE,
    SILENT,
    STOPPED,
    ClusterFigures,
    PartitionRow,
    ProcessRow,
)
from stockup_tui.figures import fmt_bytes
from stockup_tui.widgets.format import DASH, fmt_duration, fmt_figure, fmt_per_s
from stockup_tui.widgets.levels import DOT, Level, header, one_line, section, styled, worst

HEALTH_LEVEL = {LIVE: Level.OK, LATE: Level.WARN, SILENT: Level.BAD, STOPPED: Level.IDLE}
NAME_MAX = 32  # a longer name (from the status topic) is cut
MAX_PARTITION_ROWS = 64  # beyond: one summary line (the rest are in the InfluxDB ops points)


def partition_level(part: PartitionRow, analyzers: int) -> Level:
    """Red when no live analyzer reads it (its owner silent, or nobody at all)."""
    if part.owner is None:
        return Level.BAD if analyzers else Level.WARN
    return HEALTH_LEVEL.get(part.health or SILENT, Level.BAD)


def cluster_level(cluster: ClusterFigures) -> Level:
    analyzers = cluster.analyzers
    return worst(
        [HEALTH_LEVEL[row.health] for row in cluster.processes]
        + [partition_level(p, analyzers) for p in cluster.partitions]
    )


def cluster_problems(cluster: ClusterFigures) -> list[tuple[Level, str]]:
    """What is amber or red about the cluster, in a few words each (the status bar)."""
    found: list[tuple[Level, str]] = []
    for row in cluster.processes:
        if row.health in (SILENT, LATE):
            what = f"{row.status.identity.role} {row.name} {row.health}"
            found.append((HEALTH_LEVEL[row.health], f"{what} for {fmt_duration(row.age)}"))
    orphans = [p.partition for p in cluster.partitions if partition_level(p, 1) == Level.BAD]
    if orphans and cluster.analyzers:
        listed = ", ".join(str(p) for p in orphans[:6]) + (" …" if len(orphans) > 6 else "")
        found.append((Level.BAD, f"no live analyzer reads partition {listed}"))
    elif not cluster.analyzers and cluster.processes:
        found.append((Level.WARN, "no analyzer in the cluster"))
    return found


def _name_width(names: list[str]) -> int:
    return min(NAME_MAX, max((len(n) for n in names), default=8)) + 1


def _process_lines(row: ProcessRow, width: int) -> list[Content]:
    st = row.status
    level = HEALTH_LEVEL[row.health]
    role = st.identity.role
    name = one_line(row.name, NAME_MAX) + (" (this)" if row.this else "")
    state = row.health if st.state != "stopping" or row.health != LIVE else "stopping"
    lines = [
        Content.assemble(
            styled(DOT[level], level),
            " ",
            (role.ljust(9), "bold"),
            name.ljust(width),
            styled(state, level),
            (f" {fmt_duration(row.age)} ago", "dim"),
        )
    ]
    figures: list[tuple[str, str]] = []
    if Role(role).has_feed:
        figures.append(("in", fmt_per_s(st.source_per_s)))
        figures.append(("pub", fmt_per_s(st.published_per_s)))
    if Role(role).analyzes:
        figures.append(("trades", fmt_per_s(st.analyzed_per_s)))
        lag = f"{fmt_figure(st.lag_trades)} tr"
        if st.lag_seconds is not None:
            lag += f" {fmt_duration(st.lag_seconds)}"
        figures.append(("lag", lag))
        figures.append(("parts", ",".join(str(p.partition) for p in st.lag) or DASH))
    figures.append(("cpu", f"{st.cpu_percent:.0f}%"))
    figures.append(("rss", fmt_bytes(st.rss_bytes)))
    if st.drops:
        figures.append(("drops", fmt_figure(st.drops)))
    parts: list[Content | tuple[str, str] | str] = ["  "]
    for i, (label, value) in enumerate(figures):
        parts += [(label + " ", "dim"), value + ("  " if i < len(figures) - 1 else "")]
    lines.append(Content.assemble(*parts))
    if st.error and row.health != STOPPED:
        lines.append(Content.assemble("  ", styled("error " + one_line(st.error), Level.WARN)))
    return lines


def render_cluster(cluster: ClusterFigures) -> Content:
    counts = [
        f"{n} {health}" for health in (LIVE, LATE, SILENT, STOPPED) if (n := cluster.count(health))
    ]
    extra = ", ".join(counts) if counts else "waiting for status records"
    if cluster.invalid:
        extra += f" · {cluster.invalid:,} invalid records"
    rows: list[Content] = []
    width = _name_width([row.name + (" (this)" if row.this else "") for row in cluster.processes])
    for row in cluster.processes:
        rows.extend(_process_lines(row, width))
    level = worst(HEALTH_LEVEL[row.health] for row in cluster.processes)
    return section(header("Cluster", level, extra), rows)


def render_partitions(cluster: ClusterFigures) -> Content:
    analyzers = cluster.analyzers
    rows: list[Content] = []
    total = sum(p.trades for p in cluster.partitions)
    width = _name_width(["no analyzer"] + [f"{p.owner} ({p.health})" for p in cluster.partitions])
    for part in cluster.partitions[:MAX_PARTITION_ROWS]:
        level = partition_level(part, analyzers)
        if part.owner is None:
            owner, lag = "no analyzer", ""
        else:
            owner = one_line(part.owner, NAME_MAX)
            behind = DASH if part.seconds is None else fmt_duration(part.seconds)
            lag = f"lag {fmt_figure(part.trades)} tr  {behind}"
            if part.health != LIVE:
                owner += f" ({part.health})"
        rows.append(
            Content.assemble(
                styled(DOT[level], level),
                f" p{part.partition:<4}",
                styled(owner.ljust(width), level),
                lag,
            )
        )
    hidden = len(cluster.partitions) - MAX_PARTITION_ROWS
    if hidden > 0:
        rows.append(Content.styled(f"  … {hidden:,} more partitions", "dim"))
    level = worst(partition_level(p, analyzers) for p in cluster.partitions)
    extra = f"{cluster.topic} · {len(cluster.partitions)} · lag {fmt_figure(total)} trades"
    return section(header("Partitions", level, extra), rows)
