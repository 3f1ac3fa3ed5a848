"""The GPU backend without a GPU: every op's kernels assemble with ptxas (sm_80, sm_90), the
mapping shows in the PTX text, the libdevice-free math is accurate, and the launch path runs
against a fake libcuda.so.1. Kernels run for real only where a CUDA device is present."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import irkit as ik
from irkit.backends import ptx

from test_gradients_ops import ALL_CASES, _inputs, _points, _rng_for

HERE = os.path.dirname(__file__)
PTXAS = shutil.which("ptxas")
need_ptxas = pytest.mark.skipif(PTXAS is None and not os.environ.get("IRKIT_CI"),
                                reason="ptxas (CUDA toolkit) is not on the PATH")


def assemble(text: str, tmp_path, archs=("sm_80", "sm_90")) -> None:
    path = tmp_path / "k.ptx"
    path.write_text(text)
    for arch in archs:
        p = subprocess.run([PTXAS or "ptxas", f"-arch={arch}", str(path), "-o", os.devnull],
                           capture_output=True, text=True)
        assert p.returncode == 0, f"ptxas -arch={arch} rejected the PTX:\n{p.stderr[:2000]}"


# -- every op, its derivatives, fused graphs and scan bodies -------------------------------------

CHUNK = 12
CHUNKS = [ALL_CASES[k:k + CHUNK] for k in range(0, len(ALL_CASES), CHUNK)]


@need_ptxas
@pytest.mark.parametrize("cases", CHUNKS, ids=[f"{c[0].id}..{c[-1].id}" for c in CHUNKS])
def test_every_op_and_gradient_assembles(cases, tmp_path):
    inputs, outputs = [], []
    for c in cases:
        xs = _inputs(_points(c, _rng_for(c.id)))
        for x in xs:
            x.name = f"{c.id}_{x.name}"
        out = c.fn(*xs)
        floats = [x for x in xs if x.dtype.kind == "f"]
        inputs += xs
        outputs.append(out)
        if floats and out.dtype.kind == "f":
            outputs += ik.grad(ik.sum(out * out), floats, disconnected_inputs="ignore")
    f = ik.function(inputs, outputs, name="ops")
    text = f.ir("ptx")
    assert ".entry" in text
    assert "llvm." not in text and "__nv_" not in text  # every intrinsic selected, libdevice inlined
    assemble(text, tmp_path)


# -- the mapping, in the text ---------------------------------------------------------------------

def test_elementwise_kernel_is_a_grid_stride_loop():
    x = ik.vector("x", "float32")
    text = ik.function([x], ik.exp(x) * 2 + 1).ir("ptx")
    assert text.splitlines()[0].startswith("//")
    assert ".version 7.0" in text and ".target sm_80" in text
    kernel = text[text.index(".entry main_k1("):]
    for reg in ("%ctaid.x", "%ntid.x", "%tid.x", "%nctaid.x"):  # start = ctaid*ntid + tid, stride = ntid*nctaid
        assert reg in kernel
    assert "ld.global" in kernel and "st.global" in kernel
    assert "call" not in kernel  # __nv_expf inlined (O3)
    assert "ex2.approx" in kernel


def test_float64_math_uses_libdevice_not_approximations():
    x = ik.vector("x", "float64")
    text = ik.function([x], ik.log(x)).ir("ptx")
    assert "lg2.approx" not in text and ".f64" in text and "call" not in text.split(".entry main_k1(")[1]


def test_product_is_a_tiled_shared_memory_kernel():
    a, b = ik.matrix("a", "float32"), ik.matrix("b", "float32")
    text = ik.function([a, b], ik.dot(a, b)).ir("ptx")
    gemm = text[text.index(".entry irkit_gemm_f32("):]
    assert ".shared" in text and re.search(r"bar\.sync\s+0;", gemm)
    assert "fma.rn.f32" in gemm
    assert "main_s" not in text  # no product in one thread: GPU_LOOPS never inlines small products


def test_failed_check_in_a_kernel_sets_the_error_flag():
    x, i = ik.vector("x", "float32"), ik.ivector("i")
    text = ik.function([x, i], x[i]).ir("ptx")
    assert ".visible .global .align 4 .u32 irkit_error" in text
    # the first failed check wins: compare-and-swap from 0
    assert re.search(r"atom\.[\w.]*cas\.b32\s+%r\d+, \[irkit_error\], 0,", text)


def test_reduction_result_comes_back_through_scratch():
    x = ik.matrix("x", "float32")
    program = ptx.translate(ik.function([x], ik.sum(x) + 1)._gpu_loops())
    kinds = {k.kind for k in program.kernels}
    assert "serial" in kinds or "parallel" in kinds
    host = str(program.host)
    assert "irkit_cuLaunchKernel" in host and "irkit_cuda_alloc" in host
    assert "@irkit_gemm" not in host and "sgemm" not in host  # nothing of the CPU's BLAS on the host


@need_ptxas
def test_irkit_opt_emits_ptx(tmp_path):
    example = os.path.join(HERE, "..", "examples", "mlp.irk")
    p = subprocess.run([sys.executable, "-m", "irkit.tools.irkit_opt", example, "-p", "default", "--emit=ptx"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert re.search(r"\.visible \.entry step_k\d+\(", p.stdout)
    assemble(p.stdout, tmp_path)


@need_ptxas
def test_a_graph_with_scan_assembles(tmp_path):
    x = ik.matrix("x", "float32")
    h0 = ik.vector("h0", "float32")
    W = ik.shared(np.eye(3, dtype=np.float32), "W")
    hs, _ = ik.scan(lambda xt, h: ik.tanh(ik.dot(h, W) + xt), sequences=[x], outputs_info=[h0])
    cost = ik.sum(hs[-1])
    f = ik.function([x, h0], [cost, *ik.grad(cost, [W, h0])])
    assemble(f.ir("ptx"), tmp_path)


@need_ptxas
@pytest.mark.parametrize("sm", sorted(ptx.KNOWN_SMS, key=lambda s: int(s[3:])))
def test_each_sm_a_device_may_report_gets_ptx_its_ptxas_accepts(sm, tmp_path):
    """Kernels are built for the device's own SM where it is one LLVM knows: elementwise
    math (libdevice), full and row reductions (shuffles, atomics), a product, float64."""
    x, y = ik.matrix("x", "float32"), ik.vector("y", "float64")
    outs = [ik.tanh(x) * ik.exp(-x), ik.sum(x), ik.max(x, axis=1), x @ x.T, ik.log1p(y * y), ik.sum(y)]
    program = ptx.translate(ik.function([x, y], outs, name="sms")._gpu_loops())
    text = ptx.emit_ptx(program.device, sm)
    assert f".target {sm}" in text
    assemble(text, tmp_path, archs=(sm,))


def test_ptx_comes_from_the_compile_cache_the_second_time(tmp_path):
    """LLVM's NVPTX code generation is most of a GPU compile: a second process compiling the
    same function reads its PTX from the cache; another SM is another entry."""
    code = textwrap.dedent("""
        import sys
        import irkit as ik
        from irkit.backends import ptx
        if sys.argv[1] == "cached":
            def no_codegen(*args):
                raise AssertionError("PTX generated again")
            ptx._emit = no_codegen
        x = ik.vector("x", "float32")
        f = ik.function([x], ik.exp(x) + 1, target="cuda")
        print(f.ir("ptx").count(".target sm_80"), len(ptx.emit_ptx(ptx.translate(f._gpu_loops()).device, "sm_90")))
    """)
    env = dict(os.environ, IRKIT_CACHE_DIR=str(tmp_path / "cache"))
    first = subprocess.run([sys.executable, "-c", code, "fresh"], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(list((tmp_path / "cache").rglob("*.ptx"))) == 2  # sm_80 and sm_90
    second = subprocess.run([sys.executable, "-c", code, "cached"], capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout == first.stdout and first.stdout.startswith("1 ")


# -- transcendentals without libdevice ---------------------------------------------------------

def _ulp_error(got: np.ndarray, want: np.ndarray) -> float:
    want32 = want.astype(np.float32)
    ulp = np.spacing(np.abs(want32)).astype(np.float64)
    ok = np.isfinite(want32)
    return float(np.max(np.abs(got[ok].astype(np.float64) - want[ok]) / ulp[ok]))


@pytest.mark.parametrize("name,ref,lo,hi,bound", [
    ("__nv_expf", np.exp, -87.0, 88.0, 1.5),
    ("__nv_expm1f", np.expm1, -5.0, 5.0, 2.0),
    ("__nv_logf", np.log, 1e-30, 1e30, 2.0),
    ("__nv_log1pf", np.log1p, -0.9, 10.0, 3.0),
    ("__nv_tanhf", np.tanh, -10.0, 10.0, 3.0),
    ("__nv_sinhf", np.sinh, -10.0, 10.0, 3.0),
    ("__nv_coshf", np.cosh, -10.0, 10.0, 2.0),
])
def test_fallback_math_is_accurate(name, ref, lo, hi, bound):
    """The forms used when libdevice is absent, run on the CPU with an exact exp2: the error
    of the reduction and polynomials alone (the GPU's ex2.approx adds about 2 ulp)."""
    from irkit.backends import fallback, jit
    m = fallback.module([name], "", "")
    compiled = jit.compile_ir(str(m), level=0)
    fn = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_float)(compiled.address(name))
    rng = np.random.default_rng(0)
    if lo > 0:
        xs = np.exp(rng.uniform(np.log(lo), np.log(hi), 3000)).astype(np.float32)
    else:
        xs = rng.uniform(lo, hi, 3000).astype(np.float32)
    xs = np.concatenate([xs, np.float32([1e-6, -1e-6, 0.25, 1.0, 0.5, -0.5])]) if lo < 0 else xs
    got = np.array([fn(float(v)) for v in xs], dtype=np.float32)
    err = _ulp_error(got, ref(xs.astype(np.float64)))
    assert err <= bound, f"{name}: {err:.2f} ulp"
    special = {"__nv_expf": [(np.inf, np.inf), (-np.inf, 0.0), (-200.0, 0.0), (200.0, np.inf)],
               "__nv_logf": [(0.0, -np.inf), (-1.0, np.nan), (np.inf, np.inf), (1.0, 0.0), (1e-40, np.log(1e-40))]}
    for x, want in special.get(name, []):
        got1 = fn(x)
        assert (np.isnan(got1) and np.isnan(want)) or np.isclose(got1, want, rtol=1e-5), (name, x, got1)


