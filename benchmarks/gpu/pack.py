"""Packing what the GPU check carries: the onnxruntime-gpu wheel slimmed to the device's GPU architecture, one
xz-compressed tar of wheels and materials, cut into parts that each fit one device call.

The wheel: 255.6 MB (deflated); 284 MB of its 350 MB unpacked is ``libonnxruntime_providers_cuda.so``, and 218 MB
of that library is its ``.nv_fatbin`` section: the CUDA kernels compiled for each GPU architecture it supports
(sm_75, 80, 86, 89, 90 and 120; 73 MiB of them for sm_90). The device kinds lent here (H100 and H200) are both
sm_90: :func:`prune_fatbin` zeroes the payload of every cubin built for another architecture, in place (every
header, size and offset stays as it was, so the library's layout is unchanged), and xz packs those zeros to nearly
nothing: the CUDA library goes from 186 MB (xz of the original) to about 52 MB. The CUDA runtime picks the cubin of
the device's architecture from the fatbin's headers and never reads the others' payloads. The slimmed wheel is
written uncompressed (ZIP_STORED, ``RECORD`` updated) so that xz, not deflate, compresses it.
"""

from __future__ import annotations

import base64
import hashlib
import lzma
import struct
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FATBIN_MAGIC = 0xBA55ED50
CUDA_LIBRARY = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
DEVICE_SM = (90,)  # H100 and H200
PART_BYTES = 56 * 2**20  # one device call carries at most 64 MiB, the working tree included


@dataclass(frozen=True)
class PruneStats:
    entries: int
    kept: int
    zeroed_bytes: int
    kept_by_sm: dict[int, int]

    def as_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "kept": self.kept, "zeroed_mib": round(self.zeroed_bytes / 2**20, 1),
                "kept_mib_by_sm": {sm: round(n / 2**20, 1) for sm, n in self.kept_by_sm.items()}}  # fmt: skip


def elf_section(data: bytes | bytearray, name: str) -> tuple[int, int] | None:
    """(file offset, size) of section ``name`` of a little-endian ELF64 file, or None."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    strtab_off = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)[0]
    for i in range(shnum):
        header = shoff + i * shentsize
        name_off = struct.unpack_from("<I", data, header)[0]
        end = data.index(b"\0", strtab_off + name_off)
        if bytes(data[strtab_off + name_off : end]).decode() == name:
            offset, size = struct.unpack_from("<QQ", data, header + 0x18)
            return int(offset), int(size)
    return None


def fatbin_entries(data: bytes | bytearray, start: int, size: int) -> Iterator[tuple[int, int, int, int]]:
    """(kind, sm, payload offset, payload size) of every entry of the fatbins in ``data[start:start+size]``.

    A fatbin: header (magic ``0xBA55ED50``, version u16, header size u16, fat size u64), then entries, each a header
    (kind u16, version u16, header size u32, padded payload size u32, ..., sm version u32 at +28) and its payload.
    Fatbins follow one another, 8-byte aligned."""
    pos, end = start, start + size
    while pos + 16 <= end:
        magic, _version, header_size, fat_size = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8
            continue
        entry, last = pos + header_size, pos + header_size + fat_size
        while entry < last:
            kind, _v, entry_header, padded = struct.unpack_from("<HHII", data, entry)
            sm = struct.unpack_from("<I", data, entry + 28)[0]
            if entry_header == 0:
                raise ValueError(f"malformed fatbin entry at {entry:#x}")
            yield kind, sm, entry + entry_header, padded
            entry += entry_header + padded
        pos = last


def prune_fatbin(data: bytearray, keep_sm: Iterable[int] = DEVICE_SM) -> PruneStats:
    """Zero, in place, the payload of every ``.nv_fatbin`` entry built for an architecture not in ``keep_sm``."""
    keep = set(keep_sm)
    found = elf_section(data, ".nv_fatbin")
    if found is None:
        raise ValueError("no .nv_fatbin section")
    entries = kept = zeroed = 0
    kept_by_sm: dict[int, int] = {}
    for _kind, sm, offset, size in list(fatbin_entries(data, *found)):
        entries += 1
        if sm in keep:
            kept += 1
            kept_by_sm[sm] = kept_by_sm.get(sm, 0) + size
        else:
            data[offset : offset + size] = bytes(size)
            zeroed += size
    if not kept:
        raise ValueError(f"no fatbin entry for sm {sorted(keep)}: pruning would leave no kernel")
    return PruneStats(entries, kept, zeroed, kept_by_sm)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def slim_wheel(src: Path, dst_dir: Path, keep_sm: Iterable[int] = DEVICE_SM) -> dict[str, Any]:
    """The wheel ``src`` rewritten into ``dst_dir`` (same name) with its CUDA library pruned to ``keep_sm``, stored
    uncompressed, ``RECORD`` updated. A wheel without the CUDA library (a CPU build) is stored as is."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    info: dict[str, Any] = {"wheel": src.name}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zout:
        members = zin.infolist()
        record_name = next(m.filename for m in members if m.filename.endswith(".dist-info/RECORD"))
        changed: dict[str, bytes] = {}
        for member in members:
            if member.filename == CUDA_LIBRARY:
                data = bytearray(zin.read(member))
                info["pruned"] = prune_fatbin(data, keep_sm).as_dict()
                changed[member.filename] = bytes(data)
        for member in members:
            if member.filename == record_name:
                continue
            data = changed.get(member.filename) or zin.read(member)
            out = zipfile.ZipInfo(member.filename, date_time=member.date_time)
            out.external_attr = member.external_attr  # keeps executable bits
            zout.writestr(out, data, compress_type=zipfile.ZIP_STORED)
        rows = []
        for line in zin.read(record_name).decode().splitlines():
            path = line.split(",", 1)[0]
            if path in changed:
                line = f"{path},{_record_hash(changed[path])},{len(changed[path])}"
            rows.append(line)
        zout.writestr(zipfile.ZipInfo(record_name), ("\n".join(rows) + "\n").encode(), compress_type=zipfile.ZIP_STORED)
    info["mib"] = round(dst.stat().st_size / 2**20, 1)
    return info


