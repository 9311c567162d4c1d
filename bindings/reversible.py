"""Reversible residual blocks whose backward pass stores no activations (Gomez et al. 2017).

Gomez, Ren, Urtasun & Grosse, "The Reversible Residual Network: Backpropagation Without
Storing Activations" (NeurIPS 2017). A block splits its input along ``split_dim`` into
(x1, x2) and computes (Eq. 3)

    y1 = x1 + F(x2),    y2 = x2 + G(y1).

:class:`ReversibleSequence` runs a chain of such blocks as ONE autograd Function:

* forward runs every block under ``no_grad`` in two half-size working buffers, adding F and
  G outputs in place (``hotops.kernels.reversible.couple_``) and dropping them at once, so
  no intermediate activation survives the forward; only the sequence's output is saved;
* backward (Algorithm 1 of the paper) walks the blocks in reverse. For each block it
  recomputes G(y1) with grad enabled, takes its vector-Jacobian product, and in ONE fused
  pass overwrites y2 with x2 = y2 - G(y1) and adds the product to y1's gradient; then the
  same for F: x1 = y1 - F(x2) into y1's memory, fused with the accumulation into x2's
  gradient. Activation memory is therefore O(1) in the number of blocks (two half buffers
  for the activations, two for the gradients), for about one extra forward pass.

Training semantics the recompute must not break (the known bugs of other libraries):

* BatchNorm running statistics (and every other buffer, ``num_batches_tracked`` included)
  are snapshotted at the start of backward and restored at its end, so they are updated
  exactly once per step, by the forward. The recompute runs in the modules' own mode (train
  mode uses the batch statistics, as in the forward); switching to eval would change F.
* The CPU RNG state (and the CUDA generator of the input's device) is recorded before each
  F and each G call and restored for its recompute, so dropout masks match; the caller's
  RNG state is restored after backward.
* The autocast state of the forward (enabled, dtype, cache) is replayed in the recompute;
  F/G outputs in lower precision are added to the full-precision activations.
* Gradients of parameters are *returned* by the Function (not written to ``.grad``), so
  ``torch.autograd.grad`` works, shared parameters get the sum over their uses, and DDP's
  hooks fire once per parameter.

``exact=True`` carries the activations as integers with ``frac_bits`` fractional bits and
rounds F and G outputs to that grid before adding (fused quantise-add/subtract kernels):
reconstruction is then bit-exact at any depth. Gradients treat the rounding as the identity
(straight-through), i.e. they are those of the float network evaluated at the rounded
activations.

``torch.compile`` / ``torch.export``:

* ``torch.ops.hotops.reversible_couple_(Tensor(a!) y, Tensor f, int sign, Tensor(b!)? acc,
  Tensor? add, bool check_finite) -> Tensor`` is the coupling kernel as a ``torch.library``
  custom op with a fake implementation (in place: y += sign * f, acc += add; returns the
  count of non-finite values written, a 0-d int64 CPU tensor).
* Without a graph to record (``torch.no_grad()``, inference, export) the float forward is
  traced: F and G inline into the graph and each coupling is one ``reversible_couple_``
  node, so a model compiles with ``fullgraph=True``.
* With a graph to record (training), the reversible autograd Function runs eagerly behind
  one graph break (``torch.compiler.disable``); the rest of the model is compiled, and F
  and G may be compiled on their own (``torch.compile(F)``). Gradients, BatchNorm statistics
  and dropout masks are those of eager mode. A full graph of the reversible backward is not
  possible in this torch version: the recompute must restore the RNG state recorded before
  each F and G call (dropout), and ``torch.get_rng_state`` / ``set_rng_state`` are on
  Dynamo's skip list, with no public traceable way to replay a recorded state; the
  backward's vector-Jacobian products use ``torch.autograd.grad``, which Dynamo refuses
  while ``torch._dynamo.config.trace_autograd_ops`` is off (the default); and the
  per-block non-finite check reads a count on the host. Traced without the break, Dynamo
  gave up on the Function and then crashed inside numba's dispatcher.
* Exact mode, ``inverse`` and F/G containing modules with ``inplace=True`` (whose
  overwriting of their input only the eager version counters detect) also run eagerly
  behind a graph break.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from hotops.kernels import reversible as _kernel

from ._interop import stream_of, to_kernel

__all__ = ["ReversibleBlock", "ReversibleSequence", "saved_tensor_bytes"]

_KERNEL_FLOATS = {"cpu": (torch.float32, torch.float64), "cuda": (torch.float16, torch.float32, torch.float64)}
_INT_DTYPES = (torch.int32, torch.int64)
_DEFAULT_FRAC_BITS = {torch.int64: 32, torch.int32: 16}


# --------------------------------------------------------------------------- element-wise ops

def _kernel_ok(*tensors: Tensor) -> bool:
    t0 = tensors[0]
    allowed = _KERNEL_FLOATS.get(t0.device.type, ())
    return all(t.device == t0.device and t.is_contiguous() and t.dtype in allowed for t in tensors)


def _couple(y: Tensor, f: Tensor, sign: int, acc: Optional[Tensor] = None, add: Optional[Tensor] = None,
            check: bool = False) -> int:
    """y += sign * f and acc += add (one fused pass where the kernels take the dtypes)."""
    if f.dtype != y.dtype:
        f = f.to(y.dtype)  # autocast: a bf16/fp16 F output is added in the activations' precision
    if add is not None and add.dtype != acc.dtype:
        add = add.to(acc.dtype)
    ops = [y, f] + ([acc, add] if acc is not None else [])
    if _kernel_ok(*ops):
        f = f.contiguous()
        kw = {}
        if acc is not None:
            kw = {"acc": to_kernel(acc), "add": to_kernel(add.contiguous())}
        return _kernel.couple_(to_kernel(y), to_kernel(f), sign, check_finite=check, stream=stream_of(y), **kw)
    # bfloat16 activations, odd devices: torch's own in-place ops (two passes)
    y.add_(f, alpha=sign)
    if acc is not None:
        acc.add_(add)
    return int((~torch.isfinite(y)).sum()) if check else 0


@torch.library.custom_op("hotops::reversible_couple_", mutates_args=("y", "acc"))
def _couple_op(y: Tensor, f: Tensor, sign: int, acc: Optional[Tensor], add: Optional[Tensor],
               check_finite: bool) -> Tensor:
    """y += sign * f, and acc += add in the same pass, in place (``hotops.kernels.reversible
    .couple_``: with sign -1 the reconstruction x2 = y2 - G(y1) of Eq. 4 fused with the
    gradient accumulation of Algorithm 1). Returns a 0-d int64 CPU tensor: the non-finite
    values written to y (0 unless ``check_finite``)."""
    _check_couple(y, f, sign, acc, add)
    return torch.tensor(_couple(y, f, sign, acc, add, check_finite), dtype=torch.int64)


@_couple_op.register_fake
def _(y, f, sign, acc, add, check_finite):
    _check_couple(y, f, sign, acc, add)
    return torch.empty((), dtype=torch.int64)


def _check_couple(y, f, sign, acc, add) -> None:
    """The argument checks that need no data (typed errors before the kernel or the trace)."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    if not (y.is_floating_point() and f.is_floating_point()):
        raise TypeError(f"y and f must be floating point, got {y.dtype} and {f.dtype}")
    if f.shape != y.shape:
        raise ValueError(f"f must have the shape of y {tuple(y.shape)}, got {tuple(f.shape)}")
    if (acc is None) != (add is None):
        raise ValueError("acc and add must be given together")
    if acc is not None:
        if acc.shape != y.shape or add.shape != y.shape:
            raise ValueError(f"acc and add must have the shape of y {tuple(y.shape)}, got {tuple(acc.shape)} and "
                             f"{tuple(add.shape)}")
        if not (acc.is_floating_point() and add.is_floating_point()):
            raise TypeError(f"acc and add must be floating point, got {acc.dtype} and {add.dtype}")


