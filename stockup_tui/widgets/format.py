"""Small pure formatting helpers shared by the quotes table and the detail pane.

They live apart from the widgets so both render numbers identically and so they can be unit
tested without an app. Every helper accepts None (no data yet) and returns `DASH` for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from textual.color import Color, ColorParseError

DASH = "\u2013"  # en dash: reads as "no value" and is one cell wide
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"

_VOLUME_UNITS = ("", "K", "M", "B", "T")


def _price_decimals(value: float) -> int:
    """Decimals that keep ~5 significant digits for cheap tickers and stay short for dear ones."""
    a = abs(value)
    if a >= 10_000:
        return 1
    if a >= 1 or a == 0:
        return 2
    if a >= 0.1:
        return 4
    return -math.floor(math.log10(a)) + 4


def fmt_price(value: float | None, ref: float | None = None) -> str:
    """A price with thousands separators: 187.43, 68,123.5, 0.00012345.

    `ref` (a price) sets the decimals instead, so a difference reads at its price's scale.
    """
    if value is None or not math.isfinite(value):
        return DASH
    scale = ref if ref is not None and math.isfinite(ref) else value
    return f"{value:,.{_price_decimals(scale)}f}"


def fmt_change(value: float | None, ref: float | None = None) -> str:
    """A signed price difference at the scale of price `ref` (+1.25, -0.74); zero has no sign."""
    if value is None or not math.isfinite(value):
        return DASH
    text = fmt_price(abs(value), ref)
    if text.strip("0.,") == "":
        return text
    return ("+" if value > 0 else "-") + text


def fmt_pct(value: float | None) -> str:
    """A signed percentage already scaled to 100 (+0.66%); zero carries no sign."""
    if value is None or not math.isfinite(value):
        return DASH
    text = f"{abs(value):.2f}%"
    if text == "0.00%":
        return text
    return ("+" if value > 0 else "-") + text


def fmt_volume(value: float | None) -> str:
    """A compact quantity: 950, 0.0123, 1.2K, 3.4M, 5.6B (crypto volumes are fractional)."""
    if value is None or not math.isfinite(value):
        return DASH
    sign = "-" if value < 0 else ""
    a = abs(value)
    if a < 1000:
        if a == int(a):
            return f"{sign}{int(a)}"
        return f"{sign}{a:.4g}"
    unit = 0
    while unit < len(_VOLUME_UNITS) - 1 and round(a, 1) >= 1000:
        a /= 1000
        unit += 1
    return f"{sign}{a:.1f}{_VOLUME_UNITS[unit]}"


def fmt_rate(value: float | None) -> str:
    """Trades per second: two decimals when slow, compact when very fast."""
    if value is None or not math.isfinite(value):
        return DASH
    if value < 10:
        return f"{value:.2f}"
    if value < 1000:
        return f"{value:.1f}"
    return fmt_volume(value)


def fmt_count(value: int | None) -> str:
    """An integer count with thousands separators."""
    return DASH if value is None else f"{value:,}"


def fmt_age(ms: float | None) -> str:
    """How long ago, coarser as it grows: 0.4s, 12s, 3m, 2h, 4d (negative skew reads 0.0s)."""
    if ms is None:
        return DASH
    s = max(ms, 0) / 1000
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{int(s)}s"
    if s < 3600:
        return f"{int(s // 60)}m"
    if s < 86400:
        return f"{int(s // 3600)}h"
    return f"{int(s // 86400)}d"


def _resample(values: Sequence[float], width: int) -> list[float]:
    """Down-samples to `width` points keeping each slice's last value (they are closes)."""
    n = len(values)
    if n <= width:
        return list(values)
    return [values[min(n - 1, ((i + 1) * n) // width - 1)] for i in range(width)]


def sparkline(values: Sequence[float], width: int | None = None) -> str:
    """Unicode block sparkline, at most `width` chars; a flat series sits mid-height."""
    points = [v for v in (_resample(values, width) if width else values) if math.isfinite(v)]
    if not points:
        return ""
    lo, hi = min(points), max(points)
    if hi == lo:
        return SPARK_BLOCKS[len(SPARK_BLOCKS) // 2 - 1] * len(points)
    top = len(SPARK_BLOCKS) - 1
    scale = top / (hi - lo)
    return "".join(SPARK_BLOCKS[round((v - lo) * scale)] for v in points)


def rich_colour(value: str | None, fallback: str) -> str:
    """A Textual theme colour (hex or ``ansi_*``) as a Rich colour name usable in a style."""
    for candidate in (value, fallback):
        if candidate:
            try:
                return Color.parse(candidate).rich_color.name
            except ColorParseError:
                continue
    return "default"


# -- pipeline figures (the health pane) ----------------------------------------------------


def fmt_figure(n: int) -> str:
    """Exact below 100k (12,345), compact above (123.4k, 1.23M): fits a 11-column cell."""
    if n < 100_000:
        return f"{n:,}"
    if n < 1_000_000:
        return f"{n / 1e3:.1f}k"
    if n < 1_000_000_000:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e9:.2f}G"


def fmt_per_s(per_s: float) -> str:
    """A rate with its unit, compact: 3.2/s, 950/s, 12.5k/s, 1.20M/s."""
    if per_s < 10:
        return f"{per_s:.1f}/s"
    if per_s < 1000:
        return f"{per_s:.0f}/s"
    if per_s < 1e6:
        return f"{per_s / 1e3:.1f}k/s"
    return f"{per_s / 1e6:.2f}M/s"


def fmt_duration(s: float | None) -> str:
    """A duration for humans: 850ms, 4.2s, 3m05s, 2h07m."""
    if s is None:
        return DASH
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        m, sec = divmod(int(s), 60)
        return f"{m}m{sec:02d}s"
    h, m = divmod(int(s) // 60, 60)
    return f"{h}h{m:02d}m"


def fmt_latency(s: float | None) -> str:
    """Latency in ms with precision where it matters: 0.42ms, 12.3ms, 250ms, 1.20s."""
    if s is None:
        return DASH
    ms = s * 1000
    if ms < 1:
        return f"{ms:.2f}ms"
    if ms < 100:
        return f"{ms:.1f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    return f"{s:.2f}s"


def fmt_value(value: object) -> str:
    """A sink figure of any type, short."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return fmt_figure(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return DASH if value is None else str(value)
