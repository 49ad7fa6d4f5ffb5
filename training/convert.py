"""Convert the MiniLM BertModel (all-MiniLM-L6-v2) into a DistilBERT sequence classifier.

MiniLM-L6-H384 and DistilBERT share the architecture of a post-LayerNorm BERT encoder and the same uncased
WordPiece vocabulary, so the encoder maps one to one (DistilBERT has no token types: token-type embedding 0 is
folded into the position embeddings). The classification head (pre_classifier + classifier) is freshly
initialised (seeded) and learnt by fine-tuning. The result is a normal Hugging Face DistilBERT folder, so the
same Optimum export path as the production model applies.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.observability import get_logger

if TYPE_CHECKING:
    import torch
    from transformers import BertConfig, DistilBertConfig

log = get_logger(__name__)

ID2LABEL: dict[int, str] = {0: "NEGATIVE", 1: "POSITIVE"}
LABEL2ID: dict[str, int] = {v: k for k, v in ID2LABEL.items()}
CONVERSION_RECORD = "conversion.json"

# Per-layer parameter names: BertModel (under encoder.layer.{i}.) → DistilBERT (under transformer.layer.{i}.)
LAYER_MAP: dict[str, str] = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' expected load warnings (unused pooler weights, new head weights)."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


class ConversionError(ValueError):
    """The source is not a BERT encoder that maps onto DistilBERT."""


def distilbert_config_from_bert(bert: BertConfig) -> DistilBertConfig:
    """DistilBertConfig with the BERT encoder's shape (dim, layers, heads, FFN) and NEGATIVE/POSITIVE labels."""
    from transformers import DistilBertConfig

    if getattr(bert, "position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"position_embedding_type {bert.position_embedding_type!r} is not absolute")
    if bert.hidden_act not in ("gelu", "gelu_new", "gelu_python"):
        raise ConversionError(f"hidden_act {bert.hidden_act!r} has no DistilBERT equivalent")
    if abs(float(bert.layer_norm_eps) - 1e-12) > 1e-15:
        # DistilBERT's LayerNorms use eps=1e-12 (hard-coded in transformers).
        raise ConversionError(f"layer_norm_eps {bert.layer_norm_eps} differs from DistilBERT's 1e-12")
    return DistilBertConfig(
        vocab_size=bert.vocab_size,
        max_position_embeddings=bert.max_position_embeddings,
        sinusoidal_pos_embds=False,
        n_layers=bert.num_hidden_layers,
        n_heads=bert.num_attention_heads,
        dim=bert.hidden_size,
        hidden_dim=bert.intermediate_size,
        dropout=bert.hidden_dropout_prob,
        attention_dropout=bert.attention_probs_dropout_prob,
        activation="gelu",
        initializer_range=bert.initializer_range,
        pad_token_id=bert.pad_token_id if bert.pad_token_id is not None else 0,
        id2label=dict(ID2LABEL),
        label2id=dict(LABEL2ID),
        architectures=["DistilBertForSequenceClassification"],
    )


def map_bert_state_dict(bert_state: Mapping[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Map BertModel weights to DistilBertForSequenceClassification names (prefix ``distilbert.``).

    The embedding sum word + position + token_type[0] becomes word + (position + token_type[0]).
    The pooler is dropped (DistilBERT has none).
    """
    state = {k.removeprefix("bert."): v for k, v in bert_state.items()}

    def take(name: str) -> torch.Tensor:
        try:
            return state[name].detach().clone()
        except KeyError:
            raise ConversionError(f"BERT weight {name!r} is missing") from None

    out: dict[str, torch.Tensor] = {
        "distilbert.embeddings.word_embeddings.weight": take("embeddings.word_embeddings.weight"),
        "distilbert.embeddings.position_embeddings.weight": take("embeddings.position_embeddings.weight")
        + take("embeddings.token_type_embeddings.weight")[0].unsqueeze(0),
        "distilbert.embeddings.LayerNorm.weight": take("embeddings.LayerNorm.weight"),
        "distilbert.embeddings.LayerNorm.bias": take("embeddings.LayerNorm.bias"),
    }
    for i in range(num_layers):
        for src, dst in LAYER_MAP.items():
            for param in ("weight", "bias"):
                out[f"distilbert.transformer.layer.{i}.{dst}.{param}"] = take(f"encoder.layer.{i}.{src}.{param}")
    return out


def save_distilbert_tokenizer(vocab_dir: Path, output_dir: Path, *, model_max_length: int = 512) -> None:
    """Save the (uncased WordPiece) vocabulary as a DistilBertTokenizerFast, so tokenizer.json exists."""
    from transformers import DistilBertTokenizerFast

    vocab = Path(vocab_dir) / "vocab.txt"
    if not vocab.is_file():
        raise ConversionError(f"{vocab} not found")
    tokenizer = DistilBertTokenizerFast(
        vocab_file=str(vocab), do_lower_case=True, tokenize_chinese_chars=True, model_max_length=model_max_length
    )
    tokenizer.save_pretrained(str(output_dir))


def convert_minilm(minilm_dir: Path, output_dir: Path, *, seed: int = 0, force: bool = False) -> Path:
    """Convert a BertModel folder into a DistilBertForSequenceClassification folder (idempotent).

    Returns ``output_dir``, which holds config.json, model.safetensors, tokenizer.json and
    ``conversion.json`` (source, mapping, seed). An existing complete conversion is reused unless ``force``.
    """
    import torch
    from transformers import BertConfig, BertModel, DistilBertForSequenceClassification

    minilm_dir, output_dir = Path(minilm_dir), Path(output_dir)
    record_path = output_dir / CONVERSION_RECORD
    if record_path.is_file() and not force:
        try:
            previous = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = {}
        if previous.get("seed") == seed and previous.get("source") == str(minilm_dir):
            log.info("convert.cached", output=str(output_dir))
            return output_dir

    try:
        model_type = json.loads((minilm_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{minilm_dir} has no readable config.json: {exc}") from None
    if model_type != "bert":
        raise ConversionError(f"{minilm_dir} holds a {model_type!r} model, not a BERT encoder")
    bert_config = BertConfig.from_pretrained(str(minilm_dir))
    config = distilbert_config_from_bert(bert_config)
    with quiet_transformers():
        bert = BertModel.from_pretrained(str(minilm_dir), add_pooling_layer=False)
    mapped = map_bert_state_dict(bert.state_dict(), bert_config.num_hidden_layers)

    torch.manual_seed(seed)
    model = DistilBertForSequenceClassification(config)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    head = {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"}
    if set(missing) - head or unexpected:
        raise ConversionError(f"weight mapping incomplete: missing={sorted(set(missing) - head)} {unexpected=}")

    tmp = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    save_distilbert_tokenizer(minilm_dir, tmp, model_max_length=bert_config.max_position_embeddings)
    record: dict[str, Any] = {
        "source": str(minilm_dir),
        "source_model": bert_config.to_dict().get("_name_or_path") or "sentence-transformers/all-MiniLM-L6-v2",
        "mapping": {"embeddings": "word; position + token_type[0]; LayerNorm", "layer": LAYER_MAP},
        "head": "pre_classifier + classifier initialised randomly",
        "seed": seed,
    }
    (tmp / CONVERSION_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(output_dir, ignore_errors=True)
    tmp.rename(output_dir)
    log.info("convert.done", source=str(minilm_dir), output=str(output_dir), layers=config.n_layers)
    return output_dir


def encoder_max_abs_diff(minilm_dir: Path, distilbert_dir: Path, texts: Sequence[str]) -> float:
    """Max |Δ| between the BERT and converted DistilBERT last hidden states, over real (non-pad) tokens."""
    import torch
    from transformers import AutoTokenizer, BertModel, DistilBertModel

    tokenizer = AutoTokenizer.from_pretrained(str(distilbert_dir))
    with quiet_transformers():
        bert = BertModel.from_pretrained(str(minilm_dir), add_pooling_layer=False).eval()
        distil = DistilBertModel.from_pretrained(str(distilbert_dir)).eval()
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        ref = bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        got = distil(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    mask = enc["attention_mask"].bool()
    return float((ref - got).abs()[mask].max())
