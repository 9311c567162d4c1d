"""The ``hotops`` command line: ``hotops info``, ``hotops demo``, ``hotops bench``.

Every subcommand imports what it needs inside its handler, so ``hotops --help`` and bad
usage answer at once. Bad usage exits with status 2 and a one-line message (argparse's
convention), never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys

__all__ = ["main", "build_parser", "environment_info", "format_info"]

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


class UsageError(Exception):
    """Bad usage detected after parsing; reported like argparse's errors (exit 2)."""


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


_LABELS = {
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
    width = max(len(_LABELS.get(k, k)) for k in info)
    lines = [f"{_LABELS.get(k, k):<{width}}  {v}" for k, v in info.items()]
    if info.get("hotops_cuda_kernels") == "no":
        from hotops.kernels import INSTALL_HINT

        lines.append(f"{'':<{width}}  ({INSTALL_HINT})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- handlers

def _cmd_info(args) -> int:
    print(format_info(environment_info()))
    return 0


def _cmd_demo(args) -> int:
    from hotops.demo import run_demo

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a directory")
    result = run_demo(args.out, quick=args.quick, progress=not args.no_progress)
    print(f"report: {result['report']}")
    for fig in result["figures"]:
        print(f"figure: {fig}")
    print(f"done in {result['seconds']:.1f} s")
    return 0


def _add_bench(sub, load: bool) -> None:
    """The ``bench`` subcommand; its options come from ``hotops._bench``, which is imported
    only when ``bench`` is the command (so a problem there never breaks ``info``/``demo``)."""
    p = sub.add_parser("bench", help="run the benchmark suite against its baselines",
                       description="Run hotops' benchmarks against the libraries people use today.")
    bench, problem = None, "not loaded"
    if load:
        try:
            bench = importlib.import_module("hotops._bench")
        except ImportError as exc:
            problem = f"cannot import hotops._bench ({exc})"
        else:
            if not (hasattr(bench, "add_arguments") and hasattr(bench, "main")):
                bench, problem = None, "hotops._bench lacks add_arguments() or main()"
    if bench is not None:
        bench.add_arguments(p)
    else:
        # Keep `hotops bench ...` parseable so that the handler can say what is missing.
        p.add_argument("bench_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_bench, _bench=bench, _bench_problem=problem)


def _cmd_bench(args) -> int:
    bench = args._bench
    if bench is None:
        print(f"hotops bench: error: the benchmark runner is not available: {args._bench_problem}",
              file=sys.stderr)
        return 2
    return int(bench.main(args) or 0)


def _command_of(argv) -> str | None:
    """The subcommand named in argv (the first token that is not an option), if any."""
    for tok in argv:
        if not tok.startswith("-"):
            return tok
        if tok == "--":
            return None
    return None


def build_parser(load_bench: bool = False) -> argparse.ArgumentParser:
    """The argument parser; ``load_bench`` imports ``hotops._bench`` for its options."""
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="hotops",
        description="hotops: hand-written Numba/CUDA kernels for classic papers, under torch.",
    )
    parser.add_argument("--version", action="version", version=f"hotops {_version('hotops')}")
    sub = parser.add_subparsers(dest="command", metavar="{info,demo,bench}")

    p = sub.add_parser("info", help="versions, threads, GPU status, data folder",
                       description="Print versions, thread settings, GPU status and the data folder.")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("demo", help="run every capability on embedded data and write a report",
                       description="Run each hotops capability on embedded data (the committed "
                                   "checkpoint and scikit-image samples), write figures and "
                                   "DIR/report.md.")
    p.add_argument("--out", type=Path, default=Path("demo-out"), metavar="DIR",
                   help="output folder (default: ./demo-out)")
    p.add_argument("--quick", action="store_true", help="fewer timing repeats, smaller batches")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)

    _add_bench(sub, load_bench)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``hotops`` console script; returns the exit status.

    Bad usage gives status 2 with argparse's one-line message on stderr (``SystemExit``
    from argparse is turned into the return value, so callers and tests get an int).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(load_bench=_command_of(argv) == "bench")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help/--version (0) or bad usage (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if getattr(args, "func", None) is None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: choose a command: info, demo or bench", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
