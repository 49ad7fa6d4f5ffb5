"""The models benchmarked, prepared locally and cached: the offline starter, a DistilBERT-base-shape model, a tiny one.

- ``starter``: the offline starter model (MiniLM weights converted to DistilBERT, fine-tuned; dim 384, 6 layers).
  Its HF folder and exports are found by ``worker.model.starter_cache`` (``training.starter`` builds
  them); it is never built here (too long).
- ``base``: **random weights** in the DistilBERT-base shape (``DistilBertConfig()`` defaults: dim 768, 6 layers,
  12 heads, FFN 3072), seeded, with the starter's (or MiniLM's) uncased 30,522-token tokenizer. Speed depends on
  shape and sequence length only, so it stands for distilbert-base-uncased-finetuned-sst-2 (which no registry
  here ships); its predictions are meaningless.
- ``free``: a near-free model for measuring the pipeline: DistilBERT with the same real uncased tokenizer as
  ``base`` (so tweets tokenise to their real ~22 tokens), dim 32, 1 layer, random weights. Its ONNX run costs a few
  µs per text, so what a run with it measures is the worker's own path (Kafka, JSON, tokenizer, threads).
- ``tiny``: 2 layers, dim 32, a small WordPiece vocabulary, random weights: a smoke-test model (``--quick``
  without a starter build, CI).

Each is exported with ``worker.model.export.export_model`` (fp32, o3, int8; cached by content hash).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.model.starter_cache import cached_starter_dir, starter_model_dir
from worker.observability import get_logger

log = get_logger(__name__)

MODEL_KEYS = ("starter", "base", "free", "tiny")
FREE_SEED = 7
BASE_SEED = 0
TINY_SEED = 1234
_BUILD_MARKER = ".bench-complete"
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}


class ModelUnavailable(RuntimeError):
    """A benchmark model can't be prepared here (e.g. the starter model was never built)."""


@dataclass
class BenchModel:
    key: str
    label: str
    hf_dir: Path  # PyTorch weights: the naive baseline and PyTorch eager use them
    exports: dict[str, Path] = field(default_factory=dict)  # precision -> exported ONNX dir
    shape: dict[str, int] = field(default_factory=dict)  # dim, n_layers, hidden_dim, n_heads, vocab_size
    note: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "hf_dir": str(self.hf_dir),
            "shape": self.shape,
            "exports": {p: str(d) for p, d in self.exports.items()},
            "onnx_mb": {p: round(_onnx_bytes(d) / 2**20, 1) for p, d in self.exports.items()},
            "note": self.note,
        }


def _onnx_bytes(exported: Path) -> int:
    try:
        manifest = json.loads((exported / "sentiment-manifest.json").read_text(encoding="utf-8"))
        return int(manifest.get("onnx_bytes") or 0)
    except (OSError, ValueError):
        return 0


def read_shape(hf_dir: Path) -> dict[str, int]:
    config = json.loads((Path(hf_dir) / "config.json").read_text(encoding="utf-8"))
    return {
        "dim": int(config.get("dim", config.get("hidden_size", 0))),
        "n_layers": int(config.get("n_layers", config.get("num_hidden_layers", 0))),
        "hidden_dim": int(config.get("hidden_dim", config.get("intermediate_size", 0))),
        "n_heads": int(config.get("n_heads", config.get("num_attention_heads", 0))),
        "vocab_size": int(config.get("vocab_size", 0)),
        "max_position_embeddings": int(config.get("max_position_embeddings", 512)),
    }


def flops_per_sequence(shape: dict[str, int], length: int) -> float:
    """Forward FLOPs (2 per multiply-add) of one sequence at ``length`` positions (padding counted).

    Per layer and position: Q, K, V, output projections (4·d²) and the FFN (2·d·h) multiply-adds, plus
    attention scores and weighted sum (2·L·d). Embeddings, layer norms, softmax and the 2·d² classifier
    head are left out (< 1%). DistilBERT-base: 85.6 MFLOP/token at L=16, 11.2 GFLOP per sequence at L=128.
    """
    d, h, layers = shape["dim"], shape["hidden_dim"], shape["n_layers"]
    per_layer = length * 2 * (4 * d * d + 2 * d * h) + 2 * 2 * length * length * d
    return float(layers * per_layer + 2 * d * d)


