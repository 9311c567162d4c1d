"""The bad-input matrix: every public entry point x every class of bad input.

Entry points: ``hotops.__all__`` (minus the sub-packages), ``hotops.bindings.__all__`` and the
public functions of every ``hotops.kernels.<op>``. Classes (columns, :data:`CLASSES`): NaN and
inf, negative values where non-negativity is required, empty and wrong-rank arrays, integer,
bool, half, complex and object dtypes, non-contiguous, negatively strided and read-only
input, read-only and overlapping ``out=``, integer parameters out of range, numpy integers
(accepted) and bools / floats (refused) as integer parameters, sizes too large to allocate,
and arrays from another device or array family.

Each cell asserts one of two outcomes, as its expectation says: a ``TypeError`` or
``ValueError`` whose message names the offending argument, or a result equal to a reference
computed without hotops (numpy, scipy, scikit-image, torch, ``tests/reference.py``), or, for
an algorithm without such a reference (NMF fits, IHT defence, localisation), equal to the same
call on a clean C-contiguous copy (so that a layout can never change an answer). In every cell
the caller's arrays that the entry point does not write are left bit for bit as they were.
A cell that is not meaningful for an entry point says why (``na``); one that fails only
because of code outside this module's owners is ``xfail(strict=True)`` with the reason.

:func:`test_every_public_entry_point_has_a_row` fails when a public name has no row here.
"""
from __future__ import annotations

import inspect
import math
import re
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn

import reference as ref

pytestmark = pytest.mark.usefixtures("torch_one_thread")

#: the columns of the matrix
CLASSES = {
    "nan": "a NaN among the values",
    "inf": "an inf among the values",
    "negative": "a negative value where non-negativity is required",
    "empty": "a zero-size array",
    "rank": "one dimension too many",
    "int": "an int64 array",
    "bool": "a bool array",
    "half": "a float16 array",
    "complex": "a complex128 array (with imaginary parts)",
    "object": "an object array",
    "noncontig": "a non-contiguous view (stride 2 on the last axis)",
    "negstride": "a view with negative strides",
    "readonly": "a read-only array",
    "out_readonly": "a read-only out=",
    "out_overlap": "an out= that overlaps the input in part",
    "k_range": "integer parameters (k, rank, sizes) out of range",
    "int_types": "numpy integers accepted, bool and float refused as integers",
    "huge": "sizes that cannot be allocated, refused before allocating",
    "devices": "an array from another device or array family",
}
ARRAY_CLASSES = ("nan", "inf", "negative", "empty", "rank", "int", "bool", "half", "complex", "object",
                 "noncontig", "negstride", "readonly")
#: what a cell expects unless the row says otherwise: 'raise' (TypeError / ValueError naming
#: the argument), 'ok' (a result equal to the reference) or 'either'
DEFAULT_EXPECT = {
    "nan": "raise", "inf": "raise", "negative": "raise", "empty": "either", "rank": "raise", "int": "raise",
    "bool": "raise", "half": "raise", "complex": "raise", "object": "raise", "noncontig": "ok",
    "negstride": "ok", "readonly": "ok", "out_readonly": "raise", "out_overlap": "either", "k_range": "raise",
    "int_types": "ok", "huge": "raise", "devices": "raise",
}

#: public names that are no entry point (constants)
NOT_CALLABLE = {"hotops.__version__", "hotops.bindings.RELU_RULES"}


@dataclass
class Row:
    """One entry point: how to call it on valid small inputs, and what its cells expect.

    ``build(rng)`` returns the arguments by name; ``call(fn, a)`` calls the entry point on
    them. ``arrays`` names the array arguments the array classes corrupt (one at a time,
    the others valid); ``ref(a)`` is the expected result for accepted input (None: the
    same call on clean contiguous copies). ``written`` names arguments the entry point
    writes (exempt from the untouched check); ``out`` the out= argument. ``params`` maps an
    integer parameter to its out-of-range values (``k_range`` and ``int_types``);
    ``huge(fn)`` and ``devices(fn, a)`` make those cells' calls. ``expect`` overrides
    :data:`DEFAULT_EXPECT` per class ('na: why' for a cell that does not apply); ``xfail``
    maps a class to the reason it fails today.
    """

    build: Callable
    call: Callable
    arrays: tuple = ()
    ref: Callable | None = None
    written: tuple = ()
    out: str | None = None
    params: dict = field(default_factory=dict)
    huge: Callable | None = None
    devices: Callable | None = None
    expect: dict = field(default_factory=dict)
    xfail: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)  # argument -> regex its errors may use instead
    rtol: float = 1e-10
    torch: bool = False  # the arrays are tensors
    rtols: dict = field(default_factory=dict)  # class -> tolerance for that class's results
    compare: dict = field(default_factory=dict)  # class -> comparison instead of _compare
    valid: dict = field(default_factory=dict)  # valid values of params the call otherwise defaults

    def expectation(self, cls: str, arg: str | None = None) -> str:
        if arg is not None and f"{cls}:{arg}" in self.expect:
            return self.expect[f"{cls}:{arg}"]
        if cls in ARRAY_CLASSES and not self.arrays:
            return "na: no array argument"
        if cls == "negative" and cls not in self.expect:
            return "na: no argument needs to be non-negative"
        if cls in ("out_readonly", "out_overlap") and self.out is None and cls not in self.expect:
            return "na: no out= argument"
        if cls in ("k_range", "int_types") and not self.params and cls not in self.expect:
            return "na: no integer parameter"
        if cls == "huge" and self.huge is None and cls not in self.expect:
            return "na: no size argument"
        if cls == "devices" and self.devices is None and cls not in self.expect:
            return "na: one array family only"
        if self.torch and cls in ("object", "negstride", "readonly") and self.arrays:
            return "na: torch tensors have no such arrays"
        return self.expect.get(cls, DEFAULT_EXPECT[cls])


# ============================================================================ array helpers

def _is_array(a) -> bool:
    return isinstance(a, (np.ndarray, torch.Tensor))


def _snapshot(a):
    """A deep, bitwise copy of every array in a (arrays, lists and tuples of them)."""
    if isinstance(a, np.ndarray):
        return ("np", a.dtype, a.shape, np.ascontiguousarray(a).tobytes() if a.dtype != object else list(a.ravel()))
    if isinstance(a, torch.Tensor):
        if a.device.type == "meta":
            return ("meta",)
        c = a.detach().cpu().contiguous()
        return ("torch", c.dtype, tuple(c.shape), c.view(-1).view(torch.uint8).clone() if c.numel() else None)
    if isinstance(a, (list, tuple)):
        return [_snapshot(v) for v in a]
    if isinstance(a, nn.Module):
        return {k: _snapshot(v) for k, v in a.state_dict().items()}
    return None


def _same(s1, s2) -> bool:
    if isinstance(s1, tuple) and s1 and s1[0] == "torch":
        return s1[:3] == s2[:3] and (s1[3] is None or torch.equal(s1[3], s2[3]))
    if isinstance(s1, dict):
        return s1.keys() == s2.keys() and all(_same(s1[k], s2[k]) for k in s1)
    if isinstance(s1, list):
        return len(s1) == len(s2) and all(_same(a, b) for a, b in zip(s1, s2))
    return s1 == s2


def _copy(a):
    if isinstance(a, np.ndarray):
        return a.copy()
    if isinstance(a, torch.Tensor):
        return a.detach().clone()
    if type(a) is list:
        return [_copy(v) for v in a]
    if type(a) is tuple:
        return tuple(_copy(v) for v in a)
    return a


def _clean(a):
    """A C-contiguous, writeable copy (integer and bool arrays as float64): the input an
    entry point without a reference is compared against."""
    if isinstance(a, np.ndarray):
        return np.array(a, dtype=np.float64 if a.dtype.kind in "iu" else a.dtype, order="C", copy=True)
    if isinstance(a, torch.Tensor):
        t = a.detach().clone().contiguous()
        return t.double() if not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool) else t
    if isinstance(a, list):
        return [_clean(v) for v in a]
    return a


