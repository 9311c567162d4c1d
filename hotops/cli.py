"""The ``hotops`` command line: ``hotops info``, ``hotops demo``, ``hotops bench``,
``hotops train vdsr``, ``hotops eval-sr``, ``hotops upscale``.

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


# --------------------------------------------------------------------------- super-resolution

def _cmd_train(args) -> int:
    try:
        args._trainer.run_training(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return 0


def _load_sr_model(spec):
    from hotops.models.vdsr import VDSR

    if spec in (None, "pretrained"):
        return VDSR.pretrained()
    return VDSR.load(spec)


def _cmd_eval_sr(args) -> int:
    import torch

    from hotops.data import load_sr_set
    from hotops.sr import _check_scale, evaluate, format_table

    try:
        scales = [_check_scale(s) for s in args.scales]
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    torch.set_num_threads(args.threads)
    model = None if args.model == "bicubic" else _load_sr_model(args.model)
    images = load_sr_set(args.set)
    res = evaluate(model, images, scales, ssim_too=not args.no_ssim)
    name = args.set if args.set in ("set5", "set14") else str(args.set)
    print(f"{name}: {len(images)} images; Y channel, shave = scale, MATLAB bicubic degradation")
    print(format_table({name: res}))
    return 0


def read_image_rgb_or_gray(path):
    """Read an image as uint8 RGB (H, W, 3) or grayscale (H, W); returns (array, note).

    Palette, RGBA/LA and other modes are converted (alpha composited on white is *not*
    done: alpha is dropped, as most tools do) and ``note`` says so; 16-bit grayscale is
    scaled to 8 bits.
    """
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        mode = im.mode
        note = None
        if mode in ("L", "RGB"):
            arr = np.asarray(im)
        elif mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im).astype(np.float64)
            arr = np.clip(np.round(arr / (65535.0 if arr.max() > 255 else 1.0) * (255.0 if arr.max() > 255 else 1.0)), 0, 255).astype(np.uint8)
            note = f"{mode} grayscale converted to 8 bits"
        elif mode == "LA" or (mode == "P" and "transparency" not in im.info and im.palette is not None and im.palette.mode == "L"):
            arr = np.asarray(im.convert("L"))
            note = f"{mode} image converted to grayscale (L)" + (", alpha dropped" if mode == "LA" else "")
        else:
            arr = np.asarray(im.convert("RGB"))
            note = f"{mode} image converted to RGB" + (", alpha dropped" if "A" in mode or "transparency" in im.info else "")
    return arr, note


def upscale_image(img, scale, model):
    """Upscale a uint8 RGB or grayscale image by ``scale`` (VDSR on Y, bicubic on Cb/Cr)."""
    import numpy as np

    from hotops.kernels.resize import imresize, rgb2ycbcr, ycbcr2rgb

    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if img.ndim == 2:
        y = imresize(img.astype(np.float64) / 255.0, scale=float(scale))
        out = model.upscale_y(y.astype(np.float32))
        return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
    ycc = rgb2ycbcr(img.astype(np.float64) / 255.0)
    big = imresize(ycc, scale=float(scale))
    big[..., 0] = model.upscale_y(np.clip(big[..., 0], 0, 1).astype(np.float32)).astype(np.float64)
    rgb = ycbcr2rgb(np.clip(big, 0.0, 1.0))
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def _cmd_upscale(args) -> int:
    import torch
    from PIL import Image

    if not args.scale > 0:
        raise UsageError(f"--scale must be > 0, got {args.scale}")
    if not args.input.is_file():
        raise FileNotFoundError(f"input image not found: {args.input}")
    torch.set_num_threads(args.threads)
    img, note = read_image_rgb_or_gray(args.input)
    if note:
        print(f"note: {note}")
    model = _load_sr_model(args.model)
    out = upscale_image(img, args.scale, model)
    Image.fromarray(out).save(args.output)
    print(f"wrote {args.output} ({out.shape[1]}x{out.shape[0]}, x{args.scale:g})")
    return 0


#: Models that ``hotops train NAME`` trains: name -> (module, one-line help). The module
#: defines ``add_train_arguments(parser)`` and ``run_training(args)`` (raising ValueError on
#: bad options); it is imported only when ``hotops train NAME`` is the command being run.
TRAINERS: dict[str, tuple[str, str]] = {
    "vdsr": ("hotops.sr", "VDSR (Kim et al. 2016) on train291"),
    "localizer": ("hotops.loc_bench", "the classifier of the localisation benchmark (cluttered canvases)"),
    "defense": ("hotops.defense", "the L0-robust sparse-Fourier defended MNIST classifier (Bafna et al. 2018)"),
    "revnet": ("hotops.revnet_train", "RevNet / ResNet (Gomez et al. 2017) on CIFAR-10"),
}

#: Top-level commands whose code lives in other modules: name -> (module, one-line help).
#: The module defines ``add_cli_arguments(parser)`` and ``cli_main(args) -> int`` (raising
#: ``hotops.cli.UsageError`` for bad usage); it is imported only when its command is run, so
#: ``hotops --help`` stays cheap and a broken module never breaks the other commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "saliency": ("hotops.attribution", "saliency map and GraphCut box of an image (Simonyan et al. 2013)"),
    "nmf": ("hotops.nmf", "factorise a non-negative matrix (Lee & Seung multiplicative updates)"),
}


def _load_plugin(module_name: str, needed: tuple[str, ...]):
    """Import ``module_name`` and check it has ``needed``; returns (module, problem)."""
    try:
        mod = importlib.import_module(module_name)
    except ImportError as exc:
        return None, f"cannot import {module_name} ({exc})"
    missing = [n for n in needed if not hasattr(mod, n)]
    if missing:
        return None, f"{module_name} lacks {', '.join(missing)}"
    return mod, None


def _cmd_plugin_problem(args) -> int:
    print(f"hotops {args.command}: error: {args._plugin_problem}", file=sys.stderr)
    return 2


def _add_plugins(sub, argv, problems: dict) -> None:
    """Register TRAINERS under ``train`` and COMMANDS at the top level (lazily imported).

    A chosen plugin that cannot be loaded is recorded in ``problems`` (command -> message)."""
    p = sub.add_parser("train", help=f"train a model ({', '.join(TRAINERS)})",
                       description="Train one of hotops' models.")
    tsub = p.add_subparsers(dest="model_name", metavar="{" + ",".join(TRAINERS) + "}")
    tsub.required = True
    command = _command_of(argv)
    rest = argv[argv.index(command) + 1:] if command in argv else []
    chosen_model = _command_of(rest) if command == "train" else None
    for name, (module_name, help_) in TRAINERS.items():
        pt = tsub.add_parser(name, help=help_, description=f"Train {help_}.")
        mod, problem = (None, "not loaded")
        if name == chosen_model:
            mod, problem = _load_plugin(module_name, ("add_train_arguments", "run_training"))
            if mod is None:
                problems[f"train {name}"] = problem
        if mod is not None:
            mod.add_train_arguments(pt)
            pt.set_defaults(func=_cmd_train, _trainer=mod)
        else:
            pt.add_argument("plugin_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            pt.set_defaults(func=_cmd_plugin_problem, _plugin_problem=problem)
    for name, (module_name, help_) in COMMANDS.items():
        pc = sub.add_parser(name, help=help_, description=help_)
        mod, problem = (None, "not loaded")
        if name == command:
            mod, problem = _load_plugin(module_name, ("add_cli_arguments", "cli_main"))
            if mod is None:
                problems[name] = problem
        if mod is not None:
            mod.add_cli_arguments(pc)
            pc.set_defaults(func=lambda a, _m=mod: _m.cli_main(a))
        else:
            pc.add_argument("plugin_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            pc.set_defaults(func=_cmd_plugin_problem, _plugin_problem=problem)


def _add_sr(sub) -> None:
    from pathlib import Path

    p = sub.add_parser("eval-sr", help="PSNR/SSIM of a VDSR checkpoint vs bicubic",
                       description="Evaluate a VDSR checkpoint by the standard SR protocol "
                                   "(Y channel, shave = scale), with the bicubic baseline.")
    p.add_argument("--model", default="pretrained", metavar="CKPT|pretrained|bicubic")
    p.add_argument("--set", default="set5", metavar="set5|set14|DIR")
    p.add_argument("--scales", type=float, nargs="+", default=[2, 3, 4])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-ssim", action="store_true")
    p.set_defaults(func=_cmd_eval_sr)

    p = sub.add_parser("upscale", help="upscale an image with VDSR",
                       description="Upscale an image: VDSR on Y, bicubic on Cb/Cr (grayscale: VDSR).")
    p.add_argument("input", type=Path, metavar="IN")
    p.add_argument("output", type=Path, metavar="OUT")
    p.add_argument("--scale", type=float, required=True)
    p.add_argument("--model", default="pretrained", metavar="CKPT")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_cmd_upscale)


def _command_of(argv) -> str | None:
    """The subcommand named in argv (the first token that is not an option), if any."""
    for tok in argv:
        if not tok.startswith("-"):
            return tok
        if tok == "--":
            return None
    return None


def _all_commands() -> list[str]:
    return ["info", "demo", "bench", "train", "eval-sr", "upscale", *COMMANDS]


def build_parser(load_bench: bool = False, argv=()) -> argparse.ArgumentParser:
    """The argument parser; ``load_bench`` imports ``hotops._bench`` for its options, and the
    plugin module of the command named in ``argv`` (if any) is imported for its options."""
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="hotops",
        description="hotops: hand-written Numba/CUDA kernels for classic papers, under torch.",
    )
    parser.add_argument("--version", action="version", version=f"hotops {_version('hotops')}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(_all_commands()) + "}")

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
    parser._plugin_problems = {}
    _add_plugins(sub, list(argv), parser._plugin_problems)
    _add_sr(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``hotops`` console script; returns the exit status.

    Bad usage gives status 2 with argparse's one-line message on stderr (``SystemExit``
    from argparse is turned into the return value, so callers and tests get an int).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(load_bench=_command_of(argv) == "bench", argv=argv)
    for command, problem in parser._plugin_problems.items():
        print(f"{parser.prog} {command}: error: the command is not available: {problem}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help/--version (0) or bad usage (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if getattr(args, "func", None) is None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: choose a command: {', '.join(_all_commands())}", file=sys.stderr)
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
