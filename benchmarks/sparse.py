"""Sparse times dense: a 10^5 x 10^5 CSR matrix with 10^6 stored values (float64, int32
indices, as scipy makes it) times a dense (10^5, k) matrix, and the gradient of
0.5 * ||S @ M||^2 with respect to M and to S's values, against scipy.sparse
(--quick: 10^4 x 10^4 with 10^5 values).

irkit runs its own kernels (dialects/ik/sparse.py): the product in parallel over rows,
the transposed product (the gradient with respect to M) as a sequential scatter, as
scipy's does, and the values' gradient as one dot product per stored value."""

from __future__ import annotations

import numpy as np

from harness import Workload

SIZE, NNZ = 100_000, 1_000_000
QUICK_SIZE, QUICK_NNZ = 10_000, 100_000


def _operands(quick: bool, k: int):
    import scipy.sparse as sp
    n, nnz = (QUICK_SIZE, QUICK_NNZ) if quick else (SIZE, NNZ)
    rng = np.random.default_rng(n + k)
    rows, cols = rng.integers(0, n, nnz), rng.integers(0, n, nnz)
    s = sp.coo_matrix((rng.standard_normal(nnz), (rows, cols)), shape=(n, n)).tocsr()
    s.sum_duplicates()  # canonical: sorted indices, repeated coordinates summed (a few fewer values)
    return s, rng.standard_normal((n, k))


def _sampled_dot(s, a: np.ndarray, b: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """out[p] = a[row(p)] . b[col(p)] over the stored values, in chunks (bounded memory)."""
    rows = np.repeat(np.arange(s.shape[0]), np.diff(s.indptr))
    out = np.empty(s.nnz)
    for lo in range(0, s.nnz, chunk):
        hi = min(lo + chunk, s.nnz)
        out[lo:hi] = np.einsum("pj,pj->p", a[rows[lo:hi]], b[s.indices[lo:hi]])
    return out


# -- the product ------------------------------------------------------------------------

def _product_irkit(data):
    import irkit as ik
    s, m = data
    S, M = ik.sparse.csr_matrix("S"), ik.matrix("M")
    f = ik.function([S, M], ik.sparse.dot(S, M))
    return lambda: f(s, m)


def _product_scipy(data):
    s, m = data
    return lambda: s @ m


def product(k: int) -> Workload:
    return Workload(
        f"sparse_dot_k{k}", f"S @ M: CSR 10^5 x 10^5 with 10^6 values, M 10^5 x {k} (10^4 and 10^5 with --quick).",
        setup=lambda quick: _operands(quick, k), reference=lambda d: d[0] @ d[1], tol=1e-10,
        group="Sparse",
        systems={"irkit": _product_irkit, "numpy (scipy.sparse)": _product_scipy})


# -- the gradient -------------------------------------------------------------------------

def _grad_irkit(data):
    import irkit as ik
    s, m = data
    S, M = ik.sparse.csr_matrix("S"), ik.matrix("M")
    y = ik.sparse.dot(S, M)
    gS, gM = ik.grad(0.5 * ik.sum(y * y), [S, M])
    f = ik.function([S, M], [gM, gS])

    def run():
        g_m, g_s = f(s, m)
        return [g_m, g_s.data]
    return run


def _grad_scipy(data):
    s, m = data

    def run():
        y = s @ m
        return [s.T @ y, _sampled_dot(s, y, m)]
    return run


def gradient(k: int) -> Workload:
    return Workload(
        f"sparse_grad_k{k}", f"the gradient of 0.5 ||S @ M||^2 with respect to M and S's values (S as in "
                             f"sparse_dot, M 10^5 x {k}); scipy: S.T @ y and a chunked numpy sampled product.",
        setup=lambda quick: _operands(quick, k), reference=lambda d: _grad_scipy(d)(), tol=1e-9,
        group="Sparse", systems={"irkit": _grad_irkit, "numpy (scipy.sparse)": _grad_scipy})


WORKLOADS = [product(1), product(64), gradient(1), gradient(64)]
