"""The input check of the NMF kernels: ``check_nonnegative`` (non-finite or negative entries
of V, a mask or initial factors), with errors that name the count and the first offending
index, in scikit-learn's wording.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .._backend import is_cupy
from .common import is_sparse
from .common import span as _span

__all__ = ["all_finite_nonneg", "array_module", "check_nonnegative"]

#: below this many entries check_nonnegative uses numpy's min / max (no thread wake-up)
_SCAN_MIN = 1 << 18


def _scan_tasks() -> int:
    return max(1, numba.get_num_threads())


def check_nonnegative(name: str, X) -> None:
    """``ValueError`` naming the count and the first offending index of non-finite (NaN or
    inf) entries of X, or else of its negative entries (numpy, scipy.sparse, CuPy or
    cupyx.scipy.sparse). The wording keeps scikit-learn's phrases ("NaN", "inf",
    "Negative values in data") so that its estimator checks recognise the errors."""
    sparse = is_sparse(X)
    data = X.data if sparse else X
    xp, data = array_module(data)
    if not sparse:
        X = data
    if (isinstance(data, np.ndarray) and data.size >= _SCAN_MIN and data.dtype.kind == "f"
            and data.flags["C_CONTIGUOUS"] and data.dtype.itemsize in (4, 8)):
        # large float arrays: one parallel Numba pass counts the bad entries; the slow path
        # below locates them
        if all_finite_nonneg(data.reshape(-1), _scan_tasks()):
            return
    elif data.size and np.dtype(data.dtype).kind in "fiu":
        # fast path, two vectorised reductions and no temporaries (the counting path below
        # makes four passes and two boolean arrays): NaN fails both comparisons, so only
        # clean data returns here
        if bool(data.min() >= 0) and bool(data.max() < np.inf):
            return
    if np.dtype(data.dtype).kind not in "fc":
        bad_finite = None
        n_finite = 0
    else:
        bad_finite = ~xp.isfinite(data)
        n_finite = int(bad_finite.sum())
    if n_finite:
        bad, count = bad_finite, n_finite
        what = f"{name} contains NaN or inf: {count} non-finite entr{'y' if count == 1 else 'ies'}"
    else:
        bad = data < 0
        count = int(bad.sum())
        if count == 0:
            return
        what = (f"Negative values in data passed to {name}: {count} negative "
                f"entr{'y' if count == 1 else 'ies'}")
    if sparse:
        # the first offending entry in row-major order, whatever the storage format
        coo = X.tocoo()
        sel = np.flatnonzero(np.asarray(_host(bad if X.format == "coo" else
                                              (~xp.isfinite(coo.data) if n_finite else coo.data < 0))))
        rows = np.asarray(_host(coo.row))[sel]
        cols = np.asarray(_host(coo.col))[sel]
        e = int(np.lexsort((cols, rows))[0])
        idx = (int(rows[e]), int(cols[e]))
        value = np.asarray(_host(coo.data))[sel[e]]
    else:
        flat = int(xp.argmax(bad.ravel()))
        idx = tuple(int(i) for i in np.unravel_index(flat, X.shape))
        value = _host(X[idx])
    where = ", ".join(str(i) for i in idx)
    raise ValueError(f"{what}, the first at {name}[{where}] = {float(value)!r}")


def array_module(a):
    """(xp, a): numpy or CuPy; other device arrays (numba's, the simulator's) are copied
    to the host for the check, since numba device arrays have no reductions."""
    if isinstance(a, np.ndarray):
        return np, a
    if is_cupy(a):
        import cupy

        return cupy, a
    if hasattr(a, "copy_to_host"):
        return np, a.copy_to_host()
    return np, np.asarray(a)


def _host(x):
    if hasattr(x, "get"):
        return x.get()
    return x


@numba.njit(parallel=True, cache=True, nogil=True)
def all_finite_nonneg(x, T):
    """True when every entry of the 1-D float array x is finite and >= 0, in one parallel
    pass (numpy's ``x.min() >= 0 and x.max() < inf`` reads x twice, on one thread)."""
    n = x.shape[0]
    part = np.zeros((T, 2), np.float64)
    for t in prange(T):
        lo, hi = _span(t, T, n)
        _neg_sum(x[lo:hi], part[t])
    return part[:, 0].sum() == 0 and np.isfinite(part[:, 1].sum())


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"}, error_model="numpy")
def _neg_sum(x, out):
    # float64 sums of the negative entries (0 only when there are none) and of all entries
    # (NaN or inf anywhere make it non-finite; a finite sum that overflows only sends the
    # caller to its exact check). Selects and sums vectorise; a select-based minimum does
    # not (LLVM needs 'nnan' for it).
    neg = 0.0
    acc = 0.0
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        neg += v if v < 0 else 0.0
        acc += v
    out[0] = neg
    out[1] = acc

