"""The layout rules the code base keeps (see README "How it works"): checked on the source, so they can't drift."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SOURCES = [
    p
    for folder in ("worker", "benchmarks", "tests")
    for p in sorted((REPO / folder).rglob("*.py"))
    if "__pycache__" not in p.parts
]
MAX_LINES = 450

# The stream stages in data-flow order; a stage may import the ones before it (and the shared modules), never a
# later one.
STAGES = ["source", "decode", "batcher", "infer", "encode", "sink", "commit", "runner"]
SHARED = {
    *("types", "offsets", "kafka_compat", "ports", "stats", "timing", "watch", "budget", "guard", "mend", "cluster"),
    "swap",
    "partition",
    "pacing",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_only_the_cli_imports_the_cli() -> None:
    offenders = [
        _rel(p)
        for p in SOURCES
        if not _rel(p).startswith(("worker/cli/", "tests/"))
        and _rel(p) != "worker/__main__.py"
        and any(name == "worker.cli" or name.startswith("worker.cli.") for name in _imports(p))
    ]
    assert not offenders, offenders


def test_nothing_edits_sys_path() -> None:
    pattern = re.compile(r"sys\.path\.(insert|append|extend)|sys\.path\s*=|sys\.path\s*\+=")
    offenders = [_rel(p) for p in SOURCES if p.name != Path(__file__).name and pattern.search(p.read_text())]
    assert not offenders, offenders


def test_worker_files_stay_short() -> None:
    long = {_rel(p): n for p in (REPO / "worker").rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_stream_stages_import_only_earlier_stages() -> None:
    stream = REPO / "worker" / "stream"
    for path in sorted(stream.glob("*.py")):
        name = path.stem
        if name not in STAGES:
            assert name in SHARED or name == "__init__", (
                f"{name}.py: a stream module that is neither a stage nor shared"
            )
            if name in SHARED:
                later = {f"worker.stream.{s}" for s in STAGES}
                assert not (_imports(path) & later), f"shared module {name}.py imports a stage"
            continue
        later = {f"worker.stream.{s}" for s in STAGES[STAGES.index(name) + 1 :]}
        bad = sorted(_imports(path) & later)
        assert not bad, f"{name}.py imports later stage(s) {bad}"


def test_serving_never_imports_training() -> None:
    folders = ("model", "stream", "serve", "rollout", "ui")
    serving = [p for folder in folders for p in sorted((REPO / "worker" / folder).glob("*.py"))]
    serving.append(REPO / "worker" / "app.py")
    offenders = {
        _rel(p): sorted(i for i in _imports(p) if i.startswith("worker.training"))
        for p in serving
        if any(i.startswith("worker.training") for i in _imports(p))
    }
    assert not offenders, offenders


KAFKA_PRIVATE = re.compile(
    r"\.(_coordinator|_client|_fetcher|_accumulator|_transaction_manager|_sender|_subscription|_net|"
    r"_commit_offsets\w*|_metadata)\b"
)


def test_kafka_python_internals_only_in_the_compat_module() -> None:
    compat = REPO / "worker" / "stream" / "kafka_compat.py"
    offenders = [
        f"{_rel(p)}:{n}"
        for p in SOURCES
        if p != compat and not _rel(p).startswith("tests/")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if KAFKA_PRIVATE.search(line) and not line.lstrip().startswith("#")
    ]
    assert not offenders, offenders


# A cited document: an upper-case name followed by a section sign, or "see" and an upper-case Markdown file name;
# each must exist in this repository.
CITATION = re.compile(r"\b([A-Z][A-Z_]{3,})(?:\.md)?\s*\u00a7|\bsee (?:docs )?([A-Z][A-Z_]{3,})\.md\b")


def test_every_cited_document_is_in_the_repository() -> None:
    present = {p.stem for p in REPO.rglob("*.md") if ".venv" not in p.parts}
    files = [*SOURCES, *(REPO / "deploy").rglob("*"), REPO / "README.md", REPO / "benchmarks" / "README.md"]
    offenders = sorted(
        f"{_rel(p)}: {name}"
        for p in files
        if p.is_file()
        for match in CITATION.finditer(p.read_text(errors="replace"))
        if (name := match.group(1) or match.group(2)) not in present
    )
    assert not offenders, offenders