def _quantize(x: Tensor, frac_bits: int, out: Tensor) -> int:
    if _kernel_ok(x):
        return _kernel.quantize(to_kernel(x), frac_bits, to_kernel(out), stream=stream_of(x))
    raise TypeError(f"exact mode needs float32/float64 activations (float16 too on CUDA), got {x.dtype}")


def _dequantize(q: Tensor, frac_bits: int, out: Tensor) -> None:
    _kernel.dequantize(to_kernel(q), frac_bits, to_kernel(out), stream=stream_of(q))


def _quantize_couple(y: Tensor, f: Tensor, frac_bits: int, sign: int, acc=None, add=None) -> int:
    floats = _KERNEL_FLOATS.get(y.device.type, ())
    if f.dtype not in floats:
        f = f.to(torch.float32)
    f = f.contiguous()
    kw = {}
    if acc is not None:
        if add.dtype != acc.dtype:
            add = add.to(acc.dtype)
        kw = {"acc": to_kernel(acc), "add": to_kernel(add.contiguous())}
    return _kernel.quantize_couple_(to_kernel(y), to_kernel(f), frac_bits, sign, stream=stream_of(y), **kw)


# --------------------------------------------------------------------------- state helpers

def _rng_get(device: torch.device):
    cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda_state


def _rng_record(device: torch.device, last):
    """The RNG state now, sharing ``last``'s tensors when nothing was drawn since (blocks
    without dropout then keep no per-block state at all)."""
    state = _rng_get(device)
    if last is not None and torch.equal(state[0], last[0]) and (
            state[1] is None or (last[1] is not None and torch.equal(state[1], last[1]))):
        return last
    return state


