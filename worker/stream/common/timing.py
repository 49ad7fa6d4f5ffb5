"""Time policies: a deadline that several steps share, the pause before a pipeline restart, the bounds of a stop."""

from __future__ import annotations

import time
from collections.abc import Callable

from worker.settings import Input

# After the drain (bounded by shutdown_timeout_s): the final commit (at least this long even when the drain used
# the whole budget) and closing the producer get at most CLOSE_STEP_S each. Leaving the group gets up to the session
# timeout, between CLOSE_STEP_S and LEAVE_GROUP_MAX_S: a LeaveGroup queued behind a JoinGroup the broker is holding
# has to wait for it, and past the session timeout the broker drops the member anyway.
CLOSE_STEP_S = 2.0
LEAVE_GROUP_MAX_S = 10.0
FINAL_COMMIT_MAX_S = 10.0


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


def leave_group_timeout_s(input: Input) -> float:
    """How long closing the consumer may wait to leave the group (bounded by the group's session timeout)."""
    return min(LEAVE_GROUP_MAX_S, max(CLOSE_STEP_S, input.session_timeout_ms / 1000.0))


def close_bound_s(input: Input) -> float:
    """Most seconds a stop takes after the drain deadline: final commit, leaving the group, closing the producer."""
    return CLOSE_STEP_S + leave_group_timeout_s(input) + CLOSE_STEP_S
