"""The supervisor's loop with fake children and a fake clock: restarts with backoff, giving up, stop, signals."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from structlog.testing import capture_logs

from worker.supervisor.policy import CrashPolicy
from worker.supervisor.supervisor import Supervisor

from .fakes import Clock, Spawner

pytestmark = pytest.mark.unit


def _supervisor(n: int = 2, *, spawner: Spawner | None = None, clock: Clock | None = None, **kw) -> Supervisor:
    stop_timeout_s = kw.pop("stop_timeout_s", 60.0)
    return Supervisor(list(range(n)), spawner or Spawner(), stop_timeout_s=stop_timeout_s, clock=clock or Clock(), **kw)


def test_starts_one_child_per_device_entry() -> None:
    spawner = Spawner()
    sup = Supervisor([0, 1, 0], spawner, stop_timeout_s=10, clock=Clock())
    sup.start_all()
    assert [c.index for c in spawner.started] == [0, 1, 2]
    assert [s["device_id"] for s in sup.snapshot()] == [0, 1, 0]
    assert [s["state"] for s in sup.snapshot()] == ["running"] * 3


def test_a_dead_child_is_restarted_after_the_backoff_pause_and_reported_dead() -> None:
    spawner, clock, dead = Spawner(), Clock(), []
    sup = _supervisor(spawner=spawner, clock=clock, on_exit=dead.append)
    sup.start_all()
    first = spawner.latest(1)
    first.exit(-signal.SIGKILL)
    assert sup.step() is None
    assert dead == [first]
    assert sup.snapshot()[1]["state"] == "restarting"
    clock.advance(0.5)
    sup.step()
    assert len(spawner.of(1)) == 1, "not before the pause (1 s for a first crash)"
    clock.advance(0.6)
    sup.step()
    assert len(spawner.of(1)) == 2 and spawner.latest(1) is not first
    assert sup.snapshot()[1]["restarts"] == 1 and sup.snapshot()[0]["restarts"] == 0
    # A second crash soon after waits twice as long.
    spawner.latest(1).exit(1)
    sup.step()
    clock.advance(1.5)
    sup.step()
    assert len(spawner.of(1)) == 2
    clock.advance(0.6)
    sup.step()
    assert len(spawner.of(1)) == 3


def test_repeated_crashes_give_up_with_one_line_and_exit_1_after_stopping_the_others() -> None:
    spawner, clock = Spawner(), Clock()
    sup = _supervisor(spawner=spawner, clock=clock, policy=lambda: CrashPolicy(max_crashes=3, window_s=100))
    sup.start_all()
    with capture_logs() as logs:
        for _ in range(3):
            spawner.latest(0).exit(3)
            sup.step()
            clock.advance(31)  # past any pause
            sup.step()
    assert len(spawner.of(0)) == 3, "two restarts, then it gives up instead of a third"
    assert sup.gave_up is not None and sup.stopping
    assert spawner.latest(1).signals == [signal.SIGTERM], "the other process is stopped gracefully"
    assert sup.step() == 1, "exit 1 once everything ended, although the other one exited 0"
    give_ups = [e for e in logs if e["event"] == "supervisor_giving_up"]
    assert len(give_ups) == 1
    line = give_ups[0]
    assert line["process"] == 0 and line["exit"] == "exit code 3" and line["log_level"] == "error"
    assert "3 times within 100 s" in line["reason"]


def test_giving_up_exits_1_even_when_the_crashes_were_exits_0() -> None:
    spawner, clock = Spawner(), Clock()
    sup = _supervisor(spawner=spawner, clock=clock, policy=lambda: CrashPolicy(max_crashes=2, window_s=100))
    sup.start_all()
    for _ in range(2):
        spawner.latest(0).exit(0)  # nobody asked it to stop: a crash too
        sup.step()
        clock.advance(31)
        sup.step()
    assert sup.gave_up is not None
    assert sup.step() == 1


def test_a_start_that_fails_counts_as_a_crash_and_is_retried() -> None:
    spawner, clock = Spawner(), Clock()
    failures = [OSError("Resource temporarily unavailable")]

    def spawn(index: int):
        if index == 1 and failures:
            raise failures.pop()
        return spawner(index)

    sup = Supervisor([0, 0], spawn, stop_timeout_s=10, clock=clock)
    with capture_logs() as logs:
        sup.start_all()
    assert [c.index for c in spawner.started] == [0]
    assert sup.snapshot()[1]["state"] == "restarting"
    exited = [e for e in logs if e["event"] == "process_exited"]
    assert exited[0]["exit"].startswith("start failed: Resource") and exited[0]["pid"] is None
    clock.advance(1.1)
    sup.step()
    assert [c.index for c in spawner.started] == [0, 1]


def test_crashes_spread_beyond_the_window_never_give_up() -> None:
    spawner, clock = Spawner(), Clock()
    sup = _supervisor(spawner=spawner, clock=clock, policy=lambda: CrashPolicy(max_crashes=2, window_s=60))
    sup.start_all()
    for _ in range(4):
        spawner.latest(0).exit(1)
        sup.step()
        clock.advance(61)
        sup.step()
    assert sup.gave_up is None and not sup.stopping
    assert len(spawner.of(0)) == 5


def test_stop_drains_every_child_and_exits_0_when_all_exit_0() -> None:
    spawner = Spawner()
    sup = _supervisor(3, spawner=spawner)
    sup.start_all()
    sup.request_stop()
    assert sup.step() == 0
    assert all(c.signals == [signal.SIGTERM] for c in spawner.started)
    assert sup.snapshot()[0]["last_exit_code"] == 0


def test_stop_exits_1_when_a_child_does_not_exit_0() -> None:
    spawner = Spawner(obeys_term=False)
    sup = _supervisor(spawner=spawner)
    sup.start_all()
    sup.request_stop()
    assert sup.step() is None, "waits for the children's own drain"
    spawner.latest(0).exit(0)
    spawner.latest(1).exit(1)
    assert sup.step() == 1


def test_stop_cancels_a_pending_restart() -> None:
    spawner, clock = Spawner(), Clock()
    sup = _supervisor(spawner=spawner, clock=clock)
    sup.start_all()
    spawner.latest(0).exit(-9)
    sup.step()
    sup.request_stop()
    clock.advance(100)
    assert sup.step() == 1, "the crashed child's last exit was not 0"
    assert len(spawner.of(0)) == 1


def test_a_second_stop_signal_is_passed_on_and_the_timeout_kills_what_is_left() -> None:
    spawner, clock = Spawner(obeys_term=False), Clock()
    sup = _supervisor(spawner=spawner, clock=clock, stop_timeout_s=30)
    sup.start_all()
    sup.request_stop()
    sup.step()
    sup.request_stop()
    sup.step()
    assert spawner.latest(0).signals == [signal.SIGTERM, signal.SIGTERM]
    clock.advance(31)
    sup.step()
    assert spawner.latest(0).signals[-1] == signal.SIGKILL
    assert sup.step() == 1


def test_sighup_is_passed_on_to_every_running_child() -> None:
    spawner, clock = Spawner(), Clock()
    sup = _supervisor(3, spawner=spawner, clock=clock)
    sup.start_all()
    spawner.latest(2).exit(1)
    sup.step()
    sup.request_reload()
    sup.step()
    assert spawner.latest(0).signals == [signal.SIGHUP] and spawner.latest(1).signals == [signal.SIGHUP]
    assert spawner.latest(2).signals == [], "a dead child gets nothing"


def test_run_handles_real_signals_on_the_main_thread() -> None:
    assert threading.current_thread() is threading.main_thread()
    spawner = Spawner()
    sup = Supervisor([0, 0], spawner, stop_timeout_s=10, tick_s=0.01)
    previous = signal.getsignal(signal.SIGTERM)

    def send() -> None:
        while len(spawner.started) < 2:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send)
    sender.start()
    assert sup.run() == 0
    sender.join()
    assert all(c.signals == [signal.SIGHUP, signal.SIGTERM] for c in spawner.started)
    assert signal.getsignal(signal.SIGTERM) is previous, "handlers restored"
