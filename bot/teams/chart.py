"""The spend chart: a `ChartSpec` built from a report (pure), drawn to PNG with matplotlib's Agg.

matplotlib is imported only when a chart is drawn (it is slow to import and most processes never
draw one), and drawing runs in a worker thread (`render_chart`) so the event loop never waits.
Every label that came from a person or a backend (model ids, user ids) has its control
characters removed and its `$` escaped, so matplotlib shows it literally instead of as maths.
"""

from __future__ import annotations

import asyncio
import io
import math
import threading
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from bot.core.outbound_text import neutralise_controls
from bot.teams.report import UsageReport, usd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "MAX_SERIES",
    "CapLine",
    "ChartSeries",
    "ChartSpec",
    "RenderedChart",
    "chart_spec",
    "render_chart",
    "render_png",
]

# At most this many stacks; beyond it the smallest ones are summed as "N others".
MAX_SERIES = 8
_MAX_TICKS = 16
_LABEL_CHARS = 32
_DPI = 100
_HEIGHT_IN = 5.6
_COLOURS = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#9c755f",
)
_OTHER_COLOUR = "#bab0ac"
_CAP_COLOUR = "#c0392b"
# matplotlib does not promise thread safety; charts are rare, so one is drawn at a time.
_DRAWING = threading.Lock()


class ChartSeries(BaseModel):
    """One stack of the bars: its name and the USD spent on each day."""

    name: str
    values: list[float]


class CapLine(BaseModel):
    """A budget cap drawn as a horizontal line (a daily cap next to daily bars)."""

    label: str
    usd: float


class ChartSpec(BaseModel):
    """Everything the PNG shows; returned with it so tests and callers can check what was drawn."""

    title: str
    subtitle: str = ""
    x_labels: list[str]
    series: list[ChartSeries]
    cap: CapLine | None = None
    x_label: str = "Day (UTC)"
    y_label: str = "Spend (USD)"
    legend_title: str = ""
    footnote: str = ""


class RenderedChart(BaseModel):
    """The PNG bytes and the spec they were drawn from."""

    png: bytes
    spec: ChartSpec


def _fold(stacks: dict[str, list[Decimal]], limit: int) -> list[tuple[str, list[Decimal]]]:
    """The largest `limit - 1` stacks and the rest summed, when there are more than `limit`."""
    items = list(stacks.items())
    if len(items) <= limit:
        return items
    kept, rest = items[: limit - 1], items[limit - 1 :]
    summed = [
        sum(column, Decimal(0)) for column in zip(*(values for _, values in rest), strict=True)
    ]
    return [*kept, (f"{len(rest)} others", summed)]


def chart_spec(
    report: UsageReport,
    *,
    title: str,
    cap: CapLine | None = None,
    max_series: int = MAX_SERIES,
) -> ChartSpec:
    """The chart of a report: one bar per UTC day, stacked by the report's stack dimension."""
    series = [
        ChartSeries(name=name, values=[float(v) for v in values])
        for name, values in _fold(report.stacks, max_series)
    ]
    total = report.total
    calls = f"{total.calls:,} call" + ("" if total.calls == 1 else "s")
    subtitle = f"{report.window.label} · total {usd(total.cost_usd)} · {calls}"
    # "Dec 02" is ambiguous once the window crosses a new year: then the year is shown too.
    years = {day.year for day in report.days}
    label_format = "%b %d" if len(years) <= 1 else "%Y-%m-%d"
    footnote = ""
    if total.has_estimate:
        footnote = (
            f"{usd(total.estimated_usd)} of the total is estimated from catalog prices "
            "(the backend reported no cost)."
        )
    return ChartSpec(
        title=title,
        subtitle=subtitle,
        x_labels=[day.strftime(label_format) for day in report.days],
        series=series,
        cap=cap,
        legend_title=report.stack_dimension.capitalize(),
        footnote=footnote,
    )