def test_without_libdevice_other_functions_say_what_to_install():
    code = textwrap.dedent("""
        import warnings, irkit as ik
        x = ik.vector("x", "float32")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            text = ik.function([x], ik.exp(x)).ir("ptx")
        assert "ex2.approx" in text and any("libdevice not found" in str(m.message) for m in w)
        try:
            ik.function([x], ik.erf(x)).ir("ptx")
        except ik.CompileError as e:
            assert "erf" in str(e) and "libdevice" in str(e) and "pip install" in str(e), e
        else:
            raise AssertionError("erf compiled without libdevice")
        print("ok")
    """)
    env = dict(os.environ, IRKIT_LIBDEVICE="none")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr[-3000:]


# -- the launch path, against a fake driver --------------------------------------------------------

@pytest.fixture(scope="module")
def fake_libcuda(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the fake libcuda.so.1")
    out = tmp_path_factory.mktemp("fakecuda") / "libcuda.so.1"
    # the real driver's soname: found by it when another library (cuda-bindings) loaded it
    subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(out),
                    os.path.join(HERE, "fake_libcuda.c")], check=True)
    return str(out)


@pytest.fixture(scope="module")
def fake_libcublas(fake_libcuda):
    """A fake libcublas next to the fake driver: its gemm computes on the fake device memory
    (host memory), so products on target="cuda" give real numbers under the fake driver."""
    cc = shutil.which("cc") or shutil.which("gcc")
    out = os.path.join(os.path.dirname(fake_libcuda), "libcublas.so")
    subprocess.run([cc, "-shared", "-fPIC", "-o", out, os.path.join(HERE, "fake_libcublas.c")], check=True)
    return out