def _rng_set(state, device: torch.device) -> None:
    cpu_state, cuda_state = state
    torch.set_rng_state(cpu_state)
    if cuda_state is not None:
        torch.cuda.set_rng_state(cuda_state, device)


def _autocast_state(device_type: str):
    try:
        enabled = torch.is_autocast_enabled(device_type)
        dtype = torch.get_autocast_dtype(device_type)
    except (TypeError, RuntimeError):  # device types without autocast
        return None
    return enabled, dtype, torch.is_autocast_cache_enabled()


def _autocast(device_type: str, state):
    if state is None:
        return contextlib.nullcontext()
    enabled, dtype, cache = state
    return torch.autocast(device_type, dtype=dtype, enabled=enabled, cache_enabled=cache)


def _shape_str(t: Tensor) -> str:
    return str(tuple(t.shape))


# --------------------------------------------------------------------------- modules

class ReversibleBlock(nn.Module):
    """One reversible residual block: y1 = x1 + F(x2), y2 = x2 + G(y1).

    Parameters
    ----------
    F, G : nn.Module
        Residual functions. Each maps a half (the input split in two along ``split_dim``) to
        a tensor of the same shape. They must be modules so that their parameters and
        buffers can be found (gradients, BatchNorm statistics).
    split_dim : int
        Dimension split into (x1, x2) -- the channel dimension (1) for images.

    Notes
    -----
    Gomez et al. (2017), Eq. 3 (forward) and Eq. 4 (inverse). Calling a block on its own runs
    it as a one-block :class:`ReversibleSequence` (no activations stored); several blocks
    should be chained with :class:`ReversibleSequence` so that the whole chain is one
    autograd node.
    """

    def __init__(self, F: nn.Module, G: nn.Module, split_dim: int = 1):
        super().__init__()
        for name, m in (("F", F), ("G", G)):
            if not isinstance(m, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module (its parameters and buffers are needed), "
                                f"got {type(m).__qualname__}")
        if isinstance(split_dim, bool) or not isinstance(split_dim, int):
            raise TypeError(f"split_dim must be an int, got {split_dim!r}")
        self.F = F
        self.G = G
        self.split_dim = split_dim

    def extra_repr(self) -> str:
        return f"split_dim={self.split_dim}"

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling():
            return _compiled_forward(self, x)
        return _apply(self._spec(), x)

    def _spec(self) -> "_Spec":
        return _Spec((self,), self.split_dim, name="ReversibleBlock")

    def forward_stored(self, x: Tensor) -> Tensor:
        """The same function with plain autograd (all activations stored): the reference."""
        return self._spec().forward_stored(x)

    @torch.no_grad()
    def inverse(self, y: Tensor) -> Tensor:
        """x from y = block(x) (Eq. 4): x2 = y2 - G(y1), x1 = y1 - F(x2); y is not modified."""
        if torch.compiler.is_compiling():
            return _inverse_eager(self, y)
        return self._spec().inverse(y)


