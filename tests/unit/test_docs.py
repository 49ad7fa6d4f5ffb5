"""The docs match the code and the committed results.

- docs/settings.md holds the table `sentiment-worker settings --markdown` prints, unchanged;
- every relative link in README.md, docs/*.md and the benchmark READMEs resolves (file, and heading anchor), every
  file path they name in a code span exists, and every metric the operating pages name is registered;
- every number on docs/performance.md (and in the README's Performance section) appears in a committed result the
  section links: a figure typed by hand, or left behind after a re-run, fails.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from worker.cli.info_cmds import settings_markdown
from worker.settings import Settings, env_name

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SETTINGS_DOC = DOCS / "settings.md"
PERFORMANCE_DOC = DOCS / "performance.md"
RESULTS = ROOT / "benchmarks" / "results"
LINKED_DOCS = [README, *sorted(DOCS.glob("*.md")), ROOT / "benchmarks" / "README.md", RESULTS / "README.md"]


# --- the settings reference -------------------------------------------------------------------------------------


def _generated_block(text: str) -> str:
    start = text.index("<!-- settings-table:start")
    start = text.index("\n", start) + 1
    end = text.index("<!-- settings-table:end -->")
    return text[start:end]


def test_settings_reference_is_what_the_command_prints() -> None:
    block = _generated_block(SETTINGS_DOC.read_text(encoding="utf-8"))
    assert block.strip() == settings_markdown().strip(), (
        "docs/settings.md is stale: paste the output of `sentiment-worker settings --markdown` between its markers"
    )


def test_every_setting_is_in_the_reference_with_its_env_var() -> None:
    block = _generated_block(SETTINGS_DOC.read_text(encoding="utf-8"))
    missing = [name for name in Settings.model_fields if f"`{env_name(name)}`" not in block]
    assert not missing


# --- links -----------------------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[|\]\([^)]*\)", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def _links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "``", text)  # a link inside a code span is an example, not a link
    return [a or b for a, b in LINK.findall(text)]


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in _links(doc):
        if re.match(r"[a-z]+:", target):  # http(s):, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{doc.relative_to(ROOT)}: {broken}"


PATH_IN_CODE = re.compile(r"`((?:worker|devtools|benchmarks|tests|deploy|schemas|docs)/[\w./-]*)[^`]*`")


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_file_paths_named_in_code_spans_exist(doc: Path) -> None:
    """`worker/stream/offsets.py`, `tests/unit/stream/` ...: a file moved or renamed leaves no stale path behind."""
    text = doc.read_text(encoding="utf-8")
    named = {m.group(1).rstrip("./") for m in PATH_IN_CODE.finditer(text)}
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"{doc.relative_to(ROOT)} names paths that don't exist: {missing}"


METRIC_PAGES = ["operating.md", "http-api.md", "rollout.md", "web-app.md", "guarantees.md"]
SERIES_SUFFIXES = {"counter": ("_total",), "info": ("_info",), "histogram": ("", "_bucket", "_sum", "_count")}


def _registered_metrics() -> set[str]:
    from prometheus_client import CollectorRegistry

    from worker.metrics import WorkerMetrics
    from worker.rollout.metrics import RolloutMetrics, ShadowMetrics
    from worker.serve.http_metrics import HttpMetrics

    registry = CollectorRegistry()
    for metrics in (WorkerMetrics, RolloutMetrics, ShadowMetrics, HttpMetrics):
        metrics(registry)
    names = {f.name + s for f in registry.collect() for s in SERIES_SUFFIXES.get(f.type, ("",))}
    # the supervisor's series are made at scrape time from its state (worker/supervisor/observe.py)
    return names | {"sentiment_worker_processes", "sentiment_worker_process_restarts_total"}


def test_metrics_the_docs_name_are_registered() -> None:
    """A metric renamed or dropped in the code leaves no stale name in the operating docs (families written with a
    wildcard, `sentiment_http_*`, and the record field `sentiment_meta` are not metric names)."""
    named = set()
    for page in METRIC_PAGES:
        text = (DOCS / page).read_text(encoding="utf-8")
        named |= {m.group(0) for m in re.finditer(r"sentiment_[a-z0-9_]*[a-z0-9](?![a-z0-9_*])", text)}
    named -= {"sentiment_meta"}
    assert len(named) > 20, named
    assert not sorted(named - _registered_metrics())


def test_the_docs_folder_is_linked_from_the_readme() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in _links(README)}
    unlinked = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README's table of contents doesn't link: {unlinked}"


# --- figures on the performance page ---------------------------------------------------------------------------

# a number as people write it: 9,130.4 / 0.95 / 85 / 3.7e-6 — not part of a word (p99, fp32, INT8, b8) nor of a
# longer number
NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?([eE][-+]?\d+)?(?![\w²³]|,\d{3})")
RESULT_LINK = re.compile(r"\]\(([^)\s]*benchmarks/results/(\d{4}-[^/)\s#]+)[^)\s]*)\)")  # a run's folder
SERIES = {"latency_cdf", "lag_timeline", "samples", "gflops_all"}  # raw samples: figures quote summaries of them


@dataclass(frozen=True)
class Figure:
    text: str
    value: Decimal


def _figures(text: str) -> list[Figure]:
    """The numbers of a block of markdown: link targets, code spans and fenced code left out."""
    text = FENCE.sub("", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    out = []
    for m in NUMBER.finditer(text):
        raw = m.group(1) + (m.group(2) or "") + (m.group(3) or "")
        out.append(Figure(raw, Decimal(raw.replace(",", ""))))
    return out


def _numbers_in(value: Any, into: set[Decimal]) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        if value == value and abs(value) != float("inf"):
            into.add(Decimal(repr(value)))
    elif isinstance(value, str):
        into.update(f.value for f in _figures(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in SERIES:
                _numbers_in(item, into)
    elif isinstance(value, list):
        for item in value:
            _numbers_in(item, into)


def result_numbers(run: Path) -> set[Decimal]:
    """Every number a committed run holds: its JSON files (all values) and its report.md (all text)."""
    numbers: set[Decimal] = set()
    for path in sorted(run.glob("*.json")):
        _numbers_in(json.loads(path.read_text(encoding="utf-8")), numbers)
    if (run / "report.md").is_file():
        numbers.update(f.value for f in _figures((run / "report.md").read_text(encoding="utf-8")))
    return numbers


def _found(figure: Figure, numbers: set[Decimal]) -> bool:
    """Written with k decimals, a figure matches a result that rounds to it (9,130 and 9,130.4 match 9130.44; a
    percentage matches the percentage the report prints, not a share in the JSON)."""
    exponent = figure.value.as_tuple().exponent
    half = Decimal(5) * Decimal(10) ** (int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    return any(abs(n - figure.value) <= half for n in numbers)


def _blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(section index, block, the section's result links): blocks are paragraphs, list items and table rows;
    a section runs from one heading to the next."""
    text = FENCE.sub("", text)
    out: list[tuple[int, str, list[str]]] = []
    sections = re.split(r"^(?=#{1,6} )", text, flags=re.M)
    for index, section in enumerate(sections):
        runs = [m.group(2) for m in RESULT_LINK.finditer(section)]
        for block in re.split(r"\n\s*\n|\n(?=\s*[-*] |\s*\|)", section):
            if block.strip():
                out.append((index, block, runs))
    return out


