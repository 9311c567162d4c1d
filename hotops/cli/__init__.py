"""The ``hotops`` command line.

Commands: ``info``, ``demo``, ``bench``, ``train {vdsr,localizer,defense,revnet,small-cifar}``,
``eval-sr``, ``upscale``, ``saliency``, ``nmf``. Each command is a module of this package
with ``add_arguments(parser)`` and ``run(args) -> int``; only the module of the command
being run is imported, so ``hotops --help`` and bad usage answer at once and a command that
cannot load never breaks the others. Every option's help shows its default
(:class:`HelpFormatter`).

Errors are one line on stderr, ``hotops COMMAND: error: ...``, never a traceback, with the
same exit status in every command:

- 0: done.
- 1, failure (:class:`CommandFailed`): a file could not be read or written. An input is
  missing, or cannot be read as what it should be (a truncated, corrupt or text image, a
  decompression bomb, a text or pickled ``.npy``, a file that is not a checkpoint or holds
  Python objects besides tensors and plain data); an output cannot be written (permission,
  full disk); memory ran out.
- 2, usage (:class:`UsageError`, and argparse's own errors): the command line asks for
  something that cannot be done. An unknown option, a value out of range or not finite, an
  input that was read but does not fit the command (an image too small, a matrix that is
  not 2-D), an output that exists (``--force`` overwrites it), an output that is one of the
  inputs (never overwritten, even with ``--force``), an output extension no writer knows.
- 128 + N: stopped by signal N (130: Ctrl-C, 143: SIGTERM); a training command saves its
  state first and says how to resume it.

Outputs are written whole or not at all (a temporary file in the same folder, then
``os.replace``), to exactly the path given; ``-`` as an input reads standard input and as
an output writes standard output, where a command says so.

This is the top layer: it may import everything below (the library, ``hotops.apps``,
``hotops.demo``, ``hotops.bench``), and nothing below imports it. Library code raises
``ValueError`` / ``TypeError`` (``hotops.data.UnreadableFileError``, a ``ValueError``, for a
file that cannot be read); the commands turn those into the errors above. Library progress
messages arrive on the ``hotops`` logger, which :func:`main` shows on stdout (warnings on
stderr) while a command runs.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

__all__ = ["main", "build_parser", "UsageError", "CommandFailed", "HelpFormatter", "COMMANDS"]


class UsageError(Exception):
    """Bad usage detected after parsing; reported like argparse's errors (exit 2)."""


class CommandFailed(Exception):
    """A file could not be read or written; one line on stderr, exit status 1."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's formatter that appends ``(default: ...)`` to every option's help, except
    where the help already shows it and for defaults that say nothing (None, False): there
    the help text says what happens when the option is absent."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or action.default is None or action.default is False \
                or action.default is argparse.SUPPRESS:
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class _Console(logging.Handler):
    """Shows the library's log records while a command runs: INFO on stdout, warnings and
    errors on stderr, printed above any progress bar (``tqdm.write``)."""

    def emit(self, record) -> None:
        try:
            msg = self.format(record)
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            try:
                from tqdm import tqdm

                tqdm.write(msg, file=stream)
            except ImportError:
                stream.write(msg + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


class _show_log:
    """Context: the ``hotops`` logger at INFO with a :class:`_Console` handler, undone after."""

    def __enter__(self):
        self.logger = logging.getLogger("hotops")
        self.saved = (self.logger.level, self.logger.propagate)
        self.handler = _Console()
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]
        return False


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
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".",
                           formatter_class=HelpFormatter)
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
    from argparse is turned into the return value, so callers and tests get an int); the
    other statuses are those of the module docstring.
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
    where = " ".join([parser.prog, args.command] + ([args.model_name] if getattr(args, "model_name", None) else []))
    prefix = f"{where}: error:"
    try:
        with _show_log():
            return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"{prefix} {exc}", file=sys.stderr)
        return 2
    except CommandFailed as exc:
        print(f"{prefix} {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"{prefix} out of memory", file=sys.stderr)
        return 1
    except OSError as exc:  # FileNotFoundError, PermissionError, a full disk...
        print(f"{prefix} {_os_error(exc)}", file=sys.stderr)
        return 1
    except ValueError as exc:
        from hotops.data import UnreadableFileError

        if isinstance(exc, UnreadableFileError):
            print(f"{prefix} {exc}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130


def _os_error(exc: OSError) -> str:
    """One line for an OSError: its message and the file(s) it names."""
    if exc.strerror and exc.filename is not None:
        names = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
        return f"{exc.strerror}: {names}"
    return str(exc) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
