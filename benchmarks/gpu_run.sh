#!/usr/bin/env bash
# faceocc's GPU run on a lent GPU machine (CUDA 13, python3 with torch, CuPy, onnxruntime, pytest and
# pytest-timeout; no network, no DALI) in exactly three device-tool calls, made back to back: the machine
# goes back about 30 s after a call ends, and with it everything under /tmp. docs/gpu-machine.md gives
# each call's carry list, command and timeout_s (180, 30, 300), and what to do when a step fails.
#
#   bash benchmarks/gpu_run.sh 1   carry .devwheels/p0 .devwheels/p1: unpack p0 (insightface and small
#                                  packages) into the site folder, keep DALI's part 1, nvidia-smi and
#                                  versions, the CuPy GPU tests (kernels, render), the ops benchmark
#                                  -> $OUT/call1.log, $OUT/ops.json                       (~1.5 min)
#   bash benchmarks/gpu_run.sh 2   carry .devwheels/p2: keep DALI's part 2 -> $OUT/call2.log   (seconds)
#   bash benchmarks/gpu_run.sh 3   carry .devwheels/p3 (and .gpudata, optional: faces/ and occluders/):
#                                  unpack DALI, check it imports and decodes on the GPU, the DALI GPU
#                                  tests, the loader benchmark (faceocc vs bare DALI, batch 256), the
#                                  harness's GPU rows -> $OUT/call3.log, loader-gpu.json, harness.json/.png
#                                  (~3 min). Run again at once after a failure or a timeout: steps that
#                                  finished are skipped (GPU_RUN_REDO=1 runs them all again).
#
# Every step runs under `timeout` within the call's own budget (CALL1_S=170, CALL2_S=20, CALL3_S=290: 10 s
# under the tool's timeout_s, so that the log always comes back) and says what it found missing and what
# to do. The GPU tests run with FACEOCC_REQUIRE_GPU=1 (a missing GPU, CuPy or DALI fails) and pytest's
# `-p timeout --timeout 120`. No CPU-only test runs here: CI runs those.
#
# For the script's own tests on a CPU: GPU_RUN_REHEARSAL=1 (benchmarks on the CPU, small sizes),
# GPU_RUN_STATE (default /tmp/faceocc-gpu), PYTHON (default python3); `source` it to call one function.
set -uo pipefail

CUPY_TESTS=(tests/test_ops_gpu.py tests/test_render_gpu.py tests/test_occlude.py tests/test_online_gpu.py) # every test marked gpu, not dali
DALI_TESTS=(tests/test_loader_gpu.py)                           # every test marked gpu and dali
PARTS_EXPECTED=3                                                # .devwheels/p1..p3 hold part0..part2

SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
ROOT=$(cd "$(dirname "$SELF")/.." && pwd)
STATE=${GPU_RUN_STATE:-/tmp/faceocc-gpu}
SITE=$STATE/site
PARTS=$STATE/parts
PY=${PYTHON:-python3}
OUTDIR=${OUT:-$ROOT/gpu-out}
REHEARSAL=${GPU_RUN_REHEARSAL:-0}
DEADLINE=0
LOG=/dev/null

say() {  # say TEXT...: to the terminal and the call's log
    echo "$*" | tee -a "$LOG"
}

run_step() {  # run_step NAME LIMIT_S COMMAND...: a command or a function of this script, under `timeout` (never
              # past the call's deadline, so the log comes back); its rc (124: it hit the limit)
    local name=$1 limit=$2 start=$SECONDS rc note=""
    shift 2
    if [ "$DEADLINE" -gt 0 ]; then      # 5 s kept for the log's last lines
        local left=$((DEADLINE - SECONDS - 5))
        if [ "$left" -lt 5 ]; then
            say "=== $name: not started, this call's time is spent. Run the same call again at once: steps that finished are skipped."
            return 124
        fi
        if [ "$left" -lt "$limit" ]; then limit=$left; fi
    fi
    say "=== $name (limit ${limit}s): $*"
    timeout --kill-after=5 "$limit" bash "$SELF" __run "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        note=" - hit its limit of ${limit}s: the log above shows how far it got; run the same call again at once (finished steps are skipped)"
    fi
    say "=== $name: rc=$rc in $((SECONDS - start))s$note"
    return "$rc"
}