LAUNCHERS = ["ctypes", "cuda-bindings", "pycuda"]


def _pycuda_driver_module() -> str:
    """The path of pycuda's compiled driver module, without importing it (it links libcuda)."""
    import importlib.util
    spec = importlib.util.find_spec("pycuda")
    if spec is None:
        assert not os.environ.get("IRKIT_CI_PYCUDA"), ".ci/run built pycuda, but the tests do not find it"
        pytest.skip("pycuda not installed (a source build against a CUDA toolkit; .ci/run builds it where "
                    "the toolkit's headers are)")
    found = [f for d in spec.submodule_search_locations for f in os.listdir(d) if f.startswith("_driver.")]
    assert found, f"pycuda at {spec.submodule_search_locations} has no _driver extension"
    return os.path.join(spec.submodule_search_locations[0], found[0])


def _fake_for_pycuda(lib: str) -> str:
    """The fake driver for pycuda, whose extension binds every driver function it names when
    it loads: the fake's own, and for the rest stubs that answer CUDA_ERROR_NOT_SUPPORTED."""
    out = os.path.join(os.path.dirname(lib), "pycuda", "libcuda.so.1")
    if os.path.exists(out):
        return out
    nm = shutil.which("nm")
    assert nm, "nm (binutils) lists the driver functions pycuda's extension needs"
    def symbols(path, *flags):
        listing = subprocess.run([nm, "-D", *flags, path], capture_output=True, text=True, check=True).stdout
        return {line.split()[-1] for line in listing.splitlines() if line.split()[-1].startswith("cu")}
    missing = symbols(_pycuda_driver_module(), "--undefined-only") - symbols(lib, "--defined-only")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    stubs = os.path.join(os.path.dirname(out), "stubs.c")
    with open(stubs, "w") as f:
        f.writelines(f"int {name}(void) {{ return 801; }}\n" for name in sorted(missing))
    cc = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", out, os.path.join(HERE, "fake_libcuda.c"),
                    stubs], check=True)
    return out


def _run_with(lib: str, code: str, tmp_path, launcher: str = "ctypes", **env) -> tuple[str, list[str]]:
    """Run `code` in a new process whose CUDA driver is the fake `lib`, reached through the
    ctypes launcher (IRKIT_LIBCUDA names the file), cuda-bindings or pycuda (which find
    libcuda.so.1 on the loader's path); the output and the fake driver's log."""
    log = tmp_path / "cuda.log"
    log.write_text("")
    full = dict(os.environ, FAKE_CUDA_LOG=str(log), IRKIT_CUDA_DRIVER=launcher)
    full.update(env)
    # never a real cuBLAS (from a wheel here) on the fake driver; the fake one where it is named
    full["IRKIT_CUBLAS"] = env.get("IRKIT_CUBLAS", "1" if "IRKIT_LIBCUBLAS" in env else "0")
    if launcher == "ctypes":
        full["IRKIT_LIBCUDA"] = lib
    else:
        if launcher == "pycuda":
            lib = _fake_for_pycuda(lib) if os.path.exists(lib) else lib
        else:
            pytest.importorskip("cuda.bindings.driver", reason="cuda-bindings not installed (pip install irkit[cuda])")
        full.pop("IRKIT_LIBCUDA", None)
        full["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [os.path.dirname(lib), full.get("LD_LIBRARY_PATH")]))
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout, log.read_text().splitlines()


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_launches_are_packed_as_the_kernels_declare(fake_libcuda, tmp_path, launcher):
    out, log = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        x = ik.vector("x", "float32")
        f = ik.function([x], x + 1, target="cuda")
        y = f(np.arange(7, dtype=np.float32))
        from irkit.backends import cuda
        print(y.shape, y.dtype, cuda.driver().launcher)
        import os
        open(os.environ["FAKE_CUDA_LOG"], "a").write("mark second\\n")
        f(np.arange(7, dtype=np.float32))
        open(os.environ["FAKE_CUDA_LOG"], "a").write("mark end\\n")
    """, tmp_path, launcher)
    assert out.strip() == f"(7,) float32 {launcher}"
    uploads = [int(line.split()[2], 16) for line in log if line.startswith("htod 28")]  # the input's 7 float32
    x_ptr = uploads[0]
    launch = next(line.split() for line in log if line.startswith("launch main_k"))
    name, gx, gy, bx, by, *params = launch[1:]
    assert (gx, gy, bx, by) == ("1", "1", "256", "1")
    params = [int(p) for p in params]
    assert x_ptr in params and params[-3:] == [0, 7, 1]  # x, then lb, ub, step
    # the call's buffers go back to the pool: the second call allocates nothing, frees nothing
    second = log[log.index("mark second"):log.index("mark end")]
    assert len(uploads) == 2 and not [line for line in second if line.startswith(("alloc", "free"))], log
    assert uploads[1] == x_ptr


def test_without_the_drivers_own_cuLaunchKernel_launches_go_through_the_launcher(fake_libcuda, tmp_path):
    """cuda-bindings where its libcuda is not found under the driver's soname: the host code
    calls a function of cuLaunchKernel's signature that launches through the bindings."""
    out, log = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        from irkit.backends import cuda
        cuda.BindingsDriver.launch_address = lambda self: None
        x = ik.vector("x", "float32")
        f = ik.function([x], ik.exp(x), target="cuda")
        print(f(np.ones(5, np.float32)).shape)
        import os
        os.environ["FAKE_CUDA_FAIL_LAUNCH"] = "1"
        try:
            f(np.ones(5, np.float32))
        except ik.DeviceError as e:
            print(*e.__notes__)
    """, tmp_path, "cuda-bindings")
    assert out.splitlines()[0] == "(5,)" and "cuLaunchKernel: CUDA_ERROR_LAUNCH_FAILED" in out, out
    assert [ln.split()[-3:] for ln in log if ln.startswith("launch main_k1")] == [["0", "5", "1"]]


def test_kernels_are_built_for_the_devices_own_sm_once_it_is_known(fake_libcuda, tmp_path):
    """Compiled before any call, a function's PTX is for sm_80 (which the driver compiles for
    its device: building it again would cost a second code generation); a function compiled
    once a call has opened the driver (the fake device is 9.0) is built for sm_90."""
    out, log = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        x = ik.vector("x", "float32")
        f = ik.function([x], ik.exp(x), target="cuda")
        print(f.ir("ptx").count(".target sm_80"))
        f(np.ones(3, np.float32))
        print(f.ir("ptx").count(".target sm_80"))
        g = ik.function([x], ik.log(x), target="cuda")
        print(g.ir("ptx").count(".target sm_90"))  # before its first call
        g(np.ones(3, np.float32))
    """, tmp_path)
    assert out.split() == ["1", "1", "1"], out
    assert [ln.split()[2] for ln in log if ln.startswith("load")] == ["sm_80", "sm_90"], log


