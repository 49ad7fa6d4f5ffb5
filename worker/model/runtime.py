"""Run an exported sentiment model with ONNX Runtime (CUDA when asked/available, CPU otherwise).

The session itself (which provider, CUDA or CPU) is ``worker.model.session``'s.
This is the hot path: it imports onnxruntime, tokenizers and numpy only — never torch, transformers or
optimum (a test checks ``'torch' not in sys.modules`` after load + predict).

Typical use::

    model = SentimentModel.load(exported_dir, device="auto")
    ids, truncated = model.tokenize(texts)
    result = model.infer_ids(ids, chunk_size=16)     # length-sorted chunks, probs in input order
    predictions = model.to_predictions(result.probs)

On CUDA (defaults; each can be forced on or off with ``load``'s arguments): calls are padded to shape buckets
(``worker.model.buckets``) so shapes repeat, and run through IO binding (``worker.model.gpu``); ``cuda_graph=True``
adds CUDA graph capture/replay per bucket. On the CPU neither is used by default (padding costs CPU time).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from worker.model.buckets import BATCH_BUCKETS, batch_buckets, bucket_for, length_buckets, pad_batch
from worker.model.gpu import BoundRunner, has_cuda_graph
from worker.model.manifest import (
    CONFIG_NAME,
    MANIFEST_NAME,
    ONNX_NAME,
    load_manifest_json,
    manifest_path,
    sha256_file,
)
from worker.model.session import CUDA, Device, ProviderUnavailableError, cuda_plausible
from worker.model.session import create_session as _create_session
from worker.model.threads import intra_op_threads
from worker.observability import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    score: float
    scores: dict[str, float]


@dataclass(frozen=True, slots=True)
class InferenceResult:
    probs: np.ndarray  # (n, num_labels) float32, rows in input order
    real_tokens: int  # tokens of the inputs (incl. special tokens)
    padded_tokens: int  # positions fed to the model, padding included
    logits: np.ndarray | None = None  # (n, num_labels) float32 raw scores, rows in input order (HTTP raw_scores)


class ModelIntegrityError(RuntimeError):
    """The ONNX file's sha256 differs from the manifest's (corrupted or tampered export)."""


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float32)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class SentimentModel:
    """A loaded exported model: tokenizer + ONNX Runtime session + labels."""

    model_id: str
    revision: str | None
    sha256: str
    precision: str
    provider: str
    labels: tuple[str, ...]
    max_length: int
    path: Path

    def __init__(
        self,
        *,
        path: Path,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        manifest: dict[str, Any],
        labels: tuple[str, ...],
        max_length: int,
        pad_id: int,
    ) -> None:
        self.path = path
        self._session = session
        self._tokenizer = tokenizer
        self.manifest = manifest
        self.model_id = str(manifest.get("source", path))
        self.revision = manifest.get("revision")
        self.sha256 = str(manifest["onnx_sha256"])
        self.precision = str(manifest.get("precision", "fp32"))
        self.provider = session.get_providers()[0]
        self.labels = labels
        self.max_length = max_length
        # the tokenizer as configured (vocab, normaliser, truncation): ids of another one are tokenised again after a
        # hot swap (worker/stream/common/swap.py)
        self.vocab = hashlib.sha256(tokenizer.to_str().encode()).hexdigest()[:16]
        self._pad_id = pad_id
        # what reload() creates its session with (load() sets the requested ones)
        device = "cuda" if self.provider == CUDA else "cpu"
        self._session_args: dict[str, Any] = {"device": device, "device_id": 0, "threads": 0, "spinning": False}
        self._length_buckets: tuple[int, ...] | None = None  # None: pad each call to its longest sequence
        self._batch_buckets: tuple[int, ...] | None = None  # None: as many rows as sequences
        self._runner: BoundRunner | None = None  # None: session.run
        self._input_names = {i.name for i in session.get_inputs()}
        self._output_name = session.get_outputs()[0].name
        self._meta = {
            "id": self.model_id,
            "revision": self.revision,
            "onnx_sha256": self.sha256,
            "precision": self.precision,
            "provider": self.provider,
        }

    # ---- loading ----------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        exported_dir: Path,
        *,
        device: Device = "auto",
        device_id: int = 0,
        threads: int = 0,
        spinning: bool = False,
        max_length: int = 128,
        warmup: bool = True,
        shape_buckets: bool | None = None,
        io_binding: bool | None = None,
        cuda_graph: bool = False,
    ) -> SentimentModel:
        """Load an exported dir (only from that dir), verify the ONNX sha256, create the session.

        ``shape_buckets`` / ``io_binding``: None = on when the session runs on CUDA. ``cuda_graph``: capture a CUDA
        graph per shape bucket (needs buckets; ignored off CUDA; dropped with a warning if the session can't have it).
        """
        started = time.perf_counter()
        path = Path(exported_dir)
        if not manifest_path(path).is_file():
            raise FileNotFoundError(
                f"{path} is not an exported model dir (no {MANIFEST_NAME}); export it with `sentiment-worker export`"
            )
        manifest = load_manifest_json(path)
        onnx_name = str(manifest.get("onnx_file", ONNX_NAME))
        onnx_file = path / onnx_name
        if Path(onnx_name).is_absolute() or path.resolve() not in onnx_file.resolve().parents:
            raise ModelIntegrityError(
                f"the manifest's onnx_file {onnx_name!r} points outside {path}: the model is loaded only from its dir"
            )
        if not onnx_file.is_file():
            raise FileNotFoundError(f"{onnx_file} is missing")
        digest = sha256_file(onnx_file)
        if digest != manifest.get("onnx_sha256"):
            raise ModelIntegrityError(
                f"{onnx_file} sha256 {digest} does not match the manifest ({manifest.get('onnx_sha256')}): "
                "the export is corrupted or was modified; re-export it (sentiment-worker export --force)"
            )
        precision = str(manifest.get("precision", "fp32"))
        if precision == "fp16" and (device == "cpu" or (device == "auto" and not cuda_plausible())):
            raise ProviderUnavailableError(
                f"this export is fp16, which runs only on CUDA, and device is {device}"
                f"{' with no usable GPU here' if device == 'auto' else ''}; "
                "run it on a GPU (device cuda/auto) or use an fp32/int8 export on CPU"
            )

        config = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        id2label = config.get("id2label") or {}
        if not id2label:
            raise ValueError(f"{path}/config.json has no id2label")
        labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
        max_positions = int(config.get("max_position_embeddings", max_length))
        if max_length > max_positions:
            log.warning("max_length_capped", requested=max_length, model_limit=max_positions)
            max_length = max_positions

        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_length)
        pad_id = _pad_id(tokenizer, config)
        threads = intra_op_threads(threads, config)  # 0: one thread for a small model (threads.py), else all cores
        session = _create_session(
            onnx_file, device=device, device_id=device_id, threads=threads, spinning=spinning, cuda_graph=cuda_graph
        )
        if precision == "fp16" and session.get_providers()[0] != CUDA:
            raise ProviderUnavailableError(
                f"this export is fp16, which runs only on CUDA, but the session got {session.get_providers()[0]}; "
                "use an fp32 or int8 export on this machine"
            )
        model = cls(
            path=path,
            session=session,
            tokenizer=tokenizer,
            manifest=manifest,
            labels=labels,
            max_length=max_length,
            pad_id=pad_id,
        )
        model._session_args = dict(device=device, device_id=device_id, threads=threads, spinning=spinning,
                                   shape_buckets=shape_buckets, io_binding=io_binding,
                                   cuda_graph=cuda_graph)  # fmt: skip
        model._configure(session)
        if warmup:
            model.predict(["warm up", "a slightly longer warm up sentence for the session"])
        log.info(
            "model_loaded",
            provider=model.provider,
            precision=model.precision,
            sha256=model.sha256,
            path=str(path),
            labels=list(labels),
            model=model.model_id,
            revision=model.revision,
            max_length=max_length,
            threads=threads,
            shape_buckets=model._length_buckets is not None,
            io_binding=model._runner is not None,
            cuda_graph=model._runner is not None and model._runner.static,
            seconds=round(time.perf_counter() - started, 3),
        )
        return model

    def _configure(self, session: ort.InferenceSession) -> None:
        """Shape buckets and IO binding for ``session`` as the load arguments ask (None: on for CUDA)."""
        args = self._session_args
        on_cuda = session.get_providers()[0] == CUDA
        buckets = on_cuda if args.get("shape_buckets") is None else bool(args["shape_buckets"])
        self._length_buckets = length_buckets(self.max_length) if buckets else None
        self._batch_buckets = BATCH_BUCKETS if buckets else None
        binding = on_cuda if args.get("io_binding") is None else bool(args["io_binding"])
        graph = bool(args.get("cuda_graph")) and buckets and on_cuda and has_cuda_graph(session)
        self._runner = None
        if binding or graph:
            self._runner = BoundRunner(
                session,
                output_name=self._output_name,
                num_outputs=len(self.labels),
                device="cuda" if on_cuda else "cpu",
                device_id=int(args.get("device_id", 0)),
                static=graph,
            )

    def reload(self) -> None:
        """Replace the ONNX Runtime session with a new one (same file, checked against the manifest again, same
        device and options), e.g. after the old one started failing on every batch (a GPU fault); then warm it up.

        Not thread-safe with :meth:`infer_ids`: call it from the thread that runs the model. Raises, and keeps the
        old session, if the new one can't be created or run.
        """
        started = time.perf_counter()
        onnx_file = self.path / str(self.manifest.get("onnx_file", ONNX_NAME))
        digest = sha256_file(onnx_file)
        if digest != self.sha256:
            raise ModelIntegrityError(f"{onnx_file} sha256 {digest} no longer matches the manifest ({self.sha256})")
        args = self._session_args
        session = _create_session(
            onnx_file,
            device=args["device"],
            device_id=args["device_id"],
            threads=args["threads"],
            spinning=args["spinning"],
            cuda_graph=bool(args.get("cuda_graph")),
        )
        old, old_runner, self._session = self._session, self._runner, session
        try:
            self._configure(session)
            self.predict(["warm up", "a slightly longer warm up sentence for the session"])
        except Exception:
            self._session, self._runner = old, old_runner
            raise
        provider = session.get_providers()[0]
        if provider != self.provider:
            log.warning("model_provider_changed", previous=self.provider, provider=provider)
            self.provider = self._meta["provider"] = provider
        log.info("model_reloaded", provider=provider, seconds=round(time.perf_counter() - started, 3))

    # ---- tokenise / infer -------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids per text (special tokens included, truncated to max_length, unpadded) + truncated flags.

        ``encode_batch_fast`` gives the same ids and truncation without tracking character offsets (nobody reads
        them): 38 against 47 µs of CPU per tweet on one thread here."""
        encodings = self._tokenizer.encode_batch_fast(list(texts))
        ids = [enc.ids for enc in encodings]
        truncated = [bool(enc.overflowing) for enc in encodings]
        return ids, truncated

    def infer_ids(self, ids: Sequence[Sequence[int]], *, chunk_size: int | None = None) -> InferenceResult:
        """Probabilities for token-id sequences, rows in input order.

        With ``chunk_size`` < len(ids) the sequences are sorted by length and run in chunks of
        ``chunk_size``, each padded only to its own longest sequence (length bucketing).
        """
        n = len(ids)
        num_labels = len(self.labels)
        if n == 0:
            return InferenceResult(np.zeros((0, num_labels), dtype=np.float32), 0, 0)
        lengths = np.fromiter((len(seq) for seq in ids), dtype=np.int64, count=n)
        real = int(lengths.sum())
        if chunk_size is None or chunk_size >= n:
            logits, padded = self._run(ids, lengths, np.arange(n), chunk_size or BATCH_BUCKETS[-1])
            return InferenceResult(softmax(logits), real, padded, logits)
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        order = np.argsort(lengths, kind="stable")
        logits = np.empty((n, num_labels), dtype=np.float32)
        padded = 0
        for start in range(0, n, chunk_size):
            idx = order[start : start + chunk_size]
            logits[idx], fed = self._run(ids, lengths, idx, chunk_size)
            padded += fed
        return InferenceResult(softmax(logits), real, padded, logits)

    def _run(
        self, ids: Sequence[Sequence[int]], lengths: np.ndarray, idx: np.ndarray, limit: int
    ) -> tuple[np.ndarray, int]:
        """float32 logits of the sequences ``idx`` of ``ids`` and the positions fed: padded to their longest, or to
        the length bucket that holds it and the row bucket up to ``limit`` (the chunk size)."""
        count = len(idx)
        width = max(1, int(lengths[idx].max()))
        rows = count
        if self._length_buckets is not None:
            width = bucket_for(width, self._length_buckets)
        if self._batch_buckets is not None:
            rows = bucket_for(count, batch_buckets(max(limit, count), self._batch_buckets))
        input_ids, attention_mask = pad_batch(ids, lengths, idx, pad_id=self._pad_id, width=width, rows=rows)
        logits = np.asarray(self.batch_logits(input_ids, attention_mask), dtype=np.float32)
        return logits[:count], rows * width

    def batch_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Raw logits of one padded batch (int64 ``[rows, width]`` ids and mask), rows as given.

        For callers that tokenise themselves (evaluation feeds every backend the same ids).
        """
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        feeds = {k: v for k, v in feeds.items() if k in self._input_names}
        if self._runner is not None:
            return self._runner.run(feeds)
        (logits,) = self._session.run([self._output_name], feeds)
        return logits

    def predict(self, texts: Sequence[str], *, chunk_size: int | None = None) -> list[Prediction]:
        ids, _ = self.tokenize(texts)
        return self.to_predictions(self.infer_ids(ids, chunk_size=chunk_size).probs)

    def to_predictions(self, probs: np.ndarray) -> list[Prediction]:
        labels = self.labels
        best = probs.argmax(axis=1).tolist()
        rows = probs.tolist()
        return [
            Prediction(label=labels[b], score=row[b], scores=dict(zip(labels, row, strict=True)))
            for b, row in zip(best, rows, strict=True)
        ]

    def model_meta(self) -> dict[str, Any]:
        """Keys id, revision, onnx_sha256, precision, provider (worker.records.ModelMeta)."""
        return dict(self._meta)

    def __repr__(self) -> str:
        return (
            f"SentimentModel(model_id={self.model_id!r}, precision={self.precision!r}, "
            f"provider={self.provider!r}, labels={self.labels!r}, path={str(self.path)!r})"
        )


def _pad_id(tokenizer: Tokenizer, config: dict[str, Any]) -> int:
    pad = config.get("pad_token_id")
    if isinstance(pad, int):
        return pad
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return int(token_id)
    return 0  # masked out anyway
