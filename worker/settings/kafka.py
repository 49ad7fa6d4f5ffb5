"""The Kafka connection: where the cluster is and how to authenticate (shared by consumer, producer and admin)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from worker.settings.base import Section, split_csv


class Kafka(Section):
    """Kafka connection and security."""

    title = "Kafka connection"

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
    reconnect_backoff_max_ms: int = Field(
        default=5_000,
        gt=0,
        description="Longest pause between reconnection attempts to an unreachable broker: the worker resumes "
        "at most this long after a broker is back (kafka-python's own default is 30 s).",
    )

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _kafka_csv(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("bootstrap_servers")
    @classmethod
    def _kafka_servers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one host:port is required")
        for server in value:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _kafka_consistent(self) -> Any:
        if self.sasl_mechanism and not self.security_protocol.startswith("SASL_"):
            raise ValueError("sasl_mechanism needs security_protocol SASL_PLAINTEXT or SASL_SSL")
        if self.security_protocol.startswith("SASL_") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password")
        return self

    def kafka_security(self) -> dict[str, Any]:
        """Connection/security options shared by consumer, producer and admin clients (kafka-python names)."""
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
