"""Sparse matrices (ik.sparse): every op against scipy.sparse / numpy in float32 and float64,
CSR and CSC, with empty rows, an all-zero matrix and no stored value at all; gradients
against finite differences; the checks at the function boundary; the loop kernel in the IR
and the GPU backend's text."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import scipy.sparse as sp

import irkit as ik

FORMATS = ("csr", "csc")
DTYPES = ("float32", "float64")
TOL = {"float32": dict(rtol=2e-5, atol=2e-5), "float64": dict(rtol=1e-12, atol=1e-12)}


def _matrix(rows: int, cols: int, fmt: str, dtype: str, seed: int, empty_rows: bool = True):
    """A random canonical matrix; with empty_rows, a third of its rows (and columns) hold nothing."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols)) * (rng.random((rows, cols)) < 0.4)
    if empty_rows:
        x[::3] = 0
        x[:, 1::3] = 0
    m = sp.csr_matrix(x.astype(dtype)) if fmt == "csr" else sp.csc_matrix(x.astype(dtype))
    assert m.has_canonical_format
    return m


def _cases(fmt: str, dtype: str):
    """(name, matrix): random with empty rows, all zeros, a 0 x 0 one."""
    return [("random", _matrix(7, 5, fmt, dtype, 1)),
            ("dense-ish", _matrix(6, 4, fmt, dtype, 2, empty_rows=False)),
            ("all-zero", _matrix(4, 5, fmt, dtype, 3) * 0),
            ("no rows", sp.csr_matrix((0, 3), dtype=dtype).asformat(fmt))]


def _dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


# ---------------------------------------------------------------------------
# ops against scipy
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module", params=[(f, d) for f in FORMATS for d in DTYPES], ids=lambda p: f"{p[0]}-{p[1]}")
def compiled(request):
    """One function per format and dtype holding every op, and scipy's answers for it."""
    fmt, dtype = request.param
    S = getattr(ik.sparse, f"{fmt}_matrix")("S", dtype=dtype)
    M, N, D = ik.matrix("M", dtype=dtype), ik.matrix("N", dtype=dtype), ik.matrix("D", dtype=dtype)
    v, c = ik.vector("v", dtype=dtype), ik.scalar("c", dtype=dtype)
    outs = {
        "S @ M": lambda A, m, n, d, vv, cc, r: A @ m,
        "N @ S": lambda A, m, n, d, vv, cc, r: n @ A,
        "S @ v": lambda A, m, n, d, vv, cc, r: A @ vv,
        "v @ S.T": lambda A, m, n, d, vv, cc, r: vv @ A.T,
        "dense": lambda A, m, n, d, vv, cc, r: A.toarray(),
        "sum": lambda A, m, n, d, vv, cc, r: A.sum(),
        "sum0": lambda A, m, n, d, vv, cc, r: np.asarray(A.sum(axis=0)).ravel(),
        "sum1": lambda A, m, n, d, vv, cc, r: np.asarray(A.sum(axis=1)).ravel(),
        "sum-1": lambda A, m, n, d, vv, cc, r: np.asarray(A.sum(axis=1)).ravel(),
        "sin": lambda A, m, n, d, vv, cc, r: A.sin(),
        "sqrt|.|": lambda A, m, n, d, vv, cc, r: abs(A).sqrt(),
        "-tanh": lambda A, m, n, d, vv, cc, r: -A.tanh(),
        "relu": lambda A, m, n, d, vv, cc, r: A.maximum(0),
        "S * c": lambda A, m, n, d, vv, cc, r: A * cc,
        "S / 2": lambda A, m, n, d, vv, cc, r: A / 2,
        "S * D": lambda A, m, n, d, vv, cc, r: A.multiply(d),
        "S * row": lambda A, m, n, d, vv, cc, r: A.multiply(r),
        "structured_exp": lambda A, m, n, d, vv, cc, r: _structured(A, np.exp),
        "structured_pow": lambda A, m, n, d, vv, cc, r: _structured(A, lambda x: x ** 3),
        "S.T": lambda A, m, n, d, vv, cc, r: A.T,
    }
    row = ik.matrix("row", dtype=dtype, shape=(1, None))
    graph = [ik.sparse.dot(S, M), ik.sparse.dot(N, S), S @ v, ik.sparse.dot(v, S.T), ik.sparse.dense(S),
             ik.sparse.sum(S), S.sum(axis=0), S.sum(axis=1), S.sum(axis=-1), ik.sparse.sin(S),
             ik.sparse.sqrt(abs(S)), -ik.sparse.tanh(S), ik.sparse.relu(S),
             S * c, S / 2, ik.sparse.multiply(S, D), S * row, ik.sparse.structured_exp(S),
             ik.sparse.structured_pow(S, 3), S.T]
    f = ik.function([S, M, N, D, v, c, row], graph)
    return fmt, dtype, f, list(outs.items())


