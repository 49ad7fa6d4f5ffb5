"""The supervisor's loop: start N worker processes, restart the ones that die, pass signals on, stop them all.

- SIGTERM/SIGINT: every child gets SIGTERM and drains on its own (a graceful stop); the supervisor waits for all
  of them and exits 0 when every one exited 0, else 1. A second SIGTERM/SIGINT is passed on too (each child then
  forces its stop, as a second signal does in a single-process ``run``). Children still running
  ``stop_timeout_s`` after the first signal are killed (exit 1).
- SIGHUP: passed on to every running child (each reloads its model).
- A child that exits while nothing stops it is restarted after a pause (:mod:`worker.supervisor.policy`); too many
  crashes of one child in a row end the supervisor with exit 1 (one ``supervisor_giving_up`` log line).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from worker.observability import get_logger
from worker.supervisor.children import Child
from worker.supervisor.policy import CrashPolicy, describe_exit

log = get_logger(__name__)

TICK_S = 0.1


@dataclass
class Slot:
    """Process ``index``: the child running it now (None between a death and its restart), its crash history."""

    index: int
    device_id: int
    policy: CrashPolicy
    child: Child | None = None
    restart_at: float | None = None
    restarts: int = 0
    exit_code: int | None = None  # how the last child in this slot ended

    @property
    def state(self) -> str:
        if self.child is not None:
            return "running"
        return "restarting" if self.restart_at is not None else "stopped"


class Supervisor:
    """N worker processes; ``spawn(index)`` starts process ``index`` (a :class:`~worker.supervisor.children.Child`).

    ``on_exit(child)`` runs once for each child that ended (e.g. prometheus-client's ``mark_process_dead``).
    """

    def __init__(
        self,
        devices: list[int],
        spawn: Callable[[int], Child],
        *,
        stop_timeout_s: float,
        on_exit: Callable[[Child], None] | None = None,
        policy: Callable[[], CrashPolicy] = CrashPolicy,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float = TICK_S,
    ) -> None:
        self.slots = [Slot(index=i, device_id=d, policy=policy()) for i, d in enumerate(devices)]
        self.spawn = spawn
        self.on_exit = on_exit
        self.stop_timeout_s = stop_timeout_s
        self.clock = clock
        self.tick_s = tick_s
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stop_signals = 0  # stop requests received
        self._stops_passed = 0  # stop requests passed on to the children
        self._reloads = 0
        self._reloads_passed = 0
        self.stopping = False
        self.stop_deadline: float | None = None
        self.gave_up: str | None = None  # the give-up reason, once given up
        self.exit_code: int | None = None

    # ---- requests (signal handlers, other threads) -------------------------------------------------
    def request_stop(self) -> None:
        with self._lock:
            self._stop_signals += 1
        self._wake.set()

    def request_reload(self) -> None:
        with self._lock:
            self._reloads += 1
        self._wake.set()

    # ---- the loop ---------------------------------------------------------------------------------
    def run(self) -> int:
        """Start every process and supervise them until all stopped; the exit code (0: all stopped cleanly)."""
        with _Signals(self):
            self.start_all()
            while self.exit_code is None:
                self._wake.wait(self.tick_s)
                self._wake.clear()
                self.step()
        return self.exit_code

    def start_all(self) -> None:
        log.info("supervisor_started", processes=len(self.slots), devices=[s.device_id for s in self.slots])
        for slot in self.slots:
            self._start(slot)

    def step(self) -> int | None:
        """One pass: pass signals on, reap and restart children, finish a stop. The exit code once all ended."""
        now = self.clock()
        with self._lock:
            stops, reloads = self._stop_signals - self._stops_passed, self._reloads - self._reloads_passed
            self._stops_passed, self._reloads_passed = self._stop_signals, self._reloads
        if stops:
            self._stop(now, forced=self.stopping or stops > 1, why="signal")
        if reloads and not self.stopping:
            log.info("supervisor_reload", action="SIGHUP to every process")
            self._signal_all(signal.SIGHUP)
        for slot in self.slots:
            self._reap(slot, now)
        if not self.stopping:
            for slot in self.slots:
                if slot.child is None and slot.restart_at is not None and now >= slot.restart_at:
                    self._start(slot)
                    slot.restarts += 1
        elif all(slot.child is None for slot in self.slots):
            clean = self.gave_up is None and all(slot.exit_code == 0 for slot in self.slots)
            self.exit_code = 0 if clean else 1
            log.info("supervisor_stopped", exit_code=self.exit_code, exits=[s.exit_code for s in self.slots])
        elif self.stop_deadline is not None and now >= self.stop_deadline:
            log.error("supervisor_stop_timeout", timeout_s=self.stop_timeout_s, action="SIGKILL to what is left")
            self._signal_all(signal.SIGKILL)
            self.stop_deadline = None
        return self.exit_code

    # ---- pieces -----------------------------------------------------------------------------------
    def _start(self, slot: Slot) -> None:
        slot.restart_at = None
        try:
            slot.child = child = self.spawn(slot.index)
        except OSError as exc:  # e.g. out of processes or memory: a crash like any other
            slot.exit_code = 1
            self._crashed(slot, None, f"start failed: {exc}", self.clock())
            return
        log.info("process_started", process=slot.index, pid=child.pid, device_id=slot.device_id)

    def _reap(self, slot: Slot, now: float) -> None:
        child = slot.child
        if child is None:
            return
        rc = child.poll()
        if rc is None:
            return
        slot.child = None
        slot.exit_code = rc
        if self.on_exit is not None:
            self.on_exit(child)
        how = describe_exit(rc)
        if self.stopping:
            log.info("process_stopped", process=slot.index, pid=child.pid, exit=how)
            return
        self._crashed(slot, child.pid, how, now)

    def _crashed(self, slot: Slot, pid: int | None, how: str, now: float) -> None:
        """Process ``slot.index`` ended unasked (``how``): restart it after a pause, or give up."""
        decision = slot.policy.crashed(now)
        if decision.give_up:
            self.gave_up = f"process {slot.index} (pid {pid}) ended with {how}; {decision.reason}"
            log.error(
                "supervisor_giving_up",
                process=slot.index,
                pid=pid,
                exit=how,
                reason=decision.reason,
                action="stopping the other processes, then exit 1",
                message=f"giving up: {self.gave_up}",
            )
            self._stop(now, forced=False, why="give_up")
            return
        slot.restart_at = now + decision.pause_s
        log.warning(
            "process_exited",
            process=slot.index,
            pid=pid,
            exit=how,
            restart_in_s=decision.pause_s,
            crashes_in_window=slot.policy.recent(now),
            max_crashes=slot.policy.max_crashes,
        )

    def _stop(self, now: float, *, forced: bool, why: str) -> None:
        if not self.stopping:
            self.stopping = True
            self.stop_deadline = now + self.stop_timeout_s
            for slot in self.slots:
                slot.restart_at = None
        log.info("supervisor_stopping", reason=why, forced=forced, running=self.running())
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: int) -> None:
        for slot in self.slots:
            if slot.child is not None:
                slot.child.send_signal(sig)

    # ---- state for health and metrics -----------------------------------------------------------------
    def running(self) -> int:
        return sum(1 for slot in self.slots if slot.child is not None)

    def snapshot(self) -> list[dict[str, Any]]:
        """Per process: index, state, pid, internal metrics port, device, restarts, last exit code."""
        return [
            {
                "process": slot.index,
                "state": slot.state,
                "pid": slot.child.pid if slot.child is not None else None,
                "internal_port": slot.child.port() if slot.child is not None else None,
                "device_id": slot.device_id,
                "restarts": slot.restarts,
                "last_exit_code": slot.exit_code,
            }
            for slot in self.slots
        ]


class _Signals:
    """On the main thread: SIGTERM/SIGINT → ``request_stop``; SIGHUP → ``request_reload``; restored on exit."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.supervisor.request_reload()
        else:
            self.supervisor.request_stop()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
