"""What this machine is: versions, CPU, threads, GPU status and the data folder.

One reader of ``/proc/cpuinfo`` (:func:`cpu_name`) and one environment summary
(:func:`environment_info`, :func:`format_info`) for ``hotops info``, the demo's report,
the training pipelines' metadata and the benchmark suites.
"""
from __future__ import annotations

import importlib
import os
import platform

__all__ = ["cpu_name", "environment_info", "format_info", "LABELS"]

# package name -> import name
_VERSIONED = (
    ("python", None),
    ("hotops", "hotops"),
    ("numpy", "numpy"),
    ("numba", "numba"),
    ("torch", "torch"),
    ("scipy", "scipy"),
    ("scikit-image", "skimage"),
    ("matplotlib", "matplotlib"),
    ("cupy", "cupy"),
)


def _version(module_name: str | None) -> str:
    if module_name is None:
        return platform.python_version()
    if module_name == "hotops":
        try:
            from importlib.metadata import version

            return version("hotops")
        except Exception:
            pass
    try:
        mod = importlib.import_module(module_name)
    except Exception:
        return "not installed"
    return str(getattr(mod, "__version__", "unknown"))


def cpu_name() -> str:
    """The CPU model string (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _numba_threading() -> dict:
    import numba

    info = {"numba_threads": numba.get_num_threads(), "numba_threading_layer": None}
    try:
        # The layer is chosen when the first parallel kernel runs: run hotops' own (cached)
        # channel-max kernel on a tiny array so the answer is the one hotops will get.
        import numpy as np

        from hotops.kernels.channel_max import channel_max_abs

        channel_max_abs(np.zeros((1, 2, 2, 2), dtype=np.float32))
        info["numba_threading_layer"] = numba.threading_layer()
    except Exception as exc:  # no parallel kernel ran: report the configured choice
        info["numba_threading_layer"] = f"{numba.config.THREADING_LAYER} (not started: {type(exc).__name__})"
    return info


def environment_info(probe_threads: bool = True) -> dict:
    """Versions, threads, GPU status and data location, as a flat dict of strings/ints."""
    info: dict = {}
    for name, mod in _VERSIONED:
        info[name] = _version(mod)
    info["platform"] = platform.platform()
    info["cpu"] = cpu_name()
    info["cpu_count"] = os.cpu_count()
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["torch_cuda"] = (
            f"yes ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "no"
        )
    except Exception:
        info["torch_threads"] = None
        info["torch_cuda"] = "torch not importable"
    if probe_threads:
        try:
            info.update(_numba_threading())
        except Exception as exc:
            info["numba_threads"] = None
            info["numba_threading_layer"] = f"unavailable ({exc})"
    from hotops.kernels import cuda_available, simulator_enabled

    info["hotops_cuda_kernels"] = "yes" if cuda_available() else "no"
    info["cuda_simulator"] = "on" if simulator_enabled() else "off"
    from hotops.data import data_root

    try:
        root = data_root(required=False)
        info["data_root"] = str(root) if root is not None else "not found"
    except OSError as exc:
        info["data_root"] = f"not found ({exc})"
    return info


LABELS = {
    "python": "Python",
    "hotops": "hotops",
    "numpy": "NumPy",
    "numba": "Numba",
    "torch": "PyTorch",
    "scipy": "SciPy",
    "scikit-image": "scikit-image",
    "matplotlib": "Matplotlib",
    "cupy": "CuPy",
    "platform": "platform",
    "cpu": "CPU",
    "cpu_count": "CPU cores (logical)",
    "torch_threads": "torch threads",
    "numba_threads": "numba threads",
    "numba_threading_layer": "numba threading layer",
    "torch_cuda": "torch CUDA",
    "hotops_cuda_kernels": "hotops CUDA kernels",
    "cuda_simulator": "numba CUDA simulator",
    "data_root": "data folder",
}


def format_info(info: dict) -> str:
    width = max(len(LABELS.get(k, k)) for k in info)
    lines = [f"{LABELS.get(k, k):<{width}}  {v}" for k, v in info.items()]
    if info.get("hotops_cuda_kernels") == "no":
        from hotops.kernels import INSTALL_HINT

        lines.append(f"{'':<{width}}  ({INSTALL_HINT})")
    return "\n".join(lines)
