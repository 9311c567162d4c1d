"""hotops: hand-written Numba CPU and numba.cuda GPU kernels for the hot paths of five
classic papers, behind thin torch bindings.

Importing ``hotops`` is cheap: it imports neither torch nor any kernel and compiles
nothing. Sub-packages load on first use: ``hotops.kernels`` (arrays in, arrays out),
``hotops.bindings`` (torch), ``hotops.models``, ``hotops.data``. Above the library:
``hotops.apps`` (training and evaluation pipelines), ``hotops.demo``, ``hotops.bench``
(the benchmark suites) and ``hotops.cli`` (the ``hotops`` command).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from ._ops import channel_max_abs, clip_grad_adjustable_, imresize

#: library sub-packages and modules loaded on first attribute access (``hotops.apps``,
#: ``hotops.demo``, ``hotops.bench`` and ``hotops.cli`` sit above the library and are
#: imported by name)
_SUBMODULES = ("kernels", "bindings", "models", "data", "distributed", "environment")

_KERNEL_EXPORTS = {"rgb2ycbcr": "resize", "ycbcr2rgb": "resize", "psnr": "resize", "ssim": "resize"}

#: Public names that live in a surface module, imported on first access: name -> module
#: (relative to ``hotops``). Each capability adds its lines here.
_LAZY_EXPORTS: dict[str, str] = {
    "saliency": "attribution", "class_model": "attribution",
    "localize": "localization", "localize_batch": "localization",
    "sparse_project": "sparse_fourier", "iht": "sparse_fourier", "patchwise_iht": "sparse_fourier",
    "topk_threshold": "sparse_fourier",
    "NMF": "nmf", "batched_nmf": "nmf",
}

__all__ = [
    "__version__",
    "channel_max_abs",
    "imresize",
    "clip_grad_adjustable_",
    *_KERNEL_EXPORTS,
    *_LAZY_EXPORTS,
    *_SUBMODULES,
]


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    if name in _KERNEL_EXPORTS:
        module = importlib.import_module(f"{__name__}.kernels.{_KERNEL_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _LAZY_EXPORTS:
        module = importlib.import_module(f"{__name__}.{_LAZY_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
