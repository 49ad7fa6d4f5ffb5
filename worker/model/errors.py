"""Errors of the export path, and how a missing optional extra is told apart from a broken import.

``pip install sentiment-worker`` runs exported models only; exporting needs the ``[export]`` extra (torch,
transformers, optimum, optimum-onnx, onnx), training the ``[train]`` extra. An ``ImportError`` means "the
extra is not installed" only when it is a ``ModuleNotFoundError`` for a third-party package; any other
import error (one inside this project, a package of the wrong version) propagates as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from importlib import metadata

EXPORT_EXTRA = "export"
TRAIN_EXTRA = "train"
OUR_PACKAGES = ("worker", "training", "devtools", "benchmarks")  # this project's: a missing one is a broken install
# The distributions of pyproject.toml's [export] and [train] extras (a unit test keeps the lists equal): [train]
# is [export] plus accelerate (transformers.Trainer needs it; materials are fetched with pip and npm).
EXPORT_PACKAGES: tuple[str, ...] = ("torch", "transformers", "optimum", "optimum-onnx", "onnx")
TRAIN_PACKAGES: tuple[str, ...] = (*EXPORT_PACKAGES, "accelerate")


class ModelUnavailableError(RuntimeError):
    """The model can't be obtained (hub unreachable and nothing cached, or a bad local path)."""


class ExportError(RuntimeError):
    """The export itself failed (unsupported model, optimiser/quantiser error)."""


def install_hint(extra: str) -> str:
    return f"pip install 'sentiment-worker[{extra}]'"


class ExtraNotInstalledError(ModelUnavailableError):
    """An optional extra of sentiment-worker is needed but its packages are not installed."""

    def __init__(self, extra: str, purpose: str, missing: Iterable[str]) -> None:
        self.extra = extra
        self.missing = sorted(set(missing))
        alternative = ", or point SENTIMENT_MODEL (--model) at an already exported ONNX dir"
        super().__init__(
            f"{purpose} needs the optional [{extra}] packages, which are not installed "
            f"(missing: {', '.join(self.missing)}); install them with {install_hint(extra)}"
            + (alternative if extra == EXPORT_EXTRA else "")
        )


def is_missing_third_party(exc: BaseException) -> bool:
    """True when ``exc`` says a third-party package is not installed (not a broken import of this project)."""
    name = getattr(exc, "name", None)
    return isinstance(exc, ModuleNotFoundError) and bool(name) and str(name).partition(".")[0] not in OUR_PACKAGES


def missing_distributions(names: Iterable[str]) -> list[str]:
    """The distributions among ``names`` that are not installed (package metadata only; imports nothing)."""
    missing = []
    for name in names:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def require_extra(extra: str, packages: Iterable[str], purpose: str) -> None:
    """Raise :class:`ExtraNotInstalledError` unless every distribution in ``packages`` is installed."""
    missing = missing_distributions(packages)
    if missing:
        raise ExtraNotInstalledError(extra, purpose, missing)


@contextlib.contextmanager
def extra_imports(extra: str, purpose: str) -> Iterator[None]:
    """Wrap the lazy imports of an optional extra: a missing third-party module → :class:`ExtraNotInstalledError`."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if not is_missing_third_party(exc):
            raise
        raise ExtraNotInstalledError(extra, purpose, [str(exc.name).partition(".")[0]]) from exc
