"""When a worker process that died is started again, and when the supervisor gives up.

A process that exits while the supervisor is not stopping it counts as a crash (a non-zero exit, a signal, or an
exit 0 nobody asked for). It is restarted after the pipeline's own pause (:class:`~worker.stream.common.timing.
RestartBackoff`: 1 s, doubling up to 30 s while crashes keep coming within 2 minutes). The supervisor gives up when
one process crashed ``MAX_CRASHES`` times within ``CRASH_WINDOW_S`` seconds: it stops the others gracefully and
exits 1 with one log line naming the process, how it ended and why it gives up.
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass

from worker.stream.common.timing import RestartBackoff

MAX_CRASHES = 5
CRASH_WINDOW_S = 300.0


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``signal SIGKILL`` (a negative return code is the signal that ended the process)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


@dataclass(frozen=True)
class Decision:
    """What to do after a crash: restart after ``pause_s`` seconds, or give up (``give_up`` with ``reason``)."""

    give_up: bool
    pause_s: float = 0.0
    reason: str = ""


class CrashPolicy:
    """The crash history of one worker process (one per process index, kept across its restarts)."""

    def __init__(self, max_crashes: int = MAX_CRASHES, window_s: float = CRASH_WINDOW_S) -> None:
        if max_crashes < 1 or window_s <= 0:
            raise ValueError("max_crashes must be at least 1 and window_s positive")
        self.max_crashes = max_crashes
        self.window_s = window_s
        self.crashes: deque[float] = deque()
        self.backoff = RestartBackoff()

    def crashed(self, now: float) -> Decision:
        """Record a crash at ``now`` (monotonic seconds); restart after a pause, or give up."""
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > self.window_s:
            self.crashes.popleft()
        if len(self.crashes) >= self.max_crashes:
            return Decision(
                give_up=True,
                reason=f"it crashed {len(self.crashes)} times within {self.window_s:g} s "
                f"(the limit is {self.max_crashes})",
            )
        return Decision(give_up=False, pause_s=self.backoff.next_pause(now))

    def recent(self, now: float) -> int:
        """Crashes within the window up to ``now``."""
        return sum(1 for t in self.crashes if now - t <= self.window_s)
