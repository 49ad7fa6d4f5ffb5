"""The flat :class:`Settings`: every section's fields in one pydantic-settings model, and the sections back out.

Each field is env var ``SENTIMENT_<FIELD>``, CLI flag ``--<field>`` and config-file key ``<field>`` whatever its
section, so splitting the settings into sections changed none of those names. The assembly (``worker/app.py``) and
the CLI hold a ``Settings``; everything else gets the section(s) it needs: ``settings.kafka``, ``settings.input``,
``settings.output``, ``settings.batching``, ...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from worker.settings.base import ENV_PREFIX, Section
from worker.settings.batching import Batching
from worker.settings.http_api import Http
from worker.settings.inference import Inference
from worker.settings.input import Input
from worker.settings.kafka import Kafka
from worker.settings.observability import Observability
from worker.settings.output import Output
from worker.settings.processes import Placement
from worker.settings.rollout import ModelRollout
from worker.settings.schema_registry import SchemaRegistry

S = TypeVar("S", bound=Section)

# Accessor name → section, in the order `sentiment-worker settings` and docs/settings.md show them.
SECTIONS: dict[str, type[Section]] = {
    "kafka": Kafka,
    "input": Input,
    "schema_registry": SchemaRegistry,
    "output": Output,
    "batching": Batching,
    "inference": Inference,
    "rollout": ModelRollout,
    "placement": Placement,
    "http": Http,
    "observability": Observability,
}


class Settings(
    BaseSettings,
    Kafka,
    Input,
    SchemaRegistry,
    Output,
    Batching,
    Inference,
    ModelRollout,
    Placement,
    Http,
    Observability,
):
    """Every knob of the worker: the fields of all sections in one model. Each field is env var
    ``SENTIMENT_<FIELD>``, CLI flag ``--<field>`` and config key ``<field>``; ``settings.<section>`` (``kafka``,
    ``input``, ``batching``, ...) gives one section's values as a frozen copy."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        case_sensitive=False,
        populate_by_name=True,
        frozen=True,
    )

    # ---- rules across sections (each section checks its own fields) ---------------------------------
    @model_validator(mode="after")
    def _across_sections(self) -> Settings:
        problems = [
            f"{name} schema-registry needs schema_registry_url"
            for name in ("input_format", "output_format")
            if getattr(self, name) == "schema-registry" and not self.schema_registry_url
        ]
        if self.output_format == "schema-registry" and self.input_format != "schema-registry":
            problems.append(
                "output_format schema-registry needs input_format schema-registry "
                "(the output's schema is the input's plus a sentiment record)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ---- the sections ---------------------------------------------------------------------------------
    def section(self, cls: type[S]) -> S:
        """The values of section ``cls`` (already validated here: nothing is checked twice)."""
        values = {name: getattr(self, name) for name in cls.model_fields}
        return cls.model_construct(_fields_set={n for n in cls.model_fields if n in self.model_fields_set}, **values)

    @property
    def kafka(self) -> Kafka:
        return self.section(Kafka)

    @property
    def input(self) -> Input:
        return self.section(Input)

    @property
    def schema_registry(self) -> SchemaRegistry:
        return self.section(SchemaRegistry)

    @property
    def output(self) -> Output:
        return self.section(Output)

    @property
    def batching(self) -> Batching:
        return self.section(Batching)

    @property
    def inference(self) -> Inference:
        """The model section (``settings.model`` is the model's id, a field)."""
        return self.section(Inference)

    @property
    def rollout(self) -> ModelRollout:
        return self.section(ModelRollout)

    @property
    def placement(self) -> Placement:
        """The processes section (``settings.processes`` is the number of processes, a field)."""
        return self.section(Placement)

    @property
    def http(self) -> Http:
        return self.section(Http)

    @property
    def observability(self) -> Observability:
        return self.section(Observability)

    def sections(self) -> dict[str, Section]:
        """Every section by its accessor name, in display order."""
        return {name: self.section(cls) for name, cls in SECTIONS.items()}

    def sections_dump(self) -> dict[str, dict[str, Any]]:
        """The settings grouped by section, secrets masked (what `sentiment-worker settings` prints)."""
        return {name: section.safe_dump() for name, section in self.sections().items()}

    def with_section(self, section: Section) -> Settings:
        """A copy with ``section``'s values (e.g. a resolved :class:`Batching`)."""
        return self.model_copy(update=dict(section))

    # ---- sources ----------------------------------------------------------------------------------------
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


def section_of(field: str) -> str:
    """The accessor name of the section that holds ``field``."""
    for name, cls in SECTIONS.items():
        if field in cls.model_fields:
            return name
    raise KeyError(field)
