"""The MiniLM→DistilBERT weight mapping reproduces a BERT encoder exactly (tiny random BERT, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def _tiny_bert(directory: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
    )
    model = BertModel(config)
    with torch.no_grad():  # a non-zero token-type embedding 0, so folding it into positions is exercised
        model.embeddings.token_type_embeddings.weight.normal_(0, 0.5)
    model.save_pretrained(directory)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz", "good", "bad", "movie"]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return directory


def test_converted_encoder_matches_bert(tmp_path: Path) -> None:
    import torch
    from transformers import BertModel, DistilBertForSequenceClassification, DistilBertModel

    from training.convert import CONVERSION_RECORD, convert_minilm

    bert_dir = _tiny_bert(tmp_path / "bert")
    out = convert_minilm(bert_dir, tmp_path / "distil", seed=1)
    assert (out / "tokenizer.json").is_file() and (out / CONVERSION_RECORD).is_file()
    classifier = DistilBertForSequenceClassification.from_pretrained(out)
    assert classifier.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    assert classifier.config.dim == 32 and classifier.config.n_layers == 2 and classifier.config.hidden_dim == 64

    ids = torch.tensor([[2, 31, 32, 5, 6, 3, 0, 0], [2, 33, 7, 8, 9, 10, 11, 3]])
    mask = (ids != 0).long()
    bert = BertModel.from_pretrained(bert_dir, add_pooling_layer=False).eval()
    distil = DistilBertModel.from_pretrained(out).eval()
    with torch.inference_mode():
        ref = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        got = distil(input_ids=ids, attention_mask=mask).last_hidden_state
    assert float((ref - got).abs()[mask.bool()].max()) <= 1e-5


def test_conversion_is_cached_unless_forced(tmp_path: Path) -> None:
    from training.convert import convert_minilm

    bert_dir = _tiny_bert(tmp_path / "bert")
    out = convert_minilm(bert_dir, tmp_path / "distil")
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert convert_minilm(bert_dir, out) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    convert_minilm(bert_dir, out, force=True)
    assert (out / "model.safetensors").stat().st_mtime_ns != stamp


def test_non_bert_source_is_rejected(tmp_path: Path, starter_tiny_model: Path) -> None:
    from training.convert import ConversionError, convert_minilm

    with pytest.raises(ConversionError, match="not a BERT encoder"):
        convert_minilm(starter_tiny_model, tmp_path / "out")
