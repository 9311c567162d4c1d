"""Numba CPU kernel of VDSR's adjustable gradient clipping over many tensors in one pass.

Kim, Lee & Lee (2016, VDSR), Sec. 3.1 ("Adjustable gradient clipping"): every gradient
element is clipped to [-theta/lr, theta/lr] for the current learning rate lr.

Multi-tensor layout: the gradients come as a tuple of 1-D views (one per tensor) and a chunk
table whose rows are (tensor, start, stop); one ``prange`` over the table's rows clips every
chunk of every tensor, so there is a single parallel region for the whole model, not one
per parameter. The inner loop is branch-free (two selects and a count) and vectorises.
Elements equal to the bound and NaNs are left as they are (``torch.clamp_`` semantics).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange


@numba.njit(cache=True, nogil=True)
def _clip_range(g, lo, hi, bound):
    seg = g[lo:hi]  # indexing with the range variable itself: no wrap-around test, vectorises
    lower = -bound
    n = 0
    for p in range(seg.size):
        v = seg[p]
        above = v > bound
        below = v < lower
        n += above | below
        seg[p] = bound if above else (lower if below else v)
    return n


@numba.njit(parallel=True, cache=True, nogil=True)
def _clip_multi(grads, table, bound, counts):
    for c in prange(table.shape[0]):
        counts[c] = _clip_range(grads[table[c, 0]], table[c, 1], table[c, 2], bound)
    return counts


def clip(views: tuple, table: np.ndarray, bound) -> int:
    """Clip the 1-D arrays ``views`` in place along ``table``; return the number clipped."""
    counts = np.zeros(table.shape[0], dtype=np.int64)
    if table.shape[0]:
        _clip_multi(views, table, bound, counts)
    return int(counts.sum())