def _structured(A, fn):
    out = A.copy()
    out.data = fn(out.data)
    return out


def test_every_op_matches_scipy(compiled):
    fmt, dtype, f, refs = compiled
    rng = np.random.default_rng(0)
    for name, A in _cases(fmt, dtype):
        n, m = A.shape
        M = rng.standard_normal((m, 3)).astype(dtype)
        N = rng.standard_normal((2, n)).astype(dtype)
        D = rng.standard_normal((n, m)).astype(dtype)
        v = rng.standard_normal(m).astype(dtype)
        c = np.asarray(1.5, dtype)
        r = rng.standard_normal((1, m)).astype(dtype)
        got = f(A, M, N, D, v, c, r)
        for (what, ref), g in zip(refs, got):
            want = ref(A, M, N, D, v, c, r)
            if sp.issparse(want):  # S's format (the other one for the transpose)
                assert sp.issparse(g), f"{what} on {name}: expected a sparse result"
                assert g.format == (fmt if what != "S.T" else ("csc" if fmt == "csr" else "csr")), what
                assert g.dtype == np.dtype(dtype), what
                assert g.shape == want.shape, f"{what} on {name}: shape {g.shape}, scipy's {want.shape}"
            else:
                assert np.asarray(g).dtype == np.dtype(dtype), f"{what}: dtype {np.asarray(g).dtype}"
                assert np.shape(g) == np.shape(want), f"{what} on {name}: shape {np.shape(g)}, scipy's {np.shape(want)}"
            np.testing.assert_allclose(_dense(g), _dense(want), err_msg=f"{what} on {name}", **TOL[dtype])


@pytest.mark.parametrize("fmt", FORMATS)
def test_from_dense_and_back(fmt):
    """The pattern of csr_from_dense/csc_from_dense is the nonzero elements, NaN included, as
    scipy.sparse.csr_matrix(x) has it."""
    X = ik.matrix("X")
    S = getattr(ik.sparse, f"{fmt}_from_dense")(X)
    f = ik.function([X], [S, ik.sparse.dense(S), S.sum(axis=1), ik.sparse.dot(S, ik.ones((X.shape[1], 2)))])
    for x in (np.array([[0, 1.5, 0, 2], [0, 0, 0, 0], [3, 0, np.nan, -4]]), np.zeros((2, 3)), np.zeros((0, 4))):
        want = getattr(sp, f"{fmt}_matrix")(x)
        s, d, rows, prod = f(x)
        assert s.format == fmt and s.has_canonical_format
        np.testing.assert_array_equal(s.indptr, want.indptr)
        np.testing.assert_array_equal(s.indices, want.indices)
        np.testing.assert_array_equal(s.data, want.data)
        np.testing.assert_array_equal(d, x)
        np.testing.assert_allclose(rows, np.nansum(x, axis=1) + np.where(np.isnan(x).any(1), np.nan, 0))
        np.testing.assert_allclose(prod, want @ np.ones((x.shape[1], 2)))


