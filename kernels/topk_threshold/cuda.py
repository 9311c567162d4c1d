"""numba.cuda twin of ``cpu.py``: radix select of the k-th largest magnitude, same tie rule.

Keys are the IEEE bit patterns of |x| (the sign bit masked off: for non-negative floats the
unsigned integer order is the value order), refined 8 bits per pass from the top (4 passes
for float32, 8 for float64), as torch's and CUB's radix selects do.

* Rows up to ``config.CUDA_ROW_MAX``: one block per row (``_block_select``). Each pass the
  block histograms the digit of the keys that still match the prefix found so far into a
  256-bin shared-memory histogram (shared atomics), then one thread walks the histogram
  from the top to fix the next digit. The output pass walks the row in tiles of blockDim
  entries; a block prefix sum over the "key == T" flags ranks the ties so that the lowest
  indices win, exactly like the CPU kernel.
* Longer rows: several blocks per row (``CUDA_CHUNK`` entries each). Each pass, every block
  histograms its chunk in shared memory and adds it to a per-row global histogram; a
  one-thread-per-row kernel then fixes the digit. The tie ranks need the number of ties in
  the preceding chunks: a counting kernel, a per-row exclusive scan, then the write.

Only real rows (float32/float64) run here; complex and the Hermitian DFT selection are CPU
kernels (the GPU sparse projection ranks complex spectra through |z| on the device).
"""
from __future__ import annotations

import math

import numpy as np

from .. import _cuda
from . import config

_cuda.numba_cuda()  # raises the install hint when neither a GPU nor the simulator is there
from numba import cuda  # noqa: E402  (module global: the simulator swaps it for its fake)

_MAX_THREADS = 1024  # static size of the shared scan buffer (blockDim must not exceed it)


@cuda.jit(device=True)
def _key(bits, r, j, absmask):
    return np.uint64(bits[r, j]) & absmask


@cuda.jit(device=True)
def _pick_digit(hist, rem):
    # count-based: the bucket d with cum(> d) < rem <= cum(>= d); returns (d, cum(> d))
    acc = 0
    d = 255
    while d > 0 and acc + hist[d] < rem:
        acc += hist[d]
        d -= 1
    return d, acc


@cuda.jit(device=True)
def _write_span(x, bits, out, mask, want_mask, r, lo, hi, t_key, rem, offset, absmask, scan, shared_off):
    """Write out/mask for entries lo..hi of row r; ties (key == t_key) ranked from ``offset``."""
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    if tid == 0:
        shared_off[0] = offset
    cuda.syncthreads()
    base = lo
    while base < hi:
        j = base + tid
        key = np.uint64(0)
        eq = 0
        if j < hi:
            key = _key(bits, r, j, absmask)
            if key == t_key:
                eq = 1
        scan[tid] = eq
        cuda.syncthreads()
        step = 1
        while step < nt:  # Hillis-Steele inclusive scan
            v = 0
            if tid >= step:
                v = scan[tid - step]
            cuda.syncthreads()
            scan[tid] += v
            cuda.syncthreads()
            step *= 2
        if j < hi:
            keep = key > t_key
            if eq == 1 and shared_off[0] + scan[tid] - 1 < rem:
                keep = True
            if keep:
                out[r, j] = x[r, j]
            else:
                out[r, j] = 0
            if want_mask:
                mask[r, j] = keep
        cuda.syncthreads()
        if tid == 0:
            shared_off[0] += scan[nt - 1]
        cuda.syncthreads()
        base += nt


@cuda.jit
def _block_select(x, bits, out, mask, want_mask, k, n_passes, absmask, bad_key, bad):
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    n = x.shape[1]
    hist = cuda.shared.array(256, np.int64)
    scan = cuda.shared.array(_MAX_THREADS, np.int32)
    pref = cuda.shared.array(1, np.uint64)
    state = cuda.shared.array(3, np.int64)  # rem, nonfinite, tie offset
    if tid == 0:
        pref[0] = np.uint64(0)
        state[0] = k
        state[1] = 0
    cuda.syncthreads()
    for p in range(n_passes):
        shift = np.uint64(8 * (n_passes - 1 - p))
        for d in range(tid, 256, nt):
            hist[d] = 0
        cuda.syncthreads()
        prefix = pref[0]
        for j in range(tid, n, nt):
            key = _key(bits, r, j, absmask)
            if p == 0:
                if key >= bad_key:
                    state[1] = 1
                match = True
            else:
                match = (key >> (shift + np.uint64(8))) == prefix
            if match:
                cuda.atomic.add(hist, np.int64((key >> shift) & np.uint64(255)), 1)
        cuda.syncthreads()
        if tid == 0:
            d, acc = _pick_digit(hist, state[0])
            state[0] -= acc
            pref[0] = (prefix << np.uint64(8)) | np.uint64(d)
        cuda.syncthreads()
    if state[1] != 0:
        if tid == 0:
            bad[r] = 1
        return
    _write_span(x, bits, out, mask, want_mask, r, 0, n, pref[0], state[0], 0, absmask, scan, state[2:])


