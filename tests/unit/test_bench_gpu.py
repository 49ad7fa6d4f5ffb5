"""Pieces of the GPU check (benchmarks/gpu/) that need neither GPU nor broker: the arithmetic, the sections, the
report, the fatbin pruning and wheel slimming, packing into parts, and the stripped production graph."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gpu import pack
from benchmarks.gpu.check import FP16_MEAN_DPROB_BOUND, Run, targets
from benchmarks.gpu.report import HEADINGS, render
from benchmarks.gpu.stream import steady_rate

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_steady_rate_is_the_slope_between_10_and_90_percent() -> None:
    samples = [(0.0, 0), (1.0, 0), (2.0, 100), (3.0, 500), (4.0, 900), (5.0, 1000)]
    assert steady_rate(samples, 1000) == pytest.approx((900 - 100) / (4.0 - 2.0))
    assert steady_rate([(0.0, 0), (1.0, 1000)], 1000) is None  # one jump: no slope to measure
    assert steady_rate([(0.0, 0), (1.0, 500)], 1000) is None  # never reached 90%


def test_targets_take_the_best_run_and_the_fp16_bound() -> None:
    results = {
        "end_to_end": [
            {"processes": 1, "msg_per_s": 12_000.0, "gpu_util_mean": 40.0},
            {"processes": 4, "msg_per_s": 31_000.0, "gpu_util_mean": 55.0},
            {"processes": 8, "error": "RuntimeError: boom"},
        ],
        "fp16_validation": {"starter": {"mean_abs_dprob": 0.0004, "passed": True}},
        "latency": {"p99_ms": 41.5},
    }
    rows = targets(results)
    assert rows["e2e_msg_per_s"] == {"target": 30_000.0, "value": 31_000.0, "met": True}
    assert rows["gpu_busy_pct"] == {"target": 50.0, "value": 55.0, "met": True}
    assert rows["fp16_mean_abs_dprob"]["met"] is True and rows["p99_ms_at_half_load"]["value"] == 41.5
    empty = targets({})
    assert empty["e2e_msg_per_s"]["met"] is None and empty["fp16_mean_abs_dprob"]["value"] is None
    assert 0 < FP16_MEAN_DPROB_BOUND <= 0.01


def test_sections_record_errors_and_the_budget() -> None:
    run = Run(budget_s=60)
    assert run.section("ok", lambda: {"a": 1}) == {"a": 1}

    def fail() -> None:
        raise RuntimeError("no CUDA here")

    assert run.section("broken", fail) is None
    assert run.section("late", lambda: 1, min_left_s=120) is None
    sections = run.results["sections"]
    assert sections["ok"]["status"] == "ok" and run.results["ok"] == {"a": 1}
    assert sections["broken"]["status"] == "error" and "no CUDA here" in sections["broken"]["error"]
    assert sections["late"]["status"].startswith("skipped")
    run.deadline = time.monotonic() - 1
    assert run.section("after", lambda: 1) is None


def test_report_has_every_heading_even_for_an_empty_run() -> None:
    text = render({"mode": "gpu", "sections": {"models": {"status": "error", "error": "boom", "seconds": 1}}})
    for heading in HEADINGS:
        assert f"\n## {heading}\n" in text
    assert "error — boom" in text


def test_a_failing_cell_costs_one_row() -> None:
    from benchmarks.gpu.measure import guarded

    assert guarded(lambda x: {"seq_per_s": x}, 5.0, row={"batch": 8}) == {"seq_per_s": 5.0}
    failed = guarded(lambda: 1 / 0, row={"batch": 8})
    assert failed["batch"] == 8 and failed["error"].startswith("ZeroDivisionError")


# ---- the fatbin and the wheel ------------------------------------------------------------------------------------
def _fatbin(entries: list[tuple[int, bytes]]) -> bytes:
    body = b""
    for sm, payload in entries:
        header = struct.pack("<HHII", 2, 0x101, 64, len(payload)).ljust(28, b"\0") + struct.pack("<I", sm)
        body += header.ljust(64, b"\0") + payload
    return struct.pack("<IHHQ", pack.FATBIN_MAGIC, 1, 16, len(body)) + body


def _elf(sections: dict[str, bytes]) -> bytes:
    """A minimal little-endian ELF64 with these sections (and .shstrtab)."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n in [*sections, ".shstrtab"])
    blob, offsets = b"", []
    for data in [*sections.values(), names]:
        offsets.append(64 + len(blob))
        blob += data
    shoff = 64 + len(blob)
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header += struct.pack(
        "<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, len(sections) + 2, len(sections) + 1
    )
    table = bytes(64)  # the null section
    name_off = 1
    for (name, data), off in zip([*sections.items(), (".shstrtab", names)], offsets, strict=True):
        table += struct.pack("<IIQQQQIIQQ", name_off, 1, 0, 0, off, len(data), 0, 0, 1, 0)
        name_off += len(name) + 1
    return header + blob + table