done_before() {  # done_before NAME: true (and says so) when NAME finished in an earlier run of this call
    if [ "${GPU_RUN_REDO:-0}" != 1 ] && [ -f "$STATE/done/$1" ]; then
        say "=== $1: finished in an earlier run on this machine (its results came back then); skipped (GPU_RUN_REDO=1 reruns it)"
        return 0
    fi
    return 1
}

mark_done() { mkdir -p "$STATE/done" && touch "$STATE/done/$1"; }

step() {  # step NAME LIMIT_S COMMAND...: run_step once per machine (marked done when it succeeds)
    local name=$1
    done_before "$name" && return 0
    run_step "$@" && mark_done "$name"
}

environment() {  # what every Python step sees: the site folder first, faceocc from the checkout
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" FACEOCC_CACHE="$STATE/cache" PYTHONUNBUFFERED=1
    export FACEOCC_REQUIRE_GPU=1
}

link_package() {  # faceocc.ops/.render/.dali_pipes importable from the checkout without installing it
    local part
    if (cd "$ROOT" && "$PY" -c "import os, faceocc.ops as o; assert os.path.realpath(o.__file__).startswith(os.path.realpath(os.getcwd()) + os.sep)") \
            2> /dev/null; then
        say "faceocc: importable from $ROOT as it is"
        return 0
    fi
    for part in ops render dali_pipes; do
        if [ ! -e "$ROOT/faceocc/$part" ]; then
            ln -s "../$part" "$ROOT/faceocc/$part" || { say "cannot link faceocc/$part to $part/ in $ROOT"; return 1; }
        fi
    done
    (cd "$ROOT" && "$PY" -c "import faceocc.ops, faceocc.render, faceocc.dali_pipes") 2>&1 | tee -a "$LOG"
    [ "${PIPESTATUS[0]}" = 0 ] || { say "faceocc's parts do not import from $ROOT (see above)"; return 1; }
    say "faceocc: importable from $ROOT (faceocc/ops, render, dali_pipes linked to the checkout's folders)"
}

machine_state() {  # say whether this machine has run call 1 (a warm machine keeps /tmp)
    if [ -f "$STATE/machine" ]; then
        say "machine: warm, $(cat "$STATE/machine")"
    else
        mkdir -p "$STATE" && echo "call 1 started here $(date -u +%FT%TZ), boot $(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo '?')" > "$STATE/machine"
        say "machine: fresh (no earlier call on it); state in $STATE"
    fi
}

expect_warm() {  # expect_warm CALL: fail with what to do when call 1 (and 2) did not run on this machine
    local call=$1 missing=()
    [ -f "$STATE/machine" ] && [ -f "$SITE/.p0" ] || missing+=("call 1's site folder $SITE")
    [ -f "$PARTS/part0" ] || missing+=("DALI's part 1 (.devwheels/p1, kept by call 1)")
    if [ "$call" = 3 ]; then [ -f "$PARTS/part1" ] || missing+=("DALI's part 2 (.devwheels/p2, kept by call 2)"); fi
    if [ "${#missing[@]}" -gt 0 ]; then
        say "FRESH MACHINE: call $call expected a warm machine, but these are not here: ${missing[*]}."
        say "The machine went back between calls (it is kept only about 30 s after a call ends), or an earlier call failed."
        say "What to do: check the device time left (status), then make calls 1, 2 and 3 again, back to back."
        return 3
    fi
    say "machine: warm, $(cat "$STATE/machine"); parts here: $(cd "$PARTS" && ls -v | tr '\n' ' ')"
}

