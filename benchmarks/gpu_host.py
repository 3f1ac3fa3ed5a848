"""The host side of irkit's GPU training step, measured without a GPU:

    python benchmarks/gpu_host.py --fake

The MLP 784-500-10 SGD step at batch 128 (parameters resident, inputs on the device, as
benchmarks/gpu.py runs it) against the test suite's fake driver (tests/fake_libcuda.c, built
here with `cc`: its launches and copies do nothing), so the time per step is irkit's own: the
call's Python, the host code, the runtime's callbacks. On a GPU the driver's own time is on
top (a launch costs a few microseconds of CPU there). --fake launches through ctypes (the
other launchers find libcuda.so.1 on the loader's path, read at start-up: run them with
LD_LIBRARY_PATH set to a directory holding the fake). Without --fake: the real device.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def build_fake() -> None:
    """Build the fake libcuda.so.1 and point irkit's ctypes launcher at it."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("--fake needs a C compiler (cc) to build tests/fake_libcuda.c")
    lib = os.path.join(tempfile.mkdtemp(prefix="irkit-fake-cuda-"), "libcuda.so.1")
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wl,-soname,libcuda.so.1", "-o", lib,
                    os.path.join(HERE, "..", "tests", "fake_libcuda.c")], check=True)
    os.environ.update(IRKIT_CUDA_DRIVER="ctypes", IRKIT_LIBCUDA=lib, IRKIT_CUBLAS="0")  # no cuBLAS on fake memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fake", action="store_true", help="against tests/fake_libcuda.c (no GPU needed)")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    if args.fake:
        build_fake()

    import irkit as ik
    import models
    from irkit.backends import cuda
    from irkit.backends.dlpack import DeviceArray

    params = [p.astype(np.float32) for p in models.mlp_params((784, 500, 10), seed=10)]
    X, y = models.minibatch(128, 784, 10, seed=9)
    inputs, loss, updates = models._irkit_training_graph(params, 0.01)
    step = ik.function(inputs, loss, updates=updates, target="cuda")
    dX, dy = DeviceArray.from_numpy(X.astype(np.float32)), DeviceArray.from_numpy(y)
    step(dX, dy)  # loads the program, fills the memory pool
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(args.calls):
            step(dX, dy)
        best = min(best, (time.perf_counter() - t0) / args.calls)
    drv = cuda.driver()
    kernels = len(step._cuda.program.kernels)
    print(f"MLP 784-500-10 SGD step, batch 128, {kernels} kernels: {best * 1e6:.0f} us per step "
          f"({drv.name}, {drv.launcher}, best of 5 x {args.calls})")


if __name__ == "__main__":
    main()