def _corrupt(a, cls: str, rng):
    """``a`` turned into the bad input of class ``cls`` (a new array; values kept where the
    class is about layout or dtype). None when the class does not apply to this array."""
    if isinstance(a, torch.Tensor):
        return _corrupt_tensor(a, cls)
    a = np.asarray(a)
    if cls in ("nan", "inf", "negative"):
        if a.size == 0:
            return None
        b = np.array(a, dtype=a.dtype if a.dtype.kind in "fc" else np.float64, copy=True)
        i = min(1, b.size - 1)
        b.flat[i] = {"nan": np.nan, "inf": np.inf, "negative": -abs(b.flat[i]) - 0.5}[cls]
        return b
    if cls == "empty":
        return np.zeros((0,) + a.shape[1:], a.dtype)
    if cls == "rank":
        return a[None]
    if cls == "int":
        return np.round(a.real * 4).astype(np.int64) if a.dtype.kind in "fc" else a.astype(np.int64)
    if cls == "bool":
        return a.real > np.median(a.real) if a.size else a.astype(bool)
    if cls == "half":
        return a.astype(np.float16)
    if cls == "complex":
        return a.astype(np.complex128) + 0.25j * np.abs(a.real)
    if cls == "object":
        return a.astype(object)
    if cls == "noncontig":
        if a.ndim == 0:
            return None
        big = np.empty(a.shape + (2,), a.dtype)
        big[..., 0] = a
        big[..., 1] = 7
        return big[..., 0]
    if cls == "negstride":
        if a.ndim == 0:
            return None
        rev = tuple(slice(None, None, -1) for _ in range(a.ndim))
        return np.ascontiguousarray(a[rev])[rev]
    if cls == "readonly":
        b = a.copy()
        b.setflags(write=False)
        return b
    raise AssertionError(cls)


def _corrupt_tensor(t, cls: str):
    t = t.detach()
    if cls in ("nan", "inf", "negative"):
        if t.numel() == 0:
            return None
        b = (t.clone() if (t.is_floating_point() or t.is_complex()) else t.double()).contiguous()
        flat = b.view(-1)
        i = min(1, flat.numel() - 1)
        flat[i] = {"nan": math.nan, "inf": math.inf, "negative": -abs(float(flat[i].real)) - 0.5}[cls]
        return b
    if cls == "empty":
        return t.new_zeros((0,) + tuple(t.shape[1:]))
    if cls == "rank":
        return t[None]
    if cls == "int":
        return (t.real * 4).round().to(torch.int64) if (t.is_floating_point() or t.is_complex()) else t.long()
    if cls == "bool":
        return t.real > t.real.median() if t.numel() else t.bool()
    if cls == "half":
        return t.half()
    if cls == "complex":
        return t.to(torch.complex128) + 0.25j * t.real.abs()
    if cls == "noncontig":
        if t.dim() == 0:
            return None
        return torch.stack([t, torch.full_like(t, 7)], -1)[..., 0]
    return None


def _names_in(message: str, names) -> bool:
    return any(re.search(rf"(?<![\w.]){n}(?![\w])", message) for n in names)


def _compare(got, want, rtol):
    if isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want), (type(got), type(want))
        for g, w in zip(got, want):
            _compare(g, w, rtol)
        return
    if want is None:
        assert got is None
        return
    if isinstance(got, torch.Tensor):
        got = got.detach().cpu().numpy()
    if isinstance(want, torch.Tensor):
        want = want.detach().cpu().numpy()
    if isinstance(want, (bool, str)):
        assert got == want
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.dtype.kind in "biu" and got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want)
        return
    # a result in a lower precision than the reference is compared at that precision
    rtol = max(rtol, {"float16": 2e-3, "complex64": 2e-6, "float32": 2e-6}.get(got.dtype.name, 0.0))
    np.testing.assert_allclose(got.astype(np.complex128 if got.dtype.kind == "c" else np.float64),
                               want, rtol=rtol, atol=rtol, equal_nan=True)


# ============================================================================ the rows

_RESOLVED: dict[str, Any] = {}


def resolve(qualname: str):
    """The object a public name stands for ('hotops.x', 'hotops.bindings.x', 'hotops.kernels.op.x')."""
    if qualname not in _RESOLVED:
        module, _, attr = qualname.rpartition(".")
        import importlib

        _RESOLVED[qualname] = getattr(importlib.import_module(module), attr)
    return _RESOLVED[qualname]


def _img(rng, shape=(8, 8)):
    return rng.random(shape)


def _g4(rng):
    return rng.standard_normal((2, 3, 4, 5))


def _nmf_data(rng, shape=(6, 5)):
    return rng.random(shape) + 0.1


def _small_net(classes=5, dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, classes)).to(dtype).eval()


def _saliency_ref(a):
    x = a["x"].detach().clone().requires_grad_(True)
    logits = a["model"](x)
    logits.gather(1, torch.as_tensor(a["target"]).view(-1, 1).expand(x.shape[0], 1)).sum().backward()
    return x.grad.abs().amax(1)


def _matlab_resize_4d(x, **kw):
    """reference.imresize_matlab over the last two axes of an (..., H, W) array."""
    x = np.asarray(x)
    if x.ndim == 2:
        return ref.imresize_matlab(x, **kw)
    lead = x.shape[:-2]
    flat = x.reshape(-1, *x.shape[-2:])
    if not len(flat):
        return np.zeros((*lead, *ref.imresize_matlab(np.zeros(x.shape[-2:]), **kw).shape))
    res = [ref.imresize_matlab(f, **kw) for f in flat]
    return np.stack(res).reshape(*lead, *res[0].shape)


def _dct_project(x, k):
    x = np.asarray(x)
    if x.size == 0:
        return np.zeros(x.shape)
    return np.stack([ref.sparse_project_dense(s, k) for s in x.reshape(-1, *x.shape[-2:])]).reshape(x.shape)


def _iht_ref(y, k, t, n_iter):
    y = np.asarray(y)
    if y.size == 0:
        return np.zeros(y.shape), np.zeros(y.shape)
    pairs = [ref.iht_dense(s, k, t, n_iter) for s in y.reshape(-1, *y.shape[-2:])]
    return (np.stack([p[0] for p in pairs]).reshape(y.shape), np.stack([p[1] for p in pairs]).reshape(y.shape))


def _patch_iht_ref(y, k, t, patch, n_iter):
    y = np.asarray(y, dtype=np.float64)
    ph, pw = patch
    xs, es = np.zeros_like(y), np.zeros_like(y)
    for i in range(0, y.shape[-2], ph):
        for j in range(0, y.shape[-1], pw):
            x, e = _iht_ref(y[..., i:i + ph, j:j + pw], k, t, n_iter)
            xs[..., i:i + ph, j:j + pw], es[..., i:i + ph, j:j + pw] = x, e
    return xs, es


def _nmf_mu_ref(V, W, H, n_iter, beta=2.0):
    return ref.nmf_mu(np.asarray(V, np.float64), np.asarray(W, np.float64), np.asarray(H, np.float64), beta, n_iter)


def _gmm_params(rng):
    return dict(weights=np.array([0.3, 0.7]), means=rng.standard_normal((2, 3)),
                covariances=np.stack([np.eye(3) * 0.5, np.eye(3) + 0.1]))


def _prepare_ref(a):
    w = np.asarray(a["weights"], np.float64)
    w = w / w.sum()
    mu = np.asarray(a["means"], np.float64)
    chol = np.linalg.cholesky(np.asarray(a["covariances"], np.float64))
    d = mu.shape[1]
    inv = np.linalg.inv(chol)
    const = np.log(w) - 0.5 * d * np.log(2 * np.pi) - np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
    return mu, np.tril(inv), const


def _ycbcr2rgb_ref(x):
    T = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
    off = np.array([16.0, 128.0, 128.0])
    rgb = np.linalg.solve(T, (np.asarray(x, np.float64) * 255.0 - off).reshape(-1, 3).T).T.reshape(np.shape(x))
    return np.clip(rgb, 0.0, 1.0)


def _ssim_ref(a, b):
    from skimage.metrics import structural_similarity

    peak = 255.0 if a.dtype == np.uint8 else 1.0
    return structural_similarity(a.astype(np.float64), b.astype(np.float64), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=peak,
                                 channel_axis=None if a.ndim == 2 else 2)


def _localize_scene(rng, h=16, w=18):
    img = np.empty((h, w, 3))
    img[:] = (0.1, 0.15, 0.3)
    img[4:12, 5:13] = (0.85, 0.2, 0.15)
    img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
    sal = rng.random((h, w)) * 0.1
    sal[6:10, 7:11] += 1.0
    return img, sal


def _meta(t):
    return t.to("meta")


def _on_meta(name):
    def devices(fn, a, call):
        b = dict(a)
        b[name] = _meta(a[name])
        return call(fn, b)
    return devices


def _with_torch(name):
    """A kernel-layer array argument replaced by a torch tensor (another array family)."""
    def devices(fn, a, call):
        b = dict(a)
        b[name] = torch.from_numpy(np.ascontiguousarray(a[name]))
        return call(fn, b)
    return devices


#: arguments of integer parameters: name -> out-of-range values
K10 = {"k": [0, 11, -1]}

ROWS: dict[str, Row] = {}


def row(*names, **kw):
    for n in names:
        ROWS[n] = Row(**kw)


# ---------------------------------------------------------------------- channel_max

