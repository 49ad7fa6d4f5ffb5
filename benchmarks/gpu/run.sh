#!/usr/bin/env bash
# Device call 6 of the GPU check (carry: [".gpu-carry/part6"]): re-join the onnxruntime-gpu wheel, check every
# wheel's sha256, install the wheels into a venv that sees the system's torch, then run the check; its report comes
# back under $OUT/results/<date>-gpu-h200/. Usage: bash benchmarks/gpu/run.sh [--budget-s S]
set -euo pipefail
W=/tmp/gpuwheels
OUT="${OUT:?run this through the device tool, which sets OUT}"
mkdir -p "$W" "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
[ -d .gpu-carry/part6 ] && cp -r .gpu-carry/part6/. "$W/"
cd "$W"
if ! ls onnxruntime_gpu-*.whl >/dev/null 2>&1; then
  chunks=(onnxruntime_gpu-*.whl.part-*)
  [ "${#chunks[@]}" -ge 5 ] || { echo "run: only ${#chunks[@]} wheel chunks in $W (stage parts 1-5 first)"; exit 2; }
  cat "${chunks[@]}" > "${chunks[0]%.part-*}"
fi
sha256sum -c SHA256SUMS
cd - >/dev/null

PY="${PY:-python3}"  # the Python that has torch
echo "run: $($PY --version) at $(command -v $PY); pip: $($PY -m pip --version 2>&1 | head -1)"
VENV=/tmp/gpuvenv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import onnxruntime, pydantic" 2>/dev/null; then
  rm -rf "$VENV"
  if $PY -m venv --system-site-packages "$VENV" 2>/dev/null; then
    "$VENV/bin/python" -m pip install --no-index --no-deps -q "$W"/*.whl
  else  # no ensurepip on this Python: a venv without pip, filled by the system's pip
    $PY -m venv --system-site-packages --without-pip "$VENV"
    $PY -m pip --python "$VENV/bin/python" install --no-index --no-deps -q "$W"/*.whl
  fi
fi
PYV="$VENV/bin/python"
# Whatever $PY sees (its site-packages, user site; also when $PY is itself a venv's) comes after the venv's own
# packages, so torch and transformers are the machine's and the carried wheels win where both exist.
"$PY" - > "$("$PYV" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/zz-base-python.pth" <<'PY'
import site, sysconfig
paths = [*site.getsitepackages(), site.getusersitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
print("\n".join(dict.fromkeys(paths)))
PY
# CUDA 13 / cuDNN 9 libraries: the nvidia-* packages torch brought (their lib folders, wherever they lie)
NV=$("$PYV" - <<'PY'
import pathlib, sys
dirs = set()
for entry in sys.path:
    root = pathlib.Path(entry or ".") / "nvidia"
    if root.is_dir():
        dirs.update(str(p.parent) for p in root.rglob("*.so*") if p.parent.name == "lib")
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="${NV}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PYV" -c "import onnxruntime as o, torch; print('run: onnxruntime', o.__version__, o.__file__, o.get_available_providers(), 'torch', torch.__version__, torch.cuda.is_available())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
DEST="$OUT/results/$(date -u +%F)-gpu-h200"
"$PYV" -m benchmarks.gpu.check --out "$DEST" --work /tmp/gpucheck-work --materials "$W/materials" --budget-s 420 "$@"
echo "run: report at $DEST"
