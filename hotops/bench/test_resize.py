"""MATLAB-exact bicubic ``imresize`` (Keys 1981, MATLAB's rules; Kim et al. 2016, VDSR).

One group per question "how fast is a bicubic resize of this input at this scale, and how
far is each result from MATLAB's?", with, side by side on the same input:

CPU, a 512x512 RGB float32 image in [0, 1) at x1/2, x1/3, x1/4 and x2:

* ``hotops``:       ``hotops.kernels.resize.imresize(x, scale)`` on the (H, W, 3) numpy array;
* ``hotops_torch``: ``hotops.bindings.imresize(t, scale=...)`` on the same pixels as a
  (1, 3, H, W) tensor (the custom op, autograd-ready);
* ``pillow`` (baseline): ``Image.resize(..., BICUBIC)`` per channel in mode 'F' (32-bit
  float, the fair float comparison) on images made once from the array (the untimed
  ``fromarray`` is Pillow's benefit), back to one (H, W, 3) array (timed). Same Keys
  kernel (a = -0.5) and antialiasing, but a different border rule (Pillow drops the taps
  outside the image and renormalises; MATLAB mirrors), hence its difference from MATLAB
  at the borders. Pillow is single-threaded;
* ``torch`` (baseline): ``F.interpolate(t, size=..., mode='bicubic', antialias=True,
  align_corners=False)`` on the (1, 3, H, W) tensor. Given MATLAB's output size, torch
  samples at in/out rather than at the requested scale (x1/3: 512/171), and clamps borders;
* ``numpy_reference`` (baseline): ``tests/reference.py``'s ``imresize_matlab``, the slow
  numpy reference of the same algorithm that the test suite checks hotops against:
  MATLAB's ``contributions`` per call, then one output row and one tap at a time as
  whole-row numpy operations, in float64 (its result is float64); column
  ``numpy_reference / impl``. Skipped, with a reason, outside a source checkout (no
  ``tests/`` folder);
* ``numpy`` (baseline, the stricter one): the same MATLAB algorithm written as plain
  *vectorised* numpy for this benchmark (``imresize_numpy`` below): per-axis
  (taps x outputs) index and weight tables, cached like hotops' own, then one ``np.take``
  gather and multiply-add per tap over the whole image, in float32 (the fastest of the
  plain variants tried: moveaxis + fancy indexing and preallocated ``out=`` buffers were
  slower). Faster than ``numpy_reference``, so ``numpy / impl`` is the harder ratio; both
  are shown.

Every row's ``extra_info["max_abs_diff_vs_matlab"]`` is its max |difference| from the
MATLAB-exact result: hotops' float64 resize of the same pixels, which matches MATLAB's
output files to 1e-10 (and tests/reference.py's slow loop to 4e-16 on these inputs). For
the hotops rows it is float32 rounding; for Pillow and torch their border rules (torch's
antialiased bicubic is a port of Pillow's resampling: the two agree to 1e-7) and, at x1/3,
their sample positions. ``extra_info["max_abs_diff_vs_matlab_interior"]`` is the same
with 8 output pixels cut from each border, where only the kernel and sample positions
count. hotops/bench/report.py shows both as columns (``extra_info["columns"]``).

CUDA: a batch of 64 RGB 256x256 float32 images at x1/2 and x2 (the VDSR training
pipeline's degradation), hotops' torch binding against torch ``interpolate``.

hotops runs with its defaults, ``check_finite=True`` included: a scan for NaN/inf before
resizing (on CUDA, one small read-back), which the baselines do not do.

No speed assertions here: hotops/bench/report.py reports the ratios.
"""
from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hotops.bindings as hb
from hotops.kernels import resize as kr

OP = "imresize"
CPU_HW = (512, 512)
CHANNELS = 3
SCALES = [Fraction(1, 2), Fraction(1, 3), Fraction(1, 4), Fraction(2)]
CUDA_SHAPE = (64, 3, 256, 256)
CUDA_SCALES = [Fraction(1, 2), Fraction(2)]
BASELINES = ("pillow", "torch", "numpy", "numpy_reference")
DIFF_KEY = "max_abs_diff_vs_matlab"
INNER_KEY = "max_abs_diff_vs_matlab_interior"
MARGIN = 8  # output pixels left out at each border for INNER_KEY (beyond every kernel's reach)
NEEDS_CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="CUDA variant: torch.cuda.is_available() is false on this machine",
)


def _scale_id(s: Fraction) -> str:
    return f"x{s.numerator}" if s.denominator == 1 else f"x{s.numerator}_{s.denominator}"


def _scale_label(s: Fraction) -> str:
    return f"x{s.numerator}" if s.denominator == 1 else f"x{s.numerator}/{s.denominator}"