def test_components_and_constants():
    """ik.sparse.csr/csc from components and ik.sparse.constant agree with scipy."""
    A = _matrix(5, 4, "csr", "float64", 7)
    M = ik.matrix("M")
    d = ik.vector("d")
    made = ik.sparse.csr(d, A.indices, A.indptr, A.shape)
    as_csc = ik.sparse.csc(d, A.indices, A.indptr, A.shape[::-1])  # the same arrays, read as A.T
    const = ik.sparse.constant(A.tocsc())
    m = np.random.default_rng(1).standard_normal((4, 2))
    f = ik.function([d, M], [ik.sparse.dot(made, M), ik.dot(ik.sparse.dense(as_csc), ik.ones((5, 1))),
                             ik.sparse.dot(const, M), made, np.arange(10.0).reshape(2, 5) @ made])
    y, z, w, s, left = f(A.data, m)
    np.testing.assert_allclose(left, np.arange(10.0).reshape(2, 5) @ A)  # numpy defers to the sparse operand
    np.testing.assert_allclose(y, A @ m)
    np.testing.assert_allclose(z, A.T.toarray() @ np.ones((5, 1)))
    np.testing.assert_allclose(w, A @ m)
    assert (s != A).nnz == 0


# ---------------------------------------------------------------------------
# shapes and malformed structure
# ---------------------------------------------------------------------------

def test_shape_mismatches_are_shape_errors():
    S = ik.sparse.csr_matrix("S")
    M, D = ik.matrix("M"), ik.matrix("D")
    f = ik.function([S, M, D], [ik.sparse.dot(S, M), ik.sparse.dot(M, S), ik.sparse.multiply(S, D)])
    A = _matrix(4, 3, "csr", "float64", 1)
    f(A, np.ones((3, 4)), np.ones((4, 3)))
    with pytest.raises(ik.ShapeError, match="column count differs"):
        f(A, np.ones((2, 4)), np.ones((4, 3)))  # S @ M: 3 columns, 2 rows
    with pytest.raises(ik.ShapeError):
        f(A, np.ones((3, 3)), np.ones((4, 3)))  # M @ S: M has 3 columns, S 4 rows
    with pytest.raises(ik.ShapeError):
        f(A, np.ones((3, 4)), np.ones((4, 4)))  # S * D
    with pytest.raises(ik.ShapeError):
        ik.sparse.dot(S, ik.tensor("T", shape=(None, None, None)))
    with pytest.raises(TypeError, match="two sparse"):
        ik.sparse.dot(S, S)
    with pytest.raises(ik.ShapeError):
        ik.sparse.sum(S, axis=2)


