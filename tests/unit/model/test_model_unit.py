"""Unit tests of the model package that need no exported model (fast; no network)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import structlog

from worker.cli.model_cmds import InputError, read_texts
from worker.model import export, resolve
from worker.model.errors import ModelUnavailableError
from worker.model.export import local_content_hash
from worker.model.manifest import MANIFEST_NAME, is_exported_dir, read_manifest, sha256_file
from worker.model.runtime import softmax
from worker.settings import DEFAULT_MODEL, DEFAULT_REVISION, load_settings

pytestmark = pytest.mark.unit


def _fake_export(directory: Path, **manifest: object) -> Path:
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(b"not really onnx")
    (directory / "config.json").write_text(json.dumps({"id2label": {"0": "NEG", "1": "POS"}}))
    data = {
        "format_version": 1,
        "onnx_file": "model.onnx",
        "onnx_sha256": sha256_file(directory / "model.onnx"),
        "precision": "fp32",
        "labels": ["NEG", "POS"],
        **manifest,
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(data))
    return directory


# ---- export helpers -------------------------------------------------------------------------------


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "blob"
    path.write_bytes(b"x" * 10_000_001)
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_is_exported_dir_and_read_manifest(tmp_path: Path) -> None:
    good = _fake_export(tmp_path / "good")
    assert is_exported_dir(good)
    assert read_manifest(good)["labels"] == ["NEG", "POS"]

    assert not is_exported_dir(tmp_path / "missing")
    no_onnx = _fake_export(tmp_path / "no-onnx")
    (no_onnx / "model.onnx").unlink()
    assert not is_exported_dir(no_onnx)

    broken = _fake_export(tmp_path / "broken")
    (broken / MANIFEST_NAME).write_text("{not json")
    assert not is_exported_dir(broken)
    with pytest.raises(ValueError, match="not valid JSON"):
        read_manifest(broken)

    partial = _fake_export(tmp_path / "partial")
    (partial / MANIFEST_NAME).write_text(json.dumps({"format_version": 1}))
    assert not is_exported_dir(partial)
    with pytest.raises(ValueError, match="lacks"):
        read_manifest(partial)


def test_local_content_hash_changes_with_weights_config_and_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "README.md").write_text("docs")
    first = local_content_hash(tmp_path)
    (tmp_path / "README.md").write_text("other docs")  # not part of the model
    assert local_content_hash(tmp_path) == first
    for name, content in [("model.safetensors", b"weights2"), ("config.json", b"{ }"), ("tokenizer.json", b"[]")]:
        (tmp_path / name).write_bytes(content)
        changed = local_content_hash(tmp_path)
        assert changed != first
        first = changed


def test_local_dir_without_weights_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelUnavailableError, match="no weights"):
        local_content_hash(tmp_path)


def test_export_refuses_exported_dir_and_non_model_dir(tmp_path: Path) -> None:
    exported = _fake_export(tmp_path / "exported")
    with pytest.raises(export.ExportError, match="already an exported"):
        export.export_model(exported, cache_dir=tmp_path / "cache")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailableError, match="not a HF model dir"):
        export.export_model(empty, cache_dir=tmp_path / "cache")
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        export.export_model(tmp_path / "nope" / "model", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="precision"):
        export.export_model(empty, precision="bf16", cache_dir=tmp_path / "cache")  # type: ignore[arg-type]


def test_unreachable_hub_model_raises_clear_error(tmp_path: Path) -> None:
    # A repo that does not exist: offline this is "hub unreachable", online a 404; either way no download.
    model_id = "sentiment-stream-tests/no-such-model-3f9c"
    with pytest.raises(ModelUnavailableError) as info:
        export.export_model(model_id, revision="abc1234", cache_dir=tmp_path)
    message = str(info.value)
    assert model_id in message and "abc1234" in message
    assert "unreachable" in message
    assert "SENTIMENT_MODEL" in message and "sentiment-worker model build-starter" in message
    assert not any((tmp_path / "exports").glob("*")), "a failed export must leave nothing behind"


# ---- runtime helpers ------------------------------------------------------------------------------


def test_softmax_is_stable_and_normalised() -> None:
    logits = np.array([[1000.0, 0.0], [0.0, 0.0], [-5.0, 5.0]], dtype=np.float32)
    probs = softmax(logits)
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs[1], [0.5, 0.5])
    assert probs[0, 0] == pytest.approx(1.0) and probs[2, 1] > 0.9999


# ---- resolve --------------------------------------------------------------------------------------


def test_hub_revision_default_only_applies_to_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTIMENT_MODEL_REVISION", raising=False)
    assert resolve.hub_revision(load_settings()) == DEFAULT_REVISION
    assert resolve.hub_revision(load_settings(model="org/other")) is None
    assert resolve.hub_revision(load_settings(model="org/other", model_revision="v2")) == "v2"
    monkeypatch.setenv("SENTIMENT_MODEL_REVISION", DEFAULT_REVISION)
    assert resolve.hub_revision(load_settings(model="org/other")) == DEFAULT_REVISION


def test_resolve_exported_dir_is_used_as_is(tmp_path: Path) -> None:
    exported = _fake_export(tmp_path / "exp")
    with structlog.testing.capture_logs() as logs:
        assert resolve.resolve_model(load_settings(model=str(exported), cache_dir=tmp_path)) == exported
    assert any(e["event"] == "model_resolved" and e["reason"] == "exported dir" for e in logs)


def test_resolve_falls_back_to_starter_for_default_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    starter = _fake_export(tmp_path / "starter")

    def unavailable(*args: object, **kwargs: object) -> Path:
        raise ModelUnavailableError("hub unreachable (test)")

    monkeypatch.setattr(resolve, "export_model", unavailable)
    monkeypatch.setattr(resolve, "cached_starter_dir", lambda cache_dir, precision: starter)
    with structlog.testing.capture_logs() as logs:
        assert resolve.resolve_model(load_settings(model=DEFAULT_MODEL, cache_dir=tmp_path)) == starter
    fallback = [e for e in logs if e["event"] == "model_fallback"]
    assert fallback and fallback[0]["log_level"] == "warning"
    assert fallback[0]["using"] == str(starter) and "unavailable" in fallback[0]["reason"]

    # No starter built: the clear error is re-raised and says so.
    monkeypatch.setattr(resolve, "cached_starter_dir", lambda cache_dir, precision: None)
    with pytest.raises(ModelUnavailableError, match="no offline starter"):
        resolve.resolve_model(load_settings(model=DEFAULT_MODEL, cache_dir=tmp_path))

    # Another hub model never falls back.
    monkeypatch.setattr(resolve, "cached_starter_dir", lambda cache_dir, precision: starter)
    with pytest.raises(ModelUnavailableError, match="test"):
        resolve.resolve_model(load_settings(model="org/other", cache_dir=tmp_path))


def test_starter_lookup_needs_no_training_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    for name in ("training", "training.starter"):
        monkeypatch.setitem(sys.modules, name, None)  # import → ImportError
    assert resolve.cached_starter_dir(tmp_path, "fp32") is None


def test_import_error_in_own_code_is_not_reported_as_no_starter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ImportError of this project's code is a bug: it propagates (it used to read "no starter model")."""

    def unavailable(*args: object, **kwargs: object) -> Path:
        raise ModelUnavailableError("hub unreachable (test)")

    def broken_lookup(cache_dir: Path, precision: str) -> Path | None:
        raise ImportError("cannot import name 'gone' from 'worker.model.manifest'", name="worker.model.manifest")

    monkeypatch.setattr(resolve, "export_model", unavailable)
    monkeypatch.setattr(resolve, "cached_starter_dir", broken_lookup)
    with pytest.raises(ImportError, match="gone"):
        resolve.resolve_model(load_settings(model=DEFAULT_MODEL, cache_dir=tmp_path))


