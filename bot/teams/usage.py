"""`/tokenbot usage`: a spend table, a PNG chart and (with --csv) the ledger rows, all private.

A member sees their own spend; another member's (`--user @x`) or the workspace's (`--user all`)
is for admins. The chart and CSV are written under the data dir's `reports/` folder, handed to
the adapter as `File` parts of the private reply (Slack: the DM with the bot, Discord: an
ephemeral follow-up, console: `tokenbot-out/`) and removed once delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from bot.core.context import HandlerContext
from bot.core.messages import Failure, Fields, File, Notice, Part
from bot.teams.chart import CapLine, chart_spec, render_chart
from bot.teams.gate import is_admin, load_policy, who_to_ask
from bot.teams.report import (
    ReportWindowError,
    Totals,
    UsageReport,
    build_report,
    ledger_csv,
    usd,
    window_for,
)
from bot.teams.spec import UsageQuery

__all__ = ["MAX_TABLE_ROWS", "REPORTS_DIR", "caps_line", "usage", "usage_table"]

REPORTS_DIR = "reports"
MAX_TABLE_ROWS = 20
WORKSPACE = "all"
ESTIMATE_NOTE = "≈ marks costs estimated from catalog prices: the backend reported none."


def subject_of(requested: str | None, caller: str) -> str | None:
    """Whose usage: a user id, or None for the whole workspace (`--user all`)."""
    if requested is None or requested == "me":
        return caller
    return None if requested == WORKSPACE else requested


def _who(subject: str | None, caller: str) -> str:
    if subject is None:
        return "Workspace spend"
    return "Your spend" if subject == caller else f"Spend of {subject}"


def _cell(totals: Totals) -> str:
    tokens = totals.prompt_tokens + totals.completion_tokens
    calls = "1 call" if totals.calls == 1 else f"{totals.calls:,} calls"
    text = f"{usd(totals.cost_usd)} · {calls} · {tokens:,} tokens"
    if totals.has_estimate:
        text += f" (≈ {usd(totals.estimated_usd)} estimated)"
    return text


def usage_table(report: UsageReport, who: str) -> Fields:
    """The report as label/value rows: one per key (at most 20, the rest summed), then the total."""
    rows = [(row.key, _cell(row.totals)) for row in report.rows[:MAX_TABLE_ROWS]]
    rest = report.rows[MAX_TABLE_ROWS:]
    if rest:
        summed = Totals()
        for row in rest:
            summed.merge(row.totals)
        rows.append((f"{len(rest)} more", _cell(summed)))
    rows.append(("Total", _cell(report.total)))
    title = f"{who} by {report.dimension}, {report.window.label} (UTC)"
    return Fields(title=title, rows=rows)


def _money(value: Any) -> Decimal | None:
    """A cap from the policy ("5.00", 5, null); anything unreadable counts as no cap."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and amount > 0 else None


def _caps(budget: Mapping[str, Any]) -> dict[str, Decimal]:
    names = ("user_daily_usd", "user_monthly_usd", "workspace_monthly_usd")
    return {name: amount for name in names if (amount := _money(budget.get(name))) is not None}


def caps_line(caps: Mapping[str, Decimal]) -> str | None:
    """The workspace's caps in one line; None when no cap is set."""
    pieces = []
    if "user_daily_usd" in caps:
        pieces.append(f"{usd(caps['user_daily_usd'])} a day per member")
    if "user_monthly_usd" in caps:
        pieces.append(f"{usd(caps['user_monthly_usd'])} a month per member")
    if "workspace_monthly_usd" in caps:
        pieces.append(f"{usd(caps['workspace_monthly_usd'])} a month for the workspace")
    if not pieces:
        return None
    return "Caps (calls with the workspace key, and own keys opted in): " + ", ".join(pieces)


def _cap_line(caps: Mapping[str, Decimal], subject: str | None) -> CapLine | None:
    """The bars are daily: a member's daily cap is the line they compare with."""
    daily = caps.get("user_daily_usd")
    if subject is None or daily is None:
        return None
    return CapLine(label=f"Daily cap {usd(daily)}", usd=float(daily))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def _report_files(
    ctx: HandlerContext, report: UsageReport, png: bytes, csv_text: str | None
) -> list[File]:
    """The chart (and CSV) written under the data dir, as parts of the reply."""
    folder = ctx.settings.data_dir / REPORTS_DIR
    stem = f"tokenbot-usage-{report.dimension}-{report.window.until:%Y%m%d}"
    token = uuid.uuid4().hex
    chart = File(path=folder / f"{token}.png", mime="image/png", name=f"{stem}.png")
    await asyncio.to_thread(_write, chart.path, png)
    files = [chart]
    if csv_text is not None:
        table = File(path=folder / f"{token}.csv", mime="text/csv", name=f"{stem}.csv")
        await asyncio.to_thread(_write, table.path, csv_text.encode("utf-8"))
        files.append(table)
    return files


async def usage(cmd: UsageQuery, ctx: HandlerContext) -> None:
    """`/tokenbot usage`: the caller's spend, or (admins) a member's or the workspace's."""
    inbound = ctx.inbound
    subject = subject_of(cmd.user, inbound.user)
    if subject != inbound.user and not await is_admin(ctx):
        ctx.outcome = "denied"
        ask = who_to_ask(ctx, await load_policy(ctx))
        message = "Only tokenbot admins can see another member's or the workspace's usage."
        hint = f"`/tokenbot usage` shows your own. {ask}"
        await ctx.conversation.whisper([Failure(code="admin_only", message=message, hint=hint)])
        return
    now = datetime.now(UTC)
    try:
        window = window_for(cmd.since, cmd.since_days, now)
    except ReportWindowError as exc:
        await ctx.conversation.whisper([Failure(code="bad_window", message=str(exc))])
        return
    entries = await ctx.store.ledger_rows(
        inbound.platform, inbound.workspace, user=subject, since=window.since, until=window.until
    )
    report = build_report(entries, cmd.by, window)
    who = _who(subject, inbound.user)
    if report.total.calls == 0:
        text = f"{who}: no charged calls {window.label} (UTC)."
        await ctx.conversation.whisper([Notice(level="info", text=text)])
        return
    caps = _caps((await load_policy(ctx)).budget)
    parts: list[Part] = [usage_table(report, who)]
    if (line := caps_line(caps)) is not None:
        parts.append(Notice(level="info", text=line))
    if report.total.has_estimate:
        parts.append(Notice(level="info", text=ESTIMATE_NOTE))
    spec = chart_spec(
        report, title=f"{who} by {report.stack_dimension}", cap=_cap_line(caps, subject)
    )
    chart = await render_chart(spec)
    csv_text = ledger_csv(entries, window) if cmd.csv else None
    files = await _report_files(ctx, report, chart.png, csv_text)
    try:
        await ctx.conversation.whisper([*parts, *files])
    finally:
        # Delivered (or not): a report is made on demand, never kept on disk.
        await asyncio.to_thread(_remove, [f.path for f in files])