_CM_EXPECT = {"nan": "ok", "inf": "ok", "empty": "ok"}
row("hotops.kernels.channel_max.channel_max_abs", "hotops.channel_max_abs",
    build=lambda rng: {"g": _g4(rng)},
    call=lambda fn, a: fn(a["g"], **({"out": a["out"]} if "out" in a else {})),
    arrays=("g",), ref=lambda a: np.abs(a["g"]).max(1), out="out", expect=_CM_EXPECT,
    devices=lambda fn, a, call: fn(a["g"], out=torch.empty(2, 4, 5, dtype=torch.float64)) if fn.__module__.startswith("hotops.kernels") else fn(_meta(torch.from_numpy(a["g"]))))
ROWS["hotops.channel_max_abs"].out = None  # the surface entry takes no out=
row("hotops.kernels.channel_max.channel_max_abs_backward",
    build=lambda rng: (lambda g: {"grad_out": rng.standard_normal((2, 4, 5)), "g": g,
                                  "m": np.abs(g).max(1)})(_g4(rng)),
    call=lambda fn, a: fn(a["grad_out"], a["g"], a["m"], **({"out": a["out"]} if "out" in a else {})),
    arrays=("grad_out",), ref=lambda a: ref.channel_max_abs_backward(a["grad_out"], a["g"]), out="out",
    expect={"nan": "ok", "inf": "ok", "empty": "raise"},
    names={"grad_out": ["grad_out", "g"]})
def _cm_binding_call(kind):
    if kind == "function":
        return lambda fn, a: fn.apply(a["g"])
    if kind == "module":
        return lambda fn, a: fn()(a["g"])
    return lambda fn, a: fn(a["g"])


for _name, _kind in (("hotops.bindings.channel_max_abs", "plain"), ("hotops.bindings.ChannelMaxAbs", "function"),
                     ("hotops.bindings.ChannelMaxAbsReduce", "module"), ("hotops.bindings.channel_max_abs_argmax", "plain")):
    row(_name, build=lambda rng: {"g": torch.from_numpy(_g4(rng))}, call=_cm_binding_call(_kind),
        arrays=("g",), torch=True, ref=lambda a: a["g"].abs().amax(1), expect=dict(_CM_EXPECT),
        devices=_on_meta("g"))
ROWS["hotops.bindings.channel_max_abs_argmax"].ref = lambda a: (a["g"].abs().amax(1),
                                                               torch.from_numpy(ref.channel_max_abs_argmax(a["g"].numpy())))


# ---------------------------------------------------------------------- resize

#: one resized axis: a single pass reads x while it writes out (what an overlapping out= breaks)
_SCALE = (0.5, 1.0)
_RZ = dict(expect={"empty": "raise", "int": "raise", "bool": "raise", "rank": "either"}, rtol=1e-9)
row("hotops.kernels.resize.imresize", "hotops.imresize",
    build=lambda rng: {"x": _img(rng)},
    call=lambda fn, a: fn(a["x"], **({"output_shape": a["output_shape"]} if "output_shape" in a else {"scale": _SCALE}),
                          **({"out": a["out"]} if "out" in a else {})),
    arrays=("x",), ref=lambda a: ref.imresize_matlab(a["x"], _SCALE), out="out",
    huge=lambda fn: fn(np.zeros((8, 8)), output_shape=(10**6, 10**6)),
    devices=lambda fn, a, call: fn(a["x"], _SCALE, out=torch.empty(4, 8, dtype=torch.float64)) if fn.__module__.startswith("hotops.kernels") else fn(_meta(torch.from_numpy(a["x"])), 0.5),
    params={"output_shape": [(0, 4), (4, -1)]}, **_RZ)
ROWS["hotops.imresize"].out = None
row("hotops.kernels.resize.imresize_transpose",
    build=lambda rng: {"g": _img(rng, (4, 8))},
    call=lambda fn, a: fn(a["g"], a.get("input_shape", (8, 8)), _SCALE, **({"out": a["out"]} if "out" in a else {})),
    arrays=("g",), ref=lambda a: ref.imresize_transpose_dense(a["g"], (8, 8), _SCALE), out="out",
    huge=lambda fn: fn(np.zeros((4, 4)), (10**6, 10**6), output_shape=(4, 4)),
    params={"input_shape": [(0, 8), (8, -2)]},
    devices=lambda fn, a, call: fn(a["g"], (8, 8), _SCALE, out=torch.empty(8, 8, dtype=torch.float64)), **_RZ)
ROWS["hotops.kernels.resize.imresize_transpose"].expect = {**_RZ["expect"], "rank": "raise"}  # (1, 4, 8): H x W is 1 x 4
row("hotops.kernels.resize.apply_plan",
    build=lambda rng: {"x": _img(rng), "plan": resolve("hotops.kernels.resize.resize_plan")((8, 8), _SCALE)},
    call=lambda fn, a: fn(a["x"], a["plan"], **({"out": a["out"]} if "out" in a else {})),
    arrays=("x",), ref=lambda a: ref.imresize_matlab(a["x"], _SCALE), out="out",
    huge=lambda fn: fn(np.zeros((8, 8)), resolve("hotops.kernels.resize.ResizePlan")((8, 8), (10**6, 10**6), (1e5, 1e5), True)),
    **_RZ)
row("hotops.kernels.resize.resize_plan",
    build=lambda rng: {"in_hw": (8, 8)},
    call=lambda fn, a: fn(a["in_hw"], a.get("scale", 0.5)),
    ref=lambda a: ((8, 8), (4, 4), (0.5, 0.5), True),
    params={"in_hw": [(0, 8), (8, -1)]})
row("hotops.kernels.resize.spatial_axes",
    build=lambda rng: {"ndim": 4}, call=lambda fn, a: fn(a["ndim"]), ref=lambda a: (2, 3),
    params={"ndim": [1, 5, -4]})
row("hotops.kernels.resize.axis_table",
    build=lambda rng: {"n_in": 8, "n_out": 4},
    call=lambda fn, a: tuple(fn(a["n_in"], a["n_out"], a.get("scale", 0.5), True)[:4]),
    ref=lambda a: (8, 4, 0.5, True), params={"n_in": [0, -3], "n_out": [0]},
    huge=lambda fn: fn(8, 1, 1e-15, True))
row("hotops.kernels.resize.cubic",
    build=lambda rng: {"x": rng.uniform(-3, 3, (5, 7))}, call=lambda fn, a: fn(a["x"]),
    arrays=("x",),
    ref=lambda a: (lambda t: np.where(np.isnan(t), np.nan, np.where(t <= 1, 1.5 * t**3 - 2.5 * t**2 + 1, np.where(t <= 2, -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2, 0.0))))(np.abs(np.asarray(a["x"], np.float64))),
    expect={"nan": "ok", "inf": "ok", "int": "ok", "bool": "raise", "half": "ok", "complex": "raise",
            "object": "raise", "empty": "ok", "rank": "ok"}, rtol=1e-12,
    rtols={"half": 1e-2})  # evaluated in float16 arithmetic
for _surface in ("hotops.kernels.resize.rgb2ycbcr", "hotops.rgb2ycbcr"):
    row(_surface, build=lambda rng: {"rgb": rng.random((4, 5, 3))}, call=lambda fn, a: fn(a["rgb"]),
        arrays=("rgb",), ref=lambda a: ref.rgb2ycbcr_matlab(a["rgb"]), rtol=1e-12,
        expect={"empty": "ok", "rank": "ok"})  # (..., 3): any leading axes
for _surface in ("hotops.kernels.resize.ycbcr2rgb", "hotops.ycbcr2rgb"):
    row(_surface, build=lambda rng: {"ycbcr": rng.uniform(0.1, 0.9, (4, 5, 3))}, call=lambda fn, a: fn(a["ycbcr"]),
        arrays=("ycbcr",), ref=lambda a: _ycbcr2rgb_ref(a["ycbcr"]), rtol=1e-12,
        expect={"empty": "ok", "rank": "ok"})
for _surface in ("hotops.kernels.resize.psnr", "hotops.psnr"):
    row(_surface, build=lambda rng: {"a": rng.random((12, 12)), "b": rng.random((12, 12))},
        call=lambda fn, a: fn(a["a"], a["b"], shave=a.get("shave", 1)), arrays=("a", "b"),
        ref=lambda a: ref.psnr(a["a"], a["b"], 1), params={"shave": [-1, 6]},
        expect={"empty": "raise"})
for _surface in ("hotops.kernels.resize.ssim", "hotops.ssim"):
    row(_surface, build=lambda rng: {"a": rng.random((16, 16)), "b": rng.random((16, 16))},
        call=lambda fn, a: fn(a["a"], a["b"], shave=a.get("shave", 0)), arrays=("a", "b"),
        ref=lambda a: _ssim_ref(a["a"], a["b"]), params={"shave": [-1, 3]}, expect={"empty": "raise"}, rtol=1e-12)