class ReversibleSequence(nn.Module):
    """A chain of :class:`ReversibleBlock` run as one autograd Function with O(1) activation memory.

    Parameters
    ----------
    *blocks : ReversibleBlock
        The blocks in order (a single list or tuple is accepted too). All must split the
        same dimension.
    exact : bool
        Fixed-point additive coupling: activations carried as integers with ``frac_bits``
        fractional bits, F and G outputs rounded to the same grid (round half up), so that
        reconstruction is bit-exact at any depth. The output (and therefore the function)
        differs from the float network by the rounding; gradients are straight-through.
    frac_bits : int, optional
        Fractional bits of the fixed-point grid (default 32 for int64, 16 for int32).
    exact_dtype : torch.int64 or torch.int32
        Integer type of the fixed-point activations (range +-2^62 or +-2^31 grid steps).
    check_finite : bool
        Count non-finite values written by each reconstruction and raise
        ``FloatingPointError`` naming the block (on CUDA this reads back one counter per
        half block).
    preserve_rng_state : bool
        Record and replay the RNG state around every F and G call (needed for dropout).
    name : str
        Used in error messages ("<name> block 3: ...").

    Notes
    -----
    Gomez et al. (2017), Algorithm 1. Memory: ``ctx`` keeps only the sequence's output;
    backward allocates two half-size activation buffers and two half-size gradient buffers
    once, whatever the depth. With ``preserve_rng_state`` the RNG state (5 kB on the CPU, plus
    the CUDA generator's) is kept before each F/G call that follows a random draw (dropout);
    calls after which nothing was drawn share the previous state, so deterministic blocks
    keep none of their own. Module forward hooks on F and G fire again
    during the recompute.
    """

    def __init__(self, *blocks, exact: bool = False, frac_bits: Optional[int] = None,
                 exact_dtype: torch.dtype = torch.int64, check_finite: bool = True,
                 preserve_rng_state: bool = True, name: str = "ReversibleSequence"):
        super().__init__()
        if len(blocks) == 1 and isinstance(blocks[0], (list, tuple)):
            blocks = tuple(blocks[0])
        if not blocks:
            raise ValueError("ReversibleSequence needs at least one block")
        for i, b in enumerate(blocks):
            if not isinstance(b, ReversibleBlock):
                raise TypeError(f"blocks[{i}] must be a ReversibleBlock, got {type(b).__qualname__}")
        dims = {b.split_dim for b in blocks}
        if len(dims) != 1:
            raise ValueError(f"all blocks must use the same split_dim, got {sorted(dims)}")
        if exact_dtype not in _INT_DTYPES:
            raise TypeError(f"exact_dtype must be torch.int64 or torch.int32, got {exact_dtype}")
        if frac_bits is None:
            frac_bits = _DEFAULT_FRAC_BITS[exact_dtype]
        _kernel._check_frac_bits(frac_bits, np.int64 if exact_dtype == torch.int64 else np.int32)
        self.blocks = nn.ModuleList(blocks)
        self.split_dim = blocks[0].split_dim
        self.exact = bool(exact)
        self.frac_bits = int(frac_bits)
        self.exact_dtype = exact_dtype
        self.check_finite = bool(check_finite)
        self.preserve_rng_state = bool(preserve_rng_state)
        self.name = str(name)

    def extra_repr(self) -> str:
        extra = f", exact=True, frac_bits={self.frac_bits}, exact_dtype={self.exact_dtype}" if self.exact else ""
        return f"split_dim={self.split_dim}{extra}"

    def __len__(self) -> int:
        return len(self.blocks)

    def _spec(self) -> "_Spec":
        return _Spec(tuple(self.blocks), self.split_dim, exact=self.exact, frac_bits=self.frac_bits,
                     exact_dtype=self.exact_dtype, check_finite=self.check_finite,
                     preserve_rng_state=self.preserve_rng_state, name=self.name)

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling():
            return _compiled_forward(self, x)
        return _apply(self._spec(), x)

    def forward_stored(self, x: Tensor) -> Tensor:
        """The same network (same rounding in exact mode) with plain autograd, storing every
        activation: the reference the tests compare gradients with."""
        return self._spec().forward_stored(x)

    @torch.no_grad()
    def inverse(self, y: Tensor) -> Tensor:
        """The input x of ``y = self(x)``, reconstructed block by block (Eq. 4).

        In exact mode ``y`` must be an output of this sequence (on the fixed-point grid)."""
        if torch.compiler.is_compiling():
            return _inverse_eager(self, y)
        return self._spec().inverse(y)


# --------------------------------------------------------------------------- the engine