@cuda.jit
def _mb_hist(bits, chunk, p, n_passes, prefix, ghist, absmask, bad_key, bad):
    b = cuda.blockIdx.x
    r = cuda.blockIdx.y
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    n = bits.shape[1]
    hist = cuda.shared.array(256, np.int64)
    for d in range(tid, 256, nt):
        hist[d] = 0
    cuda.syncthreads()
    shift = np.uint64(8 * (n_passes - 1 - p))
    pr = prefix[r]
    lo = b * chunk
    hi = min(lo + chunk, n)
    for j in range(lo + tid, hi, nt):
        key = _key(bits, r, j, absmask)
        if p == 0:
            if key >= bad_key:
                bad[r] = 1
            match = True
        else:
            match = (key >> (shift + np.uint64(8))) == pr
        if match:
            cuda.atomic.add(hist, np.int64((key >> shift) & np.uint64(255)), 1)
    cuda.syncthreads()
    for d in range(tid, 256, nt):
        if hist[d] != 0:
            cuda.atomic.add(ghist, (r, d), hist[d])


@cuda.jit
def _mb_pick(ghist, prefix, rem):
    r = cuda.grid(1)
    if r >= prefix.shape[0]:
        return
    h = ghist[r]
    d, acc = _pick_digit(h, rem[r])
    rem[r] -= acc
    prefix[r] = (prefix[r] << np.uint64(8)) | np.uint64(d)
    for i in range(256):
        h[i] = 0


@cuda.jit
def _mb_count(bits, chunk, prefix, counts, absmask):
    b = cuda.blockIdx.x
    r = cuda.blockIdx.y
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    n = bits.shape[1]
    lo = b * chunk
    hi = min(lo + chunk, n)
    t_key = prefix[r]
    for j in range(lo + tid, hi, nt):
        if _key(bits, r, j, absmask) == t_key:
            cuda.atomic.add(counts, (r, b), 1)


@cuda.jit
def _mb_offsets(counts):
    r = cuda.grid(1)
    if r >= counts.shape[0]:
        return
    acc = 0
    for b in range(counts.shape[1]):
        c = counts[r, b]
        counts[r, b] = acc
        acc += c


@cuda.jit
def _mb_write(x, bits, out, mask, want_mask, chunk, prefix, rem, offsets, absmask):
    b = cuda.blockIdx.x
    r = cuda.blockIdx.y
    n = x.shape[1]
    scan = cuda.shared.array(_MAX_THREADS, np.int32)
    off = cuda.shared.array(1, np.int64)
    lo = b * chunk
    hi = min(lo + chunk, n)
    _write_span(x, bits, out, mask, want_mask, r, lo, hi, prefix[r], rem[r], offsets[r, b], absmask, scan, off)


@cuda.jit
def _nonfinite_rows(bits, absmask, bad_key, bad):
    r = cuda.blockIdx.x
    for j in range(cuda.threadIdx.x, bits.shape[1], cuda.blockDim.x):
        if _key(bits, r, j, absmask) >= bad_key:
            bad[r] = 1


_REAL = {
    np.dtype(np.float32): (np.uint32, np.uint64(0x7FFFFFFF), np.uint64(0x7F800000), 4),
    np.dtype(np.float64): (np.uint64, np.uint64(0x7FFFFFFFFFFFFFFF), np.uint64(0x7FF0000000000000), 8),
}


def _view(a, dtype):
    """Reinterpret a device array's bytes (CuPy, numba device array, simulator)."""
    if hasattr(a, "view"):
        return a.view(dtype)
    raise TypeError(f"cannot reinterpret a {type(a).__qualname__} as {np.dtype(dtype).name}")


def _host(a) -> np.ndarray:
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a.get())