def test_resolve_rejects_directory_that_is_no_model(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="neither an exported"):
        resolve.resolve_model(load_settings(model=str(tmp_path), cache_dir=tmp_path))


# ---- classify input parsing -----------------------------------------------------------------------


def test_read_texts_plain_lines_skip_blanks() -> None:
    source = io.StringIO("first text\n\n  \nsecond {not json}\n{broken\n")
    assert read_texts(source, "text") == ["first text", "second {not json}", "{broken"]


def test_read_texts_jsonl_uses_text_field() -> None:
    source = io.StringIO('{"body": "a", "id": 1}\n\n{"body": "b"}\n')
    assert read_texts(source, "body") == ["a", "b"]
    with pytest.raises(InputError, match="line 2: field 'body'"):
        read_texts(io.StringIO('{"body": "a"}\n{"text": "b"}\n'), "body")
    with pytest.raises(InputError, match="line 2: not valid JSON"):
        read_texts(io.StringIO('{"body": "a"}\nplain\n'), "body")
    assert read_texts(io.StringIO(""), "text") == []


def test_intra_op_spinning_is_off_unless_asked_for() -> None:
    from worker.model.gpu import session_options as _session_options

    key = "session.intra_op.allow_spinning"
    assert _session_options(2).get_session_config_entry(key) == "0"
    assert _session_options(2, spinning=True).get_session_config_entry(key) == "1"
    assert load_settings().intra_op_spinning is False