def test_malformed_components_raise_not_read_out_of_bounds():
    """Components made in the graph are checked where they are used: an index out of range
    (or negative), a decreasing indptr, unsorted indices."""
    d, i, p = ik.vector("d"), ik.lvector("i"), ik.lvector("p")
    S = ik.sparse.csr(d, i, p, (2, 3))
    f = ik.function([d, i, p], [ik.sparse.dot(S, ik.ones((3, 1))), ik.sparse.dense(S)])
    f(np.ones(3), np.array([0, 2, 1]), np.array([0, 2, 3]))
    with pytest.raises(ik.IndexOutOfBoundsError):
        f(np.ones(3), np.array([0, 3, 1]), np.array([0, 2, 3]))
    with pytest.raises(ik.IndexOutOfBoundsError):
        f(np.ones(3), np.array([0, -1, 1]), np.array([0, 2, 3]))
    with pytest.raises(ik.InvalidValueError, match="indptr"):
        f(np.ones(3), np.array([0, 2, 1]), np.array([0, 3, 2]))
    with pytest.raises(ik.InvalidValueError, match="sorted"):
        f(np.ones(3), np.array([2, 0, 1]), np.array([0, 2, 3]))
    with pytest.raises(ik.ShapeError):  # indptr of 3 rows for a shape of 2
        f(np.ones(3), np.array([0, 2, 1]), np.array([0, 2, 3, 3]))


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_gradients_by_finite_differences(fmt):
    """verify_grad in float64 with respect to the dense operand (both orders) and to the
    stored values, through products, the sampled product of second derivatives, structured
    ops, multiply, sum and dense."""
    A = _matrix(6, 5, fmt, "float64", 11)
    rng = np.random.default_rng(3)
    make = getattr(ik.sparse, fmt)
    const = ik.sparse.constant(A)
    M0 = rng.standard_normal((5, 3))
    structure = (A.indices, A.indptr, A.shape)

    ik.verify_grad(lambda M: ik.sparse.dot(const, M), [M0], rng=rng)
    ik.verify_grad(lambda N: ik.sparse.dot(N, const), [rng.standard_normal((2, 6))], rng=rng)
    ik.verify_grad(lambda d: ik.sparse.dot(make(d, *structure), ik.constant(M0)), [A.data], rng=rng)
    ik.verify_grad(lambda d, N: ik.sparse.dot(N, ik.sparse.structured_sigmoid(make(d, *structure))),
                   [A.data, rng.standard_normal((2, 6))], rng=rng)
    ik.verify_grad(lambda d, D: ik.sparse.dense(ik.sparse.multiply(ik.sparse.sin(make(d, *structure)), D)),
                   [A.data, rng.standard_normal((6, 5))], rng=rng)
    for axis in (0, 1):
        ik.verify_grad(lambda d: ik.sparse.sum(ik.sparse.structured_exp(make(d, *structure)), axis=axis),
                       [A.data], rng=rng)

    def gradient_norm(d, M):  # second derivatives: the vjps of the products and the sampled product
        S = make(d, *structure)
        gS, gM = ik.grad(ik.sum(ik.sparse.dot(S, M) ** 2), [S, M])
        return ik.sum(gS.data ** 2) + ik.sum(gM ** 2)
    ik.verify_grad(gradient_norm, [A.data, M0], rng=rng)


@pytest.mark.parametrize("fmt", FORMATS)
def test_grad_with_respect_to_a_sparse_input_is_sparse(fmt):
    S = getattr(ik.sparse, f"{fmt}_matrix")("S")
    M = ik.matrix("M")
    cost = ik.sum(ik.sparse.dot(S, M) ** 2) / 2
    gS, gM = ik.grad(cost, [S, M])
    assert isinstance(gS, ik.sparse.SparseVariable) and gS.format == fmt
    f = ik.function([S, M], [gS, gM, ik.grad(cost, S)])
    A = _matrix(7, 4, fmt, "float64", 5)
    m = np.random.default_rng(2).standard_normal((4, 3))
    g_s, g_m, again = f(A, m)
    y = A @ m
    assert g_s.format == fmt
    np.testing.assert_array_equal(g_s.indices, A.indices)
    np.testing.assert_array_equal(g_s.indptr, A.indptr)
    want = A.copy()  # d cost / d A[i, j] = y[i] . m[j] at the stored entries only (structured)
    rows, cols = A.nonzero()
    want = sp.coo_matrix((np.einsum("pj,pj->p", y[rows], m[cols]), (rows, cols)), shape=A.shape).asformat(fmt)
    np.testing.assert_allclose(g_s.toarray(), want.toarray(), rtol=1e-12)
    np.testing.assert_allclose(g_m, A.T @ y, rtol=1e-12)
    np.testing.assert_allclose(again.toarray(), g_s.toarray())


# ---------------------------------------------------------------------------
# the function boundary
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def f32():
    S = ik.sparse.csr_matrix("S", dtype="float32")
    v = ik.vector("v", dtype="float32")
    return ik.function([S, v], [ik.sparse.dot(S, v), ik.sparse.neg(S)])