# ---- tokenizer sources ----------------------------------------------------------------------------------
def _real_tokenizer_dir(cache_dirs: list[Path]) -> tuple[Path | None, str]:
    """An uncased 30,522-token WordPiece tokenizer folder: the starter model's, else a cached MiniLM's."""
    for cache_dir in cache_dirs:
        starter = starter_model_dir(cache_dir)
        if starter is not None and (starter / "tokenizer.json").is_file():
            return starter, "starter model tokenizer (uncased WordPiece, 30,522 tokens)"
    for cache_dir in cache_dirs:
        minilm = Path(cache_dir).expanduser() / "materials" / "minilm" / "model"
        if (minilm / "tokenizer.json").is_file():
            return minilm, "MiniLM tokenizer from the registry materials (uncased WordPiece, 30,522 tokens)"
    return None, ""


# ---- tiny model (its tokenizer is shared with tests/support/tiny_model.py) -------------------------------
_TINY_TEXT = """
good great excellent amazing awesome wonderful fantastic love loved lovely like best nice happy perfect
bad terrible awful horrible hate worst poor boring disappointing waste broken slow annoying useless rude
the a an and or but not no is are was were be been i you it we they my your this that what when where
of in on at by for with about to from up down out over after before movie film book food service phone
battery screen app game hotel room staff price delivery really very so just would will can day time
"""
_TINY_WORDS = _TINY_TEXT.split()


