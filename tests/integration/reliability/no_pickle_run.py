"""``python -m tests.integration.reliability.no_pickle_run``: the worker's run path with unsafe loaders disabled.

Before anything of the worker is imported, ``pickle``/``_pickle`` loading is replaced by a function that records
the call and raises, and an audit hook records (and refuses) every ``pickle.find_class`` event — raised whenever
any unpickler, in Python or C, resolves a class or function. Then the real worker (``worker.app``) runs from SENTIMENT_*
settings until ``NO_PICKLE_EXPECT`` outputs are acknowledged, and one JSON line reports what happened: the exit
code, the outputs, the refused loads, and whether torch / transformers / optimum were imported.
"""

from __future__ import annotations

import _pickle
import json
import os
import pickle
import sys
from typing import Any

refused: list[str] = []


def _refuse(name: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        refused.append(name)
        raise RuntimeError(f"{name} called in the run path")

    return refuse


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "pickle.find_class":
        refused.append(f"{event}{args}")
        raise RuntimeError(f"unpickling {args} in the run path")


def main() -> int:
    sys.addaudithook(_audit)
    for module in (pickle, _pickle):
        for name in ("load", "loads", "Unpickler"):
            setattr(module, name, _refuse(f"{module.__name__}.{name}"))

    from worker.app import Worker
    from worker.observability import configure_logging
    from worker.settings import load_settings

    settings = load_settings()
    configure_logging("json", settings.log_level)
    expect = int(os.environ["NO_PICKLE_EXPECT"])
    state: dict[str, Any] = {"outputs": 0}

    def on_output(_out: Any) -> None:
        state["outputs"] += 1
        if state["outputs"] >= expect:
            worker.stop()

    worker = Worker(settings, on_output=on_output)
    rc = worker.run()
    report = {
        "rc": rc,
        "outputs": state["outputs"],
        "refused": refused,
        **{name: name in sys.modules for name in ("torch", "transformers", "optimum")},
    }
    print("NO_PICKLE_REPORT " + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
