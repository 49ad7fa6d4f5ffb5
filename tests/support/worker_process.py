"""The worker as a real process (``python -m worker run``, the real CLI) with JSON logs to a file, for tests.

``worker_env`` gives its environment (SENTIMENT_* settings, inherited ones dropped; Tansu's group timing);
``WorkerProcess`` starts, signals, stops and kills it, reads its log events and its resources (Linux /proc).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.support.kafka_utils import SAFER_GROUP_CONFIG, TEST_FETCH_WAIT_MS
from tests.support.waits import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def worker_env(bootstrap: str, topic: str, group: str, model_dir: Path | str, **settings: Any) -> dict[str, str]:
    """Environment for ``python -m worker run``: SENTIMENT_* settings (inherited ones dropped), JSON logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    base: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "input_topics": topic,
        "group_id": group,
        "model": str(model_dir),
        "device": "cpu",
        "threads": 1,  # two cores shared with the broker, the test and other jobs
        "log_format": "json",
        "log_interval_s": 5,
        "fetch_max_wait_ms": TEST_FETCH_WAIT_MS,
        **SAFER_GROUP_CONFIG,
    }
    base.update(settings)
    env.update({f"SENTIMENT_{k.upper()}": str(v) for k, v in base.items() if v is not None})
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    """``python -m <module> run`` (the real CLI) as a child process, JSON logs to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, module: str = "worker", args: Iterable[str] = ("run",)):
        self.env = env
        self.log_path = Path(log_path)
        self.module = module
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._log: Any = None

    def start(self) -> WorkerProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL and reap."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.wait(30)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is not None and self._log is not None:
                self._log.close()
                self._log = None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait; SIGKILL if it doesn't exit in time (then the test fails on the return code)."""
        if not self.alive():
            return self.wait(1)
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    # -- logs ------------------------------------------------------------------------------------------------
    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                out.append(event)
        return out

    def wait_event(self, name: str, timeout: float, count: int = 1) -> list[dict[str, Any]]:
        def seen() -> list[dict[str, Any]] | None:
            if not self.alive():
                raise AssertionError(f"worker exited ({self.proc.poll() if self.proc else None}) before {name!r}")
            found = self.events(name)
            return found if len(found) >= count else None

        return wait_for(seen, timeout, 0.1, f"{count}x {name!r} in {self.log_path.name}")

    # -- resources (Linux /proc) --------------------------------------------------------------------------
    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status_kib(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def peak_rss_mib(self) -> float:
        return self.status_kib("VmHWM") / 1024

    def rss_mib(self) -> float:
        return self.status_kib("VmRSS") / 1024
