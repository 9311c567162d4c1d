#!/usr/bin/env bash
# One-shot GPU check for hotops: whoever has a CUDA machine for a few minutes runs
#
#     bash bench/gpu_check.sh            # or: OUT=/some/dir bash bench/gpu_check.sh
#
# and gets, flat under $OUT (default bench/results/gpu/), at most 3 + one PNG per op files:
#     gpu_check.log             everything below, with nvidia-smi and the versions
#     bench-gpu.json            pytest-benchmark results of the CUDA variants
#     report.md, bench-gpu-<op>.png   hotops/bench/report.py's tables of ratios and charts
#
# Steps, all inside GPU_CHECK_BUDGET seconds (default 360):
#   1. install: wheels from .whl/ if that folder exists, then `pip install -e .` (no deps,
#      no build isolation: nothing is fetched);
#   2. print nvidia-smi and the torch / cupy / numba versions;
#   3. the GPU tests on the real GPU: pytest tests -m "gpu or cudasim";
#   4. the CUDA benchmark variants: pytest hotops/bench -k cuda --benchmark-json;
#   5. the report, written even when tests or benchmarks failed; the charts are packed into
#      charts.tar when there are more than three (the device tool returns at most 8 files);
#   6. when $HOTOPS_DATA/sr/train291 exists (bench/prepare_gpu_data.py packs it small enough
#      to carry): VDSR trained on the GPU with the paper's schedule (9,960 iterations of
#      batch 64), shortened to the time left if need be, then its Set5/Set14 table; writes
#      $OUT/vdsr_gpu.pt and $OUT/vdsr_gpu.log. Give it time with GPU_CHECK_BUDGET (e.g. 560).
# Exit status: 0 when install, tests and benchmarks passed; 1 otherwise.
# Knobs: PYTHON (default python3), OUT, GPU_CHECK_BUDGET, HOTOPS_BENCH_BUDGET (seconds
# of timing per benchmark, default 1 here), HOTOPS_BENCH_THREADS (default 2),
# GPU_CHECK_SKIP_INSTALL=1 (dry runs in an environment that already has hotops installed).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
OUT=${OUT:-$REPO/bench/results/gpu}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || { echo "cannot create OUT=$OUT" >&2; exit 1; }
cd "$REPO" || exit 1

PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-360}
DEADLINE=$((SECONDS + BUDGET))
LOG="$OUT/gpu_check.log"
JSON="$OUT/bench-gpu.json"
export PYTHONUNBUFFERED=1
export HOTOPS_BENCH_BUDGET=${HOTOPS_BENCH_BUDGET:-1}
unset NUMBA_ENABLE_CUDASIM   # real GPU: the cudasim-marked tests run on the device here

rm -f "$LOG" "$JSON" "$OUT/report.md" "$OUT"/bench-gpu-*.png

left() { echo $((DEADLINE - SECONDS)); }
# run_limited SECONDS CMD...: SIGINT at the limit (pytest still writes its JSON), KILL 20 s later
run_limited() {
    local limit=$1; shift
    if ((limit < 5)); then echo "!! no time left for: $*"; return 124; fi
    timeout -s INT -k 20 "$limit" "$@"
}
section() { printf '\n==== [%4ds / %ds] %s\n' "$SECONDS" "$BUDGET" "$*"; }

