"""Training side (the ``[train]`` extra): registry materials, MiniLM → DistilBERT conversion, fine-tuning,
evaluation and the offline starter build. Serving (worker.model, worker.stream) never imports this package.

Importing it without the extra's packages fails at once with what to install (not deep inside a build).
"""

from worker.model.errors import TRAIN_EXTRA, TRAIN_PACKAGES, require_extra

require_extra(TRAIN_EXTRA, TRAIN_PACKAGES, "training (build-starter, finetune, eval)")
