"""Numba CPU kernel of VDSR's adjustable gradient clipping over many tensors in one pass.

Kim, Lee & Lee (2016, VDSR), Sec. 3.1 ("Adjustable gradient clipping"): every gradient
element is clipped to [-theta/lr, theta/lr] for the current learning rate lr.

Multi-tensor layout: the gradients come as a table of addresses and element counts (as
torch's multi-tensor apply passes pointer lists), every tensor is cut into chunks of at most
``chunk`` elements, and one ``prange`` over all chunks of all tensors clips them, so there is
a single parallel region for the whole model, not one per parameter. Passing addresses
instead of a tuple of arrays matters: Numba's dispatcher types every array of a tuple on
each call (about 3 us per array), which cost more than the clipping itself for VDSR's 40
small tensors. The inner loop is branch-free (two selects and a count) and vectorises.
Elements equal to the bound and NaNs are left as they are (``torch.clamp_`` semantics).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange, types
from numba.core.extending import intrinsic


@intrinsic
def _voidptr(typingctx, addr):
    """An integer address as a ``void*`` (for ``numba.carray``)."""
    if not isinstance(addr, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return types.voidptr(addr), codegen


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
def _clip_addresses(addresses, sizes, chunk, bound, proto):
    n_tensors = addresses.size
    first = np.empty(n_tensors + 1, np.int64)  # first chunk of each tensor (prefix sums)
    first[0] = 0
    for i in range(n_tensors):
        first[i + 1] = first[i] + (sizes[i] + chunk - 1) // chunk
    n_chunks = first[n_tensors]
    counts = np.zeros(n_chunks, np.int64)
    for c in prange(n_chunks):
        t = np.searchsorted(first, c, side="right") - 1
        lo = (c - first[t]) * chunk
        hi = min(lo + chunk, sizes[t])
        g = numba.carray(_voidptr(addresses[t]), (sizes[t],), proto.dtype)
        counts[c] = _clip_range(g, lo, hi, bound)
    return counts.sum()


def clip_addresses(addresses: np.ndarray, sizes: np.ndarray, chunk: int, bound) -> int:
    """Clip ``sizes[i]`` contiguous elements of ``bound``'s dtype at each ``addresses[i]``.

    The caller guarantees that every address points at live, writeable, contiguous memory
    of that many elements for the duration of the call (it holds the arrays/tensors).
    """
    proto = np.empty(0, dtype=np.asarray(bound).dtype)
    return int(_clip_addresses(addresses, sizes, np.int64(chunk), bound, proto))