keep_parts() {  # copy every carried .devwheels/pN/part* (N >= 1) to $PARTS; fail when pWANT's part is absent
    local want=$1 found
    mkdir -p "$PARTS"
    found=$(compgen -G "$ROOT/.devwheels/p[1-9]*/part*")
    if [ -n "$found" ]; then
        # shellcheck disable=SC2086
        cp $found "$PARTS"/ || { say "cannot copy the parts to $PARTS (disk full?)"; return 1; }
    fi
    if ! compgen -G "$ROOT/.devwheels/p$want/part*" > /dev/null; then
        say "MISSING: .devwheels/p$want/part* was not carried. What to do: run \`bash ../shared/tools/gpu-wheels.sh\` in the"
        say "  checkout the device tool sends (it writes .devwheels/p0..p$PARTS_EXPECTED), and name .devwheels/p$want in this call's carry."
        return 1
    fi
    say "kept DALI's part $want; parts on this machine: $(cd "$PARTS" && ls -v | tr '\n' ' ')($(du -sh "$PARTS" | cut -f1))"
}

unpack_small() {  # p0: insightface and DALI's small pure-Python dependencies, into the site folder
    local archive=$ROOT/.devwheels/p0/small.tar.xz
    if [ -f "$SITE/.p0" ]; then say "site folder $SITE: p0 unpacked earlier"; return 0; fi
    if [ ! -f "$archive" ]; then
        say "MISSING: .devwheels/p0/small.tar.xz was not carried. What to do: run \`bash ../shared/tools/gpu-wheels.sh\`"
        say "  in the checkout the device tool sends, then make call 1 with carry [.devwheels/p0, .devwheels/p1]."
        return 1
    fi
    mkdir -p "$SITE" && tar -xJf "$archive" -C "$SITE" && touch "$SITE/.p0" \
        || { say "unpacking $archive into $SITE failed (see above)"; return 1; }
    say "site folder $SITE: p0 unpacked ($(du -sh "$SITE" | cut -f1))"
}

unpack_dali() {  # parts 0..N-1, in numeric order (part10 after part9), one xz stream -> the site folder
    local names
    if [ -f "$SITE/.dali" ]; then say "site folder $SITE: DALI unpacked earlier"; return 0; fi
    names=$(cd "$PARTS" && ls -v part* 2>/dev/null | tr '\n' ' ')
    local expected="" i
    for ((i = 0; i < $(wc -w <<< "$names"); i++)); do expected+="part$i "; done
    if [ -z "$names" ] || [ "$names" != "$expected" ]; then
        say "MISSING: DALI's parts must be part0 .. partN with none left out; here: ${names:-none}. What to do: make calls 1, 2, 3 back to back."
        return 1
    fi
    mkdir -p "$SITE" || { say "cannot make the site folder $SITE"; return 1; }
    # shellcheck disable=SC2046
    if ! (cd "$PARTS" && cat $(ls -v part*)) | xz -d | tar -x -C "$SITE"; then
        say "unpacking DALI failed: the parts ($names) do not make one whole archive (one missing, or from two"
        say "  different runs of gpu-wheels.sh?). What to do: rerun gpu-wheels.sh once, then calls 1, 2, 3."
        return 1
    fi
    touch "$SITE/.dali"
    say "site folder $SITE: DALI unpacked from $names($(du -sh "$SITE" | cut -f1))"
}

