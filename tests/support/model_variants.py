"""Other exports of the tiny model, for the hot-swap tests (a pytest plugin, loaded from tests/conftest.py).

Each is a copy of ``tiny_onnx_dir`` (never changed in place) whose ONNX graph has the classifier's POSITIVE bias
moved by ``bias_delta`` (rewritten with the ``onnx`` package), and whose manifest names the new file's sha256
(``worker.model.manifest``): a valid export of a slightly different model. Then, on purpose:

- ``tiny_variant_dir``: +0.2: another sha256, the same label for all 50 built-in canary texts (agreement 100%);
- ``tiny_far_variant_dir``: +3.0: agreement 84% with the original on the canary texts (< the default 90%);
- ``tiny_relabelled_dir``: +0.2 and labels ``BAD`` / ``GOOD`` (config.json and manifest);
- ``tiny_corrupt_dir``: +0.4, then bytes of the ONNX file flipped, the manifest unchanged (its sha256 no longer
  matches the file).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from worker.model.manifest import CONFIG_NAME, ONNX_NAME, read_manifest, sha256_file, write_manifest


def variant_export(
    source: Path, target: Path, *, bias_delta: float, labels: tuple[str, str] | None = None, corrupt: bool = False
) -> Path:
    """A copy of the exported dir ``source`` at ``target`` with the classifier bias moved (see the module)."""
    import onnx
    from onnx import numpy_helper

    shutil.copytree(source, target)
    onnx_file = target / ONNX_NAME
    graph = onnx.load(str(onnx_file))
    (init,) = [i for i in graph.graph.initializer if i.name == "classifier.bias"]
    bias = numpy_helper.to_array(init).copy()
    bias[-1] += bias_delta
    init.CopyFrom(numpy_helper.from_array(bias, init.name))
    onnx.save(graph, str(onnx_file))
    manifest = read_manifest(target)
    manifest["onnx_sha256"] = sha256_file(onnx_file)
    if labels is not None:
        config = json.loads((target / CONFIG_NAME).read_text())
        config["id2label"] = {str(i): label for i, label in enumerate(labels)}
        config["label2id"] = {label: i for i, label in enumerate(labels)}
        (target / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        manifest["labels"] = list(labels)
    write_manifest(target, manifest)
    if corrupt:
        data = bytearray(onnx_file.read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 64):
            data[i] ^= 0xFF
        onnx_file.write_bytes(bytes(data))
    return target


@pytest.fixture(scope="session")
def model_variants_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-variants")


@pytest.fixture(scope="session")
def tiny_variant_dir(tiny_onnx_dir: Path, model_variants_root: Path) -> Path:
    return variant_export(tiny_onnx_dir, model_variants_root / "variant", bias_delta=0.2)


@pytest.fixture(scope="session")
def tiny_far_variant_dir(tiny_onnx_dir: Path, model_variants_root: Path) -> Path:
    return variant_export(tiny_onnx_dir, model_variants_root / "far", bias_delta=3.0)


@pytest.fixture(scope="session")
def tiny_relabelled_dir(tiny_onnx_dir: Path, model_variants_root: Path) -> Path:
    return variant_export(tiny_onnx_dir, model_variants_root / "relabelled", bias_delta=0.2, labels=("BAD", "GOOD"))


@pytest.fixture(scope="session")
def tiny_corrupt_dir(tiny_onnx_dir: Path, model_variants_root: Path) -> Path:
    return variant_export(tiny_onnx_dir, model_variants_root / "corrupt", bias_delta=0.4, corrupt=True)


def point(link: Path, target: Path) -> None:
    """Point the symlink ``link`` at ``target`` atomically (a new link renamed over the old one)."""
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target, target_is_directory=True)
    tmp.replace(link)