class _Spec:
    """Blocks and options of one call (what the autograd Function needs besides tensors)."""

    def __init__(self, blocks, split_dim, exact=False, frac_bits=32, exact_dtype=torch.int64, check_finite=True,
                 preserve_rng_state=True, name="ReversibleSequence"):
        self.blocks = blocks
        self.split_dim = split_dim
        self.exact = exact
        self.frac_bits = frac_bits
        self.exact_dtype = exact_dtype
        self.check_finite = check_finite
        self.preserve_rng_state = preserve_rng_state
        self.name = name

    def label(self, i: int) -> str:
        return f"{self.name} block {i}" if len(self.blocks) > 1 or self.name != "ReversibleBlock" else "ReversibleBlock"

    # -- input checks --------------------------------------------------------
    def dim_of(self, x: Tensor) -> int:
        if not isinstance(x, Tensor):
            raise TypeError(f"{self.name}: input must be a torch.Tensor, got {type(x).__qualname__}")
        if not x.is_floating_point():
            raise TypeError(f"{self.name}: input must be floating point, got {x.dtype}")
        d = self.split_dim
        if not -x.dim() <= d < x.dim():
            raise ValueError(f"{self.label(0)}: split_dim={d} is out of range for an input of shape {_shape_str(x)}")
        d %= x.dim()
        c = x.shape[d]
        if c % 2:
            raise ValueError(
                f"{self.label(0)}: the input has {c} entries along split_dim={self.split_dim} (shape {_shape_str(x)}); "
                "a reversible block splits them into two equal halves, so the count must be even"
            )
        return d

    def check_out(self, i: int, which: str, out, half: Tensor) -> Tensor:
        arg = "x2" if which == "F" else "y1"
        if not isinstance(out, Tensor):
            raise TypeError(f"{self.label(i)}: {which} must return a tensor, got {type(out).__qualname__}")
        if out.shape != half.shape:
            raise ValueError(f"{self.label(i)}: {which} changed the shape: {which}({arg}) has shape {_shape_str(out)}, "
                             f"but it is added to a half of shape {_shape_str(half)}; F and G must preserve the shape")
        return out

    def call(self, i: int, which: str, module, inp: Tensor, half: Tensor) -> Tensor:
        version = inp._version
        out = module(inp)
        if inp._version != version:
            arg = "x2" if which == "F" else "y1"
            raise RuntimeError(
                f"{self.label(i)}: {which} modified its input {arg} in place (e.g. nn.ReLU(inplace=True) or an "
                f"in-place op as its first layer); a reversible block needs {arg} unchanged to compute the other "
                "half and to reconstruct the input in backward"
            )
        return self.check_out(i, which, out, half)

    def nonfinite(self, i: int, what: str, count: int) -> None:
        if count:
            raise FloatingPointError(
                f"{self.label(i)}: {count} non-finite value(s) appeared while reconstructing {what} in backward "
                "(the forward activations overflowed, or F/G are not deterministic functions of their input)"
            )

    # -- forward -------------------------------------------------------------
    def run_forward(self, x: Tensor, record_rng: bool):
        """Forward without a graph. Returns (output, state to save, rng states, autocast)."""
        dim = self.dim_of(x)
        x1, x2 = x.chunk(2, dim)
        rng = [] if record_rng else None
        last = None
        dev = x.device
        amp = _autocast_state(dev.type)
        with torch.no_grad():
            if self.exact:
                fb = self.frac_bits
                q1 = torch.empty(x1.shape, dtype=self.exact_dtype, device=dev)
                q2 = torch.empty(x2.shape, dtype=self.exact_dtype, device=dev)
                bad = _quantize(x1.contiguous(), fb, q1) + _quantize(x2.contiguous(), fb, q2)
                if bad:
                    raise ValueError(f"{self.name}: {bad} input value(s) are non-finite or outside the fixed-point "
                                     f"range of {self.exact_dtype} with frac_bits={fb}")
                s1 = torch.empty(x1.shape, dtype=x.dtype, device=dev)
                s2 = torch.empty(x2.shape, dtype=x.dtype, device=dev)
                for i, blk in enumerate(self.blocks):
                    _dequantize(q2, fb, s2)
                    st_f = last = _rng_record(dev, last) if record_rng else None
                    f = self.call(i, "F", blk.F, s2, s1)
                    self.overflow(i, "y1", _quantize_couple(q1, f, fb, +1))
                    del f
                    _dequantize(q1, fb, s1)
                    st_g = last = _rng_record(dev, last) if record_rng else None
                    g = self.call(i, "G", blk.G, s1, s2)
                    self.overflow(i, "y2", _quantize_couple(q2, g, fb, +1))
                    del g
                    if record_rng:
                        rng.append((st_f, st_g))
                qout = torch.cat([q1, q2], dim)
                del q1, q2, s1, s2
                out = torch.empty(qout.shape, dtype=x.dtype, device=dev)
                _dequantize(qout, fb, out)
                return out, qout, rng, amp
            y1 = _contiguous_copy(x1)  # the working buffers: the caller's x is never written
            y2 = _contiguous_copy(x2)
            for i, blk in enumerate(self.blocks):
                st_f = last = _rng_record(dev, last) if record_rng else None
                f = self.call(i, "F", blk.F, y2, y1)
                _couple(y1, f, +1)
                del f
                st_g = last = _rng_record(dev, last) if record_rng else None
                g = self.call(i, "G", blk.G, y1, y2)
                _couple(y2, g, +1)
                del g
                if record_rng:
                    rng.append((st_f, st_g))
            out = torch.cat([y1, y2], dim)
            return out, out, rng, amp

    def run_forward_traced(self, x: Tensor) -> Tensor:
        """The float forward without a graph, written for Dynamo to trace (no RNG records,
        no version counters): each coupling is one ``hotops::reversible_couple_`` node."""
        dim = self.dim_of(x)
        x1, x2 = x.chunk(2, dim)
        with torch.no_grad():
            y1 = _contiguous_copy(x1)
            y2 = _contiguous_copy(x2)
            for i, blk in enumerate(self.blocks):
                f = self.check_out(i, "F", blk.F(y2), y1)
                torch.ops.hotops.reversible_couple_(y1, f, 1, None, None, False)
                g = self.check_out(i, "G", blk.G(y1), y2)
                torch.ops.hotops.reversible_couple_(y2, g, 1, None, None, False)
            return torch.cat([y1, y2], dim)

    def overflow(self, i: int, what: str, count: int) -> None:
        if count:
            raise FloatingPointError(
                f"{self.label(i)}: {count} value(s) of {what} were non-finite or left the fixed-point range "
                f"({self.exact_dtype}, frac_bits={self.frac_bits}); use fewer fractional bits or int64"
            )

    # -- backward ------------------------------------------------------------
    def run_backward(self, saved: Tensor, grad_out: Tensor, rng, amp, dtype: torch.dtype, params, need_params,
                     need_input: bool):
        dim = self.split_dim % saved.dim()
        dev = saved.device
        index = {id(p): k for k, p in enumerate(params)}
        grads: list = [None] * len(params)
        h1, h2 = saved.chunk(2, dim)
        a1 = _contiguous_copy(h1)  # working activations: y, reconstructed in place into x
        a2 = _contiguous_copy(h2)
        gdtype = grad_out.dtype
        g1, g2 = (_contiguous_copy(g) for g in grad_out.chunk(2, dim))  # working gradients
        if self.exact:
            s1 = torch.empty(a1.shape, dtype=dtype, device=dev)
            s2 = torch.empty(a2.shape, dtype=dtype, device=dev)
        buffers = list(_unique(b for blk in self.blocks for b in blk.buffers()))
        snapshot = [b.detach().clone() for b in buffers]
        rng_outer = _rng_get(dev) if rng is not None else None
        try:
            for i in range(len(self.blocks) - 1, -1, -1):
                blk = self.blocks[i]
                # ---- G: x2 = y2 - G(y1); dL/dy1 += (dG/dy1)^T dL/dy2
                if self.exact:
                    _dequantize(a1, self.frac_bits, s1)
                    y1 = s1.detach().requires_grad_(True)
                else:
                    y1 = a1.detach().requires_grad_(True)
                if rng is not None:
                    _rng_set(rng[i][1], dev)
                with torch.enable_grad(), _autocast(dev.type, amp):
                    g = self.call(i, "G", blk.G, y1, a2 if not self.exact else s2)
                gp = [p for p in blk.G.parameters() if id(p) in index and need_params[index[id(p)]]]
                vj = _vjp(g, [y1] + gp, g2)
                dy1 = vj[0] if vj[0] is not None else None
                _accumulate(grads, index, gp, vj[1:])
                g = g.detach()
                if self.exact:
                    bad = _quantize_couple(a2, g, self.frac_bits, -1, *((g1, dy1) if dy1 is not None else ()))
                    self.overflow(i, "the reconstructed x2", bad)
                else:
                    bad = _couple(a2, g, -1, *((g1, dy1) if dy1 is not None else (None, None)), check=self.check_finite)
                    self.nonfinite(i, "x2 = y2 - G(y1)", bad)
                del g, vj, dy1, y1
                # ---- F: x1 = y1 - F(x2); dL/dx2 += (dF/dx2)^T dL/dy1
                if self.exact:
                    _dequantize(a2, self.frac_bits, s2)
                    x2 = s2.detach().requires_grad_(True)
                else:
                    x2 = a2.detach().requires_grad_(True)
                if rng is not None:
                    _rng_set(rng[i][0], dev)
                with torch.enable_grad(), _autocast(dev.type, amp):
                    f = self.call(i, "F", blk.F, x2, a1 if not self.exact else s1)
                fp = [p for p in blk.F.parameters() if id(p) in index and need_params[index[id(p)]]]
                want_x2 = i > 0 or need_input
                vj = _vjp(f, ([x2] if want_x2 else []) + fp, g1)
                dx2 = vj[0] if want_x2 else None
                _accumulate(grads, index, fp, vj[1:] if want_x2 else vj)
                f = f.detach()
                if i == 0 and not need_input:
                    break  # x itself is neither needed nor returned
                if self.exact:
                    bad = _quantize_couple(a1, f, self.frac_bits, -1, *((g2, dx2) if dx2 is not None else ()))
                    self.overflow(i, "the reconstructed x1", bad)
                else:
                    bad = _couple(a1, f, -1, *((g2, dx2) if dx2 is not None else (None, None)), check=self.check_finite)
                    self.nonfinite(i, "x1 = y1 - F(x2)", bad)
                del f, vj, dx2, x2
        finally:
            with torch.no_grad():
                for b, s in zip(buffers, snapshot):
                    b.copy_(s)  # running stats updated once per step: by the forward
            if rng_outer is not None:
                _rng_set(rng_outer, dev)
        grad_x = torch.cat([g1, g2], dim).to(gdtype) if need_input else None
        return grad_x, grads, (a1, a2)

    # -- references ----------------------------------------------------------
    def forward_stored(self, x: Tensor) -> Tensor:
        dim = self.dim_of(x)
        x1, x2 = x.chunk(2, dim)
        if self.exact:
            q = self._ste
            x1, x2 = q(x1), q(x2)
        for i, blk in enumerate(self.blocks):
            f = self.check_out(i, "F", blk.F(x2), x1)
            x1 = x1 + (self._ste(f).to(x1.dtype) if self.exact else f)
            g = self.check_out(i, "G", blk.G(x1), x2)
            x2 = x2 + (self._ste(g).to(x2.dtype) if self.exact else g)
        return torch.cat([x1, x2], dim)

    def _ste(self, v: Tensor) -> Tensor:
        """Round to the grid 2^-frac_bits (half up), gradient passed straight through."""
        scale = 2.0**self.frac_bits
        r = torch.floor(v.detach().double() * scale + 0.5) / scale
        return v + (r.to(v.dtype) - v).detach()

    def inverse(self, y: Tensor) -> Tensor:
        dim = self.dim_of(y)
        y1, y2 = (_contiguous_copy(h) for h in y.chunk(2, dim))
        dev = y.device
        if self.exact:
            fb = self.frac_bits
            q1 = torch.empty(y1.shape, dtype=self.exact_dtype, device=dev)
            q2 = torch.empty(y2.shape, dtype=self.exact_dtype, device=dev)
            if _quantize(y1, fb, q1) + _quantize(y2, fb, q2):
                raise ValueError(f"{self.name}: y has values outside the fixed-point range")
            for i in range(len(self.blocks) - 1, -1, -1):
                blk = self.blocks[i]
                _dequantize(q1, fb, y1)
                self.overflow(i, "x2", _quantize_couple(q2, self.call(i, "G", blk.G, y1, y2), fb, -1))
                _dequantize(q2, fb, y2)
                self.overflow(i, "x1", _quantize_couple(q1, self.call(i, "F", blk.F, y2, y1), fb, -1))
            _dequantize(q1, fb, y1)
            _dequantize(q2, fb, y2)
            return torch.cat([y1, y2], dim)
        for i in range(len(self.blocks) - 1, -1, -1):
            blk = self.blocks[i]
            self.nonfinite(i, "x2", _couple(y2, self.call(i, "G", blk.G, y1, y2), -1, check=self.check_finite))
            self.nonfinite(i, "x1", _couple(y1, self.call(i, "F", blk.F, y2, y1), -1, check=self.check_finite))
        return torch.cat([y1, y2], dim)


