"""Reductions on the GPU (passes/parallel_reductions.py, backends/ptx_reduce.py): full
reductions are block reductions (warp shuffles, shared memory, bar.sync, one atomic a block),
row reductions one warp a row; checked in the PTX text, with ptxas for sm_80 and sm_90,
against the fake libcuda, and against numpy where a CUDA device is present."""

from __future__ import annotations

import re

import numpy as np
import pytest

import irkit as ik
from irkit.backends import ptx

from test_ptx import PTXAS, _run_with, assemble, fake_libcuda, need_device, need_ptxas  # noqa: F401 (fixture)


def kernel(text: str, name: str) -> str:
    """The PTX of one kernel entry."""
    start = text.index(f".entry {name}(")
    end = text.find(".entry ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def kernels(f, kind: str) -> list[str]:
    return [k.name for k in ptx.translate(f._gpu_loops()).kernels if k.kind == kind]


@pytest.mark.parametrize("dtype,acc", [("float32", "f64"), ("float64", "f64")])
def test_full_sum_is_a_block_reduction_with_one_atomic_add(dtype, acc):
    x = ik.matrix("x", dtype)
    f = ik.function([x], ik.sum(x))
    (name,) = kernels(f, "reduce")
    k = kernel(f.ir("ptx"), name)
    # a float32 sum accumulates in float64, as on the CPU: the fold is atom.add.f64
    assert re.search(r"shfl\.sync\.bfly\.b32", k)
    assert re.search(r"bar\.sync\s+0;", k) and ".shared" in f.ir("ptx")
    assert re.search(rf"atom\.global\.add\.{acc}", k)
    assert "cas" not in k


@pytest.mark.parametrize("dtype,bits", [("float32", "b32"), ("float64", "b64")])
def test_full_float_max_folds_with_a_compare_and_swap_loop(dtype, bits):
    x = ik.matrix("x", dtype)
    f = ik.function([x], ik.max(x))
    (name,) = kernels(f, "reduce")
    k = kernel(f.ir("ptx"), name)
    assert re.search(r"shfl\.sync\.bfly\.b32", k) and re.search(r"bar\.sync\s+0;", k)
    # no PTX atomic computes maximumf (NaN propagates): a CAS loop on the bits
    assert re.search(rf"atom\.[\w.]*cas\.{bits}", k)
    assert "atom.global.add" not in k and "atom.global.max" not in k


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduce", [ik.sum, ik.max])
def test_row_reduction_is_one_warp_a_row(dtype, reduce):
    x = ik.matrix("x", dtype)
    f = ik.function([x], reduce(x, axis=1))
    (name,) = kernels(f, "rows")
    k = kernel(f.ir("ptx"), name)
    assert re.search(r"shfl\.sync\.bfly\.b32", k)
    assert "bar.sync" not in k and "atom" not in k  # a warp's butterfly: no block barrier, no atomic
    assert not kernels(f, "serial") and not kernels(f, "reduce")


@pytest.mark.parametrize("reduce", [ik.sum, ik.max, lambda x, axis: ik.softmax(x, axis=axis)])
def test_column_reduction_is_a_thread_a_column(reduce):
    """axis=0: the loops level sums row by row into a column accumulator; on the GPU the nest
    is interchanged so each thread owns a column (loads coalesced across a warp), where the
    whole reduction was one serial kernel."""
    x = ik.matrix("x", "float32")
    f = ik.function([x], reduce(x, axis=0))
    assert not kernels(f, "serial")
    assert len(kernels(f, "parallel")) >= 2  # the init loop, then the column walk


def test_softmax_rows_share_their_output_loop():
    x = ik.matrix("x", "float32")
    f = ik.function([x], ik.softmax(x))
    (name,) = kernels(f, "rows")
    k = kernel(f.ir("ptx"), name)
    # the max in float32 (5 shuffles), the sum in float64 (two halves: 10)
    assert len(re.findall(r"shfl\.sync\.bfly\.b32", k)) == 15
    assert "bar.warp.sync" in k  # the lanes meet after writing the row
    assert "st.global" in k


def test_cpu_pipeline_keeps_its_loops():
    x = ik.matrix("x", "float32")
    f = ik.function([x], [ik.sum(x), ik.max(x, axis=1)])
    assert "scf.reduce(" not in f.ir("loops")  # parallel-reductions is in the GPU pipeline only
    assert "scf.reduce(" in str(f._gpu_loops())
    v = np.arange(12, dtype=np.float32).reshape(3, 4)
    s, m = f(v)
    assert s == 66 and list(m) == [3, 7, 11]


@need_ptxas
def test_reduction_kernels_assemble(tmp_path):
    outs, ins = [], []
    for dtype in ("float32", "float64", "int32", "int64"):
        x = ik.matrix(f"x_{dtype}", dtype)
        ins.append(x)
        outs += [ik.sum(x), ik.max(x), ik.min(x), ik.prod(x), ik.sum(x, axis=1), ik.max(x, axis=1),
                 ik.min(x, axis=1), ik.sum(x, axis=0), ik.max(x, axis=0)]
        if dtype.startswith("float"):
            outs += [ik.mean(x), ik.softmax(x), ik.logsumexp(x, axis=1), ik.sqrt(ik.sum(x * x))]
    f = ik.function(ins, outs, name="red")
    text = f.ir("ptx")
    assert len(kernels(f, "reduce")) >= 16 and len(kernels(f, "rows")) >= 12
    assemble(text, tmp_path)


def test_full_reduction_launch_and_readback(fake_libcuda, tmp_path):
    out, log = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        x = ik.matrix("x", "float32")
        f = ik.function([x], [ik.sum(x), ik.max(x, axis=1)], target="cuda")
        s, m = f(np.ones((1000, 3), np.float32))
        # the fake driver runs no kernel: the sum is the init value the host wrote to the cell
        print(float(s), m.shape)
    """, tmp_path)
    assert out.split() == ["0.0", "(1000,)"]
    launches = [line.split() for line in log if line.startswith("launch")]
    red = next(ln for ln in launches if re.fullmatch(r"main_r\d+", ln[1]))
    assert red[2:6] == ["12", "1", "256", "1"]  # 3000 elements: 12 blocks of 256
    rows = next(ln for ln in launches if re.fullmatch(r"main_k\d+", ln[1]))
    assert rows[2:6] == ["125", "1", "256", "1"]  # 1000 rows, 8 warps (rows) a block
    assert not any(re.fullmatch(r"main_s\d+", ln[1]) and "x" in ln for ln in launches)


@need_device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (1000, 37), (7, 100_003), (4097, 1)])
def test_reductions_on_the_gpu_match_numpy(dtype, shape):
    rng = np.random.default_rng(0)
    v = rng.standard_normal(shape).astype(dtype)
    v.flat[len(v.flat) // 2] = 4.0  # a unique maximum
    x = ik.matrix("x", dtype)
    outs = [ik.sum(x), ik.max(x), ik.min(x), ik.mean(x), ik.sum(x, axis=1), ik.max(x, axis=1),
            ik.softmax(x), ik.logsumexp(x, axis=1), ik.sum(x, axis=0), ik.min(x, axis=0),
            ik.softmax(x, axis=0)]
    got = ik.function([x], outs, target="cuda")(v)
    want = ik.function([x], outs)(v)
    tol = 2e-5 if dtype == "float32" else 1e-11
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol, atol=1e-6)


@need_device
def test_max_propagates_nan_on_the_gpu():
    v = np.ones((300, 300), np.float32)
    v[123, 45] = np.nan
    x = ik.matrix("x", "float32")
    got = ik.function([x], [ik.max(x), ik.max(x, axis=1)], target="cuda")(v)
    assert np.isnan(got[0]) and np.isnan(got[1][123]) and not np.isnan(got[1][0])


# -- a failed check in a kernel whose threads meet ------------------------------------------------

_SYNC = re.compile(r"\b(shfl\.sync|bar\.sync|barrier\.sync|bar\.warp\.sync)\b")


def _blocks(k: str) -> tuple[list[str], dict[str, list[str]]]:
    """The basic blocks of a PTX kernel, in layout order, and each one's lines."""
    order, lines, label = ["entry"], {"entry": []}, "entry"
    for raw in k[k.index("{") + 1:].splitlines():
        line = raw.strip()
        m = re.fullmatch(r"(\$?[\w$]+):", line)
        if m:
            label = m.group(1)
            order.append(label)
            lines[label] = []
        elif line and not line.startswith("//"):
            lines[label].append(line)
    return order, lines


def exits_without_meeting(k: str) -> list[str]:
    """The blocks that record an error (a CAS on irkit_error) from which some path reaches a
    `ret` without passing a shuffle or a barrier: threads that would leave their partners."""
    order, lines = _blocks(k)

    def successors(label):
        body = lines[label]
        out = [m.group(1) for line in body for m in [re.search(r"\bbra(?:\.uni)?\s+(\$?[\w$]+);", line)] if m]
        ends = body and (body[-1].startswith("ret") or re.match(r"bra(\.uni)?\s", body[-1]))
        if not ends and order.index(label) + 1 < len(order):
            out.append(order[order.index(label) + 1])
        return out

    bad = []
    for start in (lab for lab in order if any("[irkit_error]" in ln and "atom" in ln for ln in lines[lab])):
        seen, todo = set(), list(successors(start))
        while todo:
            lab = todo.pop()
            if lab in seen:
                continue
            seen.add(lab)
            if any(_SYNC.search(ln) for ln in lines[lab]):
                continue  # the thread meets its partners on this path
            if any(ln.startswith("ret") for ln in lines[lab]):
                bad.append(start)
                break
            todo.extend(successors(lab))
    return bad


@pytest.mark.parametrize("which", ["full", "rows"])
def test_failed_check_in_a_reduction_still_meets_every_shuffle_and_barrier(which, tmp_path):
    i = ik.vector("i", "int64")
    if which == "full":
        x = ik.vector("x", "float32")
        f = ik.function([x, i], ik.sum(x[i]))  # the index check runs in the accumulate loop
        kind = "reduce"
    else:
        x = ik.matrix("x", "float32")
        f = ik.function([x, i], ik.sum(x[:, i], axis=1))
        kind = "rows"
    (name,) = kernels(f, kind)
    text = f.ir("ptx")
    k = kernel(text, name)
    assert re.search(r"atom\.[\w.]*cas\.b32\s+%r\d+, \[irkit_error\]", k)  # the check is recorded
    assert _SYNC.search(k)
    assert not exits_without_meeting(k)
    assert "irkit_safe_cell" in k  # later accesses of a failed thread go to a harmless cell
    if PTXAS is not None:
        assemble(text, tmp_path)


def test_exits_without_meeting_sees_an_early_exit():
    # the checker itself: an error exit that skips the butterfly is found
    k = """.entry bad(
    ){
    @%p1 bra $L__BB0_2;
    atom.relaxed.sys.global.cas.b32 %r1, [irkit_error], 0, 1;
    bra.uni $L__BB0_3;
$L__BB0_2:
    shfl.sync.bfly.b32 %r2, %r3, 16, 31, -1;
$L__BB0_3:
    ret;
}"""
    assert exits_without_meeting(k) == ["entry"]


def test_reduction_only_stored_on_the_device_is_not_read_back(fake_libcuda, tmp_path):
    out, log = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        x = ik.matrix("x", "float32")
        f = ik.function([x], -ik.sum(x) / 3, target="cuda")
        print(np.asarray(f(np.ones((100, 3), np.float32))).shape)
    """, tmp_path)
    assert out.strip() == "()"
    launches = [line.split() for line in log if line.startswith("launch")]
    red = next(ln for ln in launches if re.fullmatch(r"main_r\d+", ln[1]))
    cell = int(red[-1])  # the reduction's last parameter: the device cell it folds into
    store = next(ln for ln in launches if re.fullmatch(r"main_s\d+", ln[1]))
    assert cell in [int(p) for p in store[6:]]  # the one-thread kernel reads the cell itself
    reads = [int(line.split()[2], 16) for line in log if line.startswith("dtoh")]
    assert cell not in reads  # the value never comes to the host
    writes = [int(line.split()[2], 16) for line in log if line.startswith("htod")]
    assert cell in writes  # the init value goes to the cell before the reduction


def test_reduction_the_host_needs_is_read_back(fake_libcuda, tmp_path):
    out, log = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        x = ik.matrix("x", "float32")
        g = ik.function([x], ik.ifelse(ik.sum(x) > 0, x, -x), target="cuda")
        g(np.ones((100, 3), np.float32))
    """, tmp_path)
    launches = [line.split() for line in log if line.startswith("launch")]
    red = next(ln for ln in launches if re.fullmatch(r"main_r\d+", ln[1]))
    reads = [int(line.split()[2], 16) for line in log if line.startswith("dtoh")]
    assert int(red[-1]) in reads  # a branch condition: the host reads the cell
