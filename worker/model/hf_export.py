"""Hugging Face → ONNX fp32: fetch a hub model (or take a local HF dir) and run Optimum's exporter.

torch, transformers and optimum (the ``[export]`` extra) are imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from worker.model.errors import EXPORT_EXTRA, ExportError, ModelUnavailableError, extra_imports
from worker.model.manifest import CONFIG_NAME, ONNX_NAME
from worker.observability import get_logger

log = get_logger(__name__)

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)

_HARMLESS_MESSAGES = re.compile(
    r"torch_dtype.*is deprecated|Weight deduplication check|Converting a tensor to a Python boolean"
)
# Loggers that emit the harmless messages above (a logger's filters see the records it creates).
_HARMLESS_LOGGERS = ("transformers.configuration_utils", "transformers.modeling_utils", "optimum.exporters.onnx.base")


@contextlib.contextmanager
def step(name: str, **fields: Any) -> Iterator[None]:
    """Log the start and the duration of a long export step."""
    log.info("export_step_started", step=name, **fields)
    started = time.perf_counter()
    yield
    log.info("export_step_done", step=name, seconds=round(time.perf_counter() - started, 2), **fields)


class _DropHarmless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _HARMLESS_MESSAGES.search(record.getMessage())


@contextlib.contextmanager
def _quiet_known_warnings() -> Iterator[None]:
    """Silence the harmless messages of a torch → ONNX export (the graph is still validated against PyTorch)."""
    noise = _DropHarmless()
    loggers = [logging.getLogger(name) for name in _HARMLESS_LOGGERS]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch_dtype.*is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*Converting a tensor to a Python boolean.*")
        # Optimum 2.1 deliberately uses torch's TorchScript exporter; its graphs reproduce PyTorch's logits
        # (tests/integration/training/test_cli.py checks a max |Δlogit| ≤ 1e-4).
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        try:
            from torch.jit import TracerWarning

            warnings.filterwarnings("ignore", category=TracerWarning)
        except ImportError:  # pragma: no cover - torch is a dependency of the export path
            pass
        for logger in loggers:
            logger.addFilter(noise)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(noise)


def fetch_hub_model(model_id: str, revision: str | None) -> tuple[Path, str | None]:
    """Download (or find in the HF cache) the files needed to export; returns (dir, commit hash)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    rev_text = revision or "main"
    patterns = ["*.json", "*.txt", "*.model"]
    try:
        with step("download", model=model_id, revision=rev_text):
            path = Path(snapshot_download(model_id, revision=revision, allow_patterns=[*patterns, "*.safetensors"]))
            if not any(path.glob("*.safetensors")):
                path = Path(
                    snapshot_download(model_id, revision=revision, allow_patterns=[*patterns, "pytorch_model*.bin"])
                )
    except HFValidationError as exc:
        raise ModelUnavailableError(
            f"model {model_id!r} is neither an existing local directory nor a valid Hugging Face hub id ({exc}). "
            "Set SENTIMENT_MODEL (or --model) to a local HF model dir, an exported ONNX dir, or a hub id."
        ) from None
    except Exception as exc:  # network errors, missing repo/revision, gated repo ...
        raise ModelUnavailableError(
            f"cannot fetch model {model_id} at revision {rev_text} from the Hugging Face hub "
            f"(the hub is unreachable or the model/revision does not exist, and it is not in the local HF cache): "
            f"{type(exc).__name__}: {str(exc)[:300]}. "
            "Set SENTIMENT_MODEL (or --model) to a local HF model directory or an exported ONNX directory, "
            "or build the offline starter model with `sentiment-worker model build-starter`."
        ) from exc
    if not (path / CONFIG_NAME).is_file():
        raise ModelUnavailableError(f"hub model {model_id}@{rev_text} has no config.json")
    commit = path.name if re.fullmatch(r"[0-9a-f]{40}", path.name) else None
    return path, commit


def export_fp32(model_dir: Path, out_dir: Path) -> None:
    """Optimum's exporter (task text-classification), then the fast tokenizer files."""
    with extra_imports(EXPORT_EXTRA, "exporting a model to ONNX"):
        from optimum.exporters.onnx import main_export
        from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    if not getattr(config, "id2label", None):
        raise ExportError(f"{model_dir}/config.json has no id2label: not a sequence classifier")
    with step("onnx_export", model=str(model_dir)), _quiet_known_warnings():
        main_export(
            str(model_dir),
            output=out_dir,
            task="text-classification",
            device="cpu",
            do_validation=True,
            local_files_only=True,
        )
    onnx_files = sorted(out_dir.glob("*.onnx"))
    if [f.name for f in onnx_files] != [ONNX_NAME]:
        raise ExportError(f"expected one {ONNX_NAME} from the exporter, got {[f.name for f in onnx_files]}")
    # The runtime reads tokenizer.json with the `tokenizers` library: make sure the fast files exist.
    if not (out_dir / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
        if not tokenizer.is_fast:
            raise ExportError(f"{model_dir} has no fast tokenizer; the runtime needs tokenizer.json")
        tokenizer.save_pretrained(out_dir)
    if not (out_dir / CONFIG_NAME).is_file():
        config.save_pretrained(out_dir)


def copy_side_files(src: Path, dst: Path) -> None:
    """Copy config.json and the tokenizer files of one exported dir into another."""
    for name in (CONFIG_NAME, *TOKENIZER_FILES):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
