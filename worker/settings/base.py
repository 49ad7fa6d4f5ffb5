"""What every settings section shares: the section base class, the error type, names of env vars and flags."""

from __future__ import annotations

import string
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

ENV_PREFIX = "SENTIMENT_"


class SettingsError(ValueError):
    """Settings could not be loaded; the message names the offending field(s)."""


class Section(BaseModel):
    """One typed group of settings, handed to the component it configures (a stage gets its section only).

    A section's fields are also fields of the flat :class:`~worker.settings.Settings` (which inherits every section),
    so env var ``SENTIMENT_<FIELD>``, flag ``--<field>`` and config-file key ``<field>`` are the same as before the
    split. A section is frozen: to change a value, ``section.model_copy(update=...)`` gives a new one.
    Validator names must be unique across sections (the flat model collects them all by name).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    title: ClassVar[str] = ""  # the heading in `sentiment-worker settings` and docs/settings.md

    def secret_values(self) -> list[str]:
        """The plain values of this section's secrets (to be masked in logs)."""
        return [v.get_secret_value() for v in self.__dict__.values() if isinstance(v, SecretStr)]

    def safe_dump(self) -> dict[str, Any]:
        """The section for printing and logging: secrets stay masked (SecretStr renders as '**********')."""
        return {k: safe_value(v) for k, v in self.model_dump().items()}


def safe_value(value: Any) -> Any:
    """A value fit for a log line or JSON: paths and secrets as strings (a secret shows as '**********')."""
    from pathlib import Path

    return str(value) if isinstance(value, Path | SecretStr) else value


def split_csv(value: Any) -> Any:
    """``"a, b,,c"`` → ``["a", "b", "c"]``; lists (TOML, Python) pass unchanged."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def check_template(value: str, allowed: set[str]) -> None:
    """Raise ValueError when ``value`` is no valid ``str.format`` template or names another placeholder."""
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
