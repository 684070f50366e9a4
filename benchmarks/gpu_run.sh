#!/usr/bin/env bash
# faceocc's GPU runs on a lent GPU machine (CUDA 13, python3 with torch, CuPy, onnxruntime and pytest; no
# network, no DALI), in steps that each finish well inside the device tool's 10 minutes and each leave
# their log (and results) under $OUT. The exact sequence is in README.md, "On a GPU machine".
#
#   bash benchmarks/gpu_run.sh stage          copy the carried .devwheels/p*/part* to $PARTS (one call per
#                                             group of parts that fits the tool's 64 MiB; the machine keeps
#                                             /tmp while it stays warm)
#   bash benchmarks/gpu_run.sh setup          unpack the parts into $SITE (once per machine), show the versions
#   bash benchmarks/gpu_run.sh tests          setup, then the GPU tests and the kernels-on-CPU tests (every
#                                             test runs once over tests + suite)
#   bash benchmarks/gpu_run.sh suite          the rest of the test suite
#   bash benchmarks/gpu_run.sh harness [DATA] the benchmark harness -> harness.json, harness.png
#   bash benchmarks/gpu_run.sh ops-demo       the ops benchmark -> ops.json; the demo -> demo-preview.png,
#                                             demo-summary.json
#   bash benchmarks/gpu_run.sh all [DATA]     every step in order (where one command may run longer)
#
# DATA: optional folder with faces/ and occluders/ (a copy of ../shared/data carried along); without it the
# harness uses insightface's sample face and the built-in occluders (its JSON records which).
# Each step runs under `timeout $STEP_LIMIT` (default 540 s) so that its log comes back even when it overruns.
set -uo pipefail
cd "$(dirname "$0")/.."
step=${1:?usage: bash benchmarks/gpu_run.sh stage|setup|tests|suite|harness [DATA]|ops-demo|all [DATA]}
data=${2:-}
out=${OUT:-$PWD/gpu-out}
PARTS=${PARTS:-/tmp/faceocc-parts}
SITE=${SITE:-/tmp/site}
limit=${STEP_LIMIT:-540}
self="$PWD/benchmarks/gpu_run.sh"
mkdir -p "$out"
export PYTHONPATH="$SITE:$PWD" FACEOCC_CACHE=/tmp/faceocc-cache PYTHONUNBUFFERED=1

run() {  # run LOG COMMAND...: the command under the step limit, output to $out/LOG.log and the terminal
    local log="$out/$1.log"; shift
    local start=$SECONDS
    echo "=== $*" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]} note=""
    [ "$rc" = 124 ] && note=" (hit the step limit of ${limit}s)"
    echo "=== rc=$rc $((SECONDS - start))s$note" | tee -a "$log"
    return "$rc"
}

stage() {  # gather the carried parts of the site-packages archive
    mkdir -p "$PARTS"
    compgen -G ".devwheels/p*/part*" > /dev/null && cp .devwheels/p*/part* "$PARTS"/
    echo "parts on this machine: $(ls -v "$PARTS" | tr '\n' ' ') ($(du -sh "$PARTS" | cut -f1))"
}

setup() {  # unpack once per machine, then show what runs
    if [ ! -f "$SITE/.complete" ]; then
        stage
        rm -rf "$SITE" && mkdir -p "$SITE"
        # shellcheck disable=SC2046
        cat $(ls -v "$PARTS"/part*) | xz -d | tar -x -C "$SITE" || {
            echo "unpacking failed: are all parts staged? (ls $PARTS)"; return 1; }
        touch "$SITE/.complete"
    fi
    python3 -c "
import sys, cupy, torch, numpy, nvidia.dali as dali
print(sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name(0))
print('cupy', cupy.__version__, 'dali', dali.__version__, 'numpy', numpy.__version__)"
}

tests() {
    run tests bash "$self" setup && run tests python3 -m pytest -q -rs -m "gpu or kernels_on_cpu" tests
}

suite() {
    run suite bash "$self" setup && run suite python3 -m pytest -q -rs -m "not gpu and not kernels_on_cpu" tests
}

harness() {
    local extra=()
    if [ -n "$data" ]; then extra=(--faces "$data/faces" --occluders "$data/occluders"); fi
    run harness bash "$self" setup && run harness python3 -m benchmarks.harness --device gpu --out "$out/harness.json" \
        "${extra[@]}" --quiet
}

ops_demo() {
    run ops-demo bash "$self" setup || return 1
    run ops-demo python3 -m benchmarks.bench_ops --out "$out/ops.json"
    run ops-demo python3 -m faceocc.cli demo --out /tmp/faceocc-demo --quiet
    cp /tmp/faceocc-demo/preview.png "$out/demo-preview.png" 2>/dev/null
    cp /tmp/faceocc-demo/summary.json "$out/demo-summary.json" 2>/dev/null
}

case "$step" in
    stage) stage ;;
    setup) setup ;;
    tests) tests ;;
    suite) suite ;;
    harness) harness ;;
    ops-demo) ops_demo ;;
    all) tests; suite; harness; ops_demo ;;
    *) echo "unknown step $step"; exit 2 ;;
esac
