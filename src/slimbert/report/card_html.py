"""``report.html``: the report card as a self-contained page, with its charts.

The text and tables are the Markdown report's (:func:`~slimbert.report.markdown.render_markdown`, so the two
never disagree), converted by a small renderer of the subset it uses (headings, tables, lists, paragraphs,
bold and code); the charts are the waterfall of the recipe's stages (metric and size after each step) and the
latency of baseline and compressed model per runtime and shape, embedded as PNG.
"""

from __future__ import annotations

import re

from slimbert.report.card import ReportCard
from slimbert.report.html import esc, figure_img, new_figure, page
from slimbert.report.markdown import render_markdown


def _inline(text: str) -> str:
    text = esc(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def markdown_to_html(markdown: str) -> str:
    """The report's Markdown subset as HTML."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                if not re.fullmatch(r"\|(\s*-+\s*\|)+", lines[i].replace(":", "")):
                    rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            head, *body = rows
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table>")
            continue
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def _waterfall(card: ReportCard) -> str | None:
    metric = card.main_metric
    if not card.stages or metric is None or not card.baseline.metrics:
        return None
    names = ["input"] + [f"{s.step}. {s.method}" for s in card.stages]
    values = [card.baseline.metric(metric) * 100] + [s.metrics.get(metric, 0) * 100 for s in card.stages]
    sizes = [card.baseline.weights_mb] + [s.size_mb for s in card.stages]
    fig, (left, right) = new_figure(1, 2, figsize=(11, 3.8))
    left.bar(names, values, color="tab:blue")
    left.set_ylim(max(0.0, min(values) - 5), max(values) + 1)
    left.set_ylabel(f"{metric} (%)")
    right.bar(names, sizes, color="tab:orange")
    right.set_ylabel("weights MB")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.suptitle("What each step bought and cost")
    fig.tight_layout()
    return figure_img(fig, "stage waterfall")


def _latency_chart(card: ReportCard) -> str | None:
    b, c = card.baseline, card.compressed
    keys = [(rt, shape) for rt, by_shape in c.latency_ms.items() for shape in by_shape]
    if not keys:
        return None
    fig, ax = new_figure(figsize=(max(6, len(keys) * 1.3), 3.8))
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], [b.latency(rt, s) or 0 for rt, s in keys], width=0.4, label="baseline")
    ax.bar([x + 0.2 for x in xs], [c.latency(rt, s) or 0 for rt, s in keys], width=0.4, label="compressed")
    ax.set_xticks(list(xs), [f"{rt}\n{s}" for rt, s in keys], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms (median)")
    ax.legend()
    fig.suptitle("Latency per runtime and shape")
    fig.tight_layout()
    return figure_img(fig, "latency per runtime")


def render_card_html(card: ReportCard) -> str:
    charts = [chart for chart in (_waterfall(card), _latency_chart(card)) if chart]
    body = markdown_to_html(render_markdown(card))
    # The title is the page's h1: drop the Markdown's own.
    body = re.sub(r"^<h1>.*?</h1>\n", "", body)
    return page(f"slimbert report: {card.recipe_name} on {card.task}",
                body + ("\n<h2>Charts</h2>\n" + "\n".join(charts) if charts else ""))