def test_prune_fatbin_zeroes_other_architectures_in_place() -> None:
    payloads = [(80, b"\x80" * 96), (90, b"\x90" * 128), (120, b"\x12" * 64), (90, b"\x91" * 32)]
    original = _elf({".text": b"\xcc" * 40, ".nv_fatbin": _fatbin(payloads) + _fatbin([(86, b"\x86" * 48)])})
    data = bytearray(original)
    stats = pack.prune_fatbin(data, keep_sm=(90,))
    assert (stats.entries, stats.kept, stats.zeroed_bytes) == (5, 2, 96 + 64 + 48)
    assert len(data) == len(original), "same layout: nothing moved"
    assert b"\x90" * 128 in data and b"\x91" * 32 in data and b"\xcc" * 40 in data
    assert b"\x80" * 8 not in data and b"\x12" * 8 not in data and b"\x86" * 8 not in data
    changed = [i for i, (a, b) in enumerate(zip(original, data, strict=True)) if a != b]
    entries = list(pack.fatbin_entries(data, *pack.elf_section(data, ".nv_fatbin")))  # headers still parse
    assert [(sm, size) for _kind, sm, _offset, size in entries] == [(80, 96), (90, 128), (120, 64), (90, 32), (86, 48)]
    zeroed = {i for _k, sm, offset, size in entries if sm != 90 for i in range(offset, offset + size)}
    assert set(changed) <= zeroed, "only the payloads of other architectures changed"
    with pytest.raises(ValueError, match="no fatbin entry"):
        pack.prune_fatbin(bytearray(original), keep_sm=(75,))


def test_slim_wheel(tmp_path: Path) -> None:
    library = _elf({".nv_fatbin": _fatbin([(80, b"\x80" * 64), (90, b"\x90" * 64)])})
    src = tmp_path / "onnxruntime_gpu-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(src, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(pack.CUDA_LIBRARY, library)
        tool = zipfile.ZipInfo("onnxruntime/tools/run.sh")
        tool.external_attr = 0o755 << 16
        z.writestr(tool, b"#!/bin/sh\n")
        z.writestr("onnxruntime-1.0.dist-info/RECORD", f"{pack.CUDA_LIBRARY},sha256=old,{len(library)}\nx,,\n")
    info = pack.slim_wheel(src, tmp_path / "out")
    assert info["pruned"]["entries"] == 2 and info["pruned"]["kept"] == 1
    with zipfile.ZipFile(tmp_path / "out" / src.name) as z:
        assert all(m.compress_type == zipfile.ZIP_STORED for m in z.infolist())
        pruned = z.read(pack.CUDA_LIBRARY)
        assert b"\x90" * 64 in pruned and b"\x80" * 64 not in pruned
        record = z.read("onnxruntime-1.0.dist-info/RECORD").decode().splitlines()
        assert record[0] == f"{pack.CUDA_LIBRARY},{pack._record_hash(pruned)},{len(pruned)}" and record[1] == "x,,"
        assert (z.getinfo("onnxruntime/tools/run.sh").external_attr >> 16) & 0o111, "executable bits kept"


