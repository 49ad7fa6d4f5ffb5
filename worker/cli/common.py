"""Shared CLI helpers: settings flags generated from the Settings model, logging flags."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from worker.observability import configure_logging
from worker.settings import SECTIONS, Settings, env_name, flag_name, load_settings


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=None, help="TOML settings file (also env SENTIMENT_CONFIG_FILE)."
    )


# Settings flags several commands share: the Kafka connection, and logging.
KAFKA_CONNECTION = (
    "bootstrap_servers",
    "client_id",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_check_hostname",
)
LOGGING = ("log_format", "log_level")

# Extra spellings of some flags (the issue tracker's examples use --model-dir for a local model folder).
FLAG_ALIASES: dict[str, tuple[str, ...]] = {"model": ("--model-dir",)}


def add_settings_flags(parser: argparse.ArgumentParser, fields: Iterable[str] | None = None) -> None:
    """Add ``--<field>`` for each Settings field (all by default), grouped by section; pydantic validates them."""
    wanted = set(fields) if fields is not None else set(Settings.model_fields)
    unknown = wanted - set(Settings.model_fields)
    if unknown:
        raise KeyError(f"no such settings: {sorted(unknown)}")
    for section in SECTIONS.values():
        names = [name for name in section.model_fields if name in wanted]
        if names:
            _add_section_flags(parser, section.title, names)


def _add_section_flags(parser: argparse.ArgumentParser, title: str, names: list[str]) -> None:
    group = parser.add_argument_group(f"{title} settings (flag > env var > config file > default)")
    for name in names:
        info = Settings.model_fields[name]
        default = None if info.default_factory is not None else info.default
        shown = "" if default is None else f" [default: {default}]"
        group.add_argument(
            flag_name(name),
            *FLAG_ALIASES.get(name, ()),
            dest=f"setting_{name}",
            default=None,
            metavar=name.upper(),
            help=f"{info.description or ''} (env {env_name(name)}){shown}".replace("%", "%%"),
        )


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {k.removeprefix("setting_"): v for k, v in vars(args).items() if k.startswith("setting_")}
    overrides.update({k: v for k, v in extra.items() if v is not None})
    settings = load_settings(getattr(args, "config", None), **overrides)
    configure_logging(settings.log_format, settings.log_level)
    return settings