def select_rows(x2, k, out2, mask2, stream=None, in_place=False):
    """H_k on the rows of the C-contiguous (R, n) device array x2 into out2 (may be x2)."""
    cu = _cuda.numba_cuda()
    n_rows, n = x2.shape
    utype, absmask, bad_key, n_passes = _REAL[np.dtype(x2.dtype)]
    threads = int(config.CUDA_THREADS)
    if threads < 1 or threads > _MAX_THREADS or threads & (threads - 1):
        raise ValueError(f"config.CUDA_THREADS must be a power of two <= {_MAX_THREADS}, got {threads}")
    s = _cuda.stream_for(stream, like=x2)
    dx = _cuda.as_device(x2)
    dbits = _cuda.as_device(_view(x2, utype))
    dout = _cuda.as_device(out2)
    want_mask = mask2 is not None
    dmask = _cuda.as_device(mask2 if want_mask else _cuda.empty((1, 1), np.bool_, like=x2))
    bad = cu.to_device(np.zeros(n_rows, np.uint8), stream=s)
    if in_place:  # check first: the caller's array must not be half-written on error
        _nonfinite_rows[n_rows, threads, s](dbits, absmask, bad_key, bad)
        if _host(bad).any():
            return _host(bad)
    if n <= config.CUDA_ROW_MAX:
        _block_select[n_rows, threads, s](dx, dbits, dout, dmask, want_mask, k, n_passes, absmask, bad_key, bad)
    else:
        chunk = int(config.CUDA_CHUNK)
        n_blk = math.ceil(n / chunk)
        prefix = cu.to_device(np.zeros(n_rows, np.uint64), stream=s)
        rem = cu.to_device(np.full(n_rows, k, np.int64), stream=s)
        ghist = cu.to_device(np.zeros((n_rows, 256), np.int64), stream=s)
        row_threads = min(256, threads)
        row_blocks = _cuda.blocks_for(n_rows, row_threads)
        for p in range(n_passes):
            _mb_hist[(n_blk, n_rows), threads, s](dbits, chunk, p, n_passes, prefix, ghist, absmask, bad_key, bad)
            _mb_pick[row_blocks, row_threads, s](ghist, prefix, rem)
        counts = cu.to_device(np.zeros((n_rows, n_blk), np.int64), stream=s)
        _mb_count[(n_blk, n_rows), threads, s](dbits, chunk, prefix, counts, absmask)
        _mb_offsets[row_blocks, row_threads, s](counts)
        _mb_write[(n_blk, n_rows), threads, s](dx, dbits, dout, dmask, want_mask, chunk, prefix, rem, counts, absmask)
    return _host(bad)


def topk_threshold(c, k, ax, out, return_mask, stream=None, in_place=False):
    """CUDA entry of ``topk_threshold`` (validated by the caller)."""
    ndim = len(c.shape)
    n = int(c.shape[ax])
    contiguous = _is_c_contiguous(c)
    if ax != ndim - 1 or not contiguous:
        if not _cuda.is_cupy(c):
            raise ValueError("on CUDA, non-CuPy arrays must be C-contiguous with axis=-1 (rows last); "
                             f"got axis={ax} of shape {tuple(c.shape)}")
        import cupy

        moved = cupy.ascontiguousarray(cupy.moveaxis(c, ax, -1))
        res = topk_threshold(moved, k, ndim - 1, None, return_mask, stream=stream)
        vals, mask = res if return_mask else (res, None)
        vals = cupy.moveaxis(vals, -1, ax)
        if out is not None:
            out[...] = vals
            vals = out
        return (vals, cupy.moveaxis(mask, -1, ax)) if return_mask else vals
    n_rows = int(np.prod(c.shape[:-1], dtype=np.int64))
    x2 = c.reshape(n_rows, n)
    if out is None:
        out = _cuda.empty(tuple(c.shape), c.dtype, like=c)
    if not _is_c_contiguous(out):
        raise ValueError("out must be C-contiguous on CUDA")
    out2 = out.reshape(n_rows, n)
    mask = _cuda.empty(tuple(c.shape), np.bool_, like=c) if return_mask else None
    mask2 = mask.reshape(n_rows, n) if return_mask else None
    if n_rows:
        bad = select_rows(x2, k, out2, mask2, stream=stream, in_place=in_place)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(f"c must be finite: {rows.size} row(s) hold NaN or inf (first: row {rows[0]})")
    return (out, mask) if return_mask else out


def _is_c_contiguous(a) -> bool:
    flags = getattr(a, "flags", None)
    if flags is None:
        return True
    try:
        return bool(flags["C_CONTIGUOUS"])
    except (KeyError, TypeError):
        return bool(getattr(flags, "c_contiguous", True))
