"""The reload controller (worker/rollout/controller.py) with fake models: exported-looking dirs (a manifest naming a
sha256, an ONNX file, a config) behind a symlink, an injected loader, and the model slot switched by a fake stage."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support.model_variants import point
from worker.metrics import WorkerMetrics
from worker.model.manifest import write_manifest
from worker.model.runtime import ModelIntegrityError
from worker.rollout.controller import Rollout
from worker.settings import load_settings
from worker.stream.common.swap import ModelSlot

from .fakes import RuleModel

pytestmark = pytest.mark.unit


def _export(root: Path, name: str, sha: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "model.onnx").write_bytes(name.encode())
    (folder / "config.json").write_text(json.dumps({"id2label": {"0": "NEGATIVE", "1": "POSITIVE"}}))
    write_manifest(folder, {"format_version": 1, "onnx_file": "model.onnx", "onnx_sha256": sha, "precision": "fp32",
                            "labels": ["NEGATIVE", "POSITIVE"], "source": name})  # fmt: skip
    return folder


class Harness:
    """A rollout over ``current`` (a symlink), models made by ``models[dir name]`` (a model or an exception)."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.root = tmp_path
        self.link = tmp_path / "current"
        self.models: dict[str, Any] = {"a": RuleModel(sha256="a" * 64)}
        point(self.link, _export(tmp_path, "a", "a" * 64))
        self.slot = ModelSlot(self.models["a"])
        self.metrics = WorkerMetrics()
        self.loads: list[str] = []
        self.switched_on: list[str] = []
        s = load_settings(model=str(self.link), **settings)
        self.rollout = Rollout(
            s.rollout, s.inference, self.slot, load=self._load, wake=self._stage, metrics=self.metrics
        ).start()

    def _load(self, path: Path, _settings: Any) -> Any:
        self.loads.append(path.name)
        made = self.models[path.name]
        if isinstance(made, BaseException):
            raise made
        return made

    def _stage(self) -> None:  # the inference stage reaches a batch boundary (on its own thread)
        def boundary() -> None:
            self.slot.take()
            self.switched_on.append(threading.current_thread().name)

        threading.Thread(target=boundary, name="fake-infer").start()

    def add(self, name: str, model: Any, sha: str) -> Path:
        self.models[name] = model
        return _export(self.root, name, sha)

    def reload(self, trigger: str = "signal", **target: Any) -> Any:
        return self.rollout.request(trigger, **target).result(timeout=10)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def harness(tmp_path: Path):
    h = Harness(tmp_path)
    yield h
    h.rollout.stop()


def test_a_reload_with_nothing_changed_does_nothing(harness: Harness) -> None:
    outcome = harness.reload()
    print(outcome)
    assert outcome.outcome == "unchanged" and harness.loads == [] and harness.slot.swaps == 0
    assert harness.metric("sentiment_model_reload_unchanged_total") == 1
    assert harness.metric("sentiment_model_reload_requests_total", trigger="signal") == 1


def test_a_changed_export_is_loaded_checked_and_switched_at_the_stage(harness: Harness) -> None:
    new = RuleModel(sha256="b" * 64)
    point(harness.link, harness.add("b", new, "b" * 64))
    harness.metrics.set_model_info(model_id="rule-aaaaaa", revision=None, provider="CPU", precision="fp32",
                                   sha256="a" * 64)  # fmt: skip
    outcome = harness.reload()
    print(outcome)
    assert outcome.outcome == "swapped" and outcome.sha256 == "b" * 64 and outcome.serving_sha256 == "b" * 64
    assert outcome.agreement == 1.0 and harness.slot.model is new and harness.switched_on == ["fake-infer"]
    assert harness.metric("sentiment_model_swaps_total") == 1
    info = harness.metrics.render().decode()
    assert 'sha256="' + "b" * 64 in info and "a" * 64 not in info, "the old model_info series is gone"
    assert harness.reload().outcome == "unchanged"