row("hotops.bindings.imresize", "hotops.bindings.Imresize", "hotops.bindings.ImresizeFunction",
    build=lambda rng: {"x": torch.from_numpy(_img(rng, (2, 8, 8)))},
    call=None, arrays=("x",), torch=True, ref=lambda a: _matlab_resize_4d(a["x"].numpy(), scale=0.5),
    expect={"empty": "ok", "rank": "ok"}, devices=_on_meta("x"), rtol=1e-9)  # (C, H, W) and (N, C, H, W)
ROWS["hotops.bindings.imresize"].call = lambda fn, a: fn(a["x"], 0.5)
ROWS["hotops.bindings.imresize"].huge = lambda fn: fn(torch.zeros(8, 8), output_shape=(10**6, 10**6))
ROWS["hotops.bindings.imresize"].params = {"output_shape": [(0, 4), (4, -1)]}
ROWS["hotops.bindings.imresize"].call = lambda fn, a: fn(a["x"], **({"output_shape": a["output_shape"]} if "output_shape" in a else {"scale": 0.5}))
ROWS["hotops.bindings.Imresize"].call = lambda fn, a: fn(scale=0.5)(a["x"])
ROWS["hotops.bindings.ImresizeFunction"].call = lambda fn, a: fn.apply(a["x"], 0.5, None, True)
row("hotops.bindings.imresize_transpose",
    build=lambda rng: {"g": torch.from_numpy(_img(rng, (2, 4, 4)))},
    call=lambda fn, a: fn(a["g"], a.get("input_shape", (8, 8)), 0.5), arrays=("g",), torch=True,
    ref=lambda a: _transpose_ref(a["g"].numpy()),
    params={"input_shape": [(0, 8), (8, -2)]}, huge=lambda fn: fn(torch.zeros(4, 4), (10**6, 10**6), output_shape=(4, 4)),
    expect={"empty": "ok", "rank": "ok", "nan": "ok", "inf": "ok"},  # gradients are not checked for NaN (as torch)
    compare={"nan": lambda got, want, rtol: _compare_nonfinite_spread(got, want, rtol),
             "inf": lambda got, want, rtol: _compare_nonfinite_spread(got, want, rtol)},
    devices=_on_meta("g"), rtol=1e-9)

def _compare_nonfinite_spread(got, want, rtol):
    """A NaN/inf gradient through the resampling's gather tables: every output the reference
    makes non-finite is non-finite, the finite outputs that stay finite are right, and the
    non-finite values do not reach beyond the rows and columns they have weight on (the
    tables' zero-weight taps and padding multiply them by 0, which is NaN)."""
    got = np.asarray(got.detach() if isinstance(got, torch.Tensor) else got)
    bad_want, bad_got = ~np.isfinite(want), ~np.isfinite(got)
    assert (bad_got | ~bad_want).all(), "a non-finite output of the reference is finite"
    both = ~bad_got & ~bad_want
    np.testing.assert_allclose(got[both], want[both], rtol=rtol, atol=rtol)
    rows = bad_want.any(-1, keepdims=True)
    cols = bad_want.any(-2, keepdims=True)
    assert not (bad_got & ~(rows | cols)).any(), "a non-finite value spread beyond its rows and columns"


def _transpose_ref(g):
    """A^T g of the (4, 4) -> (8, 8) adjoint one axis at a time, summing only the taps whose
    weight is non-zero (a NaN or inf reaches the pixels it has weight on, not every pixel)."""
    A = ref.imresize_matrix(8, 4, 0.5, True)  # (4, 8): forward weights

    def axis_t(x):  # (..., 4) -> (..., 8) by A^T
        out = np.zeros(x.shape[:-1] + (8,))
        for q in range(8):
            for i in range(4):
                if A[i, q] != 0:
                    out[..., q] += A[i, q] * x[..., i]
        return out

    g = np.asarray(g, np.float64)
    t = axis_t(g)  # width first: the transpose runs MATLAB's order backwards
    return np.swapaxes(axis_t(np.swapaxes(t, -1, -2)), -1, -2)


# ---------------------------------------------------------------------- clip

_CLIP_XFAIL = ("bindings/clip.py: a gradient on the meta device raises torch's RuntimeError "
               "(Tensor.item() on a meta tensor) instead of a TypeError naming it")


def _clip_call(fn, a):
    res = fn([a["g"]], a.get("theta", 0.4), a.get("lr", 0.5))
    return res, a["g"]


def _clip_ref(a):
    (g,), frac = ref.clip_adjustable([_copy(a["g"])], 0.4, 0.5)
    return frac, g


row("hotops.kernels.clip.clip_grad_adjustable_", "hotops.clip_grad_adjustable_",
    build=lambda rng: {"g": rng.standard_normal((3, 5))}, call=_clip_call, arrays=("g",), written=("g",),
    ref=_clip_ref, names={"g": ["grads", r"grads\[0\]"]},
    expect={"nan": "ok", "inf": "ok", "empty": "ok", "rank": "ok", "noncontig": "raise", "negstride": "raise",
            "readonly": "raise"},
    devices=lambda fn, a, call: fn([a["g"], torch.zeros(3)], 0.4, 0.5) if fn.__module__.startswith("hotops.kernels") else fn([_meta(torch.zeros(3))], 0.4, 0.5))
ROWS["hotops.clip_grad_adjustable_"].xfail = {"devices": _CLIP_XFAIL}
row("hotops.bindings.clip_grad_adjustable_",
    build=lambda rng: {"g": torch.from_numpy(rng.standard_normal((3, 5)))},
    call=_clip_call, arrays=("g",), written=("g",), torch=True,
    ref=lambda a: (lambda g: (float((g.abs() > 0.8).sum()) / g.numel() if g.numel() else 0.0, g.clamp(-0.8, 0.8)))(_copy(a["g"])),
    names={"g": ["grads", r"grads\[0\]", r"parameters\[0\]"]},
    expect={"nan": "ok", "inf": "ok", "empty": "ok", "rank": "ok", "noncontig": "either", "half": "either"},
    devices=_on_meta("g"), xfail={"devices": _CLIP_XFAIL})
row("hotops.kernels.clip.clip_grad_adjustable_addresses_",
    build=lambda rng: {"g": rng.standard_normal(6)},
    call=lambda fn, a: fn([a["g"].ctypes.data], [a["g"].size], np.float64, a.get("theta", 0.4), a.get("lr", 0.5)),
    written=("g",), ref=lambda a: (int((np.abs(a["g"]) > 0.8).sum()), 6),
    params={"theta": [0, -1.0, math.nan], "lr": [0, math.inf]},
    expect={"int_types": "na: theta and lr are real numbers (k_range covers them)"})
row("hotops.kernels.clip.clip_bound",
    build=lambda rng: {}, call=lambda fn, a: fn(a.get("theta", 0.4), a.get("lr", 0.5)), ref=lambda a: 0.8,
    params={"theta": [0, -1.0, math.nan, math.inf], "lr": [0, -2.0]},
    expect={"int_types": "na: theta and lr are real numbers (k_range covers them)"})

# ---------------------------------------------------------------------- gmm

row("hotops.kernels.gmm.gmm_log_likelihood",
    build=lambda rng: {"x": rng.standard_normal((20, 3)), **_gmm_params(rng)},
    call=lambda fn, a: fn(a["x"], a["weights"], a["means"], a["covariances"], **({"out": a["out"]} if "out" in a else {})),
    arrays=("x",), ref=lambda a: ref.gmm_log_likelihood(a["x"], a["weights"], a["means"], a["covariances"]),
    out="out", expect={"nan": "ok", "inf": "ok", "empty": "ok"}, rtol=1e-9,
    devices=lambda fn, a, call: fn(a["x"], a["weights"], a["means"], a["covariances"], out=torch.empty(20, dtype=torch.float64)))
row("hotops.kernels.gmm.prepare_parameters",
    build=lambda rng: _gmm_params(rng),
    call=lambda fn, a: fn(a["weights"], a["means"], a["covariances"]),
    arrays=("weights", "means", "covariances"), ref=_prepare_ref, rtol=1e-9,
    expect={"negative": "either", "negative:weights": "raise", "int": "either", "bool": "either", "half": "either",
            "object": "either", "empty": "raise"})

# ---------------------------------------------------------------------- top-k / sparse Fourier

_TK = "hotops.kernels.topk_threshold."
row(_TK + "topk_threshold", "hotops.topk_threshold",
    build=lambda rng: {"c": rng.standard_normal((3, 10)), "k": 3},
    call=lambda fn, a: fn(a["c"], a["k"], **({"out": a["out"]} if "out" in a else {})),
    arrays=("c",), ref=lambda a: ref.topk_threshold(a["c"], a["k"])[0], out="out", params=K10,
    expect={"empty": "ok", "complex": "ok", "rank": "ok"},  # any rank; rows along the last axis
    devices=lambda fn, a, call: fn(a["c"], 3, out=torch.zeros(3, 10, dtype=torch.float64)))
