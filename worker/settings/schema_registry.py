"""The Schema Registry connection, used by ``input_format`` and ``output_format`` ``schema-registry``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from worker.settings.base import Section


class SchemaRegistry(Section):
    """Where the (Confluent-API) Schema Registry is and how to authenticate to it."""

    title = "Schema Registry"

    schema_registry_url: str | None = Field(
        default=None,
        description="Schema Registry base URL (http:// or https://); needed by input_format or output_format "
        "schema-registry (Confluent wire format: magic byte 0, 4-byte schema id).",
    )
    schema_registry_username: str | None = Field(
        default=None, description="Basic-auth user of the Schema Registry (with schema_registry_password)."
    )
    schema_registry_password: SecretStr | None = Field(
        default=None, description="Basic-auth password of the Schema Registry (secret, never logged)."
    )
    schema_registry_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for the Schema Registry (`Authorization: Bearer`; secret, never logged); "
        "instead of basic auth.",
    )
    schema_registry_ssl_cafile: Path | None = Field(default=None, description="CA bundle to verify the registry.")
    schema_registry_ssl_certfile: Path | None = Field(
        default=None, description="Client certificate for the registry (mutual TLS)."
    )
    schema_registry_ssl_keyfile: Path | None = Field(
        default=None, description="Client private key for the registry (mutual TLS; unset: in the certfile)."
    )

    @field_validator("schema_registry_url")
    @classmethod
    def _registry_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _registry_auth(self) -> Any:
        if self.schema_registry_password and not self.schema_registry_username:
            raise ValueError("schema_registry_password needs schema_registry_username")
        if self.schema_registry_token and self.schema_registry_username:
            raise ValueError("set schema_registry_token or schema_registry_username/password, not both")
        if self.schema_registry_ssl_keyfile and not self.schema_registry_ssl_certfile:
            raise ValueError("schema_registry_ssl_keyfile needs schema_registry_ssl_certfile")
        return self
