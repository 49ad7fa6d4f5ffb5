"""The HTTP API (``serve``, or ``run`` with http_port; the [http] extra)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from worker.settings.base import Section


class Http(Section):
    """Where the HTTP API listens, its key, and the bounds on what clients may ask of it."""

    title = "HTTP API"

    http_port: int | None = Field(default=None, ge=0, le=65535, description="Port of the HTTP API (POST /predict, "
        "GET /info, /health; /metrics, /healthz, /readyz too); `run`: unset = off; `serve`: unset = 8080.")  # fmt: skip
    http_host: str = Field(default="0.0.0.0", description="Address the HTTP API listens on.")
    http_api_key: SecretStr | None = Field(default=None, description="Require `Authorization: Bearer <key>` on "
        "/predict and /info (secret, never logged); /health, /healthz, /readyz, /metrics stay open.")  # fmt: skip
    http_max_inputs: int = Field(default=64, gt=0, le=4096, description="Most texts in one /predict request (413).")
    http_max_queued: int = Field(default=256, gt=0, description="Most HTTP texts waiting for the model; more: 429 "
        "with Retry-After. Counted until answered, so memory stays bounded whatever clients do.")  # fmt: skip
    http_max_body_bytes: int = Field(default=1_048_576, gt=0, description="Larger /predict bodies: 413 (never held).")
    http_timeout_s: float = Field(default=30.0, gt=0, description="Per /predict request: no answer by then: 503.")
