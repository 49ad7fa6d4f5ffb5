"""The benchmark's noise monitor counts its own children as its own, even those that come and go between samples."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks import machine

pytestmark = pytest.mark.unit


def test_ours_delta_counts_new_pids_whole_and_takes_back_reaped_ones() -> None:
    before = {1: 100.0, 2: 40.0}  # pid 2 will exit and be reaped by pid 1
    after = {1: 100.0 + 5.0 + 50.0, 3: 7.0}  # pid 1: 5 own + 50 reaped (pid 2's whole life); pid 3 is new
    # pid 2 had 40 counted already and ran 10 more before it exited: ours = 5 (pid 1) + 10 (pid 2) + 7 (pid 3)
    assert machine.ours_delta(before, after) == pytest.approx(22.0)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
def test_a_child_that_ran_and_exited_between_samples_is_counted_as_ours() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    before = {pid: machine.pid_jiffies(pid) or 0.0 for pid in machine.tree_pids(os.getpid())}
    burn = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n"
    subprocess.run([sys.executable, "-c", burn], check=True)  # starts, burns 0.6 s of CPU, exits, is reaped
    after = {pid: machine.pid_jiffies(pid) or 0.0 for pid in machine.tree_pids(os.getpid())}
    assert machine.ours_delta(before, after) / ticks >= 0.5
