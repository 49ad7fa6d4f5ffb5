"""What ``model build-starter``, ``finetune`` and ``eval`` do, once the command line parsed them
(``worker/cli/starter_cmds.py``: the flags).

Logs go to stderr; stdout carries the results. ``model build-starter`` and ``finetune`` print the exported
fp32 ONNX dir as their LAST stdout line, so ``SENTIMENT_MODEL=$(sentiment-worker model build-starter | tail -1)``
works.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from worker.observability import configure_logging


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


def build_starter_command(args: argparse.Namespace) -> int:
    """``sentiment-worker model build-starter``: build (or find cached) the starter model; its dir last."""
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


def finetune_command(args: argparse.Namespace) -> int:
    """``sentiment-worker finetune``: fine-tune, evaluate, export; the fp32 ONNX dir last."""
    from training.config import FinetuneConfig, FinetuneError
    from training.data import read_labelled_file
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


def eval_command(args: argparse.Namespace) -> int:
    """``sentiment-worker eval``: a model on labelled data, in each backend asked for."""
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
