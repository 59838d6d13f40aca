"""Draws her trend picture with matplotlib (Agg, no display) and turns figures into file bytes.

Figures are built with `matplotlib.figure.Figure`, never pyplot, so no global figure state
piles up in a long-running bot; `trend_figure` returns the figure so tests can inspect what
is plotted. Every word on a picture comes from content (`pictures.*`). Colours are the
Okabe-Ito palette (safe for colour-blind readers) and each series also differs by marker and
line style, so nothing depends on colour alone.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import TypeVar

import matplotlib

# Before anything can import pyplot: this machine (and the server) has no display.
matplotlib.use("Agg")

from matplotlib.axes import Axes
from matplotlib.dates import DateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator

from bot.charts import Trend
from bot.content import Messages

# Okabe & Ito (2008), "Color Universal Design".
VERMILLION = "#D55E00"
BLUE = "#0072B2"
BLUISH_GREEN = "#009E73"
ORANGE = "#E69F00"
REDDISH_PURPLE = "#CC79A7"
GREY = "#555555"

# Sized for a phone: Telegram shows a photo about 360-400 points wide, so a 6.4-inch figure
# at 170 dpi (1088 px) is scaled to about a third; 15-point text still reads as ~13 points.
TREND_SIZE = (6.4, 7.6)
TREND_DPI = 170
TITLE_SIZE = 24
LABEL_SIZE = 16
TICK_SIZE = 15
NOTE_SIZE = 14

# Line ids that tests and the card use to find each series in a figure.
GID_PAIN = "worst_pain"
GID_INTERFERENCE = "interference"
GID_TAKEN = "took_med:yes"
GID_MISSED = "took_med:missed"
GID_STOPPED = "took_med:stopped"

# matplotlib's font cache and text layout are not thread-safe; renders run in worker threads.
_RENDER_LOCK = threading.Lock()
T = TypeVar("T")


def rendered(build: Callable[[], T]) -> T:
    """Runs a drawing function under the render lock, without glyph warnings in the logs."""
    with _RENDER_LOCK, warnings.catch_warnings():
        # A missing glyph (e.g. an emoji in her question) draws a box; the warning would put
        # a character of her text into the logs.
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        return build()


def day_numbers(days: list[date]) -> list[float]:
    """Returns each date at noon as a matplotlib date number: a point sits mid-day."""
    return [float(date2num(datetime.combine(d, time(12)))) for d in days]


def date_axis(ax: Axes, trend: Trend, m: Messages, *, labelsize: float = TICK_SIZE) -> None:
    """Sets the x axis to the whole period with a few readable date ticks."""
    start = float(date2num(datetime.combine(trend.start, time(0))))
    ax.set_xlim(start, start + trend.length)
    # Ticks count back from today (the right edge), a week apart for a month, four weeks
    # apart for three months: four or five dates, never crowded.
    step = 7 if trend.length <= 31 else 28
    ticks = [trend.end - timedelta(days=n) for n in range(0, trend.length, step)]
    ax.xaxis.set_major_locator(FixedLocator(day_numbers(ticks)))
    ax.xaxis.set_major_formatter(DateFormatter(m.get("pictures.date_format")))
    ax.tick_params(axis="both", labelsize=labelsize)


def trend_figure(trend: Trend, m: Messages) -> Figure:
    """Builds her trend: pain and interference lines with gaps, and tablet answers below."""
    fig = Figure(figsize=TREND_SIZE, dpi=TREND_DPI, layout="constrained")
    grid = fig.add_gridspec(2, 1, height_ratios=[4.2, 1])
    pain_ax = fig.add_subplot(grid[0])
    tablet_ax = fig.add_subplot(grid[1], sharex=pain_ax)
    x = day_numbers(trend.dates)
    # Three months of daily points need smaller marks than one month to stay apart.
    scale = 1.0 if trend.length <= 31 else 0.55

    fig.suptitle(m.get("pictures.trend_title", days=trend.length), fontsize=TITLE_SIZE)
    pain_ax.plot(
        x,
        trend.worst_pain,
        color=VERMILLION,
        linewidth=3 * scale,
        marker="o",
        markersize=8 * scale,
        label=m.get("pictures.trend_pain"),
        gid=GID_PAIN,
    )
    pain_ax.plot(
        x,
        trend.interference,
        color=BLUE,
        linewidth=2.5 * scale,
        linestyle="--",
        marker="s",
        markersize=7 * scale,
        label=m.get("pictures.trend_interference"),
        gid=GID_INTERFERENCE,
    )
    pain_ax.set_ylim(-0.5, 10.5)
    pain_ax.set_yticks([0, 2, 4, 6, 8, 10])
    pain_ax.set_ylabel(m.get("pictures.trend_score_axis"), fontsize=LABEL_SIZE)
    pain_ax.grid(axis="y", color="#dddddd")
    pain_ax.legend(
        loc="lower left",
        bbox_to_anchor=(0.0, 1.01),
        ncol=1,
        fontsize=LABEL_SIZE,
        frameon=False,
        borderaxespad=0.0,
    )
    pain_ax.tick_params(labelbottom=False)

    marks = (
        ("yes", "pictures.trend_taken", BLUISH_GREEN, "o", GID_TAKEN),
        ("missed", "pictures.trend_missed", ORANGE, "X", GID_MISSED),
        ("stopped", "pictures.trend_stopped", REDDISH_PURPLE, "s", GID_STOPPED),
    )
    for value, key, colour, marker, gid in marks:
        xs = [xi for xi, took in zip(x, trend.took_med, strict=True) if took == value]
        tablet_ax.plot(
            xs,
            [0.0] * len(xs),
            linestyle="none",
            marker=marker,
            markersize=10 * scale,
            color=colour,
            label=m.get(key),
            gid=gid,
        )
    tablet_ax.set_ylim(-1, 1)
    tablet_ax.set_yticks([])
    tablet_ax.set_ylabel(m.get("pictures.trend_tablet"), fontsize=LABEL_SIZE)
    tablet_ax.legend(
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncol=3,
        fontsize=NOTE_SIZE,
        frameon=False,
        handletextpad=0.3,
        columnspacing=1.0,
    )
    date_axis(pain_ax, trend, m)
    date_axis(tablet_ax, trend, m)
    # The note sits under the dates, where the eye lands after reading them.
    tablet_ax.set_xlabel(m.get("pictures.trend_gaps"), fontsize=NOTE_SIZE, color=GREY)
    return fig


def png_bytes(fig: Figure, *, dpi: float | None = None) -> bytes:
    """Returns the figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi)
    return buffer.getvalue()


def render_trend_png(trend: Trend, m: Messages) -> bytes:
    """Draws her trend and returns it as PNG bytes (blocking: run it in a worker thread)."""
    return rendered(lambda: png_bytes(trend_figure(trend, m)))
