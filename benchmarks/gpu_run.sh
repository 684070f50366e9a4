#!/usr/bin/env bash
# Everything GPU in one command, for a lent H100/H200 machine (CUDA 13, Python 3.12 with torch, CuPy,
# onnxruntime, pytest; no network, no DALI): the whole test suite with the GPU tests enabled, then the
# benchmark harness and the ops benchmark, all logs and results under $OUT.
#
#   bash benchmarks/gpu_run.sh SITE [DATA]
#
# SITE: the unpacked site-packages of ../shared/tools/gpu-wheels.sh (DALI, nvImageCodec, insightface):
#       cat .devwheels/p*/part* | xz -d | tar -x -C /tmp/site
# DATA: optional copy of ../shared/data (faces/, occluders/) carried along, for real faces and MSML's
#       occluders in the harness; without it the harness uses insightface's sample face and the
#       built-in occluders (the JSON records which).
# Not set -e: a failing test run must not stop the benchmarks; each step's exit code is in the log.
# What comes back: gpu-run.log, harness.json/.png, ops.json, demo-preview.png.
set -uo pipefail
site=${1:?usage: bash benchmarks/gpu_run.sh SITE [DATA]}
data=${2:-}
cd "$(dirname "$0")/.."
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
log="$out/gpu-run.log"     # one log (the device tool brings back at most 8 files)
export PYTHONPATH="$site:$PWD" FACEOCC_CACHE=/tmp/faceocc-cache

step() {  # step NAME COMMAND...: run it, append its output to the log, print its exit code
    local name=$1; shift
    local start=$SECONDS
    echo "=== $name: $*" >> "$log"
    "$@" >> "$log" 2>&1
    local rc=$?
    echo "=== $name rc=$rc $((SECONDS - start))s" | tee -a "$log"
}

step env python3 -c "
import cupy, torch, nvidia.dali as dali, numpy, sys
print(sys.version); print('torch', torch.__version__, torch.cuda.get_device_name(0))
print('cupy', cupy.__version__, 'dali', dali.__version__, 'numpy', numpy.__version__)"
step tests python3 -m pytest -q -rs tests
step tests_gpu python3 -m pytest -q -rs -m gpu tests
faces=(); occ=()
if [ -n "$data" ]; then faces=(--faces "$data/faces"); occ=(--occluders "$data/occluders"); fi
step harness python3 benchmarks/harness.py --device gpu --out "$out/harness.json" "${faces[@]}" "${occ[@]}" --quiet
step ops python3 benchmarks/bench_ops.py --out "$out/ops.json"
step demo python3 -m faceocc.cli demo --out /tmp/faceocc-demo --quiet
cp /tmp/faceocc-demo/preview.png "$out/demo-preview.png" 2>/dev/null
grep -E "^=== .* rc=|passed|failed|img/s|ratio|loader_vs" "$log" | tail -n 60