def _contiguous_copy(t: Tensor) -> Tensor:
    """One copy into fresh C-contiguous memory (``.contiguous().clone()`` may copy twice)."""
    return torch.empty(t.shape, dtype=t.dtype, device=t.device).copy_(t)


def _unique(tensors):
    seen = set()
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            yield t


def _vjp(out: Tensor, inputs: list, grad: Tensor):
    if not inputs:
        return []
    if not out.requires_grad:  # F/G independent of its input and without trainable parameters
        return [None] * len(inputs)
    return list(torch.autograd.grad(out, inputs, grad.to(out.dtype), allow_unused=True))


def _accumulate(grads: list, index: dict, params: list, values) -> None:
    for p, v in zip(params, values):
        if v is None:
            continue
        k = index[id(p)]
        grads[k] = v if grads[k] is None else grads[k] + v


class _ReversibleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, spec, *params):
        out, saved, rng, amp = spec.run_forward(x, record_rng=spec.preserve_rng_state)
        ctx.spec = spec
        ctx.rng = rng
        ctx.amp = amp
        ctx.dtype = x.dtype
        ctx.params = params
        ctx.save_for_backward(saved)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        spec = ctx.spec
        try:
            (saved,) = ctx.saved_tensors
        except RuntimeError as exc:
            if "modified by an inplace operation" in str(exc):
                raise RuntimeError(
                    f"{spec.name}: its output was modified in place after the forward; the reversible backward "
                    "reconstructs every block's input from that output, so it must stay unchanged until "
                    "backward (clone it before modifying it, or use an out-of-place op)"
                ) from exc
            raise
        need_params = ctx.needs_input_grad[2:]
        grad_x, grads, _ = spec.run_backward(saved, grad_out, ctx.rng, ctx.amp, ctx.dtype, ctx.params, need_params,
                                             need_input=ctx.needs_input_grad[0])
        grads = [g if need else None for g, need in zip(grads, need_params)]
        return (grad_x, None, *grads)


