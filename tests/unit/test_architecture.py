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
    for folder in ("worker", "training", "webapp", "devtools", "benchmarks", "tests")
    for p in sorted((REPO / folder).rglob("*.py"))
    if "__pycache__" not in p.parts
]
MAX_LINES = 450

# worker/stream/ by role: the stages (modules of the folder itself) in data-flow order, the Kafka adapters
# (worker/stream/kafka/) and the helpers every stage shares (worker/stream/common/). A stage may import the stages
# before it, the adapters and the helpers, never a later stage; an adapter imports helpers and adapters, a helper only
# helpers; neither ever imports a stage.
STAGES = ["source", "decode", "pacing", "batcher", "infer", "encode", "sink", "offsets", "commit", "runner"]
KAFKA = {"kafka_compat", "cluster", "watch", "mend", "partition"}
COMMON = {"types", "ports", "guard", "swap", "budget", "stats", "timing"}


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


def _stream_modules(folder: str) -> dict[str, Path]:
    return {p.stem: p for p in sorted((REPO / "worker" / "stream" / folder).glob("*.py")) if p.stem != "__init__"}


def test_the_stream_folders_hold_their_roles() -> None:
    assert set(_stream_modules("")) == set(STAGES), "worker/stream/ holds the stages and nothing else"
    assert set(_stream_modules("kafka")) == KAFKA
    assert set(_stream_modules("common")) == COMMON
    packages = {p.parent.name for p in (REPO / "worker" / "stream").rglob("*.py") if "__pycache__" not in p.parts}
    assert packages == {"stream", "kafka", "common"}


def test_stream_stages_import_only_earlier_stages() -> None:
    stages = {f"worker.stream.{s}" for s in STAGES}
    adapters = {f"worker.stream.kafka.{s}" for s in KAFKA} | {"worker.stream.kafka"}
    for name, path in _stream_modules("").items():
        later = {f"worker.stream.{s}" for s in STAGES[STAGES.index(name) + 1 :]}
        bad = sorted(_imports(path) & later)
        assert not bad, f"{name}.py imports later stage(s) {bad}"
    for name, path in _stream_modules("kafka").items():
        assert not (_imports(path) & stages), f"Kafka adapter kafka/{name}.py imports a stage"
    for name, path in _stream_modules("common").items():
        bad = sorted(_imports(path) & (stages | adapters))
        assert not bad, f"helper common/{name}.py imports a stage or a Kafka adapter: {bad}"


KAFKA_PRIVATE = re.compile(
    r"\.(_coordinator|_client|_fetcher|_accumulator|_transaction_manager|_sender|_subscription|_net|"
    r"_commit_offsets\w*|_metadata)\b"
)


def test_kafka_python_internals_only_in_the_compat_module() -> None:
    compat = REPO / "worker" / "stream" / "kafka" / "kafka_compat.py"
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


# ---- the import graph of the project's packages ----------------------------------------------------------------
# Every import statement counts: at module level, inside a function (a lazy import is still a dependency) and under
# ``if TYPE_CHECKING:`` (a circle of type annotations still ties the modules together).
PROJECT = ("worker", "training", "webapp", "devtools", "benchmarks")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module_name(p): p for pkg in PROJECT for p in sorted((REPO / pkg).rglob("*.py")) if "__pycache__" not in p.parts
}