versions() {
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi 2>&1 | tee -a "$LOG"
    else
        say "nvidia-smi is not on PATH: no NVIDIA driver here?"
    fi
    "$PY" - <<'PYEOF' 2>&1 | tee -a "$LOG"
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "cupy", "numpy", "insightface", "cv2", "nvidia.dali", "pytest", "pytest_timeout"):
    try:
        print(f"{name:14s}", getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as err:
        later = " (DALI arrives in call 3)" if name == "nvidia.dali" else ""
        print(f"{name:14s} MISSING{later} ({type(err).__name__}: {err})")
try:
    import torch
    print("torch sees", torch.cuda.device_count(), "CUDA device(s):",
          [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
    import cupy
    print("CuPy sees", cupy.cuda.runtime.getDeviceCount(), "device(s); runtime", cupy.cuda.runtime.runtimeGetVersion())
except Exception as err:
    print("GPU check:", type(err).__name__, err)
PYEOF
}

pytest_gpu() {  # pytest_gpu FILES...: the gpu-marked tests of FILES, failing (not skipping) without a GPU
    local limit=()
    if "$PY" -c "import pytest_timeout" 2> /dev/null; then
        limit=(-p timeout --timeout 120)
    else
        say "pytest-timeout is not installed: no per-test limit (the step's limit still holds)"
    fi
    (cd "$ROOT" && "$PY" -m pytest -q -rfEs -p no:cacheprovider "${limit[@]}" -m gpu "$@")
}

dali_check() {  # DALI imports, sees the GPU, and decodes a JPEG with the mixed (nvJPEG) decoder (rehearsing: cpu)
    (cd "$ROOT" && GPU_RUN_REHEARSAL=$REHEARSAL "$PY" - <<'PYEOF')
import io, os, sys
import numpy as np
from PIL import Image
import nvidia.dali as dali
from nvidia.dali import backend, fn, pipeline_def, types
count = backend.GetCUDADeviceCount()
print("DALI", dali.__version__, "from", dali.__file__, "- CUDA devices:", count)
gpu = os.environ.get("GPU_RUN_REHEARSAL") != "1"
if gpu and count < 1:
    sys.exit("DALI sees no CUDA device")
buf = io.BytesIO()
Image.fromarray(np.full((112, 112, 3), 77, np.uint8)).save(buf, "JPEG", quality=95)
data = np.frombuffer(buf.getvalue(), np.uint8)

@pipeline_def(batch_size=2, num_threads=2, device_id=0 if gpu else None)
def pipe():
    jpeg = fn.external_source(source=lambda: [data, data], batch=True)
    return fn.decoders.image(jpeg, device="mixed" if gpu else "cpu", output_type=types.RGB)

p = pipe()
p.build()
out = p.run()[0]
out = (out.as_cpu() if gpu else out).as_array()
assert out.shape == (2, 112, 112, 3) and abs(int(out.mean()) - 77) <= 2, (out.shape, out.mean())
print("DALI decoded a JPEG", "on the GPU (mixed):" if gpu else "on the CPU (rehearsal):", out.shape)
PYEOF
}

bench() {  # bench NAME ARGS...: a benchmark module, on the GPU (or, rehearsing, on the CPU with small sizes)
    local name=$1
    shift
    (cd "$ROOT" && "$PY" -m "benchmarks.$name" "$@")
}

ops_bench() {
    if [ "$REHEARSAL" = 1 ]; then
        bench bench_ops --twin-batch 16 --repeats 2 --gpu-batch 8 16 --gpu-repeats 2 --render-batch 4 --out "$OUTDIR/ops.json"
    else
        bench bench_ops --gpu-batch 512 1024 --render-batch 256 --out "$OUTDIR/ops.json"
    fi
}

loader_bench() {
    if [ "$REHEARSAL" = 1 ]; then
        bench bench_loader --device cpu --pairs loader-vs-dali --batch-size 16 --images 64 --rounds 2 --batches 2 \
            --warmup 1 --work "$STATE/bench-loader" --out "$OUTDIR/loader-gpu.json"
    else
        bench bench_loader --device gpu --pairs loader-vs-dali --batch-size 256 --images 2048 --rounds 8 --batches 10 \
            --warmup 3 --work "$STATE/bench-loader" --out "$OUTDIR/loader-gpu.json"
    fi
}

online_bench() {
    if [ "$REHEARSAL" = 1 ]; then
        bench bench_online_masks --device cpu --batch-size 16 --rounds 2 --batches 2 --warmup 1 \
            --work "$STATE/bench-online" --out "$OUTDIR/online-masks-gpu.json"
    else
        bench bench_online_masks --device gpu --rounds 4 --batches 6 --work "$STATE/bench-online" \
            --out "$OUTDIR/online-masks-gpu.json"
    fi
}

harness_gpu() {
    local data=()
    if [ -d "$ROOT/.gpudata/faces" ]; then data+=(--faces "$ROOT/.gpudata/faces"); fi
    if [ -d "$ROOT/.gpudata/occluders" ]; then data+=(--occluders "$ROOT/.gpudata/occluders"); fi
    [ "${#data[@]}" -gt 0 ] || say "no .gpudata carried: the harness uses insightface's sample face and the built-in occluders"
    if [ "$REHEARSAL" = 1 ]; then
        bench harness --device cpu --rows gpu --images 64 --batch-size 16 --batches 2 --warmup 1 \
            --work "$STATE/bench" --out "$OUTDIR/harness.json" --quiet "${data[@]}"
    else
        bench harness --device gpu --rows gpu --images 2048 --batch-size 256 --batches 32 --rounds 4 --warmup 3 \
            --work "$STATE/bench" --out "$OUTDIR/harness.json" --quiet "${data[@]}"
    fi
}

begin() {  # begin CALL BUDGET_S: the call's log and deadline
    mkdir -p "$OUTDIR" "$STATE"
    LOG=$OUTDIR/call$1.log
    DEADLINE=$((SECONDS + $2))
    say "=== faceocc gpu_run.sh call $1 of 3, $(date -u +%FT%TZ), budget $2 s, checkout $ROOT, out $OUTDIR"
}

finish() {  # finish RC...: the call's verdict from its steps' return codes
    local rc worst=0
    for rc in "$@"; do [ "$rc" != 0 ] && [ "$worst" = 0 ] && worst=$rc; done
    say "=== call done in ${SECONDS}s: $([ "$worst" = 0 ] && echo "every step passed" || echo "a step failed (first rc=$worst); see above")"
    return "$worst"
}

call1() {
    begin 1 "${CALL1_S:-170}"
    machine_state
    unpack_small || { finish 1; return; }
    environment
    link_package || { finish 1; return; }
    local kept=0 tests=0 ops=0
    keep_parts 1 || kept=1
    versions
    run_step cupy-tests 150 pytest_gpu "${CUPY_TESTS[@]}" || tests=$?
    run_step ops-bench 60 ops_bench || ops=$?
    [ "$kept" = 0 ] || say "reminder: DALI's part 1 was not kept, so call 3 cannot unpack DALI (see MISSING above)"
    finish "$kept" "$tests" "$ops"
}

call2() {
    begin 2 "${CALL2_S:-20}"
    expect_warm 2 || { finish 3; return; }
    keep_parts 2 || { finish 1; return; }
    finish 0
}

call3() {
    begin 3 "${CALL3_S:-290}"
    expect_warm 3 || { finish 3; return; }
    environment
    link_package || { finish 1; return; }
    keep_parts 3 || { finish 1; return; }
    run_step unpack-dali 60 unpack_dali || { finish 1; return; }
    run_step dali-check 60 dali_check || { say "DALI does not work here: the DALI tests and benchmarks are skipped"; finish 1; return; }
    local tests=0 loader=0 harness=0 online=0
    step dali-tests 150 pytest_gpu "${DALI_TESTS[@]}" || tests=$?
    step loader-bench 70 loader_bench || loader=$?
    step harness-gpu 90 harness_gpu || harness=$?
    step online-bench 60 online_bench || online=$?
    finish "$tests" "$loader" "$harness" "$online"
}

main() {
    case "${1:-}" in
        __run) shift; "$@" ;;        # run_step's child: one command or function under timeout
        1) call1 ;;
        2) call2 ;;
        3) call3 ;;
        *) echo "usage: bash benchmarks/gpu_run.sh 1|2|3   (the three device-tool calls of docs/gpu-machine.md, in order)" >&2
           return 2 ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
    exit $?
fi