row(_TK + "hermitian_threshold",
    build=lambda rng: {"X": np.fft.rfft(rng.standard_normal((3, 10))), "k": 3},
    call=lambda fn, a: fn(a["X"], a["k"], (10,), **({"out": a["out"]} if "out" in a else {})),
    arrays=("X",), out="out", params=K10,
    expect={"empty": "ok", "rank": "ok", "int": "raise", "complex": "ok"},
    ref=None)
row(_TK + "apply_mask",
    build=lambda rng: {"x": rng.standard_normal((3, 10)), "mask": rng.random((3, 10)) < 0.4},
    call=lambda fn, a: fn(a["x"], a["mask"], **({"out": a["out"]} if "out" in a else {})),
    arrays=("x", "mask"), ref=lambda a: np.where(a["mask"], a["x"], 0), out="out",
    expect={"nan": "ok", "inf": "ok", "nan:mask": "raise", "inf:mask": "raise", "empty": "raise",
            "rank": "raise", "int": "ok", "bool": "ok", "complex": "ok", "complex:mask": "raise", "half:mask": "raise",
            "object:mask": "raise"},
    names={"x": ["x", "mask"], "mask": ["mask", "x"]},
    devices=lambda fn, a, call: fn(a["x"], torch.from_numpy(a["mask"])))
row(_TK + "hermitian_partner",
    build=lambda rng: {"shape": (4, 6)}, call=lambda fn, a: fn(a["shape"]),
    ref=lambda a: np.array([0, -1, -1, 3, 12, -1, -1, 15, 8, -1, -1, 11, 4, -1, -1, 7]),
    params={"shape": [(0, 6), (4, -1)]}, huge=lambda fn: fn((10**7, 10**7)))
row(_TK + "check_k",
    build=lambda rng: {"k": 3}, call=lambda fn, a: fn("k", a["k"], 10), ref=lambda a: 3, params=K10)
row(_TK + "check_transform",
    build=lambda rng: {}, call=lambda fn, a: fn(a.get("transform", "dct")), ref=lambda a: "dct",
    params={"transform": ["dst", ""]}, expect={"int_types": "na: transform is a string"},
    names={"transform": ["transform"]})
_SP_EXPECT = {"empty": "ok", "int": "ok", "bool": "ok", "complex": "either", "rank": "ok"}
row(_TK + "sparse_project", "hotops.sparse_project",
    build=lambda rng: {"x": rng.standard_normal((2, 8, 8)), "k": 5},
    call=lambda fn, a: fn(a["x"], a["k"]), arrays=("x",), params={"k": [0, 65, -1]},
    ref=lambda a: _dct_project(a["x"], a["k"]) if a["x"].dtype.kind != "c" else None, rtol=1e-9,
    expect=_SP_EXPECT, devices=lambda fn, a, call: fn(_meta(torch.from_numpy(a["x"])), 5) if fn.__module__ == "hotops.sparse_fourier" else fn(torch.from_numpy(a["x"]), 5))
ROWS[_TK + "sparse_project"].expect = {**_SP_EXPECT, "complex": "ok"}
ROWS[_TK + "sparse_project"].ref = None  # complex input: the same call on a clean copy
ROWS["hotops.sparse_project"].ref = None
row(_TK + "project_with_mask",
    build=lambda rng: (lambda x: {"x": x, "mask": resolve(_TK + "sparse_project")(x, 5, return_mask=True)[1]})(rng.standard_normal((2, 8, 8))),
    call=lambda fn, a: fn(a["x"], a["mask"]), arrays=("x", "mask"),
    ref=None, expect={"nan": "either", "inf": "either", "empty": "either", "int": "either", "bool": "either",
                      "complex": "either", "rank": "raise"},
    names={"x": ["x", "mask"], "mask": ["mask", "x"]})
_IHT = dict(expect={"empty": "ok", "int": "ok", "bool": "ok", "rank": "ok"}, rtol=1e-8)
row(_TK + "iht", "hotops.iht",
    build=lambda rng: {"y": rng.standard_normal((2, 8, 8)), "k": 6, "t": 2},
    call=lambda fn, a: fn(a["y"], a["k"], a["t"], n_iter=5, tol=0), arrays=("y",),
    ref=lambda a: _iht_ref(a["y"], a["k"], a["t"], 5), params={"k": [0, 65], "t": [0, -1]},
    devices=lambda fn, a, call: fn(_meta(torch.from_numpy(a["y"])), 6, 2) if fn.__module__ == "hotops.sparse_fourier" else fn(torch.from_numpy(a["y"]), 6, 2),
    **_IHT)
row(_TK + "patchwise_iht", "hotops.patchwise_iht",
    build=lambda rng: {"y": rng.standard_normal((8, 8)), "k": 4, "t": 1},
    call=lambda fn, a: fn(a["y"], a["k"], a["t"], patch=a.get("patch", (4, 4)), n_iter=4, tol=0), arrays=("y",),
    ref=lambda a: _patch_iht_ref(a["y"], a["k"], a["t"], (4, 4), 4), params={"k": [0, 17], "patch": [(3, 4), (0, 4)]},
    **_IHT)
ROWS[_TK + "patchwise_iht"].expect = {**_IHT["expect"], "empty": "either"}
row("hotops.bindings.sparse_project", "hotops.bindings.SparseProjection", "hotops.bindings.sparse_project_with_mask",
    build=lambda rng: {"x": torch.from_numpy(rng.standard_normal((2, 8, 8))), "k": 5},
    call=None, arrays=("x",), torch=True, params={"k": [0, 65, -1]},
    ref=lambda a: _dct_project(a["x"].numpy(), a["k"]), rtol=1e-9,
    expect={"empty": "ok", "half": "ok", "rank": "ok"}, devices=_on_meta("x"))
ROWS["hotops.bindings.sparse_project"].call = lambda fn, a: fn(a["x"], a["k"])
ROWS["hotops.bindings.SparseProjection"].call = lambda fn, a: fn.apply(a["x"], a["k"])
ROWS["hotops.bindings.sparse_project_with_mask"].call = lambda fn, a: fn(a["x"], a["k"])[0]
row("hotops.bindings.iht",
    build=lambda rng: {"y": torch.from_numpy(rng.standard_normal((2, 8, 8))), "k": 6, "t": 2},
    call=lambda fn, a: fn(a["y"], a["k"], a["t"], n_iter=5, tol=0), arrays=("y",), torch=True,
    ref=lambda a: _iht_ref(a["y"].numpy(), a["k"], a["t"], 5), params={"k": [0, 65], "t": [0, -1]},
    devices=_on_meta("y"), **_IHT)
row("hotops.bindings.patchwise_iht",
    build=lambda rng: {"y": torch.from_numpy(rng.standard_normal((8, 8))), "k": 4, "t": 1},
    call=lambda fn, a: fn(a["y"], a["k"], a["t"], patch=a.get("patch", (4, 4)), n_iter=4, tol=0), arrays=("y",),
    torch=True, ref=lambda a: _patch_iht_ref(a["y"].numpy(), a["k"], a["t"], (4, 4), 4),
    params={"k": [0, 17], "patch": [(3, 4), (0, 4)]}, devices=_on_meta("y"), **_IHT)
row("hotops.bindings.IHTDefense",
    build=lambda rng: {"y": torch.from_numpy(rng.standard_normal((2, 8, 8))), "k": 6},
    call=lambda fn, a: fn(nn.Flatten(), a["k"], 2, n_iter=3, tol=0)(a["y"]), arrays=("y",), torch=True,
    ref=lambda a: torch.from_numpy(_iht_ref(a["y"].numpy(), a["k"], 2, 3)[0]).flatten(1),
    params={"k": [0, -1]}, expect={"empty": "ok", "int": "raise", "bool": "raise", "rank": "ok"},
    devices=_on_meta("y"), rtol=1e-8)

# ---------------------------------------------------------------------- reversible kernels

_RV = "hotops.kernels.reversible."


def _quantize_ref(x):
    """(bad count, values): non-finite or out-of-range elements count as bad and are written 0."""
    vals = ref.rev_quantize(x, 8, 2.0**62)
    return sum(v is None for v in vals), np.array([0 if v is None else v for v in vals], np.int64).reshape(np.shape(x))