def test_boundary_converts_what_converts_without_loss(f32):
    A = _matrix(5, 4, "csr", "float32", 1)
    v = np.arange(4, dtype=np.float32)
    want = A @ v
    np.testing.assert_allclose(f32(A, v)[0], want, rtol=1e-6)
    wide = A.copy()
    wide.indices, wide.indptr = A.indices.astype(np.int64), A.indptr.astype(np.int64)
    np.testing.assert_allclose(f32(wide, v)[0], want, rtol=1e-6)   # int64 indices
    small = (A * 4).astype(np.int16)  # int16 values convert to float32 exactly
    np.testing.assert_allclose(f32(small, v)[0], small.astype(np.float32) @ v, rtol=1e-6)
    np.testing.assert_allclose(f32(sp.csr_array(A), v)[0], want, rtol=1e-6)  # scipy's sparse arrays
    np.testing.assert_allclose(f32(S=A, v=v)[0], want, rtol=1e-6)  # by name
    out = f32(A, v)[1]
    assert isinstance(out, sp.csr_matrix) and out.dtype == np.float32


def test_boundary_errors_name_the_input(f32):
    A = _matrix(5, 4, "csr", "float32", 1)
    v = np.ones(4, np.float32)
    with pytest.raises(ik.DTypeError, match="input 'S' is a sparse CSR matrix.*not ndarray"):
        f32(A.toarray(), v)
    with pytest.raises(ik.DTypeError, match="input 'S' expects a sparse matrix in CSR format, got CSC"):
        f32(A.tocsc(), v)
    with pytest.raises(ik.DTypeError, match="input 'S' expects a sparse matrix in CSR format, got COO"):
        f32(A.tocoo(), v)
    with pytest.raises(ik.DTypeError, match="input 'S' expects values of dtype float32, got float64"):
        f32(A.astype(np.float64), v)
    unsorted = sp.csr_matrix((np.array([1.0, 2.0], np.float32), np.array([2, 0]), np.array([0, 2, 2, 2, 2, 2])),
                             shape=(5, 4))
    with pytest.raises(ik.InvalidValueError, match="input 'S'.*not in canonical format"):
        f32(unsorted, v)
    duplicate = sp.csr_matrix((np.array([1.0, 2.0], np.float32), np.array([1, 1]), np.array([0, 2, 2, 2, 2, 2])),
                              shape=(5, 4))
    with pytest.raises(ik.InvalidValueError, match="input 'S'.*not in canonical format"):
        f32(duplicate, v)
    with pytest.raises(ik.ShapeError):  # v does not fit S's columns
        f32(A, np.ones(3, np.float32))
    with pytest.raises(TypeError, match="takes 2 input"):
        f32(A)
    with pytest.raises(ik.DTypeError, match="integers or floats"):
        ik.sparse.csr_matrix("B", dtype="bool")


def test_allow_input_downcast_and_int64_index_dtype():
    S = ik.sparse.csc_matrix("S", dtype="float32", index_dtype="int64")
    f = ik.function([S], ik.sparse.sum(S, axis=0), allow_input_downcast=True)
    A = _matrix(5, 4, "csc", "float64", 4)
    np.testing.assert_allclose(f(A), np.asarray(A.sum(axis=0)).ravel(), rtol=1e-6)
    with pytest.raises(ik.DTypeError, match="index_dtype"):
        ik.sparse.csr_matrix("X", index_dtype="int16")


# ---------------------------------------------------------------------------
# the IR: a loop kernel, on the CPU and for a GPU
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_product_at_every_width_of_the_dense_operand(fmt):
    """S @ M takes one of three loops by M's column count (one column: M read as a vector;
    under REGISTER_COLUMNS: sums in registers; else scaled rows of M added): each against
    scipy, and a stored index out of bounds stops each."""
    from irkit.dialects.ik.sparse import REGISTER_COLUMNS
    S, M = getattr(ik.sparse, f"{fmt}_matrix")("S"), ik.matrix("M")
    f = ik.function([S, M], ik.sparse.dot(S, M))
    A = _matrix(9, 6, fmt, "float64", 4)
    rng = np.random.default_rng(5)
    for k in (1, 2, REGISTER_COLUMNS - 1, REGISTER_COLUMNS, 9):
        m = rng.standard_normal((6, k))
        np.testing.assert_allclose(f(A, m), A @ m, err_msg=f"k = {k}", **TOL["float64"])
        if fmt == "csr":
            bad = A.copy()
            bad.indices[-1] = 6  # still sorted: the boundary passes it, the loop stops it
            with pytest.raises(ik.IndexOutOfBoundsError):
                f(bad, m)


