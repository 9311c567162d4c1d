"""Numba CPU kernel of VDSR's adjustable gradient clipping over many tensors in one pass.

Kim, Lee & Lee (2016, VDSR), Sec. 3.1 ("Adjustable gradient clipping"): every gradient
element is clipped to [-theta/lr, theta/lr] for the current learning rate lr.

Multi-tensor layout: the gradients come as a table of addresses and element counts (as
torch's multi-tensor apply passes pointer lists), every tensor is cut into chunks of at most
``chunk`` elements, and one ``prange`` over all chunks of all tensors clips them, so there is
a single parallel region for the whole model, not one per parameter. Passing addresses
instead of a tuple of arrays matters: Numba's dispatcher types every array of a tuple on
each call (about 3 us per array), which cost more than the clipping itself for VDSR's 40
small tensors. Within a chunk, blocks of ``config.CPU_BLOCK`` elements are first counted
(read-only, vectorised) and clamped only when the count is not zero: a step where few
gradients exceed the bound reads every gradient once and writes almost nothing. Models
with fewer than ``config.CPU_PARALLEL_MIN`` gradient elements are clipped on the calling
thread. Elements equal to the bound and NaNs are left as they are (``torch.clamp_``
semantics).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange, types
from numba.core.extending import intrinsic

from . import config


@intrinsic
def _voidptr(typingctx, addr):
    """An integer address as a ``void*`` (for ``numba.carray``)."""
    if not isinstance(addr, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return types.voidptr(addr), codegen


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _clip_range(g, lo, hi, bound, block):
    # Blocks of `block` elements: first a read-only pass that counts the elements outside
    # [-bound, bound] (|v| > bound: false for NaN and for v = +-bound), then, only for a block
    # that has some, the clamping pass while the block is still in L1. A step where few
    # gradients exceed the bound (the usual case) thus reads each gradient once and writes
    # almost nothing, instead of reading and rewriting every element. The count is a float32
    # sum of 0/1 (exact below 2**24 per block; `reassoc` lets it vectorise); the loops index
    # slices with their own range variable, so there is no wrap-around test either.
    seg = g[lo:hi]
    lower = -bound
    n = 0
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for b0 in range(0, seg.size, block):
        blk = seg[b0 : min(b0 + block, seg.size)]
        c = zero
        for p in range(blk.size):
            c += one if abs(blk[p]) > bound else zero
        if c > zero:
            for p in range(blk.size):
                v = blk[p]
                blk[p] = bound if v > bound else (lower if v < lower else v)
            n += int(c)
    return n


@numba.njit(cache=True, nogil=True)
def _chunk_starts(sizes, chunk):
    # first chunk of each tensor (prefix sums); -1 when a size is negative
    n_tensors = sizes.size
    first = np.empty(n_tensors + 1, np.int64)
    first[0] = 0
    for i in range(n_tensors):
        if sizes[i] < 0:
            first[n_tensors] = -1
            return first
        first[i + 1] = first[i] + (sizes[i] + chunk - 1) // chunk
    return first


@numba.njit(inline="always")
def _clip_chunk(addresses, sizes, first, c, chunk, bound, block, proto):
    t = np.searchsorted(first, c, side="right") - 1
    lo = (c - first[t]) * chunk
    hi = min(lo + chunk, sizes[t])
    g = numba.carray(_voidptr(addresses[t]), (sizes[t],), proto.dtype)
    return _clip_range(g, lo, hi, bound, block)


@numba.njit(parallel=True, cache=True, nogil=True)
def _clip_parallel(addresses, sizes, first, chunk, bound, block, proto):
    n = 0
    for c in prange(first[-1]):
        n += _clip_chunk(addresses, sizes, first, c, chunk, bound, block, proto)
    return n


@numba.njit(cache=True, nogil=True)
def _clip_serial(addresses, sizes, first, chunk, bound, block, proto):
    n = 0
    for c in range(first[-1]):
        n += _clip_chunk(addresses, sizes, first, c, chunk, bound, block, proto)
    return n


_PROTOS = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


def clip_addresses(addresses: np.ndarray, sizes: np.ndarray, chunk: int, bound) -> int:
    """Clip ``sizes[i]`` contiguous elements of ``bound``'s dtype at each ``addresses[i]``.

    ``addresses`` and ``sizes`` are 1-D int64 arrays of one length; returns the number of
    clipped elements, or -1 (touching nothing) when a size is negative. The caller
    guarantees that every address points at live, writeable, contiguous memory of that many
    elements for the duration of the call (it holds the arrays/tensors). Totals below
    ``config.CPU_PARALLEL_MIN`` elements run on the calling thread: waking the thread pool
    costs more than clipping them.
    """
    proto = _PROTOS[bound.dtype]
    chunk = int(chunk)
    first = _chunk_starts(sizes, chunk)
    if first[-1] < 0:
        return -1
    block = int(config.CPU_BLOCK)
    run = _clip_parallel if int(sizes.sum()) >= int(config.CPU_PARALLEL_MIN) else _clip_serial
    return int(run(addresses, sizes, first, chunk, bound, block, proto))