def _literal(text: str, limit: int | None = None) -> str:
    """A label matplotlib shows as typed: no controls, `$` escaped (no mathtext)."""
    text = neutralise_controls(text).replace("\n", " ")
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _money_decimals(step: float) -> int:
    """Cents, or as many more decimals as the tick step needs ($0.025 steps: three)."""
    decimals = 2
    while decimals < 6 and abs(round(step, decimals) - step) > step * 1e-6:
        decimals += 1
    return decimals


def _draw_bars(ax: Axes, spec: ChartSpec) -> float:
    """The stacked bars; returns the tallest bar's height."""
    positions = list(range(len(spec.x_labels)))
    bottoms = [0.0] * len(positions)
    for n, series in enumerate(spec.series):
        colour = _OTHER_COLOUR if series.name.endswith(" others") else _COLOURS[n % len(_COLOURS)]
        ax.bar(
            positions,
            series.values,
            bottom=bottoms,
            width=0.75,
            color=colour,
            label=_literal(series.name, _LABEL_CHARS),
            edgecolor="white",
            linewidth=0.5,
        )
        bottoms = [b + v for b, v in zip(bottoms, series.values, strict=True)]
    return max(bottoms, default=0.0)


def _draw_axes(ax: Axes, spec: ChartSpec, tallest: float) -> None:
    from matplotlib.ticker import FuncFormatter

    count = len(spec.x_labels)
    step = max(1, math.ceil(count / _MAX_TICKS))
    ticks = list(range(0, count, step))
    ax.set_xticks(ticks, [spec.x_labels[i] for i in ticks], rotation=45, ha="right")
    ax.set_xlim(-0.6, count - 0.4)
    top = max(tallest, spec.cap.usd if spec.cap else 0.0)
    top = top * 1.15 if top > 0 else 1.0
    ax.set_ylim(0, top)
    levels = ax.get_yticks()
    decimals = _money_decimals(float(levels[1] - levels[0]) if len(levels) > 1 else top)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: rf"\${y:,.{decimals}f}"))
    ax.set_xlabel(_literal(spec.x_label))
    ax.set_ylabel(_literal(spec.y_label))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _draw(spec: ChartSpec) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width = min(max(8.0, 0.32 * len(spec.x_labels) + 4.5), 18.0)
    fig = Figure(figsize=(width, _HEIGHT_IN), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    tallest = _draw_bars(ax, spec)
    _draw_axes(ax, spec, tallest)
    if spec.cap is not None:
        ax.axhline(
            spec.cap.usd,
            color=_CAP_COLOUR,
            linestyle="--",
            linewidth=1.6,
            label=_literal(spec.cap.label, _LABEL_CHARS + 16),
        )
    if tallest <= 0:
        ax.text(
            0.5, 0.5, "No spend in this window", transform=ax.transAxes, ha="center", va="center"
        )
    if spec.series or spec.cap is not None:
        handles, labels = ax.get_legend_handles_labels()
        # Read top-down like the stacks: the cap (highest) first, then the top stack first.
        lines = int(spec.cap is not None)
        order = list(range(lines)) + list(range(len(handles) - 1, lines - 1, -1))
        ax.legend(
            [handles[i] for i in order],
            [labels[i] for i in order],
            title=_literal(spec.legend_title) or None,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
        )
    fig.suptitle(_literal(spec.title), fontsize=14, fontweight="bold")
    if spec.subtitle:
        ax.set_title(_literal(spec.subtitle), fontsize=10, color="#555555")
    if spec.footnote:
        fig.supxlabel(_literal(spec.footnote), fontsize=8, color="#555555", ha="center")
    return fig


def render_png(spec: ChartSpec) -> bytes:
    """Draw the chart (blocking: call it through `render_chart`); the title is in the metadata."""
    out = io.BytesIO()
    with _DRAWING:
        fig = _draw(spec)
        fig.savefig(
            out,
            format="png",
            metadata={"Title": spec.title, "Description": spec.subtitle, "Software": "tokenbot"},
        )
    return out.getvalue()


async def render_chart(spec: ChartSpec) -> RenderedChart:
    """Draw the chart in a worker thread; the PNG with the spec it shows."""
    png = await asyncio.to_thread(render_png, spec)
    return RenderedChart(png=png, spec=spec)
