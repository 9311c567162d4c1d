"""Eight-lane vectors inside Numba code, for register-blocked small matrix products.

Numba's loop vectoriser handles long contiguous loops well, but the inner loops of products
with a short dimension (NMF's rank r = 8, say) come out scalar, and BLAS spends most of its
time in call overhead at those sizes (a 64 x 64 by 64 x 8 product is a few microseconds,
most of it the call). This module gives Numba code a value type
``Vec8`` (an LLVM ``<8 x T>`` for T = float32 or float64) and the handful of operations the
kernels need: load / store eight consecutive elements of an array, broadcast a scalar or an
array element to all lanes, fused multiply-add, elementwise arithmetic and selects, and a
transposing horizontal sum of eight vectors.

Everything is plain, target-independent LLVM IR (no x86 intrinsics): LLVM lowers an
``<8 x double>`` to one AVX-512 register, two AVX2 registers, or four SSE / NEON ones, so the
code compiles on every machine Numba runs on. Values of type ``Vec8`` live in registers;
functions that take or return them should be ``inline="always"``.

No bounds checks, no negative-index wraparound: every index is a flat element offset into
the array's data (C-contiguous arrays), and the caller guarantees ``idx + 8 <= size`` for
vector loads and stores (the kernels pad their buffers to whole vectors).
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.extending import intrinsic, models, register_model

__all__ = ["LANES", "Vec8", "vload", "vstore", "vbcast", "vsplat", "vzero", "vfma", "vadd",
           "vmul", "vdiv", "vzero_to", "vclip_below", "vhsum8", "vsum"]

#: lanes per vector
LANES = 8
_I32 = ir.IntType(32)
_FLOATS = (types.float32, types.float64)


class Vec8(types.Type):
    """Numba type of eight float32 or float64 lanes (LLVM ``<8 x float|double>``)."""

    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"Vec8({dtype})")


@register_model(Vec8)
class _Vec8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        be_type = ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), LANES)
        super().__init__(dmm, fe_type, be_type)


def _elem_ptr(context, builder, aty, arr, idx, idxty):
    data = context.make_array(aty)(context, builder, arr).data
    return builder.gep(data, [context.cast(builder, idx, idxty, types.intp)])


def _splat(builder, vty, scalar):
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _is_float_array(arr):
    return isinstance(arr, types.Array) and arr.dtype in _FLOATS and arr.layout == "C"


@intrinsic
def vload(typingctx, arr, idx):
    """``arr.flat[idx:idx + 8]`` as a Vec8 (unaligned load)."""
    if not (_is_float_array(arr) and isinstance(idx, types.Integer)):
        return None
    vt = Vec8(arr.dtype)

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        vty = context.get_value_type(vt)
        return builder.load(builder.bitcast(p, vty.as_pointer()), align=arr.dtype.bitwidth // 8)

    return vt(arr, idx), codegen


@intrinsic
def vstore(typingctx, arr, idx, v):
    """``arr.flat[idx:idx + 8] = v``."""
    if not (_is_float_array(arr) and isinstance(idx, types.Integer) and isinstance(v, Vec8)
            and v.dtype == arr.dtype):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        builder.store(args[2], builder.bitcast(p, args[2].type.as_pointer()),
                      align=arr.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(arr, idx, v), codegen


@intrinsic
def vbcast(typingctx, arr, idx):
    """``arr.flat[idx]`` in all eight lanes (one broadcast load)."""
    if not (_is_float_array(arr) and isinstance(idx, types.Integer)):
        return None
    vt = Vec8(arr.dtype)

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        s = builder.load(p, align=arr.dtype.bitwidth // 8)
        return _splat(builder, context.get_value_type(vt), s)

    return vt(arr, idx), codegen


@intrinsic
def vsplat(typingctx, x, like):
    """The number ``x`` (converted to ``like``'s element type) in all lanes."""
    if not (isinstance(like, Vec8) and isinstance(x, (types.Float, types.Integer))):
        return None

    def codegen(context, builder, sig, args):
        s = context.cast(builder, args[0], sig.args[0], like.dtype)
        return _splat(builder, context.get_value_type(like), s)

    return like(x, like), codegen


@intrinsic
def vzero(typingctx, arr):
    """A zero Vec8 of ``arr``'s dtype."""
    if not _is_float_array(arr):
        return None
    vt = Vec8(arr.dtype)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vt), [0.0] * LANES)

    return vt(arr), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` with one rounding (``llvm.fma``)."""
    if not (isinstance(a, Vec8) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        vty = args[0].type
        suffix = f"v{LANES}{'f64' if a.dtype == types.float64 else 'f32'}"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                            f"llvm.fma.{suffix}")
        return builder.call(fn, list(args))

    return a(a, b, c), codegen


def _binary(name, doc):
    @intrinsic
    def op(typingctx, a, b):
        if not (isinstance(a, Vec8) and a == b):
            return None

        def codegen(context, builder, sig, args):
            return getattr(builder, name)(*args)

        return a(a, b), codegen

    op.__doc__ = doc
    return op


vadd = _binary("fadd", "``a + b`` lanewise.")
vmul = _binary("fmul", "``a * b`` lanewise.")
vdiv = _binary("fdiv", "``a / b`` lanewise (IEEE division).")


@intrinsic
def vzero_to(typingctx, a, x):
    """``a`` with its lanes equal to 0 replaced by the number ``x``."""
    if not isinstance(a, Vec8):
        return None

    def codegen(context, builder, sig, args):
        vty = args[0].type
        is0 = builder.fcmp_ordered("==", args[0], ir.Constant(vty, [0.0] * LANES))
        sx = _splat(builder, vty, context.cast(builder, args[1], sig.args[1], a.dtype))
        return builder.select(is0, sx, args[0])

    return a(a, x), codegen


@intrinsic
def vclip_below(typingctx, a, thr):
    """``a`` with its lanes below the number ``thr`` set to 0 (NaN lanes kept)."""
    if not isinstance(a, Vec8):
        return None

    def codegen(context, builder, sig, args):
        vty = args[0].type
        st = _splat(builder, vty, context.cast(builder, args[1], sig.args[1], a.dtype))
        below = builder.fcmp_ordered("<", args[0], st)
        return builder.select(below, ir.Constant(vty, [0.0] * LANES), args[0])

    return a(a, thr), codegen


@intrinsic
def vhsum8(typingctx, a0, a1, a2, a3, a4, a5, a6, a7):
    """A Vec8 whose lane l is the sum of ``a_l``'s eight lanes (a transposing reduction:
    three rounds of shuffles and adds, pairs summed in a fixed order)."""
    if not (isinstance(a0, Vec8) and a0 == a1 == a2 == a3 == a4 == a5 == a6 == a7):
        return None

    def codegen(context, builder, sig, args):
        def pair(x, y, first, second):
            mask1 = ir.Constant(ir.VectorType(_I32, LANES), first)
            mask2 = ir.Constant(ir.VectorType(_I32, LANES), second)
            return builder.fadd(builder.shuffle_vector(x, y, mask1), builder.shuffle_vector(x, y, mask2))

        # round 1: lanes alternate between the two inputs, adjacent lanes summed
        t = [pair(args[2 * i], args[2 * i + 1], [0, 8, 2, 10, 4, 12, 6, 14], [1, 9, 3, 11, 5, 13, 7, 15])
             for i in range(4)]
        # round 2: lanes 0-3 hold inputs 0-3 (or 4-7) summed over elements 0-3, lanes 4-7 over 4-7
        u0 = pair(t[0], t[1], [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15])
        u1 = pair(t[2], t[3], [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15])
        # round 3: the two halves added
        return pair(u0, u1, [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15])

    return a0(a0, a1, a2, a3, a4, a5, a6, a7), codegen




@intrinsic
def vsum(typingctx, a):
    """The sum of ``a``'s eight lanes (halves added pairwise: (0..3 + 4..7), then 2, then 1)."""
    if not isinstance(a, Vec8):
        return None

    def codegen(context, builder, sig, args):
        v = args[0]

        def half(x, idx):
            return builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(_I32, len(idx)), idx))

        s4 = builder.fadd(half(v, [0, 1, 2, 3]), half(v, [4, 5, 6, 7]))
        s2 = builder.fadd(half(s4, [0, 1]), half(s4, [2, 3]))
        return builder.fadd(builder.extract_element(s2, ir.Constant(_I32, 0)),
                            builder.extract_element(s2, ir.Constant(_I32, 1)))

    return a.dtype(a), codegen