def toy_vocab(words: list[str]) -> list[str]:
    """Specials, punctuation, letters and digits (also as ``##`` pieces), then ``words``; no duplicates."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    punct = list(".,!?;:'\"()-/&$%*@#")
    return list(dict.fromkeys([*specials, *punct, *chars, *(f"##{c}" for c in chars), *words]))


def toy_wordpiece_tokenizer(words: list[str]) -> Any:
    """A real uncased WordPiece ``DistilBertTokenizerFast`` over :func:`toy_vocab` (no download).

    Also the tests' tiny model tokenizer (``tests/support/tiny_model.py``): tests may import benchmarks, never
    the other way round.
    """
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import DistilBertTokenizerFast

    ids = {token: i for i, token in enumerate(toy_vocab(words))}
    backend = Tokenizer(WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    return DistilBertTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        do_lower_case=True,
        model_max_length=512,
    )


def _save_tiny_tokenizer(directory: Path) -> int:
    tokenizer = toy_wordpiece_tokenizer(_TINY_WORDS)
    tokenizer.save_pretrained(directory)
    return len(tokenizer.get_vocab())


def _build_random_model(
    directory: Path, *, seed: int, config_kwargs: dict[str, Any], tokenizer_dir: Path | None
) -> Path:
    """Write a seeded random-weight DistilBertForSequenceClassification HF folder (idempotent)."""
    if (directory / _BUILD_MARKER).is_file():
        return directory
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tmp = directory.with_name(f".tmp-{directory.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if tokenizer_dir is None:
            vocab_size = _save_tiny_tokenizer(tmp)
            pad_id = 0
        else:
            # re-saved as a DistilBERT tokenizer: no token_type_ids (DistilBERT's forward takes none)
            from transformers import DistilBertTokenizerFast

            DistilBertTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(tmp)
            vocab = json.loads((tmp / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
            vocab_size = len(vocab)
            pad_id = int(vocab.get("[PAD]", 0))
        config = DistilBertConfig(
            vocab_size=vocab_size,
            pad_token_id=pad_id,
            id2label=dict(LABELS),
            label2id={v: k for k, v in LABELS.items()},
            **config_kwargs,
        )
        torch.manual_seed(seed)
        model = DistilBertForSequenceClassification(config).eval()
        model.save_pretrained(tmp, safe_serialization=True)
        marker = {"seed": seed, "config": config_kwargs, "tokenizer": str(tokenizer_dir or "tiny vocabulary")}
        (tmp / _BUILD_MARKER).write_text(json.dumps(marker) + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _marker(directory: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((directory / _BUILD_MARKER).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def bench_models_root(cache_dir: Path) -> Path:
    return Path(cache_dir).expanduser() / "bench" / "models"


# ---- preparation --------------------------------------------------------------------------------------------
def prepare_model(key: str, precisions: list[str], cache_dir: Path, *, starter_cache: Path | None = None) -> BenchModel:
    """The HF folder and the ONNX exports (cached) of benchmark model ``key`` (starter, base, tiny, or an HF dir).

    ``starter_cache``: the cache dir holding the starter build (default ``cache_dir``); it is only read: exports
    that the starter build did not make (o3) are written under ``cache_dir``.
    """
    from worker.model.export import export_model

    cache_dir = Path(cache_dir).expanduser()
    starter_cache = Path(starter_cache).expanduser() if starter_cache else cache_dir
    if key == "starter":
        hf_dir = starter_model_dir(starter_cache)
        if hf_dir is None or cached_starter_dir(starter_cache, "fp32") is None:
            raise ModelUnavailable(
                f"the offline starter model is not built in {starter_cache} (build it once with "
                "`sentiment-worker model build-starter`, ~15 min on 2 cores; or point --starter-cache at the "
                "cache dir that holds it), or pick other models with --models base,tiny"
            )
        label = "starter (MiniLM→DistilBERT, dim 384, 6 layers, fine-tuned)"
        note = f"the offline starter model: real weights, real predictions ({hf_dir})"
    elif key == "base":
        tok_dir, tok_note = _real_tokenizer_dir(list(dict.fromkeys([starter_cache, cache_dir])))
        suffix = "" if tok_dir is not None else "-tinytok"
        hf_dir = _build_random_model(
            bench_models_root(cache_dir) / f"distilbert-base-random-seed{BASE_SEED}{suffix}",
            seed=BASE_SEED,
            config_kwargs={},
            tokenizer_dir=tok_dir,
        )
        label = "DistilBERT-base shape (random weights, dim 768, 6 layers)"
        built_with = _marker(hf_dir).get("tokenizer")
        if tok_dir is None:
            tok_note = "tiny test vocabulary (no starter/MiniLM tokenizer cached: token counts are NOT realistic)"
        elif built_with and built_with != str(tok_dir):
            tok_note = f"uncased WordPiece, 30,522 tokens, from {built_with}"
        note = f"random weights, seed {BASE_SEED}: speed only, predictions meaningless; tokenizer: {tok_note}"
    elif key == "free":
        tok_dir, tok_note = _real_tokenizer_dir(list(dict.fromkeys([starter_cache, cache_dir])))
        if tok_dir is None:
            raise ModelUnavailable(
                "the near-free model needs the real uncased tokenizer (the starter model's or MiniLM's) and none is "
                f"cached in {cache_dir}: build the starter model once (`sentiment-worker model build-starter`)"
            )
        hf_dir = _build_random_model(
            bench_models_root(cache_dir) / f"free-random-seed{FREE_SEED}",
            seed=FREE_SEED,
            config_kwargs={"dim": 32, "n_layers": 1, "n_heads": 2, "hidden_dim": 64},
            tokenizer_dir=tok_dir,
        )
        label = "near-free model (real tokenizer, dim 32, 1 layer, random weights)"
        note = f"measures the pipeline, not a model: predictions meaningless; tokenizer: {tok_note}"
    elif key == "tiny":
        hf_dir = _build_random_model(
            bench_models_root(cache_dir) / f"tiny-random-seed{TINY_SEED}",
            seed=TINY_SEED,
            config_kwargs={"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64},
            tokenizer_dir=None,
        )
        label = "tiny smoke model (random weights, dim 32, 2 layers)"
        note = "smoke-test model: its numbers say nothing about real models"
    else:  # a local HF model dir, optionally named: NAME=PATH
        name, _, path = key.rpartition("=")
        hf_dir = Path(path).expanduser()
        if not (hf_dir / "config.json").is_file():
            raise ModelUnavailable(f"model {key!r} is neither one of {MODEL_KEYS} nor a local HF model dir")
        shape = read_shape(hf_dir)
        key = name or hf_dir.name
        label = f"{key} (local HF model, dim {shape['dim']}, {shape['n_layers']} layers)"
        note = f"local HF model folder {hf_dir}"
    exports: dict[str, Path] = {}
    for precision in precisions:
        if precision == "fp16":
            continue  # CUDA only: the GPU rows stay empty on a CPU machine
        if key == "starter":
            found = cached_starter_dir(starter_cache, precision)
            if found is not None:
                exports[precision] = found
                continue
        exports[precision] = export_model(hf_dir, precision=precision, cache_dir=cache_dir)  # type: ignore[arg-type]
    return BenchModel(key=key, label=label, hf_dir=hf_dir, exports=exports, shape=read_shape(hf_dir), note=note)
