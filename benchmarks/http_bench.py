"""HTTP benchmark: ``POST /predict`` requests/s and latency at 1, 16 and 64 concurrent clients, side by side with
the model alone, with the API alone (``sentiment-worker serve``) and while the worker streams at 50% of its
saturation rate (``sentiment-worker run --http-port``: the same model calls serve both).

- **model-only**: in this process, tokenise + infer batches of *c* texts back to back (what an ideal server with
  no HTTP cost would do for *c* clients that each wait for their answer): texts/s and ms per call;
- **http alone**: the server in its own process; *c* closed-loop clients (one keep-alive connection each, one text
  per request) from an asyncio load generator in this process, for a fixed time per level;
- **http + stream**: the same clients against ``run --http-port`` while the benchmark's producer offers 50% of the
  worker's measured saturation rate; the stream's own throughput over the same time is reported beside them.

Ratios (``http ÷ model-only``, ``with stream ÷ alone``) compare numbers measured minutes apart in one run on the
same machine; no figure is assumed. The load generator shares the cores with the server (2 on the build machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker.observability import get_logger

log = get_logger(__name__)

CONCURRENCY = (1, 16, 64)
READY_TIMEOUT_S = 120.0


@dataclass
class HttpSpec:
    model_key: str
    precision: str
    model_dir: Path
    texts: list[str]
    seconds: float  # per concurrency level
    concurrency: tuple[int, ...] = CONCURRENCY
    stream_rate: float | None = None  # msgs/s offered to the worker during the "http + stream" levels (None: skip)
    bootstrap: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # SENTIMENT_* overrides for both servers
    partitions: int = 4


# ---- load generator ----------------------------------------------------------------------------------------------
HEAD = b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


async def _client(port: int, bodies: list[bytes], first: int, stop_at: float, lat: list[float], bad: list[int]) -> None:
    """One client: one keep-alive connection, one request at a time, until ``stop_at``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = first
    try:
        while time.perf_counter() < stop_at:
            body = bodies[n % len(bodies)]
            n += 1
            started = time.perf_counter()
            writer.write(HEAD % len(body) + body)
            await writer.drain()
            header = await reader.readuntil(b"\r\n\r\n")
            status = int(header.split(b" ", 2)[1])
            match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", header)
            await reader.readexactly(int(match.group(1)) if match else 0)
            if status == 200:
                lat.append(time.perf_counter() - started)
            else:
                bad.append(status)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def load(port: int, texts: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` closed-loop clients for ``seconds``: requests/s and latency of the 200s; other statuses."""
    bodies = [json.dumps({"inputs": t}).encode() for t in texts]
    lat: list[float] = []
    bad: list[int] = []

    async def main() -> float:
        started = time.perf_counter()
        stop_at = started + seconds
        step = max(1, len(bodies) // concurrency)
        await asyncio.gather(*(_client(port, bodies, i * step, stop_at, lat, bad) for i in range(concurrency)))
        return time.perf_counter() - started

    wall = asyncio.run(main())
    ms = np.array(lat) * 1000 if lat else None
    return {
        "concurrency": concurrency,
        "seconds": round(wall, 3),
        "requests": len(lat),
        "errors": {str(s): bad.count(s) for s in sorted(set(bad))},
        "requests_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if ms is not None else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if ms is not None else None,
    }


# ---- model only --------------------------------------------------------------------------------------------------
def model_only(model_dir: Path, texts: list[str], spec: HttpSpec) -> dict[str, Any]:
    """Batches of ``c`` texts through tokenise + infer, back to back, for each concurrency ``c``."""
    from worker.model.runtime import SentimentModel

    s = spec.settings
    model = SentimentModel.load(model_dir, device=s.get("device", "auto"), threads=int(s.get("threads", 0)))
    chunk = int(s.get("inference_batch_size", 8))
    out: dict[str, Any] = {}
    for c in spec.concurrency:
        calls = max(3, round(len(texts) / c))
        call_ms: list[float] = []
        started = time.perf_counter()
        for i in range(calls):
            batch = [texts[(i * c + j) % len(texts)] for j in range(c)]
            t0 = time.perf_counter()
            ids, _ = model.tokenize(batch)
            model.infer_ids(ids, chunk_size=chunk)
            call_ms.append((time.perf_counter() - t0) * 1000)
        wall = time.perf_counter() - started
        out[str(c)] = {
            "concurrency": c,
            "texts_per_s": round(calls * c / wall, 1),
            "ms_per_call_p50": round(float(np.percentile(call_ms, 50)), 2),
            "ms_per_call_p99": round(float(np.percentile(call_ms, 99)), 2),
        }
    return out


# ---- servers -----------------------------------------------------------------------------------------------------
def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if re.match(rf"^{name}(\{{.*\}})? ", line))


class Server:
    """``sentiment-worker <command>`` in its own process, on a free port."""

    def __init__(self, command: str, spec: HttpSpec, env: dict[str, str], log_path: Path) -> None:
        from devtools.ports import free_port

        self.port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
        base.update({f"SENTIMENT_{k.upper()}": str(v) for k, v in spec.settings.items()})
        base.update(
            SENTIMENT_MODEL=str(spec.model_dir), SENTIMENT_HTTP_PORT=str(self.port), SENTIMENT_LOG_FORMAT="json"
        )
        base.update(SENTIMENT_HTTP_HOST="127.0.0.1", SENTIMENT_HTTP_MAX_QUEUED="1024", **env)
        self.log_path = log_path
        with log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker", command], env=base, stdout=log_file, stderr=subprocess.STDOUT
            )
        self.started = time.monotonic()
        self.ready_s: float | None = None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.log_path.read_text()[-1500:]}")
            with contextlib.suppress(OSError):
                if _get(self.port, "/health", timeout=2)[0] == 200:
                    self.ready_s = round(time.monotonic() - self.started, 2)
                    return
            time.sleep(0.2)
        raise RuntimeError("server not ready in time")

    def metrics(self) -> str:
        return _get(self.port, "/metrics")[1]

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


def _levels(server: Server, spec: HttpSpec) -> dict[str, Any]:
    load(server.port, spec.texts, 1, min(0.5, spec.seconds))  # warm the connection path
    return {str(c): load(server.port, spec.texts, c, spec.seconds) for c in spec.concurrency}


def alone(spec: HttpSpec, workdir: Path) -> dict[str, Any]:
    server = Server("serve", spec, {}, workdir / f"serve-{spec.model_key}.log")
    try:
        server.wait_ready()
        levels = _levels(server, spec)
        text = server.metrics()
    finally:
        rc = server.stop()
    return {"ready_s": server.ready_s, "levels": levels, "batches": metric(text, "sentiment_batches_total"), "rc": rc}


def with_stream(spec: HttpSpec, workdir: Path) -> dict[str, Any]:
    """``run --http-port`` while the producer offers ``spec.stream_rate`` msgs/s to its input topic."""
    from benchmarks.harness import Producer
    from devtools.broker import create_topics

    assert spec.stream_rate
    topic = f"bench-http-{uuid.uuid4().hex[:8]}"
    bootstrap = ",".join(spec.bootstrap)
    create_topics(bootstrap, {topic: spec.partitions, f"{topic}.sentiment": spec.partitions})
    env = {
        "SENTIMENT_BOOTSTRAP_SERVERS": bootstrap,
        "SENTIMENT_INPUT_TOPICS": topic,
        "SENTIMENT_GROUP_ID": f"g-{topic}",
    }
    server = Server("run", spec, env, workdir / f"run-{spec.model_key}.log")
    producer = Producer(spec.bootstrap, topic)
    duration = spec.seconds * len(spec.concurrency) + min(0.5, spec.seconds) + 2.0
    try:
        server.wait_ready()
        producer.send("warmup", spec.texts[:4])
        deadline = time.monotonic() + READY_TIMEOUT_S
        while metric(server.metrics(), "sentiment_messages_produced_total") < 4:  # joined the group, caught up
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not consume in time")
            time.sleep(0.2)
        feeder = threading.Thread(
            target=producer.send, args=("load", spec.texts), kwargs={"rate": spec.stream_rate, "duration_s": duration}
        )
        feeder.start()
        time.sleep(1.0)  # the stream is flowing
        before, t0 = server.metrics(), time.monotonic()
        levels = _levels(server, spec)
        after, t1 = server.metrics(), time.monotonic()
        feeder.join()
    finally:
        producer.close()
        rc = server.stop()
    produced = metric(after, "sentiment_messages_produced_total") - metric(before, "sentiment_messages_produced_total")
    inputs = metric(after, "sentiment_http_inputs_total") - metric(before, "sentiment_http_inputs_total")
    shared = metric(after, "sentiment_http_inputs_batched_with_stream_total") - metric(
        before, "sentiment_http_inputs_batched_with_stream_total"
    )
    return {
        "ready_s": server.ready_s,
        "levels": levels,
        "stream_offered_msgs_per_s": round(spec.stream_rate, 1),
        "stream_msgs_per_s": round(produced / max(1e-9, t1 - t0), 1),
        "http_inputs_sharing_a_batch_with_stream": round(shared / inputs, 3) if inputs else None,
        "rc": rc,
    }


def run(spec: HttpSpec, workdir: Path) -> dict[str, Any]:
    """Model-only, alone, with stream; ratios side by side."""
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "precision": spec.precision,
        "concurrency": list(spec.concurrency),
        "seconds_per_level": spec.seconds,
        "model_only": model_only(spec.model_dir, spec.texts, spec),
        "alone": alone(spec, workdir),
    }
    out["with_stream"] = with_stream(spec, workdir) if spec.stream_rate and spec.bootstrap else None
    out["ratios"] = ratios(out)
    return out


def ratios(out: dict[str, Any]) -> dict[str, Any]:
    def rate(phase: dict[str, Any] | None, c: str) -> float | None:
        return ((phase or {}).get("levels") or {}).get(c, {}).get("requests_per_s")

    result: dict[str, Any] = {}
    for c in (str(c) for c in out["concurrency"]):
        model = out["model_only"].get(c, {}).get("texts_per_s")
        alone_rps, stream_rps = rate(out.get("alone"), c), rate(out.get("with_stream"), c)
        result[c] = {
            "http_over_model_only": round(alone_rps / model, 3) if alone_rps and model else None,
            "with_stream_over_alone": round(stream_rps / alone_rps, 3) if stream_rps and alone_rps else None,
        }
    return result


# ---- report ------------------------------------------------------------------------------------------------------
def markdown(end_to_end: dict[str, Any]) -> list[str]:
    """The report's "HTTP API" section, from ``results["end_to_end"]``."""
    http = end_to_end.get("http") or {}
    if not http:
        return ["(not run in this mode)"]
    lines = [
        "`POST /predict`, one text per request, closed-loop clients (each waits for its answer) on keep-alive "
        "connections from an asyncio load generator in the benchmark process. *model-only*: batches of *c* texts "
        "through tokenise + infer back to back in the benchmark process (no HTTP). *alone*: `sentiment-worker "
        "serve`; *+ stream*: `sentiment-worker run --http-port` while the producer offers 50% of the worker's "
        "saturation rate (the same model calls serve both). All measured in this run.",
        "",
    ]
    for key, h in http.items():
        if "error" in h:
            lines += [f"- {key}: failed: {h['error']}", ""]
            continue
        ws = h.get("with_stream") or {}
        lines.append(
            f"**{key}** ({h.get('precision')}, {h.get('seconds_per_level')} s per level; server ready after "
            f"{(h.get('alone') or {}).get('ready_s')} s). Stream during the *+ stream* levels: "
            f"{ws.get('stream_msgs_per_s', '—')} msg/s of {ws.get('stream_offered_msgs_per_s', '—')} offered; "
            "share of HTTP inputs in a model call with stream records: "
            f"{ws.get('http_inputs_sharing_a_batch_with_stream', '—')}."
        )
        lines.append("")
        lines.append(
            "| clients | model-only texts/s | ms/call p50 | alone req/s | p50 ms | p99 ms | + stream req/s | p50 ms "
            "| p99 ms | alone ÷ model-only | + stream ÷ alone |"
        )
        lines.append("|" + "---|" * 11)
        for c in (str(c) for c in h.get("concurrency", [])):
            m = h["model_only"].get(c, {})
            a = ((h.get("alone") or {}).get("levels") or {}).get(c, {})
            s = (ws.get("levels") or {}).get(c, {})
            r = h.get("ratios", {}).get(c, {})
            cells = [c, m.get("texts_per_s"), m.get("ms_per_call_p50"), a.get("requests_per_s"), a.get("p50_ms")]
            cells += [a.get("p99_ms"), s.get("requests_per_s"), s.get("p50_ms"), s.get("p99_ms")]
            cells += [r.get("http_over_model_only"), r.get("with_stream_over_alone")]
            lines.append("| " + " | ".join("—" if v is None else str(v) for v in cells) + " |")
        errors = {
            f"{phase} c={c}": level["errors"]
            for phase in ("alone", "with_stream")
            for c, level in ((h.get(phase) or {}).get("levels") or {}).items()
            if level.get("errors")
        }
        if errors:
            lines.append(f"\nNon-200 answers: {errors}")
        lines.append("")
    return lines