main() {
    local status=0 rc

    section "install"
    if [[ ${GPU_CHECK_SKIP_INSTALL:-0} != 0 ]]; then
        echo "skipped (GPU_CHECK_SKIP_INSTALL)"
    else
        shopt -s nullglob
        local wheels=(.whl/*.whl)
        shopt -u nullglob
        if ((${#wheels[@]})); then
            run_limited 120 "$PY" -m pip install -q --no-index --no-deps "${wheels[@]}"
            rc=$?; echo "wheels (${#wheels[@]}): rc=$rc"; ((rc)) && status=1
        fi
        run_limited 120 "$PY" -m pip install -q --no-build-isolation --no-deps -e .
        rc=$?; echo "pip install -e .: rc=$rc"; ((rc)) && status=1
    fi

    section "machine"
    date -u
    nvidia-smi || echo "!! nvidia-smi failed"
    run_limited 60 "$PY" - <<'EOF'
import importlib, importlib.metadata as md, platform
print("python", platform.python_version(), platform.platform())
def ver(dist):
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "-"
for dist in ("torch", "numba", "numba-cuda", "cupy-cuda12x", "cupy-cuda13x", "numpy", "scipy",
             "pytest", "pytest-benchmark", "hotops"):
    print(f"{dist:18s}{ver(dist)}")
import torch
print("torch.version.cuda", torch.version.cuda, "| cuda available:", torch.cuda.is_available(),
      "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
try:
    import cupy
    print("cupy", cupy.__version__, "| CUDA runtime", cupy.cuda.runtime.runtimeGetVersion())
except Exception as err:
    print("cupy: unavailable:", err)
try:
    from numba import cuda
    print("numba.cuda available:", cuda.is_available())
    if cuda.is_available():
        cuda.detect()
except Exception as err:
    print("numba.cuda: unavailable:", err)
import hotops.kernels as hk
print("hotops.kernels.cuda_available():", hk.cuda_available())
EOF
    ((rc = $?)) && echo "!! version probe: rc=$rc"
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)'; then
        echo "!! torch sees no CUDA GPU here: the GPU tests and benchmarks below can only skip"
        status=1
    fi

    section "GPU tests: pytest tests -m 'gpu or cudasim'"
    local t_tests=$(( $(left) - 120 ))
    ((t_tests > 200)) && t_tests=200
    run_limited "$t_tests" "$PY" -m pytest tests -m "gpu or cudasim" -q -rfEs -p no:cacheprovider
    rc=$?
    case $rc in
        0) echo "GPU tests: passed" ;;
        5) echo "GPU tests: none collected (no test is marked gpu or cudasim)" ;;
        *) echo "!! GPU tests: FAILED (rc=$rc)"; status=1 ;;
    esac

    section "CUDA benchmarks: pytest hotops/bench -k cuda"
    run_limited $(( $(left) - 25 )) "$PY" -m pytest hotops/bench -c hotops/bench/pytest.ini -k cuda -q -rfEs -p no:cacheprovider \
        --benchmark-json="$JSON" --benchmark-sort=name \
        --benchmark-columns=min,median,iqr,rounds,iterations
    rc=$?
    case $rc in
        0) echo "CUDA benchmarks: done" ;;
        5) echo "CUDA benchmarks: none selected" ;;
        *) echo "!! CUDA benchmarks: FAILED or cut short (rc=$rc)"; status=1 ;;
    esac

    section "report"
    if [[ -s $JSON ]]; then
        run_limited 60 "$PY" -m hotops.bench.report "$JSON" --out "$OUT" --name report
        rc=$?; ((rc)) && { echo "!! report.py: rc=$rc"; status=1; }
    else
        echo "!! no benchmark JSON was written (every CUDA benchmark skipped, or pytest was killed)"
        printf '# GPU check\n\nNo benchmark results: pytest wrote no %s (every CUDA benchmark %s\n' \
            "$(basename "$JSON")" "skipped, or pytest was killed; see gpu_check.log)." >"$OUT/report.md"
        status=1
    fi
    [[ -f $OUT/report.md ]] && cat "$OUT/report.md"
    shopt -s nullglob
    local charts=("$OUT"/bench-gpu-*.png)
    shopt -u nullglob
    if ((${#charts[@]} > 3)); then
        tar -cf "$OUT/charts.tar" -C "$OUT" "${charts[@]##*/}" && rm -f "${charts[@]}"
        echo "charts: ${#charts[@]} PNGs packed into charts.tar"
    fi

    if [[ -n ${HOTOPS_DATA:-} && -d $HOTOPS_DATA/sr/train291 ]]; then
        section "VDSR training on the GPU (paper schedule, capped by the time left)"
        local t_train=$(( $(left) - 40 ))
        if ((t_train < 90)); then
            echo "!! only ${t_train}s left: VDSR training skipped (raise GPU_CHECK_BUDGET)"
        else
            # budget for the SGD steps: the rest goes to the patch pool and the final evaluation
            run_limited "$t_train" "$PY" -m hotops train vdsr --device cuda --iterations 9960 --batch 64 \
                --budget $(( t_train * 7 / 10 )) --threads 8 --out "$OUT/vdsr_gpu.pt" \
                --state /tmp/vdsr_gpu.state.pt --no-progress 2>&1 | tee "$OUT/vdsr_gpu.log"
            rc=${PIPESTATUS[0]}
            ((rc)) && { echo "!! VDSR training: rc=$rc"; status=1; }
        fi
    else
        echo "(no \$HOTOPS_DATA/sr/train291: VDSR GPU training not run; see bench/prepare_gpu_data.py)"
    fi

    section "done: $([[ $status == 0 ]] && echo PASSED || echo FAILED); files in $OUT:"
    ls -l "$OUT"
    return "$status"
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
