"""One BLAS thread while Numba's own threads call BLAS from inside their tasks.

Several CPU kernels (NMF's dense updates, the fused small-image DCT/FFT of
``hotops.sparse_project`` and IHT) call ``np.dot`` from inside a Numba ``prange`` task, one
small product per task. Numba compiles those calls to scipy's cython BLAS, i.e. the same
OpenBLAS that numpy and scipy load, whose own thread pool would then start threads from
every task: on a 2-core machine OpenBLAS' spin-waiting workers and Numba's workers take the
cores from each other. :func:`single_threaded_blas` limits the BLAS libraries to one thread for the
duration of such a call and restores the previous limits afterwards.

The limit is process-wide (BLAS has no per-thread setting): while it is held, BLAS calls
made by other Python threads also run on one thread. Each holder restores the limits it
found when it leaves (nesting on one thread is safe). Across Python threads, threadpoolctl
lets only one thread (the first that changed a limit) control OpenBLAS' process-wide pool;
in the others this context changes nothing, so concurrent callers can never leave BLAS
stuck at one thread, they only lose the speed-up. Without threadpoolctl (a dependency of
scikit-learn, itself a dependency of hotops) the context does nothing.
"""
from __future__ import annotations

import contextlib

import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["single_threaded_blas", "gemm"]

_CONTROLLER = []


def _controller():
    # threadpoolctl only sees libraries that are loaded: load scipy's cython BLAS (the one
    # Numba's np.dot calls) before the scan. Made once; None when threadpoolctl is missing
    # or the scan fails.
    if not _CONTROLLER:
        try:
            import scipy.linalg.cython_blas  # noqa: F401
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController().select(user_api="blas"))
        except Exception:  # pragma: no cover - threadpoolctl missing or failing
            _CONTROLLER.append(None)
    return _CONTROLLER[0]


@contextlib.contextmanager
def single_threaded_blas(enabled: bool = True):
    """Context manager: BLAS libraries limited to one thread inside, restored on exit.

    Parameters
    ----------
    enabled : bool
        ``False`` makes the context a no-op (for call sites that decide at run time).
    """
    ctl = _controller() if enabled else None
    if ctl is None:
        yield
        return
    limiter = ctl.limit(limits=1)
    try:
        yield
    finally:
        limiter.restore_original_limits()


# --------------------------------------------------------------------------- GEMM from Numba
# ``np.dot`` inside Numba only takes whole contiguous arrays and always overwrites its output.
# The fused NMF passes need sub-blocks with a leading dimension (columns j0:j1 of V, without
# a copy) and accumulation into an existing output (C += A B), so they call BLAS' ?gemm
# directly, through the same entry point Numba's np.dot uses: ``numba_xxgemm`` of Numba's
# helper library, which calls scipy.linalg.cython_blas' sgemm/dgemm (the OpenBLAS that numpy
# and scipy load, limited by :func:`single_threaded_blas`). Being a named symbol rather than
# a ctypes address baked into the code, it keeps the callers cacheable (``cache=True``).

_LL_CHAR = ir.IntType(8)
_LL_VOIDP = ir.IntType(8).as_pointer()


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta,
            c, c_off, ldc):
    """Column-major ``C = alpha op(A) op(B) + beta C`` on arrays' data from element offsets."""
    if not (isinstance(a, types.Array) and isinstance(b, types.Array) and isinstance(c, types.Array)):
        return None
    dtype = c.dtype
    if a.dtype != dtype or b.dtype != dtype or dtype not in (types.float32, types.float64):
        return None
    from numba.np.linalg import ensure_blas

    ensure_blas()
    kind = ord("s") if dtype == types.float32 else ord("d")
    sig = types.int32(transa, transb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc)

    def codegen(context, builder, signature, args):
        (ta, tb, vm, vn, vk, valpha, va, vaoff, vlda, vb, vboff, vldb, vbeta, vc, vcoff, vldc) = args
        tys = signature.args
        intp = cgutils.intp_t

        def as_intp(v, ty):
            return context.cast(builder, v, ty, types.intp)

        def ptr(arr, aty, off, offty):
            data = context.make_array(aty)(context, builder, arr).data
            return builder.bitcast(builder.gep(data, [as_intp(off, offty)]), _LL_VOIDP)

        def flag(v, ty):
            t = context.cast(builder, v, ty, types.boolean)
            return builder.select(t, ir.Constant(_LL_CHAR, ord("t")), ir.Constant(_LL_CHAR, ord("n")))

        def slot(v, ty):
            return cgutils.alloca_once_value(builder, context.cast(builder, v, ty, dtype))

        fnty = ir.FunctionType(ir.IntType(32), [_LL_CHAR, _LL_CHAR, _LL_CHAR, intp, intp, intp,
                                                _LL_VOIDP, _LL_VOIDP, intp, _LL_VOIDP, intp,
                                                _LL_VOIDP, _LL_VOIDP, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        return builder.call(fn, [
            ir.Constant(_LL_CHAR, kind), flag(ta, tys[0]), flag(tb, tys[1]),
            as_intp(vm, tys[2]), as_intp(vn, tys[3]), as_intp(vk, tys[4]),
            builder.bitcast(slot(valpha, tys[5]), _LL_VOIDP),
            ptr(va, tys[6], vaoff, tys[7]), as_intp(vlda, tys[8]),
            ptr(vb, tys[9], vboff, tys[10]), as_intp(vldb, tys[11]),
            builder.bitcast(slot(vbeta, tys[12]), _LL_VOIDP),
            ptr(vc, tys[13], vcoff, tys[14]), as_intp(vldc, tys[15]),
        ])

    return sig, codegen


@numba.njit(inline="always")
def gemm(ta, tb, M, N, K, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off, ldc):
    """Row-major ``C[M, N] = alpha op(A) op(B) + beta C`` by BLAS ?gemm, from Numba code.

    Parameters
    ----------
    ta, tb : bool
        ``op(A) = A^T`` when ``ta`` (A then stored K x M), likewise for B (stored N x K).
    M, N, K : int
        Shape of the product: op(A) is M x K, op(B) is K x N.
    A, B, C : arrays of one dtype (float32 or float64)
        Storage; each operand starts ``*_off`` elements into its array's data and has rows
        ``ld*`` elements apart (so a block of columns of a C-contiguous array is passed as
        the array, the block's first element's offset and the array's row length).
    alpha, beta : float
        ``beta = 0`` overwrites C, ``beta = 1`` accumulates.

    Notes
    -----
    BLAS is column-major: the row-major product is computed as ``C^T = op(B)^T op(A)^T``.
    No checks: callers pass shapes and strides that fit the arrays. Call it from threads
    that hold :func:`single_threaded_blas` when it runs inside parallel tasks.
    """
    return _xxgemm(tb, ta, N, M, K, alpha, B, b_off, ldb, A, a_off, lda, beta, C, c_off, ldc)
