"""The ``hotops`` command line.

Commands: ``info``, ``demo``, ``bench``, ``train {vdsr,localizer,defense,revnet,small-cifar}``,
``eval-sr``, ``upscale``, ``saliency``, ``nmf``. Each command is a module of this package
with ``add_arguments(parser)`` and ``run(args) -> int``; only the module of the command
being run is imported, so ``hotops --help`` and bad usage answer at once and a command that
cannot load never breaks the others. Bad usage exits with status 2 and a one-line message
(argparse's convention), never a traceback.

This is the top layer: it may import everything below (the library, ``hotops.apps``,
``hotops.demo``, ``hotops.bench``), and nothing below imports it. Library code raises
``ValueError`` / ``TypeError``; the commands turn those into usage errors where the value
came from the command line.
"""
from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "build_parser", "UsageError", "COMMANDS"]


class UsageError(Exception):
    """Bad usage detected after parsing; reported like argparse's errors (exit 2)."""


#: command -> (module, one-line help). The module defines ``add_arguments(parser)`` and
#: ``run(args) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("hotops.cli.info", "versions, threads, GPU status, data folder"),
    "demo": ("hotops.cli.demo", "run every capability on embedded data and write a report"),
    "bench": ("hotops.cli.bench", "run the benchmark suite against its baselines"),
    "train": ("hotops.cli.train", "train a model (vdsr, localizer, defense, revnet, small-cifar)"),
    "eval-sr": ("hotops.cli.eval_sr", "PSNR/SSIM of a VDSR checkpoint vs bicubic"),
    "upscale": ("hotops.cli.upscale", "upscale an image with VDSR"),
    "saliency": ("hotops.cli.saliency", "saliency map and GraphCut box of an image (Simonyan et al. 2013)"),
    "nmf": ("hotops.cli.nmf", "factorise a non-negative matrix (Lee & Seung multiplicative updates)"),
}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("hotops")
    except Exception:
        from hotops import __version__

        return __version__


def _command_of(argv) -> str | None:
    """The subcommand named in argv (the first token that is not an option), if any."""
    for tok in argv:
        if tok == "--":
            return None
        if not tok.startswith("-"):
            return tok
    return None


def _load(command: str):
    """The command's module, or (None, why) when it cannot be imported."""
    module_name = COMMANDS[command][0]
    try:
        mod = importlib.import_module(module_name)
    except ImportError as exc:
        return None, f"cannot import {module_name} ({exc})"
    missing = [n for n in ("add_arguments", "run") if not hasattr(mod, n)]
    if missing:
        return None, f"{module_name} lacks {', '.join(missing)}"
    return mod, None


def _cmd_unavailable(args) -> int:
    print(f"hotops {args.command}: error: the command is not available: {args._problem}", file=sys.stderr)
    return 2


def build_parser(argv=()) -> argparse.ArgumentParser:
    """The argument parser; the module of the command named in ``argv`` (if any) is imported
    for its options, the others are listed by name only."""
    parser = argparse.ArgumentParser(
        prog="hotops",
        description="hotops: hand-written Numba/CUDA kernels for classic papers, under torch.",
    )
    parser.add_argument("--version", action="version", version=f"hotops {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    chosen = _command_of(list(argv))
    parser._command_problem = None
    for name, (_module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        if name != chosen:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            p.set_defaults(func=None)
            continue
        mod, problem = _load(name)
        if mod is None:
            parser._command_problem = (name, problem)
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            p.set_defaults(func=_cmd_unavailable, _problem=problem)
            continue
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``hotops`` console script; returns the exit status.

    Bad usage gives status 2 with argparse's one-line message on stderr (``SystemExit``
    from argparse is turned into the return value, so callers and tests get an int).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    if parser._command_problem is not None:
        name, problem = parser._command_problem
        print(f"{parser.prog} {name}: error: the command is not available: {problem}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help/--version (0) or bad usage (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if getattr(args, "func", None) is None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: choose a command: {', '.join(COMMANDS)}", file=sys.stderr)
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
