"""Hot swap of the serving model: reload requests handled one at a time on a background thread.

A reload is asked for by SIGHUP (``signal``), every ``model_watch_s`` seconds (``watch``) or by ``POST /admin/model``
(``admin``, which may name another model or revision). On the ``model-rollout`` thread, off the poll loop and the
inference thread, so the stream keeps flowing:

1. re-resolve the configured ``model`` (``worker.model.resolve``: an exported dir, the export a symlink points to
   now, a local HF dir (exported again if its content changed), a hub id at its revision);
2. the same ONNX sha256 as the serving model: nothing to do (``model_unchanged``);
3. load and warm up the candidate beside the serving model (never unloading it first): its ONNX file must match its
   manifest's sha256 (``SentimentModel.load``);
4. the validation gate (``gate.py``): labels, canary run, agreement, accuracy;
5. hand it to the inference stage (``worker.stream.common.swap.ModelSlot.offer``), which switches at its next batch
   boundary; the old model is released once nothing uses it.

A refused candidate leaves the serving model in place; the reason is logged (``model_refused``) and counted
(``sentiment_model_swap_refusals_total{reason}``). Nothing a candidate holds (a missing or corrupt file, other
labels, a model that fails or disagrees) stops the stream. While ``model_watch_s`` is on, a candidate refused once
is not tried again until its files change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from worker.model.errors import ModelUnavailableError
from worker.model.manifest import is_exported_dir, onnx_path, read_manifest
from worker.observability import get_logger
from worker.rollout.gate import GatePolicy, check, load_canary, predicted_labels
from worker.rollout.metrics import RolloutMetrics
from worker.settings import Inference, ModelRollout
from worker.stream.common.ports import model_info
from worker.stream.common.swap import ModelSlot

log = get_logger(__name__)

TRIGGERS = ("signal", "watch", "admin")
# an exported dir → a loaded, warmed-up model (``worker.model.loading.load_model``)
Load = Callable[[Path, Inference], Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a reload did: ``swapped``, ``unchanged`` or ``refused`` (with ``reason``)."""

    outcome: str
    trigger: str
    reason: str = ""
    detail: str = ""
    model_id: str | None = None
    path: str | None = None
    sha256: str | None = None  # the candidate's ONNX sha256
    serving_sha256: str | None = None  # the model serving afterwards
    agreement: float | None = None
    accuracy: float | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Refused(Exception):
    def __init__(self, reason: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.extra = reason, detail, extra


@dataclass(slots=True)
class _Request:
    trigger: str
    model: str | None
    revision: str | None
    future: Future[Outcome] | None


class Rollout:
    """The reload controller of one process: :meth:`request` from any thread (a signal handler too: it only
    queues), the work on its own thread. ``wake`` makes an idle inference stage reach a batch boundary."""

    def __init__(
        self,
        rollout: ModelRollout,
        inference: Inference,
        slot: ModelSlot,
        *,
        load: Load,
        wake: Callable[[], None],
        metrics: Any | None = None,
        resolve: Callable[[Inference], Path] | None = None,
    ) -> None:
        """``rollout``: the swap, watch and gate settings; ``inference``: the configured model (a candidate is
        resolved and loaded as it says, with another model id or revision when one is asked for)."""
        self.settings = rollout
        self.inference = inference
        self.slot = slot
        self.load = load
        self.wake = wake
        self.metrics = metrics  # WorkerMetrics: set_model_info and its registry
        self.counters = RolloutMetrics(metrics.registry) if metrics is not None else None
        self._resolve = resolve
        self.policy = GatePolicy.from_settings(rollout)
        load_canary(rollout.canary_file)  # a broken canary_file fails the start, not every swap
        self.target: tuple[str, str | None] = (inference.model, inference.model_revision)
        self.listeners: list[Callable[[Any, Any], None]] = []  # (old, new) after a switch, on the stage's thread
        self.last: Outcome | None = None
        self._queue: list[_Request] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._refused_files: tuple[Any, ...] | None = None  # (path, sha, size, mtime) of the last refused candidate
        self._last_refusal: tuple[Any, ...] | None = None  # what the last refusal said (the watch says it once)
        self._serving_canary: tuple[str, tuple[str, ...], list[str]] | None = None  # (sha, texts, its labels)
        self._thread = threading.Thread(target=self._run, name="model-rollout", daemon=True)

    # ---- control -----------------------------------------------------------------------------------------------
    def start(self) -> Rollout:
        self._thread.start()
        log.info("model_rollout_ready", watch_s=self.settings.model_watch_s or None, model=self.target[0])
        return self

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def request(self, trigger: str, *, model: str | None = None, revision: str | None = None) -> Future[Outcome]:
        """Queue a reload (``model`` / ``revision``: another target; it stays the configured one once served)."""
        future: Future[Outcome] = Future()
        with self._cond:
            if self._stopped:
                future.set_result(Outcome("refused", trigger, "stopping", "the worker is stopping"))
                return future
            self._queue.append(_Request(trigger, model, revision, future))
            self._cond.notify_all()
        return future

    def signal(self) -> None:
        """SIGHUP (called in the signal handler: only queues)."""
        self.request("signal")

    # ---- the thread --------------------------------------------------------------------------------------------
    def _run(self) -> None:
        watch_s = self.settings.model_watch_s
        next_watch = time.monotonic() + watch_s if watch_s else None
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    if next_watch is not None and time.monotonic() >= next_watch:
                        break
                    self._cond.wait(None if next_watch is None else max(0.01, next_watch - time.monotonic()))
                if self._stopped:
                    for req in self._queue:
                        _settle(req, Outcome("refused", req.trigger, "stopping", "the worker is stopping"))
                    return
                queued, self._queue = self._queue, []
            if not queued and next_watch is not None:
                queued = [_Request("watch", None, None, None)]
            if watch_s:
                next_watch = time.monotonic() + watch_s
            while queued:
                req = queued.pop(0)
                same = [r for r in queued if (r.model, r.revision) == (req.model, req.revision)]
                queued = [r for r in queued if r not in same]  # asked again meanwhile: one reload answers all
                outcome = self._handle(req)
                for r in (req, *same):
                    _settle(r, outcome)

    def _handle(self, req: _Request) -> Outcome:
        started = time.perf_counter()
        if self.counters is not None:
            self.counters.requests.labels(trigger=req.trigger).inc()
        quiet = req.trigger == "watch"
        try:
            outcome = self._reload(req, started, quiet)
        except _Refused as refused:
            outcome = Outcome("refused", req.trigger, refused.reason, refused.detail, **refused.extra)
        except Exception as exc:  # never let the thread die: the serving model stays
            outcome = Outcome("refused", req.trigger, "load_failed", repr(exc)[:500])
        outcome = _with(outcome, seconds=round(time.perf_counter() - started, 3), serving_sha256=self.slot.model.sha256)
        self._report(outcome, quiet)
        self.last = outcome
        return outcome

    def _reload(self, req: _Request, started: float, quiet: bool) -> Outcome:
        model_id, revision = self.target
        if req.model is not None or req.revision is not None:
            model_id, revision = req.model or model_id, req.revision if req.revision is not None else revision
        if not quiet:
            log.info("model_reload_requested", trigger=req.trigger, model=model_id, revision=revision)
        elif not _path_like(model_id):  # the watch looks at directories: a hub id at its revision doesn't change
            return Outcome("unchanged", req.trigger, detail="the watch checks directories only", model_id=model_id)
        path = self._resolved(model_id, revision)
        try:
            manifest = read_manifest(path)
            sha = str(manifest["onnx_sha256"])
            stat = onnx_path(path, manifest).stat()
        except (OSError, ValueError, KeyError) as exc:
            raise _Refused("unavailable", f"{path}: {exc}", path=str(path)) from None
        serving = self.slot.model
        base = {"model_id": str(manifest.get("source", model_id)), "path": str(path), "sha256": sha}
        if sha == serving.sha256:
            self.target = (model_id, revision)
            return Outcome("unchanged", req.trigger, detail="the serving model has this sha256", **base)
        files = (str(path), sha, stat.st_size, stat.st_mtime_ns)
        if quiet and files == self._refused_files:
            return Outcome("refused", req.trigger, "seen", "refused before and unchanged since", **base)
        try:
            canary = load_canary(self.settings.canary_file)
        except (OSError, ValueError) as exc:
            raise _Refused("canary_file", f"canary_file: {exc}", **base) from None
        try:
            candidate = self.load(path, self.inference)
        except Exception as exc:
            self._refused_files = files
            raise _Refused(_load_reason(exc), f"{type(exc).__name__}: {exc}"[:500], **base) from None
        expected = self._serving_predictions(serving, canary.texts)
        verdict = check(candidate, serving.labels, expected, canary, self.policy)
        scores = {"agreement": verdict.agreement, "accuracy": verdict.accuracy}
        if self.counters is not None:
            self.counters.agreement.set(-1 if verdict.agreement is None else verdict.agreement)
        if not verdict.ok:
            self._refused_files = files
            raise _Refused(verdict.reason, verdict.detail, **base, **scores)
        self._switch(candidate, req.trigger, started)
        self.target = (model_id, revision)
        self._refused_files = None
        return Outcome("swapped", req.trigger, detail=verdict.detail, **base, **scores)

    def _resolved(self, model_id: str, revision: str | None) -> Path:
        local = Path(model_id).expanduser()
        try:
            if local.is_dir() and is_exported_dir(local):  # the common case, checked quietly (model_watch_s)
                return local.resolve()
            from worker.model.resolve import resolve_model

            update: dict[str, Any] = {"model": model_id}
            if revision != self.inference.model_revision:  # else hub_revision() decides, as at start
                update["model_revision"] = revision
            target = self.inference.model_copy(update=update)
            return Path((self._resolve or resolve_model)(target)).resolve()
        except (ModelUnavailableError, OSError, ValueError) as exc:
            raise _Refused("unavailable", str(exc)[:500], path=str(local)) from None

    def _serving_predictions(self, serving: Any, texts: tuple[str, ...]) -> list[str] | None:
        """The serving model's labels for the canary texts (computed once per serving model)."""
        cached = self._serving_canary
        if cached is not None and cached[0] == serving.sha256 and cached[1] == texts:
            return cached[2]
        try:
            labels = predicted_labels(serving, texts)
        except Exception as exc:
            log.warning("canary_serving_model_failed", error=repr(exc))
            return None
        self._serving_canary = (serving.sha256, texts, labels)
        return labels

    def _switch(self, candidate: Any, trigger: str, started: float) -> None:
        """Offer ``candidate`` to the inference stage and wait until it switched (or the worker stops)."""
        switched = threading.Event()

        def on_switched(old: Any, new: Any) -> None:  # on the inference thread, at a batch boundary
            if self.metrics is not None:
                self.metrics.set_model_info(**model_info(new))
            if self.counters is not None:
                self.counters.swaps.inc()
            log.info("model_swapped", trigger=trigger, previous_sha256=old.sha256, sha256=new.sha256,
                     model=new.model_id, revision=new.revision, path=str(new.path),
                     seconds=round(time.perf_counter() - started, 3))  # fmt: skip
            for listener in self.listeners:
                listener(old, new)
            switched.set()

        self.slot.offer(candidate, on_switched)
        self.wake()
        while not switched.wait(0.1):
            with self._cond:
                stopped = self._stopped
            if stopped and self.slot.withdraw() is not None:
                raise _Refused("stopping", "the worker stopped before the stage switched", sha256=candidate.sha256)
            if stopped:
                switched.wait(1.0)
                return

    def _report(self, outcome: Outcome, quiet: bool) -> None:
        fields = {k: v for k, v in outcome.as_dict().items() if v not in (None, "") and k != "outcome"}
        if outcome.outcome == "unchanged":
            if self.counters is not None:
                self.counters.unchanged.inc()
            (log.debug if quiet else log.info)("model_unchanged", **fields)
        elif outcome.outcome == "refused" and outcome.reason != "seen":
            key = (outcome.reason, outcome.path, outcome.sha256, outcome.detail)
            if quiet and key == self._last_refusal:  # the watch finds the same refusal again: said once
                return
            self._last_refusal = key
            if self.counters is not None:
                self.counters.refusals.labels(reason=outcome.reason).inc()
            log.warning("model_refused", **fields, note="the serving model stays")
        if outcome.outcome != "refused":
            self._last_refusal = None


def _path_like(model: str) -> bool:
    path = Path(model).expanduser()
    return path.exists() or path.is_symlink() or model.startswith(("/", "./", "../", "~"))


def _load_reason(exc: BaseException) -> str:
    from worker.model.runtime import ModelIntegrityError  # onnxruntime: only once a candidate is loaded

    if isinstance(exc, ModelIntegrityError):
        return "integrity"
    if isinstance(exc, FileNotFoundError | ModelUnavailableError):
        return "unavailable"
    return "load_failed"


def _with(outcome: Outcome, **changes: Any) -> Outcome:
    return Outcome(**{**outcome.as_dict(), **changes})


def _settle(req: _Request, outcome: Outcome) -> None:
    if req.future is not None and not req.future.done():
        req.future.set_result(outcome)
