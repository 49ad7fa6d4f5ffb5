"""Model building (the ``[train]`` extra): registry materials, MiniLM → DistilBERT conversion, fine-tuning,
evaluation and the offline starter build, out of the runtime package ``worker`` (which never imports this one; the
command line does, for ``model build-starter``, ``finetune`` and ``eval``).

Importing it without the extra's packages fails at once with what to install (not deep inside a build).
"""

from worker.model.errors import TRAIN_EXTRA, TRAIN_PACKAGES, require_extra

require_extra(TRAIN_EXTRA, TRAIN_PACKAGES, "training (build-starter, finetune, eval)")