@pytest.mark.parametrize(
    ("made", "reason"),
    [
        (ModelIntegrityError("sha256 mismatch"), "integrity"),
        (FileNotFoundError("tokenizer.json"), "unavailable"),
        (RuntimeError("bad graph"), "load_failed"),
        (RuleModel(labels=("BAD", "GOOD"), sha256="b" * 64), "labels_changed"),
        (RuleModel(lambda t: 1, sha256="b" * 64), "canary_agreement"),
        (RuleModel(sha256="b" * 64, fail=True), "canary_failed"),
    ],
)
def test_a_refused_candidate_leaves_the_serving_model(harness: Harness, made: Any, reason: str) -> None:
    point(harness.link, harness.add("b", made, "b" * 64))
    outcome = harness.reload()
    print(outcome.reason, outcome.detail)
    assert outcome.outcome == "refused" and outcome.reason == reason
    assert harness.slot.model is harness.models["a"] and harness.slot.swaps == 0
    assert harness.metric("sentiment_model_swap_refusals_total", reason=reason) == 1


def test_a_missing_model_dir_is_refused(harness: Harness) -> None:
    point(harness.link, harness.root / "nowhere")
    outcome = harness.reload()
    assert (outcome.outcome, outcome.reason) == ("refused", "unavailable") and harness.loads == []


def test_allow_label_change_lets_other_labels_in(tmp_path: Path) -> None:
    h = Harness(tmp_path, allow_label_change=True)
    try:
        point(h.link, h.add("b", RuleModel(labels=("BAD", "GOOD"), sha256="b" * 64), "b" * 64))
        assert h.reload().outcome == "swapped" and h.slot.scorer.labels == ("BAD", "GOOD")
    finally:
        h.rollout.stop()


def test_the_admin_trigger_may_name_another_model_which_then_stays_the_target(harness: Harness) -> None:
    other = harness.add("b", RuleModel(sha256="b" * 64), "b" * 64)
    outcome = harness.reload("admin", model=str(other))
    assert outcome.outcome == "swapped" and harness.rollout.target == (str(other), harness.rollout.target[1])
    assert harness.reload().outcome == "unchanged", "a later SIGHUP re-resolves the new target"


def test_watch_swaps_a_change_and_tries_a_refused_candidate_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, model_watch_s=0.05)
    try:
        point(h.link, tmp_path / "nowhere")
        h.rollout._thread.join(0.4)
        assert h.metric("sentiment_model_swap_refusals_total", reason="unavailable") == 1, "said once"
        point(h.link, h.add("bad", RuntimeError("bad graph"), "c" * 64))
        h.rollout._thread.join(0.6)  # ~10 watch ticks
        assert h.loads == ["bad"], "refused once, not tried again while its files are unchanged"
        assert h.metric("sentiment_model_swap_refusals_total", reason="load_failed") == 1
        point(h.link, h.add("b", RuleModel(sha256="b" * 64), "b" * 64))
        h.rollout._thread.join(0.6)
        assert h.slot.model is h.models["b"] and h.metric("sentiment_model_swaps_total") == 1
        print(f"watch ticks: {h.metric('sentiment_model_reload_requests_total', trigger='watch'):.0f}")
    finally:
        h.rollout.stop()


def test_requests_after_stop_are_refused_and_the_thread_ends(harness: Harness) -> None:
    harness.rollout.stop()
    assert not harness.rollout._thread.is_alive()
    assert harness.reload().reason == "stopping"


def test_the_watch_leaves_a_hub_id_alone(tmp_path: Path) -> None:
    calls: list[str] = []
    slot = ModelSlot(RuleModel())
    s = load_settings(model="org/name", model_watch_s=0.02)
    rollout = Rollout(
        s.rollout, s.inference, slot, load=lambda *_: None, wake=lambda: None, resolve=lambda t: calls.append(t.model)
    )
    rollout.start()
    rollout._thread.join(0.2)
    rollout.stop()
    assert calls == [] and rollout.last is not None and rollout.last.outcome == "unchanged"
