#!/usr/bin/env bash
# The GPU proof on an offline GPU host, from the folder `make gpu-bundle` wrote (this file is its run.sh):
#
#     bash gpu-bundle/run.sh [REPORT_DIR]        # default ./gpu-report; e.g. bash gpu-bundle/run.sh "$OUT"
#
# Installs the bundled wheels (array-api-compat, array-api-strict, xpnet) into a temp folder put on PYTHONPATH
# (nothing else on the host changes), points XPNET_DATA_DIR at the bundled MNIST and runs the staged check
# (src/scripts/gpu_check.py, at most 480 s in all); REPORT_DIR gets report.json, report.md and one log per
# stage, nothing else. Uses $GPU_PYTHON (default python3), which must have CuPy, NumPy and pytest.
# Exit: 0 every stage passed, 1 one failed, 2 it cannot run here (one line says what is missing; nothing is
# installed or written), 130/143 interrupted (the report says where).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
report=${1:-./gpu-report}
py=${GPU_PYTHON:-python3}

if ! command -v "$py" >/dev/null 2>&1; then
    echo "run.sh: cannot run here: no $py (set GPU_PYTHON to a Python with CuPy, NumPy and pytest)" >&2
    exit 2
fi
why=$("$py" - 2>/dev/null <<'EOF'
import importlib.util
import sys

absent = [m for m in ("numpy", "cupy", "pytest") if importlib.util.find_spec(m) is None]
if absent:
    print(f"{sys.executable} lacks {', '.join(absent)} (set GPU_PYTHON to a Python with CuPy, NumPy and pytest)")
    sys.exit(2)
try:
    import cupy

    count = cupy.cuda.runtime.getDeviceCount()
except Exception as exc:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    print(f"no usable CUDA device: {first}")
    sys.exit(2)
if count == 0:
    print("no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
    sys.exit(2)
EOF
)
status=$?
if [ "$status" -ne 0 ]; then
    echo "run.sh: cannot run here: ${why:-$py failed to start (exit $status)}" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/xpnet-gpu-bundle.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
if ! "$py" -m pip install --quiet --no-index --no-deps --no-compile --disable-pip-version-check \
        --target "$tmp/site" "$here"/wheels/*.whl; then
    echo "run.sh: installing the bundled wheels from $here/wheels failed" >&2
    exit 2
fi
mkdir -p "$report" && report=$(cd "$report" && pwd)
export PYTHONPATH="$tmp/site${PYTHONPATH:+:$PYTHONPATH}" XPNET_DATA_DIR="$here" PYTHONUNBUFFERED=1
export XDG_CACHE_HOME="$tmp/cache"  # decoded MNIST and the like: scratch, gone with the temp folder

cd "$here/src" || exit 2
"$py" scripts/gpu_check.py --out "$report" --work "$tmp/work" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
rc=0
wait "$pid" || rc=$?
while kill -0 "$pid" 2>/dev/null; do  # a signal ended `wait` early: wait for the check to write its report
    rc=0
    wait "$pid" || rc=$?
done
exit "$rc"
