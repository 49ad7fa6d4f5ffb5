#!/usr/bin/env bash
# Device calls 1 … N-1 of the GPU check: copy one carried part (.gpu-carry/partK, carry: [".gpu-carry/partK"]) into
# /tmp/gpucarry, which survives between calls while the machine stays warm (calls < ~30 s apart).
# Usage: bash benchmarks/gpu/stage.sh K      (CARRY / STAGE override the folders: the rehearsal uses them)
set -euo pipefail
part="${CARRY:-.gpu-carry}/part${1:?part number}"
dest="${STAGE:-/tmp/gpucarry}"
[ -d "$part" ] || { echo "stage: $part was not carried (carry: [\".gpu-carry/part$1\"])" >&2; exit 2; }
mkdir -p "$dest"
cp -r "$part/." "$dest/"
echo "stage: copied $part; $dest now holds:"
ls -la "$dest" | tail -n +2