def test_a_gpu_function_compiled_before_loads_from_the_cache_with_no_pass(fake_libcuda, tmp_path):
    """The compile cache keeps a GPU function's PTX, host code, kernels and messages under its
    graph: a second process runs no pass, and its calls launch the same kernels the same way."""
    code = """
        import sys
        import numpy as np, irkit as ik
        if sys.argv[1:] == ["cached"]:
            def no_passes(*args):
                raise AssertionError("a pass ran")
            sys.modules["irkit.function"].run_passes = no_passes
        x, y = ik.matrix("x", "float32"), ik.vector("y", "float32")
        f = ik.function([x, y], [ik.tanh(x) * 2 + y, ik.sum(x, axis=1)], target="cuda")
        f(np.ones((3, 4), np.float32), np.ones(4, np.float32))
        print(len(f.ir("ptx")), f.ir("llvm").count("irkit_cuLaunchKernel"), sorted(f.timings)[:2])
        try:
            f(np.ones((3, 4), np.float32), np.ones(5, np.float32))  # a check of the host code: its message
        except ik.ShapeError as e:
            print("ShapeError", str(e).splitlines()[0])
    """
    cache = str(tmp_path / "cache")
    first, log1 = _run_with(fake_libcuda, code, tmp_path, IRKIT_CACHE_DIR=cache)
    second, log2 = _run_with(fake_libcuda, code.replace("sys.argv[1:]", '["cached"]'), tmp_path,
                             IRKIT_CACHE_DIR=cache)
    assert first.splitlines()[0].split()[:2] == second.splitlines()[0].split()[:2], (first, second)
    assert "'cache'" in second and second.splitlines()[1].startswith("ShapeError"), second
    assert first.splitlines()[1] == second.splitlines()[1]
    launches = [[ln.split()[1] for ln in log if ln.startswith("launch")] for log in (log1, log2)]
    assert launches[0] == launches[1] and launches[0], launches


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_shared_variables_stay_on_the_device(fake_libcuda, tmp_path, launcher):
    out, log = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        W = ik.shared(np.ones(1000, np.float32), "W")
        x = ik.vector("x", "float32")
        f = ik.function([x], ik.sum(x), updates=[(W, W * 2)], target="cuda")
        import os
        for k in range(3):
            if k == 1:
                open(os.environ["FAKE_CUDA_LOG"], "a").write("mark steady\\n")
            f(np.ones(4, np.float32))
        open(os.environ["FAKE_CUDA_LOG"], "a").write("mark read\\n")
        print("read")
        print(W.get_value().shape, W.get_value(borrow=True).flags.writeable)
        g = ik.function([], W.sum())  # a CPU function reads the host copy
        print(type(g()).__name__)
        W.set_value(np.zeros(1000, np.float32))  # a host value: uploaded at the next call
        f(np.ones(4, np.float32))
    """, tmp_path, launcher)
    assert out.split("\n")[1:3] == ["(1000,) False", "ndarray"], out
    # the first call uploads W and makes its new value; later calls take their buffers from
    # the pool (the value before last, the input's): no allocation, no free, no copy of W
    steady = log[log.index("mark steady") + 1:log.index("mark read")]
    assert not [line for line in steady if line.startswith(("alloc", "free", "htod 4000", "dtoh 4000"))], steady
    assert len([line for line in log if line.startswith("alloc 4096")]) <= 3, log
    # new values stay on the device: W is read back once, when get_value asks (twice: cached)
    assert len([line for line in log if line.startswith("dtoh 4000")]) == 1, log
    assert len([line for line in log if line.startswith("htod 4000")]) == 2, log


class _CountingDriver:
    """A launcher's memory calls, counted, with a device of `capacity` bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.used, self.next, self.live = capacity, 0, 0x1000, {}
        self.allocs = self.frees = 0

    def alloc(self, nbytes: int) -> int:
        if self.used + nbytes > self.capacity:
            raise ik.DeviceError("cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY")
        self.allocs += 1
        self.used += nbytes
        self.next += nbytes
        self.live[self.next] = nbytes
        return self.next

    def free(self, ptr: int) -> None:
        self.frees += 1
        self.used -= self.live.pop(ptr)


