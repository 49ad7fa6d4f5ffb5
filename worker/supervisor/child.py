"""A worker process started by the supervisor: ``python -m worker.supervisor.child`` with a JSON spec on stdin.

The spec holds every setting (already overridden for this process: one process, its ``device_id``, internal
``metrics_port`` 0, its ``http_port``), the process index, the status file to write the internal port to and the
supervisor's pid. The worker is built by :mod:`worker.app` as in a single-process ``run``; the exit code is its own.
Signals: SIGTERM/SIGINT drain (a second one forces), SIGHUP reloads the model, as in ``run``; before the worker
installs its handlers (imports, start-up) SIGTERM/SIGINT already stop it gracefully and SIGHUP is ignored. If the
supervisor disappears (its pid is no longer our parent), the worker stops gracefully.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from worker.settings import Settings

PARENT_CHECK_S = 0.5


def child_settings_data(settings: Settings, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting as plain JSON (secrets in clear: this goes to the child on a pipe, never on a command line
    or in the environment), with ``overrides`` applied; :func:`main` builds the child's Settings from it."""
    data = settings.model_dump(mode="json")
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            data[name] = value.get_secret_value()
    data.update(overrides)
    return data


def _write_status(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _report_and_watch(worker: Any, status_file: Path, parent: int, done: threading.Event) -> None:
    """Write the internal port once the servers listen; stop the worker if the supervisor is gone."""
    reported = False
    while not done.wait(0.05 if not reported else PARENT_CHECK_S):
        servers = worker.servers
        if not reported and servers is not None and servers.metrics_port is not None:
            _write_status(status_file, {"pid": os.getpid(), "metrics_port": servers.metrics_port})
            reported = True
        if os.getppid() != parent:
            worker.stop()
            return


def main() -> int:
    spec = json.loads(sys.stdin.read())
    # The per-partition gauges drop revoked partitions' series; in multiprocess mode the value stays in this
    # process's file until a later one is more recent (livemostrecent), so the removal is harmless.
    warnings.filterwarnings("ignore", message=r"(Removal|Clearing) of labels has not been implemented")
    from worker.app import Worker
    from worker.observability import configure_logging, redact_secrets
    from worker.settings import Settings

    settings = Settings(**spec["settings"])  # every field given: nothing read from the environment
    redact_secrets(settings.secret_values())
    configure_logging(settings.log_format, settings.log_level)
    structlog.contextvars.bind_contextvars(process=spec["index"])  # on the main thread's lines
    worker = Worker(settings)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    done = threading.Event()
    watcher = threading.Thread(
        target=_report_and_watch,
        args=(worker, Path(spec["status_file"]), int(spec["parent"]), done),
        name="supervisor-link",
        daemon=True,
    )
    watcher.start()
    try:
        return worker.run()
    finally:
        done.set()


if __name__ == "__main__":
    sys.exit(main())