row(_RV + "couple_",
    build=lambda rng: {"y": rng.standard_normal((3, 4)), "f": rng.standard_normal((3, 4))},
    call=lambda fn, a: (fn(a["y"], a["f"], -1), a["y"]), arrays=("f", "y"), written=("y",),
    ref=lambda a: (lambda r: (r[1], r[0]))(ref.rev_couple(a["y"], a["f"], -1)), out="y",
    expect={"nan": "ok", "inf": "ok", "empty": "raise", "rank": "raise", "noncontig": "raise",
            "negstride": "raise", "readonly:y": "raise", "out_overlap": "raise"},
    names={"f": ["f", "y"], "y": ["y", "f"]},
    devices=lambda fn, a, call: fn(a["y"], torch.from_numpy(a["f"])))
row(_RV + "quantize",
    build=lambda rng: {"x": rng.standard_normal((3, 4)), "out": np.zeros((3, 4), np.int64)},
    call=lambda fn, a: (fn(a["x"], a.get("frac_bits", 8), a["out"]), a["out"]), arrays=("x",), written=("out",),
    ref=lambda a: _quantize_ref(a["x"]), out="out", params={"frac_bits": [-1, 61]},
    expect={"nan": "ok", "inf": "ok", "empty": "raise", "rank": "raise", "noncontig": "raise", "negstride": "raise",
            "out_overlap": "raise"},
    devices=lambda fn, a, call: fn(a["x"], 8, torch.zeros(3, 4, dtype=torch.int64)))
row(_RV + "dequantize",
    build=lambda rng: {"q": rng.integers(-1000, 1000, (3, 4)), "out": np.zeros((3, 4))},
    call=lambda fn, a: (fn(a["q"], a.get("frac_bits", 8), a["out"]), a["out"]), arrays=("q",), written=("out",),
    ref=lambda a: (None, a["q"] * 2.0**-8), out="out", params={"frac_bits": [-1, 61]},
    expect={"empty": "raise", "rank": "raise", "int": "ok", "nan": "raise", "inf": "raise",
            "noncontig": "raise", "negstride": "raise", "out_overlap": "raise"},
    devices=lambda fn, a, call: fn(a["q"], 8, torch.zeros(3, 4, dtype=torch.float64)))
row(_RV + "quantize_couple_",
    build=lambda rng: {"y": rng.integers(-1000, 1000, (3, 4)), "f": rng.standard_normal((3, 4))},
    call=lambda fn, a: (fn(a["y"], a["f"], a.get("frac_bits", 8), -1), a["y"]), arrays=("f",), written=("y",),
    ref=lambda a: (lambda r: (r[1], r[0]))(ref.rev_quantize_couple(a["y"], a["f"], 8, -1, 2.0**62)), out="y",
    params={"frac_bits": [-1, 61]},
    expect={"nan": "ok", "inf": "ok", "empty": "raise", "rank": "raise", "noncontig": "raise", "negstride": "raise",
            "out_overlap": "raise"},
    devices=lambda fn, a, call: fn(a["y"], torch.from_numpy(a["f"]), 8))
row(_RV + "fixed_point_limit",
    build=lambda rng: {}, call=lambda fn, a: fn(a.get("int_dtype", np.int64)), ref=lambda a: 2.0**62,
    params={"int_dtype": [np.int16, np.float64, "int8"]}, expect={"int_types": "na: the argument is a dtype"},
    names={"int_dtype": ["fixed-point dtype"]})

# ---------------------------------------------------------------------- NMF kernels and surface

_NM = "hotops.kernels.nmf."
_NMF_EXPECT = {"negative": "raise", "empty": "raise", "int": "either", "bool": "either", "complex": "raise",
               "half": "raise", "object": "raise"}


#: the in-place loops: V is read (any layout), W is updated in place (C-contiguous, writeable)
_MU_EXPECT = {**_NMF_EXPECT, "int": "raise", "bool": "raise", "noncontig": "ok", "negstride": "ok", "readonly": "ok",
              "noncontig:W": "raise", "negstride:W": "raise", "readonly:W": "raise"}
_MU_NAMES = {"V": ["V", "W", "H"], "W": ["W"]}


#: scikit-learn's rules: n_components and max_iter integers >= 1, tol finite >= 0
_NMF_PARAMS = {"n_components": [0, -1], "max_iter": [0, -1], "tol": [math.nan, -1.0, math.inf]}


def _factors(rng, m=6, n=5, r=2, batch=None):
    lead = () if batch is None else (batch,)
    return (np.abs(rng.standard_normal(lead + (m, r))) + 0.1, np.abs(rng.standard_normal(lead + (r, n))) + 0.1)


row(_NM + "multiplicative_update",
    build=lambda rng: (lambda W, H: {"V": _nmf_data(rng), "W": W, "H": H})(*_factors(rng)),
    call=lambda fn, a: fn(a["V"], a["W"], a["H"], max_iter=a.get("max_iter", 5), tol=0)[1:],
    arrays=("V", "W"), written=("W", "H"), ref=lambda a: _nmf_mu_ref(a["V"], a["W"], a["H"], 5),
    params={"max_iter": [0, -2]}, expect=dict(_MU_EXPECT), names=dict(_MU_NAMES),
    devices=lambda fn, a, call: fn(a["V"], torch.from_numpy(a["W"]), a["H"]))
row(_NM + "batched_multiplicative_update",
    build=lambda rng: (lambda W, H: {"V": _nmf_data(rng, (2, 6, 5)), "W": W, "H": H})(*_factors(rng, batch=2)),
    call=lambda fn, a: (fn(a["V"], a["W"], a["H"], max_iter=a.get("max_iter", 5), tol=0)[0], a["W"], a["H"]),
    arrays=("V", "W"), written=("W", "H"),
    ref=lambda a: (np.full(2, 5), *(np.stack(z) for z in zip(*[_nmf_mu_ref(a["V"][b], a["W"][b], a["H"][b], 5) for b in range(2)]))),
    params={"max_iter": [0, -2]}, expect=dict(_MU_EXPECT), names=dict(_MU_NAMES),
    devices=lambda fn, a, call: fn(a["V"], torch.from_numpy(a["W"]), a["H"]))
row(_NM + "objective",
    build=lambda rng: (lambda W, H: {"V": _nmf_data(rng), "W": W, "H": H})(*_factors(rng)),
    call=lambda fn, a: fn(a["V"], a["W"], a["H"]), arrays=("V", "W"),
    ref=lambda a: math.sqrt(2 * ref.nmf_divergence(a["V"], a["W"], a["H"], 2.0)), names=dict(_MU_NAMES),
    expect={**_NMF_EXPECT, "nan": "either", "inf": "either", "negative": "either"}, rtol=1e-9)
row(_NM + "make_problem",
    build=lambda rng: (lambda W, H: {"V": _nmf_data(rng), "W": W, "H": H})(*_factors(rng)),
    call=lambda fn, a: (lambda p: float(p.error(*p.start(a["W"], a["H"]))))(fn(a["V"], None, 2.0, 2)),
    arrays=("V",), ref=lambda a: math.sqrt(2 * ref.nmf_divergence(a["V"], a["W"], a["H"], 2.0)),
    expect={**_NMF_EXPECT, "nan": "either", "inf": "either", "negative": "either"}, rtol=1e-9)
row(_NM + "run_loop",
    build=lambda rng: (lambda W, H: {"V": _nmf_data(rng), "W": W, "H": H})(*_factors(rng)),
    call=lambda fn, a: fn(resolve(_NM + "make_problem")(a["V"], None, 2.0, 2), a["W"], a["H"], max_iter=5, tol=0,
                          l1_reg_W=0.0, l1_reg_H=0.0, l2_reg_W=0.0, l2_reg_H=0.0)[1:],
    arrays=("W",), written=("W", "H"), ref=lambda a: _nmf_mu_ref(a["V"], a["W"], a["H"], 5),
    expect={"nan": "either", "inf": "either", "empty": "raise", "noncontig": "raise", "negstride": "raise",
            "readonly": "raise"})
row(_NM + "check_nonnegative",
    build=lambda rng: {"X": _nmf_data(rng)}, call=lambda fn, a: fn("X", a["X"]), arrays=("X",),
    ref=lambda a: None, expect={"negative": "raise", "empty": "ok", "rank": "ok", "int": "ok", "bool": "ok",
                                "half": "ok", "complex": "either", "object": "either"})  # a check: None or an error
row(_NM + "check_stopping",
    build=lambda rng: {}, call=lambda fn, a: fn(a.get("max_iter", 10), a.get("tol", 1e-4)), ref=lambda a: (10, 1e-4),
    params={"max_iter": [0, -1], "tol": [-1.0, math.nan, math.inf]})
row(_NM + "beta_loss_to_float",
    build=lambda rng: {}, call=lambda fn, a: fn(a.get("beta_loss", 1.5)), ref=lambda a: 1.5,
    params={"beta_loss": ["frob", math.nan, math.inf, 1 + 0j]}, expect={"int_types": "na: beta_loss is a real number"})
