"""Run reports for people: a terminal summary (rich) and a self-contained HTML page."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from aios.runtime import RunReport

BOOK_ROWS = (
    ("trades", "trades", "{:d}"),
    ("win rate", "win_rate", "{:.1%}"),
    ("PnL", "pnl_quote", "{:+.6g}"),
    ("PnL %", "pnl_pct", "{:+.3f} %"),
    ("max drawdown", "max_drawdown_pct", "{:.3f} %"),
    ("fees", "fees", "{:.6g}"),
    ("average exposure", "average_exposure_pct", "{:.2f} %"),
    ("end equity", "end_equity", "{:.8g}"),
)


def _fmt(value: Any, pattern: str) -> str:
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return str(value)


def render_text(report: RunReport) -> str:
    """The report as terminal text (rich tables, plain when not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=110, force_terminal=False)
    console.print(
        f"[bold]aios run {report.run_id}[/bold]  stage {report.stage}  policy {report.policy_hash[:12]} "
        f"({', '.join(report.policy_sources)})\n{report.candles} candles of {', '.join(report.symbols)}, "
        f"{report.first} .. {report.last}; {report.data_gaps} candle time(s) with missing data"
    )
    books = Table(title="actual vs shadow (everything enforced)")
    books.add_column("")
    books.add_column("actual", justify="right")
    books.add_column("shadow", justify="right")
    for label, key, pattern in BOOK_ROWS:
        books.add_row(
            label,
            _fmt(report.books["actual"][key], pattern),
            _fmt(report.books["shadow"][key], pattern),
        )
    console.print(books)
    proposals = Table(title="proposals per subsystem")
    for column in ("subsystem", "observed", "advisory", "applied", "errors"):
        proposals.add_column(column, justify="right" if column != "subsystem" else "left")
    for subsystem, counts in report.proposals.items():
        proposals.add_row(
            subsystem,
            *(str(counts.get(k, 0)) for k in ("observed", "advisory", "applied", "error")),
        )
    console.print(proposals)
    blocks = Table(title="entries blocked, by whom")
    blocks.add_column("by")
    blocks.add_column("actual", justify="right")
    blocks.add_column("shadow", justify="right")
    for by in sorted(set(report.blocks["actual"]) | set(report.blocks["shadow"])):
        blocks.add_row(
            by, str(report.blocks["actual"].get(by, 0)), str(report.blocks["shadow"].get(by, 0))
        )
    console.print(blocks)
    exits = Table(title="exits by reason")
    exits.add_column("reason")
    exits.add_column("actual", justify="right")
    exits.add_column("shadow", justify="right")
    actual_exits = report.books["actual"]["exits_by_reason"]
    shadow_exits = report.books["shadow"]["exits_by_reason"]
    for reason in sorted(set(actual_exits) | set(shadow_exits)):
        exits.add_row(reason, str(actual_exits.get(reason, 0)), str(shadow_exits.get(reason, 0)))
    console.print(exits)
    console.print(
        f"directive changes: {len(report.directives)}; risk-mode changes: {len(report.risk_modes)}"
    )
    for row in report.directives[-5:]:
        console.print(f"  {row['time']}  [{row['outcome']}] {row['reason']}")
    for row in report.risk_modes[-5:]:
        console.print(f"  {row['time']}  [{row['outcome']}] {row['reason']}")
    return console.export_text()


def _svg_curve(
    curves: Mapping[str, Sequence[tuple[str, float]]], width: int = 900, height: int = 260
) -> str:
    values = [v for curve in curves.values() for _, v in curve]
    if not values:
        return "<p>no equity samples</p>"
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    colours = {"actual": "#1f77b4", "shadow": "#ff7f0e"}
    paths = []
    for name, curve in curves.items():
        count = max(len(curve) - 1, 1)
        points = " ".join(
            f"{i / count * (width - 60) + 50:.1f},{height - 30 - (v - low) / span * (height - 50):.1f}"
            for i, (_, v) in enumerate(curve)
        )
        paths.append(
            f'<polyline fill="none" stroke="{colours.get(name, "#333")}" stroke-width="1.5" points="{points}"><title>{name}</title></polyline>'
        )
    axis = (
        f'<text x="4" y="24" font-size="11">{high:.6g}</text>'
        f'<text x="4" y="{height - 30}" font-size="11">{low:.6g}</text>'
        f'<text x="60" y="{height - 8}" font-size="11" fill="#1f77b4">actual</text>'
        f'<text x="120" y="{height - 8}" font-size="11" fill="#ff7f0e">shadow</text>'
    )
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="equity curves">{axis}{"".join(paths)}</svg>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: RunReport) -> str:
    """A self-contained HTML page: equity curves (actual and shadow) and the decision breakdown."""
    books = _table(
        ["", "actual", "shadow"],
        [
            (label, _fmt(report.books["actual"][key], p), _fmt(report.books["shadow"][key], p))
            for label, key, p in BOOK_ROWS
        ],
    )
    proposals = _table(
        ["subsystem", "observed", "advisory", "applied", "errors"],
        [
            (s, *(c.get(k, 0) for k in ("observed", "advisory", "applied", "error")))
            for s, c in report.proposals.items()
        ],
    )
    bys = sorted(set(report.blocks["actual"]) | set(report.blocks["shadow"]))
    blocks = _table(
        ["blocked by", "actual", "shadow"],
        [(b, report.blocks["actual"].get(b, 0), report.blocks["shadow"].get(b, 0)) for b in bys],
    )
    changes = _table(
        ["time", "outcome", "change"],
        [(r["time"], r["outcome"], r["reason"]) for r in (*report.directives, *report.risk_modes)],
    )
    title = f"aios {report.run_id}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:980px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>stage {html.escape(report.stage)}, policy {html.escape(report.policy_hash[:12])} ({html.escape(", ".join(report.policy_sources))});
{report.candles} candles of {html.escape(", ".join(report.symbols))}, {html.escape(report.first)} .. {html.escape(report.last)}</p>
<h2>Equity</h2>{_svg_curve(report.equity_curve)}
<h2>Actual vs shadow</h2>{books}
<h2>Proposals per subsystem</h2>{proposals}
<h2>Entries blocked</h2>{blocks}
<h2>Directive and risk-mode changes</h2>{changes}
</body></html>
"""