def pack(sources: dict[str, Path], archive: Path, *, preset: int = 6) -> None:
    """One ``.tar.xz`` of ``sources`` ({name in the archive: folder or file})."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(archive, "wb", preset=preset) as xz, tarfile.open(fileobj=xz, mode="w") as tar:  # type: ignore[call-overload]
        for name, path in sources.items():
            tar.add(path, arcname=name)


def split(archive: Path, carry: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """``archive`` cut into ``carry/part1/…``, ``part2/…``: one chunk of at most ``part_bytes`` per folder (one
    folder per device call), and ``SHA256SUMS`` of the chunks beside the first."""
    parts: list[Path] = []
    sums: list[str] = []
    with archive.open("rb") as handle:
        n = 0
        while chunk := handle.read(part_bytes):
            n += 1
            part = carry / f"part{n}"
            part.mkdir(parents=True, exist_ok=True)
            for old in part.glob("carry.tar.xz.*"):
                old.unlink()
            name = f"carry.tar.xz.{n:02d}"
            (part / name).write_bytes(chunk)
            sums.append(f"{hashlib.sha256(chunk).hexdigest()}  {name}")
            parts.append(part)
    (parts[0] / "SHA256SUMS").write_text("\n".join(sums) + "\n", encoding="utf-8")
    return parts


def unpack(chunks: list[Path], dest: Path) -> None:
    """Join the chunks (in order) and extract the tar.xz into ``dest`` (streamed: no joined copy on disk)."""

    class Joined:
        def __init__(self, paths: list[Path]) -> None:
            self.paths, self.handle = list(paths), None  # type: ignore[var-annotated]

        def read(self, n: int = -1) -> bytes:
            out = b""
            while self.paths or self.handle is not None:
                if self.handle is None:
                    self.handle = self.paths.pop(0).open("rb")
                data = self.handle.read(n if n >= 0 else -1)
                if data:
                    return data
                self.handle.close()
                self.handle = None
            return out

    dest.mkdir(parents=True, exist_ok=True)
    with lzma.open(Joined(chunks), "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[arg-type]
        tar.extractall(dest, filter="data")
