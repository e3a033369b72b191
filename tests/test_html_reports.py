"""The HTML reports in a real browser (headless Chromium), and the survey's findings computed from results."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from browser import inspect_html, screenshot

from slimbert.bench.findings import FAILS, HOLDS, answer_findings
from slimbert.bench.html_report import load_results, render_bench_report, write_report
from slimbert.bench.survey import families, pareto_front, survey_rows
from slimbert.report.card_html import render_card_html

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
NAMES = ("drop-top-2-sst2", "drop-bottom-2-sst2", "heads-40-sst2", "heads-80-sst2", "ffn-50-sst2",
         "dynamic-int8-minilm-sst2", "magnitude-90-sst2", "movement-90-sst2", "distill-tinybert-4l-sst2",
         "distill-kd-logits-4l-sst2", "fast-cpu-c-select-sst2", "dynamic-int8-minilm-mrpc", "teacher-minilm-sst2")


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    """A copy of some of the repository's measured results (the report reads a directory)."""
    directory = tmp_path_factory.mktemp("results")
    for name in NAMES:
        shutil.copy(RESULTS / f"{name}.json", directory)
    return directory


def test_bench_report_loads_in_a_browser_with_its_tables_and_plots(results_dir, tmp_path):
    out = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "slimbert.cli", "bench", "report", "--results", str(results_dir),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    assert "http://" not in html and "https://" not in html  # self-contained: nothing fetched
    seen = inspect_html(out)
    assert seen["console_errors"] == []
    assert len(seen["images"]) == 2 and all(img["width"] > 0 for img in seen["images"])  # one figure per task
    rows, _ = survey_rows(load_results(results_dir))
    assert seen["tables"]["survey-table"] == len(rows) == len(NAMES) - 2  # teacher: no row; MRPC merges with SST-2
    assert seen["tables"]["findings"] == 8
    screenshot(out, tmp_path / "report.png")


def test_a_broken_image_is_caught(results_dir, tmp_path):
    out = write_report(tmp_path / "broken.html", render_bench_report(load_results(results_dir)))
    text = out.read_text()
    out.write_text(re.sub(r"base64,[A-Za-z0-9+/=]{40}", "base64,AAAAnotapng", text, count=1))
    seen = inspect_html(out)
    assert any(img["width"] == 0 for img in seen["images"])
    # And a script error would be seen too (the reports have no script; the check must still work).
    out.write_text(text.replace("</body>", "<script>undefinedFunction();</script></body>"))
    assert any("undefinedFunction" in line for line in inspect_html(out)["console_errors"])


def test_compress_report_card_loads_in_a_browser(tmp_path):
    from slimbert.bench.records import load_record

    card = load_record(RESULTS / "fast-cpu-c-select-sst2.json").card
    out = tmp_path / "report.html"
    out.write_text(render_card_html(card))
    seen = inspect_html(out)
    assert seen["console_errors"] == [] and len(seen["images"]) == 2
    assert all(img["width"] > 0 for img in seen["images"])
    assert "What each step bought and cost" in out.read_text()


def _with_metric(record, value: float):
    card = record.card
    metrics = {card.main_metric: value}
    return dataclasses.replace(record, result=dataclasses.replace(
        card, compressed=dataclasses.replace(card.compressed, metrics=metrics)))


def test_findings_follow_the_results(results_dir):
    records = load_results(results_dir)
    verdicts = {f.key: f.verdict for f in answer_findings(records)}
    assert verdicts["e"] == HOLDS and verdicts["b"] == HOLDS and verdicts["f"] == HOLDS
    # Flip the results: the bottom layers now matter less, int8 loses 3 points, logits-only distillation wins.
    flipped = dict(records)
    top = records["drop-top-2-sst2"]
    flipped["drop-bottom-2-sst2"] = _with_metric(records["drop-bottom-2-sst2"], top.card.compressed.metric("accuracy") + 0.01)
    base = records["dynamic-int8-minilm-sst2"].card.baseline.metric("accuracy")
    flipped["dynamic-int8-minilm-sst2"] = _with_metric(records["dynamic-int8-minilm-sst2"], base - 0.03)
    flipped["distill-kd-logits-4l-sst2"] = _with_metric(records["distill-kd-logits-4l-sst2"], base)
    after = {f.key: f for f in answer_findings(flipped)}
    assert after["e"].verdict == FAILS and after["b"].verdict == FAILS and after["f"].verdict == FAILS
    assert "3.00" in after["b"].evidence  # the cited number follows the data


def test_methods_compound_weighs_a_recipe_against_its_own_task(results_dir):
    """(h) compares a compound recipe with single-family results of the same task, never another task's."""
    records = load_results(results_dir)
    compound = [n for n, r in records.items() if r.card is not None and len(families(r.card)) > 1]
    assert compound == ["fast-cpu-c-select-sst2"]
    name = compound[0]
    sst2_rival = {f.key: f for f in answer_findings(records)}["h"].evidence
    assert name in sst2_rival and "-sst2 " in sst2_rival.split("at that accuracy")[-1]
    moved = dict(records)
    card = records[name].card
    moved[name] = dataclasses.replace(records[name], result=dataclasses.replace(card, task="mrpc"))
    evidence = {f.key: f for f in answer_findings(moved)}["h"].evidence
    # As an MRPC result it is weighed against MRPC results only (the fixture's MRPC int8 is not timed): no SST-2 rival.
    assert name in evidence and "-sst2 " not in evidence.split("at that accuracy")[-1]


def test_findings_without_their_experiments_say_not_measured(results_dir):
    records = load_results(results_dir)
    only = {"teacher-minilm-sst2": records["teacher-minilm-sst2"], "ffn-50-sst2": records["ffn-50-sst2"]}
    verdicts = {f.key: f.verdict for f in answer_findings(only)}
    assert set(verdicts.values()) == {"not measured"}


def test_pareto_front():
    points = [(1.0, 80.0), (2.0, 85.0), (3.0, 84.0), (0.5, 70.0), (2.0, 85.0)]
    assert pareto_front(points) == [0, 1, 3, 4]
