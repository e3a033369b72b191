"""``slimbert bench report``: one self-contained HTML file from the result records.

Sections: the survey's Table 1 mirrored (:mod:`slimbert.bench.survey`), Pareto plots per task (accuracy vs latency
on each method's fastest runtime at batch 1, and accuracy vs size on disk; the front marked), the survey's
findings answered from the results (:mod:`slimbert.bench.findings`), and the environment and commands. Plots are
embedded as PNG data URIs and the page has no script: it opens offline.
"""

from __future__ import annotations

from pathlib import Path

from slimbert.bench.findings import FAILS, HOLDS, answer_findings
from slimbert.bench.records import BenchRecord, records_in
from slimbert.bench.survey import RUNTIMES, SHAPES, pareto_front, survey_rows
from slimbert.errors import SlimbertError
from slimbert.report.html import Raw, esc, figure_img, new_figure, page, png_img, table

SHORT = {"pytorch": "PyTorch", "onnxruntime": "ORT", "openvino": "OpenVINO"}


def load_results(directory: Path) -> dict[str, BenchRecord]:
    """Every benchmark record in ``directory`` (other JSON files are skipped); none is an error."""
    if not directory.is_dir():
        raise SlimbertError(f"--results {directory} is not a directory of result JSONs")
    records = records_in(directory)
    if not records:
        raise SlimbertError(f"{directory} holds no benchmark records (run `slimbert bench run` first)")
    return records


def _fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def survey_table_html(records: dict[str, BenchRecord]) -> str:
    rows, tasks = survey_rows(records)
    speed_keys = [f"{rt} {shape}" for rt in RUNTIMES for shape in SHAPES]
    headers = (["method", "family", "size % (w/o embeddings %)"]
               + [f"speed-up {SHORT[k.split()[0]]} {k.split()[1]}" for k in speed_keys]
               + [f"{t} metric % (change)" for t in tasks] + ["average drop (points)"])
    body = []
    for r in sorted(rows, key=lambda r: (r.family, r.method)):
        body.append([r.method, r.family, f"{_fmt(r.size_pct)} ({_fmt(r.size_no_embeddings_pct)})"]
                    + [_fmt(r.speedups.get(k), ".2f", "x") for k in speed_keys]
                    + [f"{r.metrics[t]:.2f} ({-r.drops[t]:+.2f})" if t in r.metrics and t in r.drops else "" for t in tasks]
                    + [_fmt(r.average_drop, ".2f")])
    return table(headers, body, table_id="survey-table")


def _fastest_b1(card) -> float | None:
    values = [card.compressed.latency(rt, "b1s128") for rt in RUNTIMES]
    values = [v for v in values if v]
    return min(values) if values else None


def pareto_plots(records: dict[str, BenchRecord]) -> str:
    """Per task: accuracy vs latency and accuracy vs size, the Pareto front drawn as a line."""
    by_task: dict[str, list] = {}
    for name, record in records.items():
        card = record.card
        if card is not None and card.compressed.metrics:
            by_task.setdefault(card.task, []).append((name, card))
    out = []
    for task, items in sorted(by_task.items()):
        fig, axes = new_figure(1, 2, figsize=(13, 5))
        for ax, (label, cost) in zip(axes, (("latency ms (batch 1, seq 128, fastest runtime)", _fastest_b1),
                                            ("size on disk MB", lambda c: c.compressed.size_mb))):
            points = [(cost(c), c.compressed.metric(c.main_metric) * 100, n) for n, c in items if cost(c)]
            if not points:
                continue
            ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, color="tab:blue")
            front = sorted((points[i] for i in pareto_front([(p[0], p[1]) for p in points])), key=lambda p: p[0])
            ax.plot([p[0] for p in front], [p[1] for p in front], color="tab:red", label="Pareto front")
            for x, y, n in front:
                ax.annotate(n, (x, y), fontsize=6)
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(f"{items[0][1].main_metric} (%)")
            ax.legend()
        fig.suptitle(f"{task}: accuracy vs latency and size ({len(items)} results)")
        fig.tight_layout()
        out.append(f"<h3>{esc(task)}</h3>" + figure_img(fig, f"{task} Pareto plots"))
    return "\n".join(out)


def findings_html(records: dict[str, BenchRecord]) -> str:
    rows = []
    for f in answer_findings(records):
        css = "holds" if f.verdict == HOLDS else "fails" if f.verdict == FAILS else "unknown"
        rows.append([f.claim, Raw(f'<span class="{css}">{esc(f.verdict)}</span>'), f.evidence])
    return table(["finding", "verdict", "measured evidence"], rows, table_id="findings")


def commands_html(records: dict[str, BenchRecord]) -> str:
    env = next(iter(records.values())).environment
    lines = [f"<p class='note'>Measured on: {esc(env.cpu)}, {env.threads} threads; "
             f"torch {esc(env.version('torch'))}, onnxruntime {esc(env.version('onnxruntime'))}, "
             f"openvino {esc(env.version('openvino'))}.</p>"]
    rows = [[name, Raw(f"<code>{esc(r.command)}</code>")] for name, r in sorted(records.items())]
    return "\n".join(lines) + table(["result", "command"], rows, table_id="commands")


def peers_html(peers: dict) -> str:
    """The ``slimbert bench peers`` record: its table and Pareto plot."""
    import tempfile

    from slimbert.bench.peers import peers_tables, plot_peers
    from slimbert.report.card_html import markdown_to_html

    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "peers.png"
        plot_peers(peers, png)
        image = png_img(png, "peers Pareto plot")
    return (f"<p>Teacher <code>{esc(peers['teacher'])}</code>, {esc(peers['task'])} dev set, one process, interleaved; "
            f"command: <code>{esc(peers.get('command', ''))}</code></p>" + markdown_to_html(peers_tables(peers))
            + image)


def render_bench_report(records: dict[str, BenchRecord], title: str = "slimbert: the survey's Table 1 on this model",
                        peers: dict | None = None, preface: str = "") -> str:
    body = [preface] if preface else []
    body += [
        "<p>Every figure below is computed from the benchmark records; the commands that produced them are listed at "
        "the end. Speed-ups are over the baseline's PyTorch fp32 latency in the same run.</p>",
        "<h2>Table 1, measured</h2>", survey_table_html(records),
        "<h2>Pareto plots</h2>", pareto_plots(records),
        "<h2>The survey's findings, answered from these results</h2>", findings_html(records),
        *(["<h2>Side by side with the runtimes' own one-line tools</h2>", peers_html(peers)] if peers else []),
        "<h2>Environment and commands</h2>", commands_html(records),
    ]
    return page(title, "\n".join(body))


def write_report(path: Path, html_text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html_text, encoding="utf-8")
    tmp.replace(path)
    return path