def _apply(spec: _Spec, x: Tensor) -> Tensor:
    spec.dim_of(x)  # typed errors before autograd sees the call
    params = [p for p in _unique(p for blk in spec.blocks for p in blk.parameters()) if p.requires_grad]
    if torch.is_grad_enabled() and (x.requires_grad or params):
        return _ReversibleFunction.apply(x, spec, *params)
    out, _, _, _ = spec.run_forward(x, record_rng=False)
    return out


# --------------------------------------------------------------------------- torch.compile

def _forward_eager_impl(module: nn.Module, x: Tensor) -> Tensor:
    return _apply(module._spec(), x)


def _inverse_eager_impl(module: nn.Module, y: Tensor) -> Tensor:
    with torch.no_grad():
        return module._spec().inverse(y)


# The reversible autograd Function runs eagerly inside compiled code, behind a graph break:
# Dynamo can trace neither its forward (the RNG state recorded for the recompute:
# torch.get_rng_state is on Dynamo's skip list) nor its backward (torch.autograd.grad of the
# recomputed F and G, refused while torch._dynamo.config.trace_autograd_ops is off, the
# default; the RNG replay; the host-side non-finite checks). Left to itself, Dynamo fell
# back into the Function's frames and crashed inside numba's dispatcher. Modules F and G
# compiled on their own (torch.compile(F)) stay compiled inside this eager region.
_forward_eager = torch.compiler.disable(_forward_eager_impl, reason="reversible backward: recompute with RNG replay")
_inverse_eager = torch.compiler.disable(_inverse_eager_impl, reason="reversible inverse: host-side non-finite checks")