for _name in (_NM + "batched_nmf", "hotops.batched_nmf"):
    row(_name,
        build=lambda rng: {"V": _nmf_data(rng, (2, 6, 5)), "n_components": 2},
        call=lambda fn, a: fn(a["V"], a["n_components"], init="random", random_state=0, max_iter=a.get("max_iter", 10),
                              tol=a.get("tol", 0)),
        arrays=("V",), params=dict(_NMF_PARAMS), valid={"max_iter": 10},
        huge=lambda fn: fn(np.ones((1, 4, 4)), 10**12, init="random"),
        expect={**_NMF_EXPECT, "int": "ok", "bool": "ok", "rank": "raise"},
        devices=lambda fn, a, call: fn(a["V"], 2, mask=torch.ones(2, 6, 5)) if fn.__module__.startswith("hotops.kernels") else fn(torch.from_numpy(a["V"]), 2, mask=_meta(torch.ones(2, 6, 5))))
row("hotops.NMF",
    build=lambda rng: {"X": _nmf_data(rng), "n_components": 2},
    call=lambda fn, a: fn(a["n_components"], init="random", random_state=0, max_iter=a.get("max_iter", 10),
                          tol=a.get("tol", 0)).fit_transform(a["X"]),
    arrays=("X",), params=dict(_NMF_PARAMS), valid={"max_iter": 10},
    huge=lambda fn: fn(10**12, init="random").fit(np.ones((4, 4))),
    expect={**_NMF_EXPECT, "int": "ok", "bool": "ok", "rank": "raise", "empty": "raise", "half": "ok",
            "object": "ok"},  # scikit-learn's conversions: float16 and numeric objects to float64
    names={"X": ["X", "array", "Expected 2D array", "sample", "feature", "Complex", "dtype"],
           "n_components": ["n_components"]})
row("hotops.bindings.nmf",
    build=lambda rng: {"V": torch.from_numpy(_nmf_data(rng)), "n_components": 2},
    call=lambda fn, a: fn(a["V"], a["n_components"], init="random", random_state=0, max_iter=a.get("max_iter", 10),
                          tol=a.get("tol", 0)),
    arrays=("V",), torch=True, params=dict(_NMF_PARAMS), valid={"max_iter": 10},
    huge=lambda fn: fn(torch.ones(4, 4), 10**12, init="random"),
    expect={**_NMF_EXPECT, "int": "ok", "bool": "ok", "rank": "ok", "half": "raise"},  # 3-D V: a batch
    devices=lambda fn, a, call: fn(a["V"], 2, mask=_meta(torch.ones(6, 5))))

# ---------------------------------------------------------------------- saliency, class model, localisation

row("hotops.saliency",
    build=lambda rng: {"model": _small_net(), "x": torch.from_numpy(rng.standard_normal((2, 3, 8, 8))), "target": 1},
    call=lambda fn, a: fn(a["model"], a["x"], a["target"]), arrays=("x",), torch=True, ref=_saliency_ref,
    params={"target": [5, -1]}, devices=_on_meta("x"),
    names={"target": ["target"]}, expect={"empty": "raise"})
row("hotops.class_model",
    build=lambda rng: {"model": _small_net(), "target": 2},
    call=lambda fn, a: fn(a["model"], a["target"], steps=a.get("steps", 2), input_shape=a.get("input_shape", (3, 8, 8)),
                          progress=False),
    ref=None, params={"target": [5, -1], "steps": [0, -3], "input_shape": [(3, 0, 8), (3, 8, -8)]},
    huge=lambda fn: fn(_small_net(), 1, steps=1, input_shape=(3, 10**6, 10**6), progress=False))
row("hotops.localize",
    build=lambda rng: dict(zip(("image", "saliency"), _localize_scene(rng))),
    call=lambda fn, a: fn(a["image"], a["saliency"], n_components=a.get("n_components", 2)), arrays=("image", "saliency"),
    ref=None, params={"n_components": [0, -1]},
    expect={"int": "either", "empty": "raise", "object": "raise", "half": "either"},
    devices=lambda fn, a, call: fn(a["image"], _meta(torch.from_numpy(a["saliency"]))))
ROWS["hotops.localize"].names = {"image": ["image"], "saliency": ["saliency"]}
row("hotops.localize_batch",
    build=lambda rng: dict(zip(("image", "saliency"), _localize_scene(rng))),
    call=lambda fn, a: fn([a["image"]], [a["saliency"]], workers=a.get("workers", 1), n_components=2),
    arrays=("image", "saliency"), ref=None, params={"workers": [0, -1]},
    expect={"int": "either", "empty": "raise", "object": "raise", "half": "either"},
    names={"image": ["image", "saliency", "image 0"], "saliency": ["saliency", "image 0"]})

# ---------------------------------------------------------------------- ReLU rules, reversible blocks

_RELU_XFAIL = "bindings/relu_rules.py (outside this pass) lets torch raise NotImplementedError for complex input"
row("hotops.bindings.DeconvReLU", "hotops.bindings.GuidedReLU",
    build=lambda rng: {"x": torch.from_numpy(rng.standard_normal((3, 4)))},
    call=lambda fn, a: fn.apply(a["x"]), arrays=("x",), torch=True, ref=lambda a: a["x"].clamp(min=0),
    expect={"nan": "ok", "inf": "ok", "empty": "ok", "rank": "ok", "int": "either", "bool": "either",
            "half": "ok", "complex": "raise"},
    xfail={"complex": _RELU_XFAIL})
row("hotops.bindings.relu_rule",  # a context manager over a model: its arguments hold no arrays
    build=lambda rng: {"x": torch.from_numpy(rng.standard_normal((3, 4)))},
    call=lambda fn, a: _relu_rule_call(fn, a), torch=True,
    ref=lambda a: torch.from_numpy(ref.relu_rule_backward(a["x"].numpy(), np.ones(a["x"].shape), "guided")),
    params={"rule": ["lrp", ""], "model": [nn.Identity, "relu"]},
    expect={"int_types": "na: rule is a string, model a module"})


def _relu_rule_call(fn, a):
    net = nn.Sequential(nn.ReLU())
    x = a["x"].detach().clone().requires_grad_(True)
    if "model" in a:
        net = a["model"]
    with fn(net, a.get("rule", "guided")):
        net(x).sum().backward()
    return x.grad


#: F and G are the caller's modules: they decide which ranks, dtypes and devices they take
#: (torch raises its own RuntimeError inside them)
_REV_EXPECT = {"nan": "either", "inf": "either", "empty": "either", "rank": "na: F and G decide the rank they take",
               "half": "na: F and G decide the dtype they take",
               "devices": "na: F and G's parameters decide the device (torch's own rules)"}


def _rev_block(fn=None):
    torch.manual_seed(0)
    block = resolve("hotops.bindings.ReversibleBlock")
    return block(nn.Conv2d(2, 2, 3, padding=1).double(), nn.Conv2d(2, 2, 3, padding=1).double())


def _rev_ref(blocks, x):
    with torch.no_grad():
        for b in blocks:
            x1, x2 = x.chunk(2, 1)
            y1 = x1 + b.F(x2)
            y2 = x2 + b.G(y1)
            x = torch.cat([y1, y2], 1)
    return x


row("hotops.bindings.ReversibleBlock",
    build=lambda rng: {"x": torch.from_numpy(rng.standard_normal((2, 4, 5, 5))), "block": _rev_block()},
    call=lambda fn, a: a["block"](a["x"]), arrays=("x",), torch=True,
    ref=lambda a: _rev_ref([a["block"]], a["x"]), rtol=1e-9, expect=dict(_REV_EXPECT), names={"x": ["x", "input"]})
row("hotops.bindings.ReversibleSequence",
    build=lambda rng: {"x": torch.from_numpy(rng.standard_normal((2, 4, 5, 5))), "blocks": [_rev_block(), _rev_block()]},
    call=lambda fn, a: fn(*a["blocks"])(a["x"]), arrays=("x",), torch=True,
    ref=lambda a: _rev_ref(a["blocks"], a["x"]), rtol=1e-9, expect=dict(_REV_EXPECT), names={"x": ["x", "input"]})
row("hotops.bindings.saved_tensor_bytes",  # a context manager: its one argument is a bool
    build=lambda rng: {"x": torch.from_numpy(rng.standard_normal((3, 4)))},
    call=lambda fn, a: _saved_bytes(fn, a["x"]), torch=True,
    ref=lambda a: a["x"].numel() * a["x"].element_size())


def _saved_bytes(fn, x):
    x = x.detach().clone().requires_grad_(x.is_floating_point() or x.is_complex())
    with fn() as stats:
        (x * x).sum() if x.requires_grad else None
    return stats["bytes"]


# ============================================================================ the cells

