"""Model commands: ``export`` (HF → ONNX, cached), ``classify`` (texts → labels), ``schemas`` (JSON Schemas)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from worker.cli.common import add_common_flags, add_settings_flags, settings_from_args
from worker.model.buckets import resolve_batching
from worker.model.loading import load_model
from worker.observability import get_logger

log = get_logger(__name__)

# Texts are tokenised and run in blocks of this many (bounded memory for big --file inputs);
# within a block the model runs length-sorted chunks of --inference-batch-size.
_CLASSIFY_BLOCK = 1024
_RUNTIME_ERRORS_HELP = "Exit status: 0 ok, 1 model/provider error, 2 bad settings or input."


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    _register_export(sub)
    _register_classify(sub)
    _register_schemas(sub)


# ---- shared ----------------------------------------------------------------------------------------


def _add_revision_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--revision",
        "--model-revision",
        dest="setting_model_revision",
        default=None,
        metavar="REV",
        help="Hub revision (commit, tag or branch) of a hub model; ignored for local dirs "
        "(env SENTIMENT_MODEL_REVISION) [default: the pinned commit of the default model, "
        "'main' for other hub ids].",
    )


def _model_errors() -> tuple[type[BaseException], ...]:
    from worker.model.errors import ExportError, ModelUnavailableError
    from worker.model.runtime import ModelIntegrityError, ProviderUnavailableError

    return (ModelUnavailableError, ExportError, ProviderUnavailableError, ModelIntegrityError, FileNotFoundError)


def _fail(message: str, code: int = 1) -> int:
    print(f"sentiment-worker: {message}", file=sys.stderr)
    return code


# ---- export ----------------------------------------------------------------------------------------


def _register_export(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "export",
        help="Export a model to ONNX (cached), print the exported directory.",
        description="Export a DistilBERT sequence classifier (hub id or local HF dir) to ONNX with Hugging Face "
        "Optimum, at fp32, o3 (ORT graph optimisation), int8 (dynamic quantisation, CPU) or fp16 (CUDA). "
        "Exports are cached under CACHE_DIR/exports keyed by model, revision/content and options; a cached "
        "export is reused. The last line of stdout is the exported directory. " + _RUNTIME_ERRORS_HELP,
    )
    add_common_flags(parser)
    add_settings_flags(parser, ["model", "precision", "cache_dir", "log_format", "log_level"])
    _add_revision_flag(parser)
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        metavar="DIR",
        help="Also place a copy of the export in DIR (replaced if it already holds an export; "
        "refused if it holds anything else).",
    )
    parser.add_argument("--force", action="store_true", help="Re-export even if a cached export exists.")
    parser.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    from worker.model.export import export_model, place_export
    from worker.model.manifest import is_exported_dir, read_manifest
    from worker.model.resolve import hub_revision

    if is_exported_dir(settings.model):
        return _fail(f"{settings.model} is already an exported ONNX dir; pass a hub id or a HF model dir", 2)
    started = time.time()
    try:
        path = export_model(
            settings.model,
            revision=hub_revision(settings),
            precision=settings.precision,
            cache_dir=settings.cache_dir,
            force=args.force,
        )
    except _model_errors() as exc:
        return _fail(str(exc))
    manifest = read_manifest(path)
    elapsed = time.time() - started
    created = manifest.get("created_at", "")
    reused = bool(created) and _iso_to_epoch(created) < started
    what = "reused cached export" if reused else f"exported in {elapsed:.1f} s"
    print(
        f"{what}: {manifest['source']}"
        f"{'@' + manifest['revision'] if manifest.get('revision') else ''} precision={manifest['precision']} "
        f"onnx={manifest['onnx_bytes'] / 2**20:.1f} MiB sha256={manifest['onnx_sha256'][:16]}… "
        f"labels={','.join(manifest['labels'])}"
    )
    if args.output is not None:
        try:
            path = place_export(path, args.output)
        except FileExistsError as exc:
            return _fail(str(exc), 2)
        print(f"copied to {path}")
    print(path)
    return 0


def _iso_to_epoch(text: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


# ---- classify --------------------------------------------------------------------------------------


def _register_classify(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "classify",
        help="Classify texts given as arguments or in a file; print label and score per text.",
        description="Classify texts with the ONNX model (exporting it first if needed) and print one result "
        "per input, in input order: 'LABEL<TAB>SCORE<TAB>TEXT' after a header line naming model and "
        "provider, or with --json one JSON object per line: "
        '{"text": ..., "label": ..., "score": ..., "scores": {label: probability}}. ' + _RUNTIME_ERRORS_HELP,
    )
    add_common_flags(parser)
    add_settings_flags(
        parser,
        [
            "model",
            "precision",
            "device",
            "device_id",
            "threads",
            "max_length",
            "inference_batch_size",
            "text_field",
            "cache_dir",
            "log_format",
            "log_level",
        ],
    )
    _add_revision_flag(parser)
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="Texts to classify (quote each one).")
    parser.add_argument(
        "--file",
        "-f",
        "--data",
        type=Path,
        default=None,
        metavar="FILE",
        help="Read texts from FILE ('-' = stdin): one text per line, or JSON Lines (objects holding the text "
        "field, see --text-field) when the first non-blank line is a JSON object. Blank lines are skipped. "
        "hf:NAME[:CONFIG][@SPLIT]: the text column of a Hugging Face dataset ([datasets] extra).",
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON object per input instead of text.")
    parser.set_defaults(func=cmd_classify)


class InputError(ValueError):
    pass


def read_texts(source: TextIO, text_field: str, *, name: str = "input") -> list[str]:
    """Texts from a text file (one per line) or JSON Lines (objects with ``text_field``)."""
    lines = [(number, line.rstrip("\r\n")) for number, line in enumerate(source, start=1)]
    lines = [(number, line) for number, line in lines if line.strip()]
    if not lines:
        return []
    first = lines[0][1].lstrip()
    jsonl = False
    if first.startswith("{"):
        try:
            jsonl = isinstance(json.loads(first), dict)
        except json.JSONDecodeError:
            jsonl = False
    if not jsonl:
        return [line for _, line in lines]
    texts = []
    for number, line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name} line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{name} line {number}: expected a JSON object")
        value = obj.get(text_field)
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{name} line {number}: field {text_field!r} is missing or not a non-empty string")
        texts.append(value)
    return texts


def _blocks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def cmd_classify(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    texts: list[str] = list(args.texts)
    if args.file is not None:
        from worker.datasets_input import DatasetInputError, is_hf_spec, load_texts

        try:
            if is_hf_spec(args.file):
                texts += load_texts(args.file, text_field=settings.text_field)
            elif str(args.file) == "-":
                texts += read_texts(sys.stdin, settings.text_field, name="stdin")
            else:
                with args.file.open(encoding="utf-8") as handle:
                    texts += read_texts(handle, settings.text_field, name=str(args.file))
        except (OSError, UnicodeDecodeError, InputError, DatasetInputError) as exc:
            return _fail(str(exc), 2)
    if not texts:
        return _fail("no texts to classify: pass TEXT arguments or --file", 2)

    from worker.model.resolve import resolve_model

    try:
        exported = resolve_model(settings)
        model = load_model(exported, settings)
    except _model_errors() as exc:
        return _fail(str(exc))

    out = sys.stdout
    if not args.json:
        out.write(
            f"# model={model.model_id} precision={model.precision} provider={model.provider} "
            f"labels={','.join(model.labels)} path={model.path}\n"
        )
    chunk = resolve_batching(settings.batching, model.provider).chunk_size  # "auto": by the session's provider
    started = time.perf_counter()
    real = padded = 0
    truncated_count = 0
    for block in _blocks(texts, _CLASSIFY_BLOCK):
        ids, truncated = model.tokenize(block)
        result = model.infer_ids(ids, chunk_size=chunk)
        real += result.real_tokens
        padded += result.padded_tokens
        truncated_count += sum(truncated)
        for text, prediction in zip(block, model.to_predictions(result.probs), strict=True):
            if args.json:
                record: dict[str, Any] = {
                    "text": text,
                    "label": prediction.label,
                    "score": round(prediction.score, 6),
                    "scores": {k: round(v, 6) for k, v in prediction.scores.items()},
                }
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                shown = " ".join(text.split())
                out.write(f"{prediction.label}\t{prediction.score:.4f}\t{shown}\n")
    out.flush()
    seconds = time.perf_counter() - started
    log.info(
        "classified",
        texts=len(texts),
        provider=model.provider,
        precision=model.precision,
        seconds=round(seconds, 3),
        texts_per_s=round(len(texts) / seconds, 1) if seconds > 0 else None,
        real_tokens=real,
        padded_tokens=padded,
        truncated=truncated_count,
    )
    return 0


# ---- schemas ---------------------------------------------------------------------------------------


def _register_schemas(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "schemas",
        help="Write (or --check) the JSON Schemas of input, output and dead-letter records.",
        description="Generate schemas/*.json from the record models in worker.records. With --check, write "
        "nothing and exit 1 listing the files that are missing or differ from what would be generated.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("schemas"),
        metavar="DIR",
        help="Directory of the schema files [default: ./schemas].",
    )
    parser.add_argument("--check", action="store_true", help="Only check that the files are up to date.")
    parser.set_defaults(func=cmd_schemas)


def stale_schemas(directory: Path) -> list[str]:
    """Names of the generated schema files that are missing from ``directory`` or differ from it."""
    from worker.records import render_schemas

    expected = render_schemas()
    stale = []
    for name, text in expected.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def cmd_schemas(args: argparse.Namespace) -> int:
    from worker.records import write_schemas

    directory: Path = args.dir
    if args.check:
        stale = stale_schemas(directory)
        if stale:
            print(f"stale schema files in {directory} (run `sentiment-worker schemas`):", file=sys.stderr)
            for name in stale:
                print(f"  {directory / name}", file=sys.stderr)
            return 1
        print(f"schemas in {directory} are up to date")
        return 0
    for path in write_schemas(directory):
        print(f"wrote {path}")
    return 0