def test_product_is_a_parallel_loop_kernel_not_a_dense_product():
    S = ik.sparse.csr_matrix("S")
    M = ik.matrix("M")
    f = ik.function([S, M], ik.sparse.dot(S, M))
    loops = f.ir("loops")
    assert '"scf.parallel"' in loops and "irkit_gemm" not in loops
    assert "ik.sparse_matmul" in f.ir("tensor")


@pytest.mark.skipif(shutil.which("ptxas") is None and not os.environ.get("IRKIT_CI"),
                    reason="ptxas (CUDA toolkit) is not on the PATH")
def test_ptx_of_products_and_gradients_assembles(tmp_path):
    S = ik.sparse.csr_matrix("S")
    M = ik.matrix("M")
    y = ik.sparse.dot(S, M)
    gS, gM = ik.grad(ik.sum(y * y), [S, M])
    text = ik.function([S, M], [y, ik.sparse.dot(M.T, S), gS, gM, ik.sparse.dense(S)]).ir("ptx")
    assert ".entry" in text
    path = tmp_path / "k.ptx"
    path.write_text(text)
    proc = subprocess.run(["ptxas", "-arch=sm_80", str(path), "-o", os.devnull], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[:2000]


def test_a_dense_variable_on_the_left_hands_over_to_the_sparse_operand():
    """`M @ S` and `D * S` with a symbolic dense M or D (Variable's operators defer to the
    sparse matrix); other operators say how to use a sparse matrix instead."""
    S, M, D = ik.sparse.csr_matrix("S"), ik.matrix("M"), ik.matrix("D")
    f = ik.function([S, M, D], [M @ S, D * S])
    A = sp.csr_matrix(np.array([[1.0, 0, 2], [0, 3, 0]]))
    B, C = np.arange(8.0).reshape(4, 2), np.arange(6.0).reshape(2, 3)
    product, sampled = f(A, B, C)
    np.testing.assert_allclose(product, B @ A.toarray())
    assert sp.issparse(sampled) and sampled.format == "csr"
    np.testing.assert_allclose(sampled.toarray(), A.multiply(C).toarray())
    with pytest.raises(TypeError, match=r"cannot be used as a dense tensor here.*ik.sparse.dense\(S\)"):
        M + S


def test_a_product_over_many_rows_is_split_across_threads(monkeypatch):
    """The rows' loops have data-dependent bounds (indptr[i] to indptr[i+1]): the kernel is
    weighed as that many more iterations, so a product over many short rows runs on threads."""
    monkeypatch.setattr(ik.config, "num_threads", 2)
    S, M = ik.sparse.csr_matrix("S"), ik.matrix("M")
    f = ik.function([S, M], ik.sparse.dot(S, M))
    if f._llvm_text is None:  # loaded from the compile cache: make the LLVM IR again
        f._retranslate()
    from irkit.backends.llvm import DATA_DEPENDENT_TRIP
    # the work weighed against the threshold: rows times the row loop's assumed trip count,
    # in both loops over rows (M of one column, and wider)
    assert len(re.findall(rf"mul i64 %\S+, {DATA_DEPENDENT_TRIP}\b", f._llvm_text)) == 2
    rng = np.random.default_rng(3)
    A = sp.random(40_000, 50, density=0.1, format="csr", random_state=4)
    B = rng.standard_normal((50, 3))
    np.testing.assert_allclose(f(A, B), A @ B, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f(A, B[:, :1]), A @ B[:, :1], rtol=1e-12, atol=1e-12)
