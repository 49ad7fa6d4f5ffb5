"""One settings model for the whole worker.

Sources, highest priority first: explicit overrides (CLI flags), environment variables with the
``SENTIMENT_`` prefix, an optional TOML file (``SENTIMENT_CONFIG_FILE`` or ``--config``), defaults.
Invalid settings raise :class:`SettingsError` with one message that names the field and its env var.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from worker.observability import redact_secrets

ENV_PREFIX = "SENTIMENT_"
DEFAULT_MODEL = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
# The revision transformers.pipeline("sentiment-analysis") pins for its default model.
DEFAULT_REVISION = "714eb0f"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sentiment-worker"


class SettingsError(ValueError):
    """Settings could not be loaded; the message names the offending field(s)."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the worker. Each field is env var ``SENTIMENT_<FIELD>`` and CLI flag ``--<field>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        case_sensitive=False,
        populate_by_name=True,
    )

    # ---- Kafka connection -------------------------------------------------------------------------
    bootstrap_servers: Annotated[list[str], NoDecode] = Field(
        default=["localhost:9092"], description="Kafka bootstrap servers, comma-separated host:port list."
    )
    client_id: str = Field(default="sentiment-worker", description="Kafka client id prefix.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism (needs a SASL_* security protocol)."
    )
    sasl_username: str | None = Field(default=None, description="SASL username.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (secret, never logged).")
    ssl_cafile: Path | None = Field(default=None, description="CA bundle to verify the brokers.")
    ssl_certfile: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(default=None, description="Client private key (mutual TLS).")
    ssl_password: SecretStr | None = Field(default=None, description="Password of the client key (secret).")
    ssl_check_hostname: bool = Field(default=True, description="Verify the broker host name against its cert.")

    # ---- Topics -----------------------------------------------------------------------------------
    input_topics: Annotated[list[str], NoDecode] = Field(default=[], description="Input topics, comma-separated (or use input_pattern).")  # noqa: E501  # fmt: skip
    input_pattern: str | None = Field(default=None, description="Regex of input topics (instead of input_topics); "
        "it must not match the output or dead-letter topics, or the worker reads its own output.")  # fmt: skip
    group_id: str = Field(default="sentiment-worker", description="Consumer group id.")
    output_topic: str = Field(
        default="{topic}.sentiment",
        description="Output topic template; placeholders {topic} (input topic) and {label} (predicted label).",
    )
    dlq_topic: str = Field(
        default="{topic}.dlq", description="Dead-letter topic template; placeholder {topic} (input topic)."
    )
    output_partitioning: Literal["key", "source"] = Field(
        default="key",
        description="'key': the producer partitions by the (kept) input key; 'source': output partition = "
        "input partition (output topic needs at least as many partitions).",
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a new consumer group starts."
    )
    missing_topics: Literal["auto", "create", "wait"] = Field(
        default="auto",
        description="Output and dead-letter topics that don't exist yet (checked before an input topic's records "
        "are consumed; until they exist its partitions stay paused and /readyz answers 503): 'auto' asks for them "
        "as a send does (a cluster that auto-creates topics creates them), 'create' creates them "
        "(topic_partitions, topic_replication_factor), 'wait' only waits for them.",
    )
    topic_partitions: int = Field(
        default=0, ge=0, description="Partitions of a topic missing_topics=create creates (0 = as the input topic)."
    )
    topic_replication_factor: int = Field(
        default=-1,
        ge=-1,
        description="Replication factor of a topic missing_topics=create creates (-1 = the broker's default).",
    )

    # ---- Consumer / producer tuning ---------------------------------------------------------------
    session_timeout_ms: int = Field(default=45_000, gt=0, description="Consumer group session timeout.")
    heartbeat_interval_ms: int = Field(default=3_000, gt=0, description="Consumer heartbeat interval.")
    max_poll_interval_ms: int = Field(default=300_000, gt=0, description="Max time between polls.")
    max_poll_records: int = Field(default=500, gt=0, description="Max records returned by one poll.")
    fetch_max_bytes: int = Field(default=52_428_800, gt=0, description="Max bytes fetched per request.")
    fetch_max_wait_ms: int = Field(
        default=500,
        ge=0,
        le=30_000,
        description="Longest time the broker may hold a fetch while it has no data (Kafka's fetch.max.wait.ms). "
        "Apache Kafka answers as soon as data arrives; the embedded Tansu broker holds every fetch this long, "
        "so lower it (e.g. 10) there for low latency at light load, given CPU headroom (each fetch costs Python I/O).",
    )
    commit_interval_ms: int = Field(default=1_000, gt=0, description="How often acknowledged offsets commit.")
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="none", description="Producer compression (snappy/lz4/zstd need their Python packages)."
    )
    linger_ms: int = Field(default=5, ge=0, description="Producer linger (batching of sends).")
    producer_max_request_size: int = Field(
        default=16_777_216, gt=0, description="Largest produce request (bounds output record size)."
    )
    producer_buffer_bytes: int = Field(
        default=33_554_432,
        gt=0,
        description="Memory for records awaiting the broker's acks (kafka-python 3 has no buffer_memory: the worker "
        "enforces it). Each record sent is charged 4 x its size + a per-record overhead until answered; when full, "
        "outputs wait and the consumer pauses. At least producer_max_request_size. See README 'Bounded memory'.",
    )
    producer_max_block_ms: int = Field(
        default=10_000,
        gt=0,
        description="Longest a send blocks waiting for topic metadata (a missing topic, an unreachable cluster); "
        "the send is then retried, logged (produce_blocked) and ends at a forced stop.",
    )
    reconnect_backoff_max_ms: int = Field(
        default=5_000,
        gt=0,
        description="Longest pause between reconnection attempts to an unreachable broker: the worker resumes "
        "at most this long after a broker is back (kafka-python's own default is 30 s).",
    )

    # ---- Batching ---------------------------------------------------------------------------------
    max_batch_size: Annotated[int, Field(gt=0, le=4096)] | Literal["auto"] = Field(default="auto", description=
        "Flush a batch at this many records; 'auto': 64 on CPU, 1024 on a GPU (device cuda/auto).")  # fmt: skip
    max_wait_ms: int = Field(default=20, ge=0, description="Flush a non-empty batch after this many ms.")
    max_batch_tokens: int | None = Field(
        default=None, gt=0, description="Optional token budget: flush before a batch exceeds it."
    )
    inference_batch_size: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(default="auto", description=
        "Records per model call; a batch is sorted by length and run in chunks of this size so padding waste "
        "stays small (tweets: 8% at 8, 16% at 16; 2 cores: 8 is best). 'auto': 8 on CPU, 256 on a GPU.")  # fmt: skip
    cuda_graph: bool = Field(default=False, description="On CUDA: capture and replay a CUDA graph per shape bucket; "
        "needs every node of the model on CUDA, else it is dropped with a warning.")  # fmt: skip
    queue_max_batches: int = Field(
        default=4, gt=0, description="Bounded queue of batches between stages; full queue pauses the consumer."
    )

    # ---- Model ------------------------------------------------------------------------------------
    model: str = Field(
        default=DEFAULT_MODEL,
        description="Hugging Face hub id, a local HF model dir, or an exported ONNX dir.",
    )
    model_revision: str | None = Field(
        default=DEFAULT_REVISION, description="Hub revision (commit/tag) for a hub id; ignored for local dirs."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="'cuda' fails if CUDA can't be used; 'auto' uses CUDA if a session gets it."
    )
    device_id: int = Field(default=0, ge=0, description="CUDA device id.")
    precision: Literal["fp32", "o3", "int8", "fp16"] = Field(
        default="fp32", description="fp32, o3 (ORT graph optimisation), int8 (dynamic, CPU), fp16 (CUDA only)."
    )
    max_length: int = Field(default=128, gt=2, le=512, description="Max sequence length in tokens.")
    threads: int = Field(default=0, ge=0, description="ONNX Runtime intra-op threads; 0 = automatic: one for a model under 1 MFLOP per token (its ops are too small to share), all cores otherwise.")  # noqa: E501  # fmt: skip
    intra_op_spinning: bool = Field(
        default=False,
        description="Let ONNX Runtime's intra-op threads busy-wait between ops. Off: the worker's poll, Kafka "
        "and producer threads share the cores (on 2 cores spinning doubled latency at 50% load); on: ~10% more "
        "model-only speed on an otherwise idle machine.",
    )
    cache_dir: Path = Field(default_factory=default_cache_dir, description="Export and data cache.")
    inference_failures_to_open: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Failures of the model session in a row (a batch fails and so does a known-good probe record) "
        "before the worker pauses consuming, reports not-ready and rebuilds the session. Only a record that fails "
        "while the probe runs is dead-lettered (inference_failed).",
    )
    inference_rebuild_attempts: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Session rebuilds before giving up: the worker then exits 1 without committing the records "
        "the model failed on (they stay in Kafka for the next worker).",
    )
    inference_rebuild_backoff_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Pause before the first session rebuild; doubles per attempt (at most 60 s).",
    )

    # ---- Model lifecycle: hot swap on SIGHUP, model_watch_s, POST /admin/model (README "Rolling out a model") ----
    model_watch_s: float = Field(default=0, ge=0, description="Check `model` (a directory or symlink) every this "
        "many seconds and swap in a changed export (0 = off; SIGHUP and POST /admin/model work anyway).")  # fmt: skip
    allow_label_change: bool = Field(default=False, description="Let a swapped-in model have other labels.")
    canary_file: Path | None = Field(default=None, description="More canary texts for the swap gate: one per line, or "
        "JSONL with `text` (and `label`: then also scored for canary_min_accuracy).")  # fmt: skip
    canary_min_agreement: float = Field(default=0.9, ge=0, le=1, description="A candidate must give the serving "
        "model's label to at least this share of the canary texts (built-in + canary_file; 0 = no check).")  # fmt: skip
    canary_min_accuracy: float = Field(default=0.8, ge=0, le=1, description="A candidate must label at least this "
        "share of canary_file's labelled lines right.")  # fmt: skip
    shadow_model: str | None = Field(default=None, description="Shadow mode: a second model (hub id or dir) also "
        "scores a sample of the inputs, off the output path; only agreement and latency metrics.")  # fmt: skip
    shadow_sample_rate: float = Field(default=0.1, gt=0, le=1, description="Share of inputs the shadow model scores.")

    # ---- Input ------------------------------------------------------------------------------------
    input_format: Literal["json", "text"] = Field(
        default="json", description="'json': a JSON object with the text field; 'text': raw UTF-8 text."
    )
    text_field: str = Field(default="text", min_length=1, description="Field holding the text (json input).")
    max_message_bytes: int = Field(
        default=1_048_576,
        gt=0,
        description="Larger input records (value + key + headers) are dead-lettered (reason too_large).",
    )
    max_text_chars: int = Field(default=20_000, gt=0, description="Longer texts are truncated or rejected.")
    text_overflow: Literal["truncate", "reject"] = Field(
        default="truncate",
        description="Texts over max_text_chars or max_length tokens: 'truncate' (classify the start) "
        "or 'reject' (dead-letter, reason too_long).",
    )

    # ---- Operation --------------------------------------------------------------------------------
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="'auto': pretty on a TTY, JSON otherwise."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    log_interval_s: float = Field(default=10.0, gt=0, description="Seconds between summary log lines.")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz (unset = off)."
    )
    shutdown_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Max seconds to drain in-flight work on stop or revoke (a stop then takes at most ~14 s more "
        "to commit, leave the group and close).",
    )
    processes: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = Field(default=1, description="`run`: worker "
        "processes, each a group member with its own model; 'auto': one per GPU found (device cuda/auto), else "
        "CPU cores // threads (threads 0: 1). README 'Several processes per machine'.")  # fmt: skip
    devices: Annotated[list[NonNegativeInt], NoDecode] = Field(default=[], description="CUDA device ids, comma-"
        "separated, the processes are spread over round-robin (as device_id); empty = device_id for all.")  # fmt: skip

    # ---- HTTP API (`serve`, or `run` with http_port; the [http] extra) ----------------------------------------
    http_port: int | None = Field(default=None, ge=0, le=65535, description="Port of the HTTP API (POST /predict, "
        "GET /info, /health; /metrics, /healthz, /readyz too); `run`: unset = off; `serve`: unset = 8080.")  # fmt: skip
    http_host: str = Field(default="0.0.0.0", description="Address the HTTP API listens on.")
    http_api_key: SecretStr | None = Field(default=None, description="Require `Authorization: Bearer <key>` on "
        "/predict and /info (secret, never logged); /health, /healthz, /readyz, /metrics stay open.")  # fmt: skip
    http_max_inputs: int = Field(default=64, gt=0, le=4096, description="Most texts in one /predict request (413).")
    http_max_queued: int = Field(default=256, gt=0, description="Most HTTP texts waiting for the model; more: 429 "
        "with Retry-After. Counted until answered, so memory stays bounded whatever clients do.")  # fmt: skip
    http_max_body_bytes: int = Field(default=1_048_576, gt=0, description="Larger /predict bodies: 413, unread.")
    http_timeout_s: float = Field(default=30.0, gt=0, description="Per /predict request: no answer by then: 503.")

    # ---- validators -------------------------------------------------------------------------------
    @field_validator("bootstrap_servers", "input_topics", "devices", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one host:port is required")
        for server in value:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        return value

    @field_validator("output_topic")
    @classmethod
    def _output_template(cls, value: str) -> str:
        _check_template(value, {"topic", "label"})
        return value

    @field_validator("dlq_topic")
    @classmethod
    def _dlq_template(cls, value: str) -> str:
        _check_template(value, {"topic"})
        return value

    @field_validator("topic_replication_factor")
    @classmethod
    def _replication(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (the broker's default) or at least 1")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.input_topics and self.input_pattern:
            raise ValueError("set input_topics or input_pattern, not both")
        if self.sasl_mechanism and not self.security_protocol.startswith("SASL_"):
            raise ValueError("sasl_mechanism needs security_protocol SASL_PLAINTEXT or SASL_SSL")
        if self.security_protocol.startswith("SASL_") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be lower than session_timeout_ms")
        if self.producer_buffer_bytes < self.producer_max_request_size:
            raise ValueError("producer_buffer_bytes must be at least producer_max_request_size (a request must fit)")
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision fp16 runs only on CUDA; use device cuda (or auto) or precision fp32/int8")
        from worker.model.buckets import resolve_batch_sizes  # pure: no onnxruntime

        self.max_batch_size, self.inference_batch_size = resolve_batch_sizes(self)
        return self

    # ---- sources ----------------------------------------------------------------------------------
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(f"{ENV_PREFIX}CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    # ---- helpers ----------------------------------------------------------------------------------
    def require_input(self) -> None:
        """The worker needs topics or a pattern; other commands don't."""
        if not self.input_topics and not self.input_pattern:
            raise SettingsError(
                "invalid setting input_topics (env SENTIMENT_INPUT_TOPICS, flag --input-topics): "
                "set input topics (comma-separated) or input_pattern"
            )

    def kafka_security(self) -> dict[str, Any]:
        """Connection/security options shared by consumer, producer and admin clients."""
        config: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        if self.security_protocol in ("SSL", "SASL_SSL"):
            config["ssl_check_hostname"] = self.ssl_check_hostname
            if self.ssl_cafile:
                config["ssl_cafile"] = str(self.ssl_cafile)
            if self.ssl_certfile:
                config["ssl_certfile"] = str(self.ssl_certfile)
            if self.ssl_keyfile:
                config["ssl_keyfile"] = str(self.ssl_keyfile)
            if self.ssl_password:
                config["ssl_password"] = self.ssl_password.get_secret_value()
        return config

    def secret_values(self) -> list[str]:
        """The plain values of every secret setting (to be masked in logs)."""
        return [v.get_secret_value() for v in self.__dict__.values() if isinstance(v, SecretStr)]

    def safe_dump(self) -> dict[str, Any]:
        """Settings for logging: secrets stay masked (SecretStr renders as '**********')."""
        return {k: (str(v) if isinstance(v, Path | SecretStr) else v) for k, v in self.model_dump().items()}


def _check_template(value: str, allowed: set[str]) -> None:
    import string

    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValueError(f"bad template {value!r}: {exc}") from None
    unknown = names - allowed
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)} in {value!r}; allowed: {sorted(allowed)}")


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings; raise SettingsError with one readable message naming the field(s)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    previous = os.environ.get(f"{ENV_PREFIX}CONFIG_FILE")
    if config_file is not None:
        if not Path(config_file).is_file():
            raise SettingsError(f"config file {config_file} does not exist")
        os.environ[f"{ENV_PREFIX}CONFIG_FILE"] = str(config_file)
    elif previous and not Path(previous).is_file():
        raise SettingsError(f"config file {previous} (env {ENV_PREFIX}CONFIG_FILE) does not exist")
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc)) from None
    finally:
        if config_file is not None:
            if previous is None:
                os.environ.pop(f"{ENV_PREFIX}CONFIG_FILE", None)
            else:
                os.environ[f"{ENV_PREFIX}CONFIG_FILE"] = previous
    redact_secrets(settings.secret_values())
    return settings


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if loc and loc[0] in Settings.model_fields:
            field = loc[0]
            parts.append(f"invalid setting {field} (env {env_name(field)}, flag {flag_name(field)}): {msg}")
        elif loc:
            parts.append(f"unknown setting {'.'.join(loc)}: {msg}")
        else:
            parts.append(f"invalid settings: {msg}")
    return "; ".join(parts)
