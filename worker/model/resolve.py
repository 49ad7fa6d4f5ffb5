"""Turn the configured model (``settings.model``) into an exported ONNX dir the runtime can load.

Order: an exported dir (has the manifest) is used as is; a local HF model dir is exported (cached);
anything else is a hub id exported at ``settings.model_revision``. When the *default* hub model can't
be fetched (no network, nothing cached) the offline starter model is used if it has been built
(``sentiment-worker model build-starter``), with a ``model_fallback`` warning.

Resolving an exported dir imports nothing heavy (no torch/optimum) and no training code: the export
module loads the ``[export]`` extra lazily, only when it really exports (and says which extra to install
when it is missing), and the starter model is looked up by ``worker.model.starter_cache`` (path logic only).
"""

from __future__ import annotations

from pathlib import Path

from worker.model.errors import ModelUnavailableError
from worker.model.export import export_model
from worker.model.manifest import CONFIG_NAME, MANIFEST_NAME, is_exported_dir
from worker.model.starter_cache import cached_starter_dir
from worker.observability import get_logger
from worker.settings import DEFAULT_MODEL, DEFAULT_REVISION, Inference

log = get_logger(__name__)

__all__ = ["ModelUnavailableError", "hub_revision", "resolve_model"]


def hub_revision(settings: Inference) -> str | None:
    """The hub revision to use for ``settings.model`` (``settings``: the model section).

    ``model_revision`` defaults to the pinned commit of the *default* model; that commit means nothing
    in another repo, so for another hub id the default is dropped (→ the repo's main branch) unless a
    revision was set explicitly (flag, env or config file).
    """
    revision = settings.model_revision
    if (
        settings.model != DEFAULT_MODEL
        and revision == DEFAULT_REVISION
        and "model_revision" not in settings.model_fields_set
    ):
        return None
    return revision


def resolve_model(settings: Inference) -> Path:
    """Return an exported dir for ``settings.model`` (exporting into ``settings.cache_dir`` if needed); ``settings``:
    the model section."""
    source = settings.model
    local = Path(source).expanduser()
    if local.is_dir() and is_exported_dir(local):
        log.info("model_resolved", source=source, path=str(local), reason="exported dir")
        return local
    if local.is_dir() and (local / CONFIG_NAME).is_file():
        path = export_model(local, precision=settings.precision, cache_dir=settings.cache_dir)
        log.info("model_resolved", source=source, path=str(path), reason="local HF model dir, exported")
        return path
    if local.is_dir():
        raise ModelUnavailableError(
            f"model {source} is a directory but neither an exported ONNX dir ({MANIFEST_NAME}) "
            "nor a Hugging Face model dir (config.json)"
        )

    revision = hub_revision(settings)
    try:
        path = export_model(source, revision=revision, precision=settings.precision, cache_dir=settings.cache_dir)
    except ModelUnavailableError as exc:
        if source != DEFAULT_MODEL:
            raise
        starter = cached_starter_dir(settings.cache_dir, settings.precision)
        if starter is None:
            raise ModelUnavailableError(
                f"{exc} (no offline starter model is built in {settings.cache_dir} either)"
            ) from exc
        log.warning(
            "model_fallback",
            wanted=source,
            wanted_revision=revision,
            using=str(starter),
            reason=f"the default model is unavailable ({str(exc)[:200]}); using the offline starter model",
        )
        log.info("model_resolved", source=str(starter), path=str(starter), reason="offline starter (fallback)")
        return starter
    log.info("model_resolved", source=source, revision=revision, path=str(path), reason="hub model, exported")
    return path
