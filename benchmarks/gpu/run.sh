#!/usr/bin/env bash
# The last device call of the GPU check (carry: [".gpu-carry/partN"], N the last part): stage that part, check the
# chunks' sha256, unpack carry.tar.xz (wheels + materials), install the wheels with pip --target (PYTHONPATH), run
# the check. Everything comes back at most two folders deep: $OUT/<device>/{report.md,results.json,logs.tar.gz},
# $OUT/<device>/run.log.
# Usage: bash benchmarks/gpu/run.sh [--device NAME] [--smoke] [check options…]
#   --device: the kind that runs it, names the results folder (default nvidia-h100-x1, the default kind).
#   CARRY / STAGE / WORK: the carried parts (.gpu-carry), the staging folder (/tmp/gpucarry), scratch (/tmp/gpu).
#   PY: the Python to run with (default python3, the device's, which has torch).
set -euo pipefail
DEVICE=nvidia-h100-x1
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
OUT="${OUT:?run this through the device tool, which sets OUT (or set it for a rehearsal)}"
DEST="$OUT/$DEVICE"
STAGE="${STAGE:-/tmp/gpucarry}"
WORK="${WORK:-/tmp/gpu}"
CARRY="${CARRY:-.gpu-carry}"
PY="${PY:-python3}"
mkdir -p "$DEST" "$STAGE" "$WORK"
exec > >(tee "$DEST/run.log") 2>&1
started=$(date +%s)
last=$(ls -d "$CARRY"/part* 2>/dev/null | sort -V | tail -1 || true)
[ -n "$last" ] && cp -r "$last/." "$STAGE/"
cd "$STAGE"
sha256sum -c SHA256SUMS || { echo "run: a chunk is missing or damaged (stage the parts before this one first)"; exit 2; }
cd - >/dev/null
chunks=$(awk '{print $2}' "$STAGE/SHA256SUMS" | sed "s|^|$STAGE/|")
# shellcheck disable=SC2086
"$PY" -c "import sys; from benchmarks.gpu.pack import unpack; from pathlib import Path; unpack([Path(p) for p in sys.argv[2:]], Path(sys.argv[1]))" "$WORK/carried" $chunks
SITE="$WORK/site"
if [ -d "$WORK/carried/wheels" ]; then
  rm -rf "$SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WORK"/carried/wheels/*.whl
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else  # a rehearsal without wheels: the running Python has the packages
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
echo "run: staged, unpacked and installed in $(( $(date +%s) - started )) s"
"$PY" -c "import onnxruntime as o; print('run: onnxruntime', o.__version__, o.__file__, o.get_available_providers())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "run: no nvidia-smi"
status=0
"$PY" -m benchmarks.gpu.check --out "$DEST" --work "$WORK/check" --materials "$WORK/carried/materials" \
  --device-name "$DEVICE" "${ARGS[@]}" || status=$?
# logs: one file (the per-process worker logs and the broker's)
[ -d "$DEST/logs" ] && tar -czf "$DEST/logs.tar.gz" -C "$DEST" logs && rm -rf "$DEST/logs"
echo "run: report at $DEST (rc $status, $(( $(date +%s) - started )) s in all)"
exit $status
