"""Loading the exported model the settings' model section describes: the one place the pipeline's model is made.

The assembly (``worker/app.py``), the roll-out (a candidate), shadow mode, ``classify`` and the web app's local
classifier all load through :func:`load_model`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.model.runtime import SentimentModel
    from worker.settings import Inference


def load_model(exported: Path, settings: Inference) -> SentimentModel:
    """The exported model in an ONNX Runtime session configured by the model section (device, threads, length)."""
    from worker.model.runtime import SentimentModel  # imports onnxruntime: only when a command needs the model

    # The fast tokenizer's whole-batch encode runs on the poll thread with the GIL released; its own thread pool
    # (Rayon) cost 62 µs of CPU per tweet against 47 µs on one thread, measured with the worker's other threads
    # busy on 2 cores: the cores are better spent on them (and on other worker processes). Set
    # TOKENIZERS_PARALLELISM=true to have it back.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    model = SentimentModel.load(
        Path(exported).resolve(),  # a symlink's target: a reload after the link moved finds this model's files
        device=settings.device,
        device_id=settings.device_id,
        threads=settings.threads,
        spinning=settings.intra_op_spinning,
        max_length=settings.max_length,
        cuda_graph=settings.cuda_graph,  # shape buckets and IO binding: on by themselves on CUDA
    )
    if settings.simulate_device_rate:  # the forward pass replaced by a wait (worker/model/simulated.py)
        from worker.model.simulated import simulate_device

        return simulate_device(model, settings.simulate_device_rate)
    return model
