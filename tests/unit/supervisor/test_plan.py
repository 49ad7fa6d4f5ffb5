"""How many processes (``auto``), which device each gets, what each child's settings are; the crash policy."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from worker.settings import Settings, SettingsError
from worker.supervisor.child import child_settings_data
from worker.supervisor.plan import check_http_ports, child_overrides, device_plan, resolve_processes, visible_gpus
from worker.supervisor.policy import CrashPolicy, describe_exit

pytestmark = pytest.mark.unit


def _settings(**kw: object) -> Settings:
    return Settings(input_topics=["in"], **kw)


def _processes(s: Settings, *, cpus: int, gpus: int) -> int:
    return resolve_processes(s.placement, s.inference, cpus=cpus, gpus=gpus)


def _plan(s: Settings, processes: int, *, gpus: int) -> list[int]:
    return device_plan(s.placement, s.inference, processes, gpus=gpus)


def _check_ports(s: Settings, processes: int) -> None:
    check_http_ports(s.http, s.observability, processes)


def test_a_number_is_taken_as_is() -> None:
    assert _processes(_settings(processes=3), cpus=1, gpus=8) == 3


@pytest.mark.parametrize(
    ("kw", "cpus", "gpus", "expected"),
    [
        ({"device": "cpu", "threads": 2}, 8, 4, 4),  # cpu: cores // threads, GPUs ignored
        ({"device": "cpu", "threads": 3}, 8, 0, 2),
        ({"device": "cpu", "threads": 0}, 8, 0, 1),  # threads 0 = all cores: one process
        ({"device": "cpu", "threads": 16}, 8, 0, 1),  # at least one
        ({"device": "auto", "threads": 1}, 16, 0, 16),  # no GPU found: the CPU rule
        ({"device": "auto", "threads": 1}, 16, 2, 2),  # one per GPU
        ({"device": "cuda"}, 16, 8, 8),
        ({"device": "cuda", "devices": [1, 3, 5]}, 16, 8, 3),  # one per listed device
    ],
)
def test_auto(kw: dict, cpus: int, gpus: int, expected: int) -> None:
    assert _processes(_settings(processes="auto", **kw), cpus=cpus, gpus=gpus) == expected


def test_devices_round_robin_and_the_default_device() -> None:
    assert _plan(_settings(processes=5, devices=[0, 1]), 5, gpus=0) == [0, 1, 0, 1, 0]
    assert _plan(_settings(processes=3, device_id=2), 3, gpus=4) == [2, 2, 2], "devices empty: device_id"
    assert _plan(_settings(processes="auto", device="cuda"), 3, gpus=3) == [0, 1, 2]
    assert _plan(_settings(processes="auto", device="cpu", device_id=1), 2, gpus=3) == [1, 1]


def test_devices_setting_parses_a_comma_separated_list() -> None:
    from worker.settings import load_settings

    assert load_settings(input_topics="in", devices="0, 2,3").devices == [0, 2, 3]
    with pytest.raises(SettingsError, match="devices"):
        load_settings(devices="0,x")
    with pytest.raises(SettingsError, match="processes"):
        load_settings(processes="0")
    assert load_settings(processes="auto").processes == "auto"


def test_visible_gpus(tmp_path: Path) -> None:
    driver = tmp_path / "gpus"
    assert visible_gpus({}, driver) == 0, "no driver"
    driver.mkdir()
    for bus in ("0000:01:00.0", "0000:02:00.0", "0000:03:00.0"):
        (driver / bus).mkdir()
    assert visible_gpus({}, driver) == 3
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,2"}, driver) == 2, "CUDA_VISIBLE_DEVICES wins"
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, driver) == 0
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}, driver) == 0


def test_child_overrides() -> None:
    base = _settings(processes=4, metrics_port=9100)
    assert child_overrides(base.http, 2, 1) == {"processes": 1, "device_id": 1, "metrics_port": 0, "http_port": None}
    assert child_overrides(_settings(http_port=8000).http, 2, 0)["http_port"] == 8002, "a port per process"
    assert child_overrides(_settings(http_port=0).http, 2, 0)["http_port"] == 0, "0: each picks a free port"


def test_child_settings_round_trip_with_secrets_in_clear() -> None:
    settings = _settings(
        processes=2, sasl_mechanism="PLAIN", security_protocol="SASL_SSL", sasl_username="u", sasl_password="pw-123"
    )
    data = child_settings_data(settings, child_overrides(settings.http, 1, 0))
    assert data["sasl_password"] == "pw-123"
    child = Settings(**data)
    assert child.sasl_password is not None and child.sasl_password.get_secret_value() == "pw-123"
    assert child.processes == 1 and child.metrics_port == 0
    same = {k for k in Settings.model_fields if k not in ("processes", "device_id", "metrics_port", "http_port")}
    assert {k: getattr(child, k) for k in same} == {k: getattr(settings, k) for k in same}


def test_http_ports_must_fit_and_not_hit_the_metrics_port() -> None:
    _check_ports(_settings(http_port=8000, metrics_port=9100), 4)
    with pytest.raises(SettingsError, match="metrics_port 8002"):
        _check_ports(_settings(http_port=8000, metrics_port=8002), 4)
    with pytest.raises(SettingsError, match="65535"):
        _check_ports(_settings(http_port=65534), 4)


def test_crash_policy_backs_off_then_gives_up_within_the_window() -> None:
    policy = CrashPolicy(max_crashes=4, window_s=60)
    pauses = [policy.crashed(t).pause_s for t in (0.0, 5.0, 10.0)]
    assert pauses == [1.0, 2.0, 4.0]
    decision = policy.crashed(15.0)
    assert decision.give_up and "4 times within 60 s" in decision.reason
    fresh = CrashPolicy(max_crashes=2, window_s=10)
    assert not fresh.crashed(0.0).give_up and not fresh.crashed(11.0).give_up, "the first crash left the window"


def test_describe_exit() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"


def test_run_processes_runs_the_plain_worker_for_one_process_and_the_supervisor_otherwise(monkeypatch) -> None:
    import worker.app
    import worker.supervisor as sup

    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(worker.app, "run_worker", lambda s: calls.append(("worker", s.processes)) or 0)
    monkeypatch.setattr(sup, "run_supervisor", lambda s, devices: calls.append(("supervisor", devices)) or 0)
    monkeypatch.setattr(sup, "cpu_count", lambda: 4)
    monkeypatch.setattr(sup, "visible_gpus", lambda: 0)
    sup.run_processes(_settings(processes="auto", device="cpu", threads=0))
    sup.run_processes(_settings(processes="auto", device="cpu", threads=2, devices=[1]))
    sup.run_processes(_settings(processes=3, devices=[0, 1]))
    assert calls == [("worker", 1), ("supervisor", [1, 1]), ("supervisor", [0, 1, 0])]
    with pytest.raises(SettingsError, match="input_topics"):
        sup.run_processes(Settings(processes=2))
