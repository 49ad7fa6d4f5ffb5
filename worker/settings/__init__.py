"""The worker's settings, in typed sections.

Sources, highest priority first: explicit overrides (CLI flags), environment variables with the ``SENTIMENT_``
prefix, an optional TOML file (``SENTIMENT_CONFIG_FILE`` or ``--config``), defaults. Invalid settings raise
:class:`SettingsError` with one message that names the field and its env var.

One module per section (``kafka``, ``input``, ``schema_registry``, ``output``, ``batching``, ``inference`` (the
model), ``rollout``, ``processes``, ``http_api``, ``observability``); :class:`Settings` (``flat.py``) inherits them
all, so every env var, flag and config key is the field's name whatever its section. The assembly and the CLI hold
the ``Settings``; each component is handed its section (``settings.kafka``, ``settings.batching``, ...).
"""

from worker.settings.base import ENV_PREFIX, Section, SettingsError, env_name, flag_name, split_csv
from worker.settings.batching import Batching
from worker.settings.flat import SECTIONS, Settings, section_of
from worker.settings.http_api import Http
from worker.settings.inference import DEFAULT_MODEL, DEFAULT_REVISION, Inference, default_cache_dir
from worker.settings.input import Input, text_paths
from worker.settings.kafka import Kafka
from worker.settings.load import format_validation_error, load_settings
from worker.settings.observability import Observability
from worker.settings.output import Output
from worker.settings.processes import Placement
from worker.settings.rollout import ModelRollout
from worker.settings.schema_registry import SchemaRegistry

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_REVISION",
    "ENV_PREFIX",
    "SECTIONS",
    "Batching",
    "Http",
    "Inference",
    "Input",
    "Kafka",
    "ModelRollout",
    "Observability",
    "Output",
    "Placement",
    "SchemaRegistry",
    "Section",
    "Settings",
    "SettingsError",
    "default_cache_dir",
    "env_name",
    "flag_name",
    "format_validation_error",
    "load_settings",
    "section_of",
    "split_csv",
    "text_paths",
]
