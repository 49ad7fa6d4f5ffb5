"""Worker processes per machine (``run --processes N``, worker/supervisor/) and the GPUs they are spread over."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, field_validator
from pydantic_settings import NoDecode

from worker.settings.base import Section, split_csv


class Placement(Section):
    """How many worker processes and on which CUDA devices; ``"auto"`` is resolved by the supervisor's plan
    (``worker/supervisor/plan.py``), which counts the machine's CPUs and GPUs."""

    title = "Processes and devices"

    processes: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = Field(default=1, description="`run`: worker "
        "processes, each a group member with its own model; 'auto': one per GPU found (device cuda/auto), else "
        "CPU cores // threads (threads 0: 1). docs/operating.md 'Several processes per machine'.")  # fmt: skip
    devices: Annotated[list[NonNegativeInt], NoDecode] = Field(default=[], description="CUDA device ids, comma-"
        "separated, the processes are spread over round-robin (as device_id); empty = device_id for all.")  # fmt: skip

    @field_validator("devices", mode="before")
    @classmethod
    def _devices_csv(cls, value: Any) -> Any:
        return split_csv(value)