def test_pack_split_and_unpack_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "wheels").mkdir(parents=True)
    (source / "materials").mkdir()
    rng = np.random.default_rng(0)
    (source / "wheels" / "a.whl").write_bytes(rng.bytes(300_000))
    (source / "materials" / "m.json").write_text('{"k": 1}')
    archive = tmp_path / "carry.tar.xz"
    pack.pack({"wheels": source / "wheels", "materials": source / "materials"}, archive)
    parts = pack.split(archive, tmp_path / "carry", part_bytes=100_000)
    assert len(parts) == 4 and all(len(list(p.glob("carry.tar.xz.*"))) == 1 for p in parts)
    chunks = [next(p.glob("carry.tar.xz.*")) for p in parts]
    assert all(c.stat().st_size <= 100_000 for c in chunks)
    sums = (parts[0] / "SHA256SUMS").read_text().split()
    assert sums[0] == hashlib.sha256(chunks[0].read_bytes()).hexdigest() and sums[1] == chunks[0].name
    pack.unpack(chunks, tmp_path / "out")
    assert (tmp_path / "out" / "wheels" / "a.whl").read_bytes() == (source / "wheels" / "a.whl").read_bytes()
    assert (tmp_path / "out" / "materials" / "m.json").read_text() == '{"k": 1}'


def test_a_part_and_the_working_tree_fit_one_device_call() -> None:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    tree = sum((REPO / name.decode()).stat().st_size for name in listed if name and (REPO / name.decode()).is_file())
    assert pack.PART_BYTES == 56 * 2**20
    assert pack.PART_BYTES + tree < 64 * 2**20, f"the tracked tree is {tree / 2**20:.1f} MiB"


# ---- the production graph without its weights ---------------------------------------------------------------------
def test_stripped_graph_is_refilled_with_the_same_draw_in_fp32_and_fp16(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from benchmarks.gpu import materials
    from worker.model.manifest import load_manifest_json, sha256_file, write_manifest

    big = np.arange(64 * 80, dtype=np.float32).reshape(64, 80)
    small = np.ones(80, dtype=np.float32)
    for precision, dtype in (("fp32", np.float32), ("fp16", np.float16)):
        folder = tmp_path / precision
        folder.mkdir()
        inits = [numpy_helper.from_array(big.astype(dtype), "W"), numpy_helper.from_array(small.astype(dtype), "b")]
        elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["y0"]), helper.make_node("Add", ["y0", "b"], ["logits"])],
            "g",
            [helper.make_tensor_value_info("x", elem, [1, 64])],
            [helper.make_tensor_value_info("logits", elem, [1, 80])],
            inits,
        )
        onnx.save(helper.make_model(graph), str(folder / "model.onnx"))
        (folder / "config.json").write_text('{"id2label": {"0": "NEGATIVE", "1": "POSITIVE"}}')
        manifest = {"format_version": 1, "source": "x", "precision": precision, "onnx_file": "model.onnx"}
        write_manifest(folder, {**manifest, "onnx_sha256": sha256_file(folder / "model.onnx"), "labels": ["N", "P"]})
        info = materials.strip_weights(folder, tmp_path / f"stripped-{precision}")
        assert info["tensors_stripped"] == 1 and info["elements_stripped"] == 64 * 80
        assert (tmp_path / f"stripped-{precision}" / materials.GRAPH_NAME).stat().st_size < 2_000
        materials.fill_weights(tmp_path / f"stripped-{precision}", tmp_path / f"filled-{precision}")
    filled = {p: onnx.load(str(tmp_path / f"filled-{p}" / "model.onnx")) for p in ("fp32", "fp16")}
    weights = {p: {t.name: numpy_helper.to_array(t) for t in m.graph.initializer} for p, m in filled.items()}
    expected = materials.draw("W", [64, 80], 0)
    np.testing.assert_array_equal(weights["fp32"]["W"], expected)
    np.testing.assert_array_equal(weights["fp16"]["W"], expected.astype(np.float16))
    np.testing.assert_array_equal(weights["fp32"]["b"], small)  # small tensors are carried as exported
    assert 0.015 < float(expected.std()) < 0.025
    manifest = load_manifest_json(tmp_path / "filled-fp16")
    assert manifest["onnx_sha256"] == sha256_file(tmp_path / "filled-fp16" / "model.onnx")
    assert "regenerated" in manifest["weights"]
