#!/bin/bash
# The one prepared run for a lent GPU machine (issue 9): what needs a device, in one call.
#
#   here, once:  PYTHON=venv/bin/python benchmarks/device_check.sh --fetch   # wheels into .whl/
#   there:       benchmarks/device_check.sh             # the `device` tool's run, carry [".whl"]
#
# There (no network; Python 3.12 with numpy, scipy, pytest, hypothesis, cuda-bindings, JAX and
# torch already installed) it installs the carried wheels that the image lacks into /tmp/site,
# makes this checkout importable as irkit (its subpackages live beside it: pyproject's
# package-dir), prints the versions and the device, runs the GPU tests (the numeric ones run
# only where a device answers) and benchmarks/gpu.py, and leaves the logs and the table in $OUT
# (or /tmp/irkit-device-out). Each stage has a time limit, so a hang still returns the logs.
set -u -o pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl

if [ "${1:-}" = "--fetch" ]; then
    # irkit's own dependencies at this environment's versions (the image has numpy and scipy);
    # llvmlite's wheel is 57 of the 64 MiB a call may carry (with this checkout, about 63)
    mkdir -p "$WHEELS"
    grep -qx "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >> .git/info/exclude
    want=$("${PYTHON:-python3}" - <<'EOF'
import importlib.metadata as md
names = ["llvmlite", "xdsl", "lark", "immutabledict", "ordered-set"]  # the image has typing-extensions
print(" ".join(f"{n}=={md.version(n)}" for n in names))
EOF
)
    "${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" $want || exit 1
    du -ch "$WHEELS"/*.whl | tail -1
    exit 0
fi

OUT=${OUT:-/tmp/irkit-device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

# the carried wheels, except llvmlite where the image's is already the one irkit needs
wheels=()
for w in "$WHEELS"/*.whl; do
    [ -e "$w" ] || continue
    case "$(basename "$w")" in
        llvmlite-*) python3 -c "import llvmlite, sys; sys.exit(not llvmlite.__version__.startswith('0.50.'))" \
                        2>/dev/null && continue ;;
    esac
    wheels+=("$w")
done
if [ ${#wheels[@]} -gt 0 ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "${wheels[@]}" || exit 1
fi
for d in dialects passes backends tools; do [ -e "irkit/$d" ] || ln -s "../$d" "irkit/$d"; done
# the ptxas acceptance tests want CUDA's ptxas
command -v ptxas > /dev/null || for d in /usr/local/cuda*/bin; do
    [ -x "$d/ptxas" ] && export PATH="$PATH:$d" && break
done
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("numpy", "scipy", "llvmlite", "xdsl", "lark", "cuda.bindings", "jax", "torch"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"), module.__file__)
    except Exception as e:
        print(name, "missing:", type(e).__name__, e)
import irkit
from irkit.backends import cuda
drv = cuda.driver()
print("irkit sees", drv.name, drv.sm, "through", drv.launcher)
EOF
} 2>&1 | tee "$OUT/versions.txt" || exit 1

# here (2 cores, no device) these files take about 60 s; there the 232 numeric tests run
# too, spread over 8 processes where pytest-xdist is installed (the image has it)
parallel=()
python3 -c "import xdist" 2>/dev/null && parallel=(-n 8)
timeout 300 python3 -m pytest -q -p no:cacheprovider "${parallel[@]}" -rs tests/test_ptx.py \
    tests/test_ptx_reductions.py tests/test_ptx_host_scalars.py 2>&1 | tee "$OUT/tests.log" | tail -25
timeout 150 python3 benchmarks/gpu.py --output "$OUT/RESULTS-gpu.md" 2>&1 | tee "$OUT/gpu.log" | tail -30