def _resolve(name: str) -> str | None:
    """The project module an imported name lives in (``a.b.C`` → ``a.b``), or None outside the project."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _dependencies(module: str) -> tuple[set[str], set[str]]:
    """(the project modules ``module`` imports, the top-level names of the other packages it imports)."""
    path = MODULES[module]
    project: set[str] = set()
    external: set[str] = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            # ``from pkg import sub``: the submodule when it is one, else the package itself
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for name in names:
            target = _resolve(name)
            if target is None:
                external.add(name.partition(".")[0])
            elif target != module:
                project.add(target)
    return project, external


GRAPH = {module: _dependencies(module) for module in MODULES}


def _cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(GRAPH[v][0]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles() -> None:
    assert not _cycles(), _cycles()


def test_the_cycle_finder_finds_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "worker.records", ({"worker.observability"}, set()))
    monkeypatch.setitem(GRAPH, "worker.observability", ({"worker.records"}, set()))
    assert ["worker.observability", "worker.records"] in _cycles()


# Top to bottom: a module imports modules of its own layer and of the layers below, never of a layer above. A module's
# layer is named by the longest entry that is the module or a package above it.
LAYERS: list[tuple[str, ...]] = [
    ("worker.cli", "worker.__main__"),  # parses the command line and calls one of the below
    ("devtools", "benchmarks"),  # development tools and benchmarks: they may use all of the runtime
    ("webapp", "worker.supervisor", "training"),  # applications built on workers and models: the web app, N processes
    ("worker.app",),  # the assembly: builds a stream worker or the HTTP-only service from settings
    ("worker.serve", "worker.rollout", "worker.tracing"),  # the HTTP API, model roll-out, tracing
    ("worker.stream",),  # the pipeline stages and their Kafka adapters
    ("worker.model", "worker.formats"),  # loading and running a model; record formats
    ("worker.metrics", "worker.health", "worker.probes", "worker.backlog_metrics"),  # metrics and health
    # shared by all: settings, logging, the record schemas, errors and optional-extra checks
    ("worker.settings", "worker.observability", "worker.records", "worker.datasets_input", "worker.model.errors"),
    ("worker.tracing.context",),  # W3C trace context, pure: the encoder propagates traceparent through it
    ("worker",),  # the package itself: __version__
]


def _layer(module: str) -> int:
    named = [
        (len(prefix), rank)
        for rank, layer in enumerate(LAYERS)
        for prefix in layer
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert named, f"{module}: in no layer (add its package to LAYERS)"
    return max(named)[1]


def test_no_import_runs_back_up() -> None:
    upward = sorted(
        f"{module} → {target}"
        for module, (targets, _) in GRAPH.items()
        for target in targets
        if _layer(target) < _layer(module)
    )
    assert not upward, upward


def test_layers_name_every_module_and_the_assembly_sits_under_the_applications() -> None:
    assert all(_layer(m) >= 0 for m in MODULES)
    assert _layer("worker.serve.front") > _layer("worker.app") > _layer("worker.supervisor")
    assert _layer("worker.model.errors") > _layer("worker.model.runtime")


def test_the_runtime_never_imports_training_the_web_app_nor_the_development_tools() -> None:
    """``worker`` is what a deployment runs (the images hold only it): model building (``training``), the web app
    (``webapp``) and the development tools (``devtools``) are for the command line alone, which imports them when a
    command needs them."""
    offenders = sorted(
        f"{module} → {target}"
        for module, (targets, _) in GRAPH.items()
        if module.startswith("worker.") and not module.startswith("worker.cli.")
        for target in targets
        if target.split(".")[0] in ("training", "webapp", "devtools")
    )
    assert not offenders, offenders


def _closure(module: str) -> set[str]:
    seen, todo = {module}, [module]
    while todo:
        for target in GRAPH[todo.pop()][0] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_stream_imports_no_onnxruntime() -> None:
    """The pipeline runs a model through ``worker.stream.common.ports.Model``: nothing under worker/stream imports ONNX
    Runtime, neither itself nor through a module it imports (``worker.model.runtime``, say)."""
    stream = [m for m in MODULES if m == "worker.stream" or m.startswith("worker.stream.")]
    offenders = {module: sorted(dep for dep in _closure(module) if "onnxruntime" in GRAPH[dep][1]) for module in stream}
    offenders = {module: deps for module, deps in offenders.items() if deps}
    assert not offenders, offenders
    assert "onnxruntime" in GRAPH["worker.model.runtime"][1]  # the check sees the import where it is
