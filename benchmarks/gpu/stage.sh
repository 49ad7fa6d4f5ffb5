#!/usr/bin/env bash
# Device call 1-5 of the GPU check: copy one carried part (.gpu-carry/partN) into /tmp/gpuwheels, which survives
# between calls while the machine stays warm (calls ~30 s apart at most). Usage: bash benchmarks/gpu/stage.sh N
set -euo pipefail
part=".gpu-carry/part${1:?part number}"
dest=/tmp/gpuwheels
[ -d "$part" ] || { echo "stage: $part was not carried (carry: [\"$part\"])" >&2; exit 2; }
mkdir -p "$dest"
cp -r "$part/." "$dest/"
echo "stage: copied $part; /tmp/gpuwheels now holds:"
ls -la "$dest" | tail -n +2
du -sh "$dest"