# modules whose in-place flag means "may overwrite its input": eagerly the version counter
# of F's and G's input catches that; a traced graph has no version counters
_INPLACE_ATTR = "inplace"


def _compiled_forward(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` while Dynamo traces: without a graph to record (no grad needed) the
    float forward is traced -- F and G inline, each coupling one ``hotops::reversible_couple_``
    node -- so inference compiles with ``fullgraph=True``; with a graph to record (training),
    in exact mode, or when F or G hold modules that work in place, the eager reversible
    Function runs behind a graph break."""
    spec = module._spec()
    needs_graph = torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for blk in spec.blocks for p in blk.parameters()))
    if needs_graph or spec.exact or _has_inplace_modules(spec):
        return _forward_eager(module, x)
    return spec.run_forward_traced(x)


def _has_inplace_modules(spec) -> bool:
    return any(getattr(m, _INPLACE_ATTR, False) is True for blk in spec.blocks for m in blk.modules())


# --------------------------------------------------------------------------- measurement helper

@contextlib.contextmanager
def saved_tensor_bytes(exclude_parameters: bool = True):
    """Count the bytes autograd saves for backward inside the block.

    Yields a dict whose ``"bytes"`` (distinct storages, counted once) and ``"tensors"``
    entries grow as tensors are saved, via ``torch.autograd.graph.saved_tensors_hooks``.
    With ``exclude_parameters`` the ``nn.Parameter`` objects that layers save (a conv's
    weight) are not counted: what is left are the activations (and casts of weights).
    ``stats["count_graph"](output)`` adds the tensors that custom autograd Functions keep as
    plain attributes of their context (invisible to the hooks: memcnn's outputs, RNG
    states), walking the graph that produced ``output``.
    """
    stats = {"bytes": 0, "tensors": 0}
    seen: set = set()

    def add(t) -> None:
        stats["tensors"] += 1
        try:
            key = (t.untyped_storage().data_ptr(), t.device)
            size = t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without storage (fake, nested)
            key, size = (id(t), t.device), t.numel() * t.element_size()
        if key not in seen:
            seen.add(key)
            stats["bytes"] += size

    def pack(t):
        if not (exclude_parameters and isinstance(t, nn.Parameter)):
            add(t)
        return t

    def count_graph(output: Tensor) -> int:
        visited: set = set()
        stack = [output.grad_fn]
        while stack:
            node = stack.pop()
            if node is None or id(node) in visited:
                continue
            visited.add(id(node))
            values = list(getattr(node, "__dict__", {}).values())
            while values:  # tensors, possibly nested in lists/tuples/dicts (RNG states)
                v = values.pop()
                if isinstance(v, Tensor):
                    if not (exclude_parameters and isinstance(v, nn.Parameter)):
                        add(v)
                elif isinstance(v, (list, tuple)):
                    values.extend(v)
                elif isinstance(v, dict):
                    values.extend(v.values())
            stack.extend(fn for fn, _ in node.next_functions)
        return stats["bytes"]

    stats["count_graph"] = count_graph
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield stats
