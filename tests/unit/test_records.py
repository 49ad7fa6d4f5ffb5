"""Record schemas: committed schemas/*.json are current; `schemas --check`; models behave as documented."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from worker.cli import main
from worker.cli.model_cmds import stale_schemas
from worker.records import (
    SCHEMA_MODELS,
    DeadLetter,
    EnrichedRecord,
    ErrorType,
    InputRecord,
    render_schemas,
    write_schemas,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_committed_schemas_are_current() -> None:
    stale = stale_schemas(REPO / "schemas")
    assert not stale, f"stale schema files {stale}: run `sentiment-worker schemas`"


def test_schemas_check_passes_on_committed_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "--check", "--dir", str(REPO / "schemas")]) == 0
    assert "up to date" in capsys.readouterr().out


def test_schemas_check_fails_on_stale_and_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(SCHEMA_MODELS)
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()

    output = tmp_path / "output.schema.json"
    schema = json.loads(output.read_text())
    schema["properties"].pop("sentiment")
    output.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    (tmp_path / "input.schema.json").unlink()
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "output.schema.json" in err and "input.schema.json" in err
    assert "dead-letter.schema.json" not in err

    assert main(["schemas", "--dir", str(tmp_path)]) == 0  # regenerate
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 0


def test_render_is_deterministic_and_valid_json(tmp_path: Path) -> None:
    assert render_schemas() == render_schemas()
    for path in write_schemas(tmp_path):
        schema = json.loads(path.read_text())
        assert schema["type"] == "object" and "title" in schema


def _output_record() -> dict:
    return {
        "text": "I loved it",
        "user": 42,
        "sentiment": {"label": "POSITIVE", "score": 0.98, "scores": {"NEGATIVE": 0.02, "POSITIVE": 0.98}},
        "sentiment_meta": {
            "model": {
                "id": "distilbert/x",
                "revision": "714eb0f",
                "onnx_sha256": "ab" * 32,
                "precision": "fp32",
                "provider": "CPUExecutionProvider",
            },
            "source": {"topic": "reviews", "partition": 0, "offset": 5, "timestamp": 1700000000000},
            "processed_at": "2026-11-23T10:00:00+00:00",
            "latency_ms": 3.5,
        },
    }


def test_enriched_record_keeps_input_fields_and_validates_parts() -> None:
    record = EnrichedRecord.model_validate(_output_record())
    assert record.model_extra == {"text": "I loved it", "user": 42}
    assert record.sentiment_meta.schema_version == 1 and record.sentiment_meta.truncated is False
    bad = _output_record()
    bad["sentiment"]["score"] = 1.5
    with pytest.raises(ValidationError):
        EnrichedRecord.model_validate(bad)
    bad = _output_record()
    bad["sentiment_meta"]["model"]["extra"] = "x"
    with pytest.raises(ValidationError):
        EnrichedRecord.model_validate(bad)


def test_input_record_requires_text() -> None:
    assert InputRecord.model_validate({"text": "hi", "id": 1}).model_extra == {"id": 1}
    with pytest.raises(ValidationError):
        InputRecord.model_validate({"body": "hi"})
    with pytest.raises(ValidationError):
        InputRecord.model_validate({"text": ""})


def test_dead_letter_headers_round_trip() -> None:
    letter = DeadLetter(
        error_type=ErrorType.INVALID_JSON,
        error_message="x" * 2000,
        source_topic="reviews",
        source_partition=3,
        source_offset=17,
        source_timestamp=None,
        failed_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
        worker="sentiment-worker-1",
    )
    headers = letter.headers()
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in headers)
    back = DeadLetter.from_headers([*headers, ("other", b"kept")])
    assert back.error_message == "x" * 1000  # header is capped
    assert back.model_dump(exclude={"error_message"}) == letter.model_dump(exclude={"error_message"})