def test_the_device_memory_pool_reuses_by_size_class_and_releases_when_memory_runs_out(monkeypatch):
    from irkit.backends.cuda import Pool
    assert [Pool.size_class(n) for n in (1, 512, 513, 1 << 20, (1 << 20) + 1, 3 << 20)] == \
        [512, 512, 1024, 1 << 20, (1 << 20) + (1 << 17), 3 << 20]
    drv = _CountingDriver(capacity=8192)
    pool = Pool(drv)
    a = pool.alloc(4000)
    pool.free(a)
    assert pool.alloc(3900) == a and drv.allocs == 1  # same class (4096): reused, no driver call
    b = pool.alloc(2000)
    pool.free(b)
    pool.free(a)
    # 6000 bytes do not fit beside the 6144 held: the held buffers go back, then it fits
    c = pool.alloc(6000)
    assert drv.frees == 2 and pool.held_bytes == 0 and drv.used == 6144
    with pytest.raises(ik.DeviceError, match="OUT_OF_MEMORY"):  # nothing held: the error stands
        pool.alloc(4000)
    pool.discard(c)  # exported buffers go back to the driver at once
    assert drv.used == 0 and pool.size_of == {}
    pool.free(pool.alloc(100))
    pool.empty()
    assert drv.used == 0 and drv.allocs == drv.frees
    monkeypatch.setenv("IRKIT_CUDA_POOL", "0")
    off = Pool(drv)
    off.free(off.alloc(100))
    assert drv.used == 0 and off.held_bytes == 0


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_launch_the_driver_refuses_is_a_device_error_naming_kernel_and_error(fake_libcuda, tmp_path, launcher):
    """The host code calls cuLaunchKernel itself (for every launcher); a
    refused launch stops the call with the kernel's name and the driver's error name, and
    the next call is clean."""
    out, _ = _run_with(fake_libcuda, """
        import os
        import numpy as np, irkit as ik
        from irkit.backends import cuda
        x = ik.vector("x", "float32")
        f = ik.function([x], ik.exp(x), target="cuda")
        os.environ["FAKE_CUDA_FAIL_LAUNCH"] = "1"
        try:
            f(np.ones(3, np.float32))
        except ik.DeviceError as e:
            print(type(e).__name__, e, *getattr(e, "__notes__", []), sep=" | ")
        del os.environ["FAKE_CUDA_FAIL_LAUNCH"]
        print(f(np.ones(3, np.float32)).shape)
    """, tmp_path, launcher)
    first, second = out.splitlines()
    assert first.startswith("DeviceError | the launch of kernel main_k1 failed") and \
        "CUDA_ERROR_LAUNCH_FAILED" in first, out
    assert second == "(3,)", out


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_no_device_or_no_driver_is_a_device_error_at_the_first_call(fake_libcuda, tmp_path, launcher):
    code = """
        import numpy as np, irkit as ik
        x = ik.vector("x", "float32")
        f = ik.function([x], x * 2, target="cuda")    # compiles without a device
        assert ".entry main_k1(" in f.ir("ptx")
        try:
            f(np.ones(3, np.float32))
        except ik.DeviceError as e:
            print("DeviceError:", e)
    """
    out, _ = _run_with(fake_libcuda, code, tmp_path, launcher, FAKE_CUDA_DEVICES="0")
    assert "DeviceError: the CUDA driver sees no GPU" in out
    out, _ = _run_with(str(tmp_path / "missing" / "libcuda.so.1"), code, tmp_path, launcher)
    assert "DeviceError: no CUDA driver" in out and "NVIDIA driver" in out


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_device_arrays_in_and_out_by_dlpack(fake_libcuda, tmp_path, launcher):
    """A CUDA tensor given by DLPack is used in place (no upload), the outputs stay on the
    device as DeviceArrays (no readback) that export themselves by DLPack and free their
    buffer when dropped; a wrong dtype, rank or layout is named."""
    out, log = _run_with(fake_libcuda, """
        import ctypes, gc
        import numpy as np, irkit as ik
        from irkit.backends import dlpack
        from irkit.backends.dlpack import DeviceArray
        x = ik.matrix("x", "float32")
        f = ik.function([x], [x * 2, ik.sum(x, axis=1)], target="cuda")
        d = DeviceArray.from_numpy(np.ones((3, 5), np.float32))
        print("input", hex(d.ptr))
        y, s = f(d)
        print(type(y).__name__, y.shape, y.dtype, s.shape, y.__dlpack_device__(), y.ptr != d.ptr)
        # the capsule protocol, as a consumer sees it
        cap = y.__dlpack__()
        view = dlpack.device_view(cap_holder := type("P", (), {"__dlpack__": lambda self, stream=None: cap})(),
                                  "y", np.dtype(np.float32), (None, None))
        print("view", view.ptr == y.ptr, view.shape)
        view.release()
        print("exported", len(dlpack._exported))
        from irkit.backends import cuda
        held = lambda: [p for ptrs in cuda.pool().held.values() for p in ptrs]
        print("freed", hex(s.ptr), hex(y.ptr))
        s_ptr, y_ptr = s.ptr, y.ptr
        del s, y, cap, view, cap_holder
        gc.collect()
        print("pooled", s_ptr in held(), y_ptr in held())
        class Strided:  # a column of a (5, 3) buffer: not C-contiguous
            def __dlpack_device__(self): return (2, 0)
            def __dlpack__(self, stream=None):
                shape, strides = (ctypes.c_int64 * 2)(5, 1), (ctypes.c_int64 * 2)(3, 3)
                m = dlpack.DLManagedTensor()
                m.dl_tensor = dlpack.DLTensor(d.ptr, dlpack.DLDevice(2, 0), 2, dlpack.DLDataType(2, 32, 1),
                                              shape, strides, 0)
                self.keep = (m, shape, strides)
                return ctypes.pythonapi.PyCapsule_New(ctypes.addressof(m), b"dltensor", None)
        ctypes.pythonapi.PyCapsule_New.restype = ctypes.py_object
        ctypes.pythonapi.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        for bad in (DeviceArray.from_numpy(np.ones((3, 5))), DeviceArray.from_numpy(np.ones(3, np.float32)),
                    Strided()):
            try:
                f(bad)
            except (ik.DTypeError, ik.ShapeError) as e:
                print(type(e).__name__, str(e).split(":")[1].strip())
        print(np.asarray(f(np.ones((2, 2), np.float32))[0]).shape, type(f(np.ones((2, 2), np.float32))[0]).__name__)
        import os
        open(os.environ["FAKE_CUDA_LOG"], "a").write("mark exit\\n")  # pycuda frees all it made at exit
    """, tmp_path, launcher)
    log = log[:log.index("mark exit")]
    lines = out.splitlines()
    assert lines[1] == "DeviceArray (3, 5) float32 (3,) (2, 0) True", out
    assert lines[2] == "view True (3, 5)" and lines[3] == "exported 0", out
    # a dropped DeviceArray's buffer goes back to the pool; one exported by DLPack goes back
    # to the driver (its consumer's stream may still read it)
    assert lines[5] == "pooled True False", out
    assert lines[6:9] == ["DTypeError the device array has dtype float64, the input is float32 (cast it on its "
                          "device first)", "ShapeError the device array has rank 1 (shape (3,)), the input 2",
                          "ShapeError the device array is not C-contiguous (strides (3, 3) in elements); make it "
                          "contiguous on its device first"], out
    assert lines[9] == "(2, 2) ndarray", out  # numpy in, numpy out
    input_ptr, freed, exported = (int(lines[0].split()[1], 16), *(int(w, 16) for w in lines[4].split()[1:]))
    # the input's 60 bytes uploaded once (by from_numpy), not by the call; no result read back
    assert len([ln for ln in log if ln.startswith("htod 60")]) == 1, log
    assert not [ln for ln in log if ln.startswith(("dtoh 60", "dtoh 12"))], log
    assert f"free {hex(exported)}" in log and f"free {hex(freed)}" not in log
    last_launch = max(k for k, ln in enumerate(log) if ln.startswith("launch"))
    assert all(k > last_launch for k, ln in enumerate(log) if ln == f"free {hex(input_ptr)}")  # not the caller's


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_device_arrays_in_by_the_cuda_array_interface(fake_libcuda, tmp_path, launcher):
    """A `__cuda_array_interface__` producer (pycuda's GPUArray, numba's device arrays) is
    used in place like a DLPack one; DeviceArrays export the interface; bad layouts named."""
    out, log = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        from irkit.backends.dlpack import DeviceArray
        x = ik.matrix("x", "float32")
        f = ik.function([x], x + 1, target="cuda")
        d = DeviceArray.from_numpy(np.ones((3, 5), np.float32))
        class Producer:
            def __init__(self, **changes):
                self.__cuda_array_interface__ = dict(d.__cuda_array_interface__, **changes)
        print(d.__cuda_array_interface__ == {"shape": (3, 5), "typestr": "<f4", "data": (d.ptr, False),
                                             "strides": None, "version": 3, "stream": None})
        y = f(Producer())
        print(type(y).__name__, y.shape, y.__cuda_array_interface__["data"][0] != d.ptr)
        print(type(f(Producer(strides=(20, 4)))).__name__)  # C-contiguous strides, in bytes
        for bad in (dict(strides=(4, 12)), dict(typestr="<f8"), dict(shape=(15,)), dict(mask=(1, False)),
                    dict(strides=(20, 3))):
            try:
                f(Producer(**bad))
            except (ik.DTypeError, ik.ShapeError) as e:
                print(type(e).__name__, str(e).split(":", 1)[1].strip())
        f(Producer(stream=7))  # work pending on the producer's stream: waited for
    """, tmp_path, launcher)
    lines = out.splitlines()
    assert lines[:3] == ["True", "DeviceArray (3, 5) True", "DeviceArray"], out
    assert lines[3:] == [
        "ShapeError the device array is not C-contiguous (strides (1, 3) in elements); make it contiguous on its "
        "device first",
        "DTypeError the device array has dtype float64, the input is float32 (cast it on its device first)",
        "ShapeError the device array has rank 1 (shape (15,)), the input 2",
        "ShapeError the device array has a mask; irkit takes unmasked arrays",
        "ShapeError the device array's strides (20, 3) are not whole elements"], out
    assert len([ln for ln in log if ln.startswith("htod 60")]) == 1, log  # from_numpy's, not the calls'


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_calls_from_any_thread_run_in_irkits_context_and_leave_the_threads_own(fake_libcuda, tmp_path, launcher):
    """The driver's current context is per thread: a call from a thread that never made one
    current still runs (in irkit's context, which that thread keeps, as with CUDA's runtime
    API, except through pycuda), and a thread whose own context is current gets it back."""
    lib = fake_libcuda if launcher != "pycuda" else _fake_for_pycuda(fake_libcuda)
    out, log = _run_with(fake_libcuda, f"""
        import ctypes, threading
        import numpy as np, irkit as ik
        from irkit.backends.dlpack import DeviceArray
        cu = ctypes.CDLL({lib!r})
        def current():
            ctx = ctypes.c_void_p()
            cu.cuCtxGetCurrent(ctypes.byref(ctx))
            return ctx.value
        x = ik.vector("x", "float32")
        f = ik.function([x], x * 3, target="cuda")
        f(np.ones(4, np.float32))
        print("main", current())
        def worker(own):
            if own:
                cu.cuCtxPushCurrent_v2(ctypes.c_void_p(0x7777))
            y = f(np.ones(5, np.float32))
            keep = DeviceArray.from_numpy(np.ones(6, np.float32))
            del keep  # freed on this thread too
            print("worker", y.shape, current())
        for own in (False, True):
            t = threading.Thread(target=worker, args=(own,))
            t.start()
            t.join()
    """, tmp_path, launcher)
    kept = "None" if launcher == "pycuda" else str(0x1)  # the fake's primary context
    assert out.split("\n")[:3] == [f"main {kept}", f"worker (5,) {kept}", f"worker (5,) {0x7777}"], out
    assert {ln for ln in log if ln.startswith("context")} == {"context 0x1"}  # the primary context's


def test_without_cuda_bindings_pycuda_launches_and_without_a_driver_says_so(fake_libcuda, tmp_path):
    """The launcher's choice with nothing asked: pycuda when cuda-bindings is missing (a
    package named `cuda` without `bindings` stands in for that); where libcuda.so.1 is
    missing pycuda cannot even import, and the first call says what is missing."""
    blocker = tmp_path / "no-bindings" / "cuda"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("")
    path = os.pathsep.join(filter(None, [str(blocker.parent), os.environ.get("PYTHONPATH")]))
    code = """
        import numpy as np, irkit as ik
        from irkit.backends import cuda
        x = ik.vector("x", "float32")
        f = ik.function([x], x * 2, target="cuda")
        try:
            print(f(np.ones(3, np.float32)).shape, cuda.driver().launcher)
        except ik.DeviceError as e:
            print("DeviceError:", e)
    """
    out, log = _run_with(fake_libcuda, code, tmp_path, "pycuda", IRKIT_CUDA_DRIVER="", PYTHONPATH=path)
    assert out.strip() == "(3,) pycuda", out
    out, _ = _run_with(str(tmp_path / "missing" / "libcuda.so.1"), code, tmp_path, "pycuda", IRKIT_CUDA_DRIVER="",
                       PYTHONPATH=path)
    assert out.startswith("DeviceError: no CUDA driver: libcuda.so.1: cannot open"), out


def test_pycuda_programs_share_their_context_and_arrays_with_irkit(fake_libcuda, fake_libcublas, tmp_path):
    """A program that made its own pycuda context: irkit picks pycuda to launch, runs in that
    context, takes its GPUArrays in place and gives back arrays pycuda reads."""
    out, log = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        import pycuda.driver as cu
        import pycuda.gpuarray as gpuarray
        cu.init()
        ctx = cu.Device(0).make_context()
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3, 2)).astype(np.float32)
        A, B = ik.matrix("A", "float32"), ik.matrix("B", "float32")
        f = ik.function([A, B], [A @ B, ik.sum(A, axis=1)], target="cuda")
        ga, gb = gpuarray.to_gpu(a), gpuarray.to_gpu(b)
        y, _ = f(ga, gb)
        from irkit.backends import cuda
        print(cuda.driver().launcher, hex(ctx.handle))
        back = np.empty(y.shape, y.dtype)
        cu.memcpy_dtoh(back, y.__cuda_array_interface__["data"][0])
        print(np.allclose(back, a @ b, rtol=1e-5))
        print(np.allclose(f(a, b)[0], a @ b, rtol=1e-5))
        del y
        ctx.pop()
    """, tmp_path, "pycuda", IRKIT_CUDA_DRIVER="auto", IRKIT_LIBCUBLAS=fake_libcublas)
    launcher, handle = out.split()[:2]
    assert (launcher, out.split()[2:]) == ("pycuda", ["True", "True"]), out
    assert {ln for ln in log if ln.startswith("context")} == {f"context {handle}"}, log
    assert len([ln for ln in log if ln.startswith("htod 48")]) == 2, log  # pycuda's to_gpu, then the numpy call


