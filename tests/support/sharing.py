"""What the test processes of one run share: under pytest-xdist (``-n N``) each worker is a process with its own
session fixtures, so a costly artefact that is the same for all of them (the tiny model's ONNX exports) is built
once, in a directory of the run that every worker sees, under a file lock; the others wait and reuse it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def run_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """``name`` under this run's base temp dir: the same for every xdist worker (their base dirs are its
    ``popen-gw*`` children), this session's own without xdist."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the file ``path`` (created if missing) for the block: one process at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
