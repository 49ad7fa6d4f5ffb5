"""Faults no record is to blame for: a model session that fails on everything, a stage thread that dies.

**Inference circuit breaker** (used by the inference stage). A batch the model fails on is split in halves until the
failing record is found, but a record is blamed (dead-lettered, ``inference_failed``) only when it fails on its own
while a known-good *probe* record (:data:`PROBE_TEXT`) runs on the same session right after. When the probe fails
too, the session is at fault (a GPU that fails, a session that throws on every call): nothing is dead-lettered, the
records not yet processed are kept and retried. After ``failures_to_open`` such failures in a row the circuit
opens: the consumer is paused and the worker reports not-ready (``/readyz`` 503) while the session is rebuilt
(``SentimentModel.reload``) after a pause of ``backoff_s``, doubling per attempt. A rebuilt session that runs the
probe closes the circuit and the kept records are retried; after ``rebuild_attempts`` failed rebuilds
:class:`InferenceDown` ends the inference stage: the worker stops with exit code 1 and the kept records, never
acknowledged, stay uncommitted in Kafka for the next worker.

**Stage threads**: :func:`start_stage_threads` runs each stage loop on its own thread; an exception escaping a loop
marks the worker dead (``/healthz`` 503) and is reported as fatal (the worker exits 1 without committing
unacknowledged work), so no worker looks healthy while doing nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.observability import get_logger
from worker.stream.common.ports import HealthReporter, Model

if TYPE_CHECKING:
    from worker.settings import Inference

log = get_logger(__name__)

PROBE_TEXT = "the service was good and the food was fine"
REBUILD_BACKOFF_MAX_S = 60.0


class InferenceDown(RuntimeError):
    """The model fails on a known-good record and rebuilding its session did not help: no record is to blame."""


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures_to_open: int = 3  # failures of the session (probe included) in a row before the circuit opens
    rebuild_attempts: int = 3  # session rebuilds before giving up (0: give up at once)
    backoff_s: float = 1.0  # pause before the first rebuild; doubles per attempt, up to REBUILD_BACKOFF_MAX_S

    def __post_init__(self) -> None:
        if self.failures_to_open < 1 or self.rebuild_attempts < 0 or self.backoff_s <= 0:
            raise ValueError(f"invalid breaker policy {self}")

    def pause(self, attempt: int) -> float:
        """Seconds to wait before rebuild ``attempt`` (from 1)."""
        return min(REBUILD_BACKOFF_MAX_S, self.backoff_s * 2.0 ** (attempt - 1))


class Breaker:
    """Tells a failing record from a failing session, and brings a failing session back (or gives up).

    ``down`` is set while the circuit is open (the runner pauses the consumer); the health reporter's readiness
    follows it. Called from the inference thread only.
    """

    def __init__(self, model: Model, policy: BreakerPolicy, *, health: HealthReporter, down: threading.Event) -> None:
        self.model = model
        self.policy = policy
        self.health = health
        self.down = down
        self.failures = 0  # session failures in a row
        self.rebuilds = 0  # successful rebuilds
        self.last_error = ""  # of the probe
        self._probe_ids = model.tokenize([PROBE_TEXT])[0][0]

    @classmethod
    def from_settings(
        cls, inference: Inference, model: Model, *, health: HealthReporter, down: threading.Event
    ) -> Breaker:
        """A breaker with the model section's failure policy (``inference_failures_to_open``, rebuilds)."""
        s = inference
        policy = BreakerPolicy(
            s.inference_failures_to_open, s.inference_rebuild_attempts, s.inference_rebuild_backoff_s
        )
        return cls(model, policy, health=health, down=down)

    def use(self, model: Model) -> None:
        """Guard another model from now on (a hot swap: ``swap.ModelSlot``); its own probe ids."""
        self._probe_ids = model.tokenize([PROBE_TEXT])[0][0]
        self.model = model
        self.failures = 0

    def probe(self) -> None:
        """Run the known-good record; raises what the session raises."""
        self.model.infer_ids([self._probe_ids])

    def probe_ok(self) -> bool:
        try:
            self.probe()
        except Exception as exc:
            self.last_error = repr(exc)
            log.warning("inference_probe_failed", error=self.last_error)
            return False
        return True

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, drop: threading.Event) -> bool:
        """The session failed (the probe too). True: retry the kept records now (the session may be back); False:
        their work is being dropped (a forced stop or a restart). Raises :class:`InferenceDown` to give up."""
        self.failures += 1
        log.warning(
            "inference_session_failed",
            failures=self.failures,
            open_at=self.policy.failures_to_open,
            error=self.last_error,
        )
        if self.failures < self.policy.failures_to_open:
            return not drop.is_set()
        return self._rebuild(drop)

    def _rebuild(self, drop: threading.Event) -> bool:
        attempts, error = self.policy.rebuild_attempts, self.last_error
        self.down.set()
        self.health.set_inference_ok(False)
        log.error("inference_circuit_open", failures=self.failures, rebuild_attempts=attempts, error=error)
        for attempt in range(1, attempts + 1):
            pause = self.policy.pause(attempt)
            log.info("inference_session_rebuild", attempt=attempt, of=attempts, pause_s=pause)
            if drop.wait(pause):
                self._close()  # dropped: a new stage (restart) starts over and finds out again
                return False
            try:
                self.model.reload()
                self.probe()
            except Exception as exc:
                error = repr(exc)
                log.warning("inference_session_rebuild_failed", attempt=attempt, of=attempts, error=error)
                continue
            self.rebuilds += 1
            self._close()
            log.info("inference_circuit_closed", attempt=attempt)
            return True
        log.error("inference_down", rebuild_attempts=attempts, error=error, note="kept records stay uncommitted")
        raise InferenceDown(
            f"the model fails on a known-good record after {attempts} session rebuild(s); last error: {error}"
        )

    def _close(self) -> None:
        self.failures = 0
        self.down.clear()
        self.health.set_inference_ok(True)


def start_stage_threads(
    loops: Mapping[str, Callable[[threading.Event], None]],
    drop: threading.Event,
    *,
    health: HealthReporter,
    on_fatal: Callable[[BaseException], None],
) -> list[threading.Thread]:
    """Start one daemon thread per stage loop (name → loop); a loop that raises fails the worker (see module)."""

    def guarded(name: str, loop: Callable[[threading.Event], None]) -> None:
        try:
            loop(drop)
        except InferenceDown as exc:  # logged by the breaker; not a dead thread: readiness already says so
            on_fatal(exc)
        except BaseException as exc:
            if drop.is_set():  # its work was being dropped anyway (a forced stop, a restart)
                log.warning("stage_thread_failed_while_dropping", thread=name, error=repr(exc))
                return
            log.exception(
                "stage_thread_failed", thread=name, error=repr(exc), note="unacknowledged work stays uncommitted"
            )
            health.set_stage_failed(name)
            on_fatal(exc)

    threads = [
        threading.Thread(target=guarded, args=(name, loop), name=name, daemon=True) for name, loop in loops.items()
    ]
    for thread in threads:
        thread.start()
    return threads
