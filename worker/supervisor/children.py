"""One worker process as the supervisor sees it: started, signalled, reaped, and asked how it is.

A child is ``python -m worker.supervisor.child`` (:mod:`worker.supervisor.child`), in its own process group (a
Ctrl-C in a terminal reaches the supervisor only, which then stops each child once). Its settings arrive as JSON on
stdin (secrets never on a command line or in the environment); its environment is the supervisor's without
``SENTIMENT_*`` (the settings are complete) and with ``PROMETHEUS_MULTIPROC_DIR`` set, so its metrics land in the
shared directory the supervisor's ``/metrics`` merges. Once its servers listen it writes its internal metrics port
to a status file, where :meth:`ChildProcess.get` finds it to ask ``/healthz``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from worker.observability import get_logger

log = get_logger(__name__)

CHILD_MODULE = "worker.supervisor.child"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Child(Protocol):
    """What the supervisor needs of a started worker process (fakes in the unit tests)."""

    index: int
    pid: int

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def port(self) -> int | None: ...

    def get(self, path: str, timeout: float) -> tuple[int | None, bytes]: ...


def child_env(metrics_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ours without SENTIMENT_* settings, with the shared metrics directory."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if not k.startswith("SENTIMENT_")}
    env[MULTIPROC_ENV] = str(metrics_dir)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class ChildProcess:
    """A worker process started from ``settings_data`` (every setting, JSON; see ``child.child_settings_data``)."""

    def __init__(self, index: int, settings_data: dict[str, Any], run_dir: Path, metrics_dir: Path) -> None:
        self.index = index
        self.status_file = run_dir / f"process-{index}.json"
        self.status_file.unlink(missing_ok=True)  # a previous incarnation's port
        spec = {"index": index, "settings": settings_data, "status_file": str(self.status_file), "parent": os.getpid()}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE],
            stdin=subprocess.PIPE,
            env=child_env(metrics_dir),
            process_group=0,
        )
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(spec).encode())
            self.proc.stdin.close()
        except OSError:  # it died at once: poll() tells
            pass
        self.pid = self.proc.pid
        self._port: int | None = None

    def poll(self) -> int | None:
        return self.proc.poll()

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)  # nothing once it was reaped; a race with its exit is ignored

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def port(self) -> int | None:
        """The child's internal metrics port, once it wrote it (its servers listen)."""
        if self._port is None:
            try:
                status = json.loads(self.status_file.read_text())
            except (OSError, ValueError):
                return None
            if status.get("pid") == self.pid:
                self._port = int(status["metrics_port"])
        return self._port

    def get(self, path: str, timeout: float) -> tuple[int | None, bytes]:
        """GET ``path`` on the child's internal metrics port: (status, body); (None, b"") before it listens or when
        it does not answer."""
        port = self.port()
        if port is None:
            return None, b""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()
        except OSError:
            return None, b""
