"""Run Python in a subprocess that can't import the optional extras' packages (as after a plain
``pip install sentiment-worker``): a ``sys.meta_path`` finder raises ``ModuleNotFoundError`` for torch,
transformers, optimum and onnx (not onnxruntime) and for ``training``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BLOCKED: tuple[str, ...] = ("torch", "transformers", "optimum", "onnx", "training")

_PRELUDE = """
import sys


class _BlockExtras:
    blocked = {blocked!r}

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in self.blocked):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: extra not installed)", name=name)
        return None


sys.meta_path.insert(0, _BlockExtras())
"""


def run_without_extras(code: str, *, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (after the blocking finder is installed) with the repo's Python; stdout/stderr captured."""
    script = _PRELUDE.format(blocked=BLOCKED) + code
    return subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