# --- the plain numpy reference of MATLAB's algorithm ----------------------------------------


def _cubic(d: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel, a = -0.5 (MATLAB's ``cubic``)."""
    a = np.abs(d)
    a2, a3 = a * a, a * a * a
    return ((1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1.0)
            + (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * ((a > 1.0) & (a <= 2.0)))


@functools.lru_cache(maxsize=64)
def numpy_tables(n_in: int, n_out: int, scale: float, antialias: bool = True):
    """MATLAB's ``contributions`` for one axis: (taps, n_out) input indices and weights.

    Sample positions u = x/scale + (1 - 1/scale)/2 (1-based), kernel stretched by 1/scale
    and weighted by scale when shrinking with antialias, mirrored borders, weights
    normalised per output. Cached per (sizes, scale), as hotops caches its tables.
    """
    stretch = antialias and scale < 1.0
    width = 4.0 / scale if stretch else 4.0
    taps = int(np.ceil(width)) + 2
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0).astype(np.int64)
    j = left[None, :] + np.arange(taps)[:, None]  # (taps, n_out), 1-based
    d = u[None, :] - j
    w = scale * _cubic(scale * d) if stretch else _cubic(d)
    w /= w.sum(axis=0, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
    idx = mirror[(j - 1) % (2 * n_in)]
    return idx, w


def _resize_axis_numpy(x: np.ndarray, axis: int, n_out: int, scale: float) -> np.ndarray:
    idx, w = numpy_tables(x.shape[axis], n_out, scale)
    w = w.astype(x.dtype)
    bshape = [1] * x.ndim
    bshape[axis] = n_out
    out = w[0].reshape(bshape) * np.take(x, idx[0], axis=axis)
    for t in range(1, idx.shape[0]):
        out += w[t].reshape(bshape) * np.take(x, idx[t], axis=axis)
    return out


def imresize_numpy(x: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(x, scale, 'bicubic')`` for an (H, W[, C]) float array, in x's dtype."""
    h, w = x.shape[:2]
    oh, ow = int(np.ceil(scale * h)), int(np.ceil(scale * w))
    y = _resize_axis_numpy(x, 0, oh, scale)  # equal scales: height first, as MATLAB
    return _resize_axis_numpy(y, 1, ow, scale)


@functools.lru_cache(maxsize=None)
def _reference_module():
    """tests/reference.py of this checkout (the issue's slow numpy reference), or None."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "tests" / "reference.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_hotops_tests_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the other implementations -----------------------------------------------------------


def _pillow_planes(x: np.ndarray) -> list:
    """The (H, W, C) float32 image as C Pillow images in mode 'F' (made once, untimed)."""
    from PIL import Image

    planes = [Image.fromarray(np.ascontiguousarray(x[:, :, c])) for c in range(x.shape[2])]
    assert all(p.mode == "F" for p in planes)
    return planes


def _pillow(planes: list, out_hw) -> np.ndarray:
    from PIL import Image

    size = (out_hw[1], out_hw[0])  # Pillow: (width, height)
    return np.stack([np.asarray(p.resize(size, Image.BICUBIC)) for p in planes], axis=2)


def _torch_interpolate(t: torch.Tensor, out_hw) -> torch.Tensor:
    return F.interpolate(t, size=tuple(out_hw), mode="bicubic", antialias=True, align_corners=False)


@functools.lru_cache(maxsize=None)
def _cpu_input() -> tuple[np.ndarray, torch.Tensor]:
    """One RGB image in [0, 1): (H, W, 3) numpy and the same pixels as (1, 3, H, W)."""
    gen = torch.Generator().manual_seed(0)
    hwc = torch.rand((*CPU_HW, CHANNELS), generator=gen, dtype=torch.float32).numpy()
    nchw = torch.from_numpy(hwc).permute(2, 0, 1).unsqueeze(0).contiguous()
    return hwc, nchw


@functools.lru_cache(maxsize=None)
def _cpu_matlab(scale: Fraction) -> np.ndarray:
    """MATLAB's result for the CPU input: hotops' resize in float64 (exact to 1e-10)."""
    hwc, _ = _cpu_input()
    return kr.imresize(hwc.astype(np.float64), scale=float(scale))


CPU_IMPLS = ("hotops", "hotops_torch", "pillow", "torch", "numpy", "numpy_reference")


def _cpu_call(impl: str, scale: Fraction):
    """(function, args, to_hwc) for one implementation; to_hwc maps its result to (H, W, C)."""
    hwc, nchw = _cpu_input()
    s = float(scale)
    out_hw = kr.resize_plan(CPU_HW, scale=s).out_hw

    def from_nchw(y):
        return y[0].permute(1, 2, 0).numpy()

    def same(y):
        return y

    if impl == "hotops":
        return (lambda a: kr.imresize(a, scale=s)), (hwc,), same
    if impl == "hotops_torch":
        return (lambda t: hb.imresize(t, scale=s)), (nchw,), from_nchw
    if impl == "pillow":
        return (lambda planes: _pillow(planes, out_hw)), (_pillow_planes(hwc),), same
    if impl == "torch":
        return (lambda t: _torch_interpolate(t, out_hw)), (nchw,), from_nchw
    if impl == "numpy":
        return (lambda a: imresize_numpy(a, s)), (hwc,), same
    if impl == "numpy_reference":
        reference = _reference_module()
        return (lambda a: reference.imresize_matlab(a, scale=s)), (hwc,), same
    raise ValueError(f"unknown implementation {impl!r}")


@pytest.mark.parametrize("device", ["cpu"])
@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("scale", SCALES, ids=_scale_id)
def test_imresize_image(bench, benchmark, device, scale, impl):
    if impl == "pillow":
        pytest.importorskip("PIL", reason="Pillow is not installed")
    if impl == "numpy_reference" and _reference_module() is None:
        pytest.skip("numpy_reference: tests/reference.py is not in this checkout")
    fn, args, to_hwc = _cpu_call(impl, scale)
    h, w = CPU_HW
    out_hw = kr.resize_plan(CPU_HW, scale=float(scale)).out_hw
    result = bench(
        fn, *args,
        op=OP,
        impl=impl,
        baseline=impl in BASELINES,
        group=f"{OP} {h}x{w}x{CHANNELS} float32 {_scale_label(scale)} {device}",
        device=device,
        bytes=(h * w + out_hw[0] * out_hw[1]) * CHANNELS * 4,  # read the image, write the result
        shape=[h, w, CHANNELS],
        out_shape=[*out_hw, CHANNELS],
        scale=float(scale),
        dtype="float32",
        columns=[DIFF_KEY, INNER_KEY],  # hotops/bench/report.py: show these extra_info keys as columns
    )
    got = np.asarray(to_hwc(result), dtype=np.float64)
    want = _cpu_matlab(scale)
    assert got.shape == want.shape, (impl, got.shape, want.shape)
    diff = np.abs(got - want)
    benchmark.extra_info[DIFF_KEY] = float(diff.max())
    benchmark.extra_info[INNER_KEY] = float(diff[MARGIN:-MARGIN, MARGIN:-MARGIN].max())


@pytest.fixture(scope="module", autouse=True)
def _free_cached_inputs():
    """Drop the cached inputs and MATLAB results (GPU memory included) after this module."""
    yield
    for cached in (_cpu_input, _cpu_matlab, _cuda_input, _cuda_matlab, numpy_tables, _reference_module):
        cached.cache_clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- CUDA: a training batch (VDSR's degradation on the GPU) --------------------------------


@functools.lru_cache(maxsize=None)
def _cuda_matlab(scale: Fraction) -> torch.Tensor:
    x = _cuda_input()
    return hb.imresize(x.double(), scale=float(scale))


@functools.lru_cache(maxsize=None)
def _cuda_input() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(CUDA_SHAPE, generator=gen, dtype=torch.float32).to("cuda")
    torch.cuda.synchronize()
    return x


@pytest.mark.parametrize("impl", ["hotops", "torch"])
@pytest.mark.parametrize("scale", CUDA_SCALES, ids=_scale_id)
@pytest.mark.parametrize("device", [pytest.param("cuda", marks=NEEDS_CUDA)])
def test_imresize_batch(bench, benchmark, device, scale, impl):
    x = _cuda_input()
    s = float(scale)
    n, c, h, w = CUDA_SHAPE
    out_hw = kr.resize_plan((h, w), scale=s).out_hw
    if impl == "hotops":
        fn = lambda t: hb.imresize(t, scale=s)  # noqa: E731
    else:
        fn = lambda t: _torch_interpolate(t, out_hw)  # noqa: E731
    result = bench(
        fn, x,
        op=OP,
        impl=impl,
        baseline=impl == "torch",
        group=f"{OP} batch {n}x{c}x{h}x{w} float32 {_scale_label(scale)} {device}",
        device=device,
        bytes=(h * w + out_hw[0] * out_hw[1]) * n * c * 4,
        shape=list(CUDA_SHAPE),
        out_shape=[n, c, *out_hw],
        scale=s,
        dtype="float32",
        columns=[DIFF_KEY, INNER_KEY],
    )
    diff = (result.double() - _cuda_matlab(scale)).abs()
    benchmark.extra_info[DIFF_KEY] = diff.max().item()
    benchmark.extra_info[INNER_KEY] = diff[..., MARGIN:-MARGIN, MARGIN:-MARGIN].max().item()
