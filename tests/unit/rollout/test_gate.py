"""The validation gate of a hot-swap candidate (worker/rollout/gate.py), with rule-based fake models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.rollout.gate import CANARY_TEXTS, Canary, GatePolicy, check, load_canary, predicted_labels

from .fakes import RuleModel

pytestmark = pytest.mark.unit

SERVING = RuleModel()
POLICY = GatePolicy(min_agreement=0.9, min_accuracy=0.8)
BUILT_IN = Canary(CANARY_TEXTS)


def _gate(candidate: RuleModel, canary: Canary = BUILT_IN, policy: GatePolicy = POLICY):
    return check(candidate, SERVING.labels, predicted_labels(SERVING, canary.texts), canary, policy)


def test_the_built_in_canary_set_is_50_distinct_short_texts() -> None:
    assert len(CANARY_TEXTS) == 50 and len(set(CANARY_TEXTS)) == 50
    assert all(0 < len(text) <= 60 for text in CANARY_TEXTS)


def test_a_candidate_that_labels_every_canary_text_alike_passes() -> None:
    verdict = _gate(RuleModel(sha256="b" * 64))
    print(f"agreement {verdict.agreement}")
    assert verdict.ok and verdict.agreement == 1.0 and verdict.reason == ""


def test_labels_in_another_order_are_the_same_labels() -> None:
    flipped = RuleModel(lambda t: 1 - SERVING.rule(t), labels=("POSITIVE", "NEGATIVE"), sha256="b" * 64)
    assert _gate(flipped).agreement == 1.0, "compared by label name, not by column"


def test_another_label_set_is_refused_unless_allowed() -> None:
    relabelled = RuleModel(labels=("BAD", "GOOD"), sha256="b" * 64)
    refused = _gate(relabelled)
    assert not refused.ok and refused.reason == "labels_changed" and "BAD" in refused.detail
    allowed = _gate(relabelled, policy=GatePolicy(0.9, 0.8, allow_label_change=True))
    assert allowed.ok and allowed.agreement is None, "labels that changed can't agree: not measured"


def test_a_candidate_that_disagrees_on_too_many_canary_texts_is_refused() -> None:
    flips = set(CANARY_TEXTS[:8])  # 16% of the texts: agreement 84%
    candidate = RuleModel(lambda t: 1 - SERVING.rule(t) if t in flips else SERVING.rule(t), sha256="b" * 64)
    verdict = _gate(candidate)
    print(f"agreement {verdict.agreement}: {verdict.detail}")
    assert not verdict.ok and verdict.reason == "canary_agreement" and verdict.agreement == pytest.approx(0.84)
    assert _gate(candidate, policy=GatePolicy(min_agreement=0.8)).ok
    assert _gate(candidate, policy=GatePolicy(min_agreement=0.0)).ok, "0 turns the check off"


@pytest.mark.parametrize("broken", [{"fail": True}, {"nan": True}])
def test_a_candidate_that_fails_or_gives_no_finite_scores_on_the_canary_is_refused(broken: dict) -> None:
    verdict = _gate(RuleModel(sha256="b" * 64, **broken))
    assert not verdict.ok and verdict.reason == "canary_failed"


def test_a_labelled_canary_file_scores_accuracy(tmp_path: Path) -> None:
    lines = [{"text": f"good thing {i}", "label": "POSITIVE"} for i in range(8)]
    lines += [{"text": f"awful thing {i}", "label": "NEGATIVE"} for i in range(2)]
    path = tmp_path / "canary.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    canary = load_canary(path)
    assert len(canary.texts) == 60 and len(canary.labelled) == 10
    good = _gate(RuleModel(sha256="b" * 64), canary)
    assert good.ok and good.accuracy == 1.0
    # agrees with the serving model everywhere (it is as wrong), but labels only 70% of the labelled lines right
    serving_like = RuleModel(lambda t: 0 if t.endswith(("5", "6", "7")) and "good" in t else SERVING.rule(t))
    lenient = GatePolicy(min_agreement=0.0, min_accuracy=0.8)
    verdict = check(serving_like, SERVING.labels, None, canary, lenient)
    print(f"accuracy {verdict.accuracy}: {verdict.detail}")
    assert not verdict.ok and verdict.reason == "canary_accuracy" and verdict.accuracy == pytest.approx(0.7)


def test_canary_file_formats(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("first text\n\n  second text  \n")
    assert load_canary(plain).texts[-2:] == ("first text", "second text")
    assert load_canary(None).texts == CANARY_TEXTS
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"text": "a", "label": "POSITIVE"}\n{"text": "b"}\nplain c\n')
    canary = load_canary(mixed)
    assert canary.texts[-3:] == ("a", "b", "plain c") and canary.labelled == (("a", "POSITIVE"),)
    for bad in ('{"text": 3}\n', "{broken\n", '{"text": "x", "label": 1}\n', "\n\n"):
        (tmp_path / "bad").write_text(bad)
        with pytest.raises(ValueError):
            load_canary(tmp_path / "bad")