def unbacked_figures(markdown: str, results_dir: Path, *, linked_sections_only: bool = False) -> list[str]:
    """Each number of ``markdown`` that no linked run holds, as 'figure (block start)'.

    A block's numbers are checked against the runs the block links, else against those its section links; a
    section with numbers and no link to a run fails on each of them (with ``linked_sections_only``, such a section
    is left out: a page whose other sections quote tests or the code, not runs).
    """
    cache: dict[str, set[Decimal]] = {}
    problems = []
    for _, block, section_runs in _blocks(markdown):
        runs = [m.group(2) for m in RESULT_LINK.finditer(block)] or section_runs
        if linked_sections_only and not runs:
            continue
        numbers: set[Decimal] = set()
        for run in runs:
            if run not in cache:
                path = results_dir / run
                assert path.is_dir(), f"linked run {run} is not in {results_dir}"
                cache[run] = result_numbers(path)
            numbers |= cache[run]
        where = " ".join(block.split())[:70]
        problems += [f"{f.text} ({where})" for f in _figures(block) if not _found(f, numbers)]
    return problems


def _readme_performance_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Performance.*?(?=^## |\Z)", text, re.S | re.M)
    return match.group(0) if match else ""


def test_every_figure_on_the_performance_page_is_in_the_results_it_links() -> None:
    text = PERFORMANCE_DOC.read_text(encoding="utf-8")
    assert len(_figures(text)) > 100, "the page lost its figures, or the parser its numbers"
    assert not unbacked_figures(text, RESULTS)


def test_every_figure_of_the_readme_performance_section_is_in_the_results_it_links() -> None:
    assert not unbacked_figures(_readme_performance_section(), RESULTS)


def test_every_figure_of_the_starter_model_results_is_in_the_run_it_links() -> None:
    text = (DOCS / "starter-model.md").read_text(encoding="utf-8")
    assert "benchmarks/results/" in text
    assert not unbacked_figures(text, RESULTS, linked_sections_only=True)
    for old, new in [("**0.915**", "**0.951**"), ("19,046", "19,460"), ("3.7e-6", "7.3e-6")]:
        assert old in text, old
        assert unbacked_figures(text.replace(old, new, 1), RESULTS, linked_sections_only=True), new


def test_a_figure_typed_into_the_page_is_caught() -> None:
    text = PERFORMANCE_DOC.read_text(encoding="utf-8")
    assert "**9,130.4**" in text
    doctored = text.replace("**9,130.4**", "**9,730.4**", 1)
    assert unbacked_figures(doctored, RESULTS) == [f"9,730.4 ({_block_start(doctored, '9,730.4')})"]
    # a ratio nudged, a range widened, a latency swapped: each one caught
    for old, new in [("**3.15×**", "**3.51×**"), ("1.80–1.89 cores", "1.80–1.98 cores"), ("441 / 647", "441 / 674")]:
        assert old in text, old
        assert unbacked_figures(text.replace(old, new, 1), RESULTS), new


def test_a_figure_from_another_run_is_caught() -> None:
    """The reference run's 194 msg/s is not in the ceiling run: quoting it under the ceiling section fails."""
    text = PERFORMANCE_DOC.read_text(encoding="utf-8")
    anchor = "| variant | msg/s | CPU µs per message | cores |"
    assert anchor in text
    moved = text.replace(anchor, "The reference run did 194 msg/s.\n\n" + anchor, 1)
    assert any(p.startswith("194 ") for p in unbacked_figures(moved, RESULTS))


def test_a_section_without_a_result_link_fails_on_its_numbers() -> None:
    text = PERFORMANCE_DOC.read_text(encoding="utf-8")
    unlinked = re.sub(r"\[([^\]]*)\]\([^)]*benchmarks/results/[^)]*\)", r"\1", text)
    assert len(unbacked_figures(unlinked, RESULTS)) > 50


def _block_start(markdown: str, needle: str) -> str:
    block = next(b for _, b, _ in _blocks(markdown) if needle in b)
    return " ".join(block.split())[:70]


def test_the_checker_on_a_made_up_run(tmp_path: Path) -> None:
    run = tmp_path / "2030-01-01-cpu"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"rate": 9130.44, "share": 0.077, "note": "p99 458 ms"}))
    (run / "report.md").write_text("| worker | 1.21× | 7.7% |\n")
    page = (
        "## A\n\nRun [x](../benchmarks/results/2030-01-01-cpu/report.md): 9,130 msg/s, 9,130.4 msg/s, 7.7% waste,"
        " p99 458 ms, 1.21× the loop (`max_batch_size=64` in code is no figure).\n\n| a | 1.21× |\n\n"
        "## B\n\nNo link here: 12 things.\n"
    )
    assert unbacked_figures(page, tmp_path) == ["12 (No link here: 12 things.)"]
    assert unbacked_figures(page.replace("9,130.4", "9,130.5"), tmp_path)  # rounding, not approximation
    assert unbacked_figures(page.replace("7.7%", "7.8%"), tmp_path)
    (run / "report.md").write_text("| worker | 1.21× |\n")
    assert unbacked_figures(page, tmp_path)[0].startswith("7.7 "), "a share in the JSON is not a percentage"
    assert [f.text for f in _figures("fp32 p99 INT8 b8 2048² 1,762 ms, 0.95–1.09×, 3.7e-6 and 40,000")] == [
        "1,762",
        "0.95",
        "1.09",
        "3.7e-6",
        "40,000",
    ]
    assert _found(_figures("3.7e-6")[0], {Decimal("3.6954879760742188e-06")})
    assert not _found(_figures("3.9e-6")[0], {Decimal("3.6954879760742188e-06")})