def _kernel_functions() -> set[str]:
    import hotops.kernels as K

    names = set()
    for op in K._OPS:
        mod = getattr(K, op)
        for n in mod.__all__:
            obj = getattr(mod, n)
            if callable(obj) and not inspect.isclass(obj):
                names.add(f"hotops.kernels.{op}.{n}")
    return names


def public_names() -> set[str]:
    import hotops
    import hotops.bindings

    names = {f"hotops.{n}" for n in hotops.__all__ if n not in hotops._SUBMODULES}
    names |= {f"hotops.bindings.{n}" for n in hotops.bindings.__all__}
    return names | _kernel_functions()


def test_every_public_entry_point_has_a_row():
    missing = sorted(public_names() - set(ROWS) - NOT_CALLABLE)
    assert not missing, f"public entry points without a row in the bad-input matrix: {missing}"
    stale = sorted(set(ROWS) - public_names())
    assert not stale, f"rows for names that are not public (any more): {stale}"


def _cells():
    for name in sorted(ROWS):
        r = ROWS[name]
        for cls in CLASSES:
            exp = r.expectation(cls)
            marks = []
            if exp.startswith("na"):
                continue
            if cls in r.xfail:
                marks.append(pytest.mark.xfail(strict=True, reason=r.xfail[cls]))
            yield pytest.param(name, cls, id=f"{name.removeprefix('hotops.')}-{cls}", marks=marks)


def _arg_names(r: Row, arg: str) -> list[str]:
    return r.names.get(arg, [arg])


def _run(r: Row, fn, a, cls, names, expect, want_fn):
    """One call with its checks: the outcome ('raise' or the result against want_fn) and
    the caller's arrays untouched."""
    before = {k: _snapshot(v) for k, v in a.items() if k not in r.written}
    expected = None
    if expect != "raise":
        try:
            expected = want_fn(_copy_args(a))
        except (TypeError, ValueError):
            if r.ref is not None:
                raise
            expect = "raise"  # the same input, clean and contiguous, is refused: so must this be
    try:
        got = r.call(fn, a)
    except (TypeError, ValueError) as exc:
        assert expect in ("raise", "either"), f"{cls}: expected a result, got {type(exc).__name__}: {exc}"
        assert _names_in(str(exc), names), f"{cls}: the error does not name {names}: {exc}"
    else:
        assert expect in ("ok", "either"), f"{cls}: expected a TypeError/ValueError naming {names}, got a result"
        if expected is not None or r.ref is not None:
            base = cls.split(" ")[0]
            r.compare.get(base, _compare)(got, expected, r.rtols.get(base, r.rtol))
    for k, snap in before.items():
        assert _same(_snapshot(a[k]), snap), f"{cls}: argument {k} was modified"


def _copy_args(a):
    return {k: _copy(v) for k, v in a.items()}


def _want(r: Row, fn, arg=None):
    """The expected result of accepted input: the row's reference, or the same call with
    the corrupted argument ``arg`` replaced by a clean contiguous copy."""
    if r.ref is not None:
        return r.ref
    return lambda a: r.call(fn, {**a, arg: _clean(a[arg])} if arg else a)


@pytest.mark.parametrize("name, cls", list(_cells()))
def test_cell(name, cls):
    r = ROWS[name]
    fn = resolve(name)
    expect = r.expectation(cls)
    rng = np.random.default_rng(0)
    if cls in ARRAY_CLASSES:
        ran = False
        for arg in r.arrays:
            a = r.build(rng)
            bad = _corrupt(a[arg], cls, rng)
            if bad is None:
                continue
            a[arg] = bad
            ran = True
            _run(r, fn, a, f"{cls} ({arg})", _arg_names(r, arg), r.expectation(cls, arg), _want(r, fn, arg))
        if not ran:
            pytest.skip(f"{cls} does not apply to {r.arrays}")
    elif cls == "out_readonly":
        a = r.build(rng)
        good = r.call(fn, _copy_args(a))  # the result tells the out shape and dtype
        res = good[-1] if r.out in r.written else good[0] if isinstance(good, tuple) else good
        ro = np.zeros(np.shape(a.get(r.out, res)), np.asarray(a.get(r.out, res)).dtype)
        ro.setflags(write=False)
        a[r.out] = ro
        _run(r, fn, a, cls, ["out", r.out], "raise", None)
    elif cls == "out_overlap":
        a = r.build(rng)
        good = r.call(fn, _copy_args(a))
        template = np.asarray(a[r.out]) if r.out in a else np.asarray(good[0] if isinstance(good, tuple) else good)
        prim = np.asarray(a[r.arrays[0]])
        buf = np.zeros(prim.nbytes + template.nbytes + 64, np.uint8)
        x_view = buf[:prim.nbytes].view(prim.dtype).reshape(prim.shape)
        x_view[...] = prim
        start = template.dtype.itemsize  # one element in: the two overlap in part
        out_view = buf[start:start + template.nbytes].view(template.dtype).reshape(template.shape)
        want = _want(r, fn, r.arrays[0])(_copy_args(a)) if expect != "raise" else None
        a[r.arrays[0]], a[r.out] = x_view, out_view
        try:
            got = r.call(fn, a)
        except (TypeError, ValueError) as exc:
            assert expect in ("raise", "either"), f"expected a result, got {exc}"
            assert _names_in(str(exc), ["out", r.out, r.arrays[0]]), exc
        else:
            assert expect in ("ok", "either"), "expected an error for an out= overlapping the input"
            _compare(got, want, r.rtol)
    elif cls == "k_range":
        for param, values in r.params.items():
            for v in values:
                a = r.build(rng)
                a[param] = v
                _run(r, fn, a, f"{param}={v!r}", r.names.get(param, [param]), "raise", None)
    elif cls == "int_types":
        ran = False
        for param in r.params:
            a = {**r.valid, **r.build(rng)}
            value = a.get(param)
            if isinstance(value, tuple) and all(type(v) is int for v in value):
                np_value = tuple(np.int64(v) for v in value)
                bad_values = [tuple(float(v) for v in value), (True,) + value[1:]]
            elif type(value) is int:
                np_value, bad_values = np.int64(value), [float(value), True]
            else:
                continue
            ran = True
            want = r.call(fn, _copy_args(a))
            a[param] = np_value
            _compare(r.call(fn, a), want, 0)  # numpy integers are integers
            for v in bad_values:
                a = {**r.valid, **r.build(rng)}
                a[param] = v
                _run(r, fn, a, f"{param}={v!r}", r.names.get(param, [param]), "raise", None)
        if not ran:
            pytest.skip("no integer parameter among the built arguments")
    elif cls == "huge":
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match="memory|too large|asks for"):
                r.huge(fn)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 256 * 2**20, f"refused only after allocating {peak / 2**20:.0f} MiB"
    elif cls == "devices":
        a = r.build(rng)
        before = {k: _snapshot(v) for k, v in a.items() if k not in r.written}
        with pytest.raises((TypeError, ValueError)):
            r.devices(fn, a, r.call)
        for k, snap in before.items():
            assert _same(_snapshot(a[k]), snap), f"argument {k} was modified"
    else:  # pragma: no cover
        raise AssertionError(cls)


# valid values of the parameters the calls otherwise leave at their defaults (int_types
# passes them as numpy integers, then as floats and bools)
for _name, _valid in {
    "hotops.kernels.resize.imresize": {"output_shape": (4, 8)}, "hotops.imresize": {"output_shape": (4, 8)},
    "hotops.bindings.imresize": {"output_shape": (4, 4)},
    "hotops.kernels.resize.imresize_transpose": {"input_shape": (8, 8)},
    "hotops.bindings.imresize_transpose": {"input_shape": (8, 8)},
    "hotops.kernels.resize.psnr": {"shave": 1}, "hotops.psnr": {"shave": 1},
    "hotops.kernels.resize.ssim": {"shave": 0}, "hotops.ssim": {"shave": 0},
    "hotops.kernels.topk_threshold.patchwise_iht": {"patch": (4, 4)}, "hotops.patchwise_iht": {"patch": (4, 4)},
    "hotops.bindings.patchwise_iht": {"patch": (4, 4)},
    "hotops.kernels.reversible.quantize": {"frac_bits": 8}, "hotops.kernels.reversible.dequantize": {"frac_bits": 8},
    "hotops.kernels.reversible.quantize_couple_": {"frac_bits": 8},
    "hotops.class_model": {"steps": 2, "input_shape": (3, 8, 8)},
    "hotops.localize": {"n_components": 2}, "hotops.localize_batch": {"workers": 1},
    "hotops.kernels.nmf.multiplicative_update": {"max_iter": 5},
    "hotops.kernels.nmf.batched_multiplicative_update": {"max_iter": 5},
    "hotops.kernels.nmf.check_stopping": {"max_iter": 10},
}.items():
    ROWS[_name].valid = _valid
