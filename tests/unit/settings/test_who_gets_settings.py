"""Each component is handed its own settings section: only the assembly and the CLI hold the whole ``Settings``;
the settings package imports nothing above it. Checked on the source, so it can't drift."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

WORKER = Path(__file__).resolve().parents[3] / "worker"

# Where the whole Settings may go, and why: these build a worker (or a process, or an app) from the settings and
# hand each part its section.
ASSEMBLY = {
    "worker/app.py": "assembles a worker: `run` (the stream) and `serve` (HTTP only)",
    "worker/cli": "parses flags into Settings and calls the assembly",
    "worker/supervisor/__init__.py": "`run --processes N`: plans the processes, hands each child every setting",
    "worker/supervisor/child.py": "a child process rebuilds its Settings and runs the assembly",
    "worker/stream/runner.py": "wires the stream stages, handing each its section",
}


def _sources() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted(WORKER.rglob("*.py")):
        rel = str(path.relative_to(WORKER.parent))
        if "__pycache__" not in path.parts:
            out.append((rel, ast.parse(path.read_text(encoding="utf-8"), rel)))
    return out


def _allowed(rel: str) -> bool:
    return any(rel == place or rel.startswith(place + "/") for place in ASSEMBLY)


def _names(annotation: ast.expr | None) -> set[str]:
    """The names an annotation mentions (``Settings``, ``x.Settings``, ``Settings | None``, ``"Settings"``)."""
    if annotation is None:
        return set()
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return _names(ast.parse(annotation.value, mode="eval").body)
    return {n.id for n in ast.walk(annotation) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(annotation) if isinstance(n, ast.Attribute)
    }


def _whole_settings_uses(tree: ast.Module) -> list[str]:
    """Imports of the flat Settings, parameters annotated with it, parameters called ``settings`` typed Any/nothing."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "worker.settings":
            found += [f"line {node.lineno}: imports Settings" for a in node.names if a.name == "Settings"]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                names = _names(arg.annotation)
                if "Settings" in names:
                    found.append(f"line {node.lineno}: {node.name}({arg.arg}: Settings)")
                elif arg.arg == "settings" and (not names or names == {"Any"}):
                    found.append(f"line {node.lineno}: {node.name}(settings) untyped: duck-typed whole Settings?")
    return found


def test_only_the_assembly_and_the_cli_hold_the_whole_settings() -> None:
    offenders = {
        rel: uses
        for rel, tree in _sources()
        if not rel.startswith("worker/settings/") and not _allowed(rel) and (uses := _whole_settings_uses(tree))
    }
    assert not offenders, f"hand these their section(s) instead of Settings: {offenders}"


def test_the_check_sees_a_whole_settings_parameter() -> None:
    bad = ast.parse("from worker.settings import Settings\ndef f(settings: Settings) -> None: ...\n")
    untyped = ast.parse("def g(x: int, settings) -> None: ...\ndef k(s: 'Settings | None') -> None: ...\n")
    sections = ast.parse("from worker.settings import Kafka\ndef h(kafka: Kafka, settings: Kafka) -> None: ...\n")
    assert len(_whole_settings_uses(bad)) == 2 and len(_whole_settings_uses(untyped)) == 2
    assert _whole_settings_uses(sections) == []


def test_the_settings_package_imports_nothing_above_it() -> None:
    for rel, tree in _sources():
        if not rel.startswith("worker/settings/"):
            continue
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("worker")
        } | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name.startswith("worker")
        }
        above = {m for m in imported if not m.startswith("worker.settings") and m != "worker.observability"}
        assert not above, f"{rel} imports {sorted(above)}"