def test_gpu_benchmark_script_runs_against_the_fake_driver(fake_libcuda, tmp_path):
    """benchmarks/gpu.py, the run prepared for a lent device, end to end on the fake driver
    (which runs no kernel, so its numeric checks are skipped here: plumbing only)."""
    out_md = tmp_path / "gpu.md"
    out, _ = _run_with(fake_libcuda, f"""
        import sys
        sys.argv = ["gpu.py", "--quick", "--output", {str(out_md)!r}]
        sys.path.insert(0, {os.path.join(os.path.dirname(HERE), "benchmarks")!r})
        import gpu
        gpu.check = lambda *args, **kwargs: None
        gpu.main()
    """, tmp_path)
    table = out_md.read_text()
    assert "Device: fake device (sm_90)" in table
    for name in ("x + 1", "transcendental chain", "softmax-xent", "MLP 784-500-10", "matmul 256^3 float64"):
        assert f"| {name}" in table, table


def test_gpu_host_side_script_builds_its_fake_driver_and_times_the_step(fake_libcuda):
    """benchmarks/gpu_host.py --fake: the host side of the MLP step, no GPU needed (it builds
    its own fake driver; the fixture only skips where there is no C compiler)."""
    p = subprocess.run([sys.executable, os.path.join(os.path.dirname(HERE), "benchmarks", "gpu_host.py"), "--fake",
                        "--calls", "3"], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if not k.startswith("IRKIT_")})
    assert p.returncode == 0, p.stderr[-3000:]
    assert re.fullmatch(r"MLP 784-500-10 SGD step, batch 128, \d+ kernels: \d+ us per step \(fake device, ctypes, "
                        r"best of 5 x 3\)\n", p.stdout), p.stdout


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_products_go_to_cublas_with_the_row_major_operands_swapped(fake_libcuda, fake_libcublas, tmp_path,
                                                                  launcher):
    """Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T for cuBLAS; the fake
    cuBLAS computes what real cuBLAS would, so the products (transposed operands, gemv's
    one-row form, a batched 3-d product) are checked against numpy."""
    out, log = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        rng = np.random.default_rng(0)
        for dt in ("float32", "float64"):
            A, B, C = ik.matrix("A", dt), ik.matrix("B", dt), ik.matrix("C", dt)
            f = ik.function([A, B, C], [A @ B, A.T @ C, B @ C.T], target="cuda")
            a, b, c = (rng.standard_normal(s).astype(dt) for s in ((3, 4), (4, 5), (3, 5)))
            tol = 1e-5 if dt == "float32" else 1e-12
            print(all(np.allclose(g, w, rtol=tol, atol=tol) for g, w in zip(f(a, b, c), [a @ b, a.T @ c, b @ c.T])))
        v, M, w = ik.vector("v"), ik.matrix("M"), ik.vector("w")
        g = ik.function([v, M, w], [ik.dot(v, M), ik.dot(M, w), ik.dot(v, M.T.T)], target="cuda")
        vv, Mv, wv = rng.standard_normal(30), rng.standard_normal((30, 31)), rng.standard_normal(31)
        print(all(np.allclose(x, y) for x, y in zip(g(vv, Mv, wv), [vv @ Mv, Mv @ wv, vv @ Mv])))
        T, W = ik.tensor3("T"), ik.matrix("W")
        t, ww = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))
        print(np.allclose(ik.function([T, W], ik.matmul(T, W), target="cuda")(t, ww), t @ ww))
    """, tmp_path, launcher, IRKIT_LIBCUBLAS=fake_libcublas)
    assert out.split() == ["True"] * 4, out
    assert {line.split()[1] for line in log if line.startswith("cublas")} == {"sgemm", "dgemm"}
    assert not any(line.startswith("launch irkit_gemm") for line in log)  # the tiled kernel is not used


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_without_cublas_products_launch_the_tiled_kernel(fake_libcuda, tmp_path, launcher):
    _, log = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        A = ik.matrix("A", "float32")
        ik.function([A], A @ A.T, target="cuda")(np.ones((20, 30), np.float32))
    """, tmp_path, launcher, IRKIT_CUBLAS="0")
    launch = next(line.split() for line in log if line.startswith("launch irkit_gemm_f32"))
    assert launch[2:6] == ["2", "2", "16", "16"]  # 20 x 20 in 16 x 16 tiles
    # the parameters as the kernel declares them: (ta, tb) bytes, alpha and beta float32,
    # between 8-byte fields
    ta, tb, m, n, k, alpha, _a, _offa, lda, _b, _offb, ldb, beta = (int(p) for p in launch[6:19])
    assert (ta, tb, m, n, k, lda, ldb) == (0, 1, 20, 20, 30, 30, 30)
    assert alpha == int.from_bytes(np.float32(1.0).tobytes(), "little") and beta == 0


