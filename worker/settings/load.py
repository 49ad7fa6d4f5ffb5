"""Loading the settings: flags (overrides) > env vars > TOML config file > defaults, one readable error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from worker.observability import redact_secrets
from worker.settings.base import ENV_PREFIX, SettingsError, env_name, flag_name
from worker.settings.flat import Settings


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
