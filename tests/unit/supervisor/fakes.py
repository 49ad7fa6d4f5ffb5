"""Fake worker processes and a fake clock for the supervisor's unit tests."""

from __future__ import annotations

import itertools
import signal
from dataclasses import dataclass, field

_pids = itertools.count(1000)


@dataclass
class FakeChild:
    """A started child: exits when told (``exit``), or with 0 on SIGTERM when ``obeys_term``."""

    index: int
    pid: int = field(default_factory=lambda: next(_pids))
    returncode: int | None = None
    signals: list[int] = field(default_factory=list)
    obeys_term: bool = True
    term_rc: int = 0
    internal_port: int | None = None
    answers: dict[str, tuple[int | None, bytes]] = field(default_factory=dict)

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is not None:
            return
        self.signals.append(sig)
        if sig == signal.SIGKILL:
            self.returncode = -signal.SIGKILL
        elif sig == signal.SIGTERM and self.obeys_term:
            self.returncode = self.term_rc

    def exit(self, rc: int) -> None:
        self.returncode = rc

    def port(self) -> int | None:
        return self.internal_port

    def get(self, path: str, timeout: float) -> tuple[int | None, bytes]:
        return self.answers.get(path, (None, b""))


class Spawner:
    """``spawn(index)`` for the supervisor: records every child it started, per index."""

    def __init__(self, **child_options: object) -> None:
        self.started: list[FakeChild] = []
        self.child_options = child_options

    def __call__(self, index: int) -> FakeChild:
        child = FakeChild(index=index, **self.child_options)  # type: ignore[arg-type]
        self.started.append(child)
        return child

    def of(self, index: int) -> list[FakeChild]:
        return [c for c in self.started if c.index == index]

    def latest(self, index: int) -> FakeChild:
        return self.of(index)[-1]


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