def test_an_unknown_launcher_is_named(monkeypatch):
    from irkit.backends import cuda
    monkeypatch.setenv("IRKIT_CUDA_DRIVER", "opencl")
    with pytest.raises(ik.DeviceError, match=r"IRKIT_CUDA_DRIVER='opencl'.*'cuda-bindings', 'pycuda', 'ctypes'"):
        cuda._open_driver()


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_cuda_target_checks_inputs_like_the_cpu(fake_libcuda, tmp_path, launcher):
    out, _ = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        x = ik.matrix("x", "float32")
        f = ik.function([x], x * 2, target="cuda")
        for bad in (np.ones(3, np.float32), np.ones((2, 2), np.float64)):
            try:
                f(bad)
            except (ik.ShapeError, ik.DTypeError) as e:
                print(type(e).__name__)
        try:
            f()
        except TypeError as e:
            print("TypeError")
    """, tmp_path, launcher)
    assert out.split() == ["ShapeError", "DTypeError", "TypeError"]


# -- on a real GPU ------------------------------------------------------------------------------------

def _has_device() -> bool:
    try:
        from irkit.backends import cuda
        cuda.driver()
        return True
    except Exception:
        return False


# the numeric tests need a real device (not the fake driver some tests point IRKIT_LIBCUDA at)
need_device = pytest.mark.skipif(os.environ.get("IRKIT_LIBCUDA") is not None or not _has_device(),
                                 reason="no CUDA device")


@need_device
def test_device_arrays_round_trip_on_the_gpu():
    from irkit.backends.dlpack import DeviceArray
    a = (0.3 * np.random.default_rng(0).standard_normal((300, 7))).astype(np.float32)
    x = ik.matrix("x", "float32")
    f = ik.function([x], [ik.exp(x) * 2, ik.sum(x, axis=0)], target="cuda")
    y, s = f(DeviceArray.from_numpy(a))
    assert isinstance(y, DeviceArray) and isinstance(s, DeviceArray)
    np.testing.assert_allclose(y.numpy(), np.exp(a) * 2, rtol=2e-6)
    np.testing.assert_allclose(s.numpy(), a.sum(axis=0), rtol=1e-5, atol=1e-5)
    z, _ = f(y)  # an output fed back in place
    np.testing.assert_allclose(z.numpy(), np.exp(np.exp(a) * 2) * 2, rtol=1e-5)


@need_device
@pytest.mark.parametrize("c", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_ops_on_the_gpu_match_numpy(c):
    pts = _points(c, _rng_for(c.id))
    xs = _inputs(pts)
    out = c.fn(*xs)
    want = ik.function(xs, out)(*pts)
    got = ik.function(xs, out, target="cuda")(*pts)
    np.testing.assert_allclose(got, want, rtol=2e-5 if np.asarray(want).dtype == np.float32 else 1e-11,
                               atol=1e-6)


@need_device
def test_training_steps_on_the_gpu_follow_the_cpus_with_the_pool_reusing_buffers():
    """Ten SGD steps of an MLP with parameters resident on the device: every buffer after the
    first step comes from the pool, in launch order on the one stream; each loss and the final
    parameters match the CPU backend's."""
    from irkit.backends import cuda
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((64, 20)).astype(np.float32), rng.integers(0, 5, 64).astype(np.int32)
    runs = {}
    for target in ("cpu", "cuda"):
        W1 = ik.shared((0.3 * rng.standard_normal((20, 30))).astype(np.float32) if target == "cpu" else
                       runs["cpu"][1][0], "W1")
        W2 = ik.shared((0.3 * rng.standard_normal((30, 5))).astype(np.float32) if target == "cpu" else
                       runs["cpu"][1][1], "W2")
        xs, ys = ik.matrix("x", "float32"), ik.ivector("y")
        p = ik.softmax(ik.tanh(xs @ W1) @ W2)
        loss = -ik.mean(ik.log(p)[ik.arange(ys.shape[0]), ys])
        g1, g2 = ik.grad(loss, [W1, W2])
        step = ik.function([xs, ys], loss, updates=[(W1, W1 - 0.5 * g1), (W2, W2 - 0.5 * g2)], target=target)
        start = [W1.get_value().copy(), W2.get_value().copy()]
        losses = [float(step(X, y)) for _ in range(10)]
        runs[target] = (losses, start, [W1.get_value(), W2.get_value()])
    np.testing.assert_allclose(runs["cuda"][0], runs["cpu"][0], rtol=1e-4)
    for got, want in zip(runs["cuda"][2], runs["cpu"][2]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert cuda.pool().held_bytes > 0  # what the steps freed is kept for reuse


@need_device
def test_calls_from_threads_on_the_gpu():
    import threading
    x = ik.vector("x", "float32")
    f = ik.function([x], ik.exp(x), target="cuda")
    a = np.linspace(-2, 2, 1000, dtype=np.float32)
    results = []
    threads = [threading.Thread(target=lambda: results.append(f(a))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for r in results:
        np.testing.assert_allclose(r, np.exp(a), rtol=2e-6)
