"""hotops.models: full networks built on hotops' ops (they need torch).

Attributes are imported lazily, so ``import hotops.models`` does not import torch until a
model is used.

- :class:`SmallCifarNet`, :func:`load_small_cifar`: the demo's compact all-convolutional
  CIFAR-10 classifier and its committed checkpoint.
- :class:`VDSR`: Kim et al. (CVPR 2016) super-resolution network; ``VDSR.pretrained()``.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "SmallCifarNet": "small_cifar",
    "load_small_cifar": "small_cifar",
    "small_cifar": None,
    "VDSR": "vdsr",
    "vdsr": None,
    "SimonyanNet": "simonyan",
    "simonyan": None,
    "revnet38": "revnet", "revnet110": "revnet", "revnet164": "revnet", "revnet104": "revnet",
    "resnet32": "revnet", "resnet110": "revnet", "resnet164": "revnet", "resnet101": "revnet",
    "revnet": None,
    "MnistCNN": "mnist_cnn",
    "load_defense_model": "mnist_cnn",
    "mnist_cnn": None,
    # each further model adds its lines here: "ClassName": "module", "module": None
}

__all__ = sorted(k for k in _EXPORTS if _EXPORTS[k] is not None)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name] or name}")
        value = module if _EXPORTS[name] is None else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
