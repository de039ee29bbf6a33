"""The spend chart: a known ledger drawn to PNG (decodes, size, title metadata, cap line)."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from PIL import Image as PILImage

from bot.store.models import LedgerEntry, Owner
from bot.teams.chart import MAX_SERIES, CapLine, chart_spec, render_chart
from bot.teams.report import build_report, window_for

NOW = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def entry(
    cost: str, days_ago: int, service: str, model: str, *, estimate: bool = False
) -> LedgerEntry:
    return LedgerEntry(
        owner=Owner(platform="slack", workspace="T1", user="U1"),
        service=service,
        command="chat",
        model=model,
        cost_usd=Decimal(cost),
        cost_source="estimate" if estimate else "reported",
        created_at=NOW - timedelta(days=days_ago),
    )


KNOWN = [
    entry("0.40", 0, "alltoken", "gpt-5.4-mini"),
    entry("0.25", 0, "openmarlin", "claude-sonnet-4-6"),
    entry("0.90", 2, "alltoken", "gpt-image-1"),
    entry("0.10", 5, "openclaw_token", "deepseek-v3", estimate=True),
    entry("1.20", 6, "openmarlin", "veo-3"),
]


async def test_a_known_ledger_renders_a_png_with_its_title_and_cap_line() -> None:
    report = build_report(KNOWN, "day", window_for(None, 7, NOW))
    cap = CapLine(label="Daily cap $1.50", usd=1.5)
    chart = await render_chart(chart_spec(report, title="Your spend by backend", cap=cap))

    image = PILImage.open(io.BytesIO(chart.png))
    image.load()  # decodes the whole image, not just the header
    assert image.format == "PNG"
    assert image.size == (800, 560)  # 8 x 5.6 inches at 100 dpi for a week of bars
    assert image.info["Title"] == "Your spend by backend"
    assert "total $2.85" in image.info["Description"]
    # More than a blank canvas: the bars and the cap line put colour on it.
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 20

    spec = chart.spec
    assert spec.cap == cap
    assert spec.y_label == "Spend (USD)" and spec.x_label == "Day (UTC)"
    assert spec.x_labels == ["Nov 26", "Nov 27", "Nov 28", "Nov 29", "Nov 30", "Dec 01", "Dec 02"]
    assert [s.name for s in spec.series] == ["openmarlin", "alltoken", "openclaw_token"]
    assert spec.series[0].values == [1.2, 0, 0, 0, 0, 0, 0.25]
    assert spec.legend_title == "Backend"
    assert "$0.10 of the total is estimated" in spec.footnote


async def test_more_than_eight_series_fold_into_others() -> None:
    ledger = [entry(f"0.{n + 1:02d}", n % 7, "alltoken", f"model-{n}") for n in range(12)]
    report = build_report(ledger, "model", window_for(None, 7, NOW))
    spec = chart_spec(report, title="Workspace spend by model")
    assert len(spec.series) == MAX_SERIES
    assert spec.series[-1].name == "5 others"
    assert [s.name for s in spec.series[:3]] == ["model-11", "model-10", "model-9"]
    total = sum(sum(s.values) for s in spec.series)
    assert abs(total - float(report.total.cost_usd)) < 1e-9
    assert spec.cap is None


async def test_hostile_labels_render_literally_and_a_long_window_stays_readable() -> None:
    # `$…$` would be mathtext (and `$\frac` an error) if the label were not escaped.
    names = ["sora $2 $x^2$", "$\\frac{a}{", "bell\x07\x1b[31mred", "x" * 200]
    ledger = [entry("0.5", n * 30, "alltoken", name) for n, name in enumerate(names)]
    report = build_report(ledger, "model", window_for(None, 366, NOW))
    chart = await render_chart(chart_spec(report, title="Title with $5 and $x$"))
    image = PILImage.open(io.BytesIO(chart.png))
    image.load()
    assert image.info["Title"] == "Title with $5 and $x$"
    assert image.size == (1800, 560)  # wide, but bounded
    assert len(chart.spec.x_labels) == 366


async def test_an_empty_window_still_draws() -> None:
    report = build_report([], "day", window_for(None, 7, NOW))
    chart = await render_chart(chart_spec(report, title="Your spend by backend"))
    PILImage.open(io.BytesIO(chart.png)).load()
    assert chart.spec.series == [] and chart.spec.footnote == ""


def test_importing_the_chart_module_does_not_import_matplotlib() -> None:
    code = "import sys, bot.teams.chart; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_the_subtitle_counts_calls_in_words() -> None:
    one = chart_spec(build_report(KNOWN[:1], "day", window_for(None, 7, NOW)), title="t")
    many = chart_spec(build_report(KNOWN, "day", window_for(None, 7, NOW)), title="t")
    assert one.subtitle.endswith("· 1 call") and many.subtitle.endswith("· 5 calls")
