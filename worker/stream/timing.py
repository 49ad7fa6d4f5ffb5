"""Time policies: a deadline that several steps share, and the pause before a pipeline restart."""

from __future__ import annotations

import time
from collections.abc import Callable


class Deadline:
    """A point in time ``seconds`` from now, that several steps share (e.g. a shutdown's drain, stopping the
    stages, flushing and the final commit), instead of each computing its own."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = clock() + seconds

    def remaining(self, at_least: float = 0.0) -> float:
        """Seconds left (never less than ``at_least``: some steps get a minimum even past the deadline)."""
        return max(at_least, self.at - self._clock())

    def expired(self) -> bool:
        return self._clock() >= self.at


class RestartBackoff:
    """Pause before a pipeline restart: 1 s, doubling up to 30 s while restarts keep coming (within 2 minutes)."""

    def __init__(self) -> None:
        self._last = 0.0
        self._pause = 0.0

    def next_pause(self, now: float) -> float:
        self._pause = 1.0 if now - self._last > 120.0 else min(30.0, max(1.0, 2 * self._pause))
        self._last = now
        return self._pause
