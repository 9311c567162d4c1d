"""Inputs and outputs of the commands: ``-`` for stdin/stdout, no silent overwrite, whole files.

- :func:`check_output` before any work: an output that is one of the inputs is refused
  always, one that exists is refused unless ``--force``; both are usage errors (exit 2).
- :func:`write_output` writes exactly the path given, atomically (``hotops.models._paths.
  atomic_write``: a temporary file in the same folder, then ``os.replace``), or standard
  output for ``-``.
- :func:`read_input` gives the bytes of standard input for ``-`` (as a file object), the
  path otherwise.
"""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from hotops.cli import UsageError

STDIO = "-"


def is_stdio(path) -> bool:
    """True for ``-`` (standard input or output)."""
    return path is not None and str(path) == STDIO


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def check_output(path, *, force: bool, inputs=(), name: str = "OUT") -> None:
    """Refuse (``UsageError``) to write ``path`` when it is one of ``inputs`` (also with
    ``force``: an input is never written over), when it is a folder, or when it exists and
    ``force`` is false. ``-`` (standard output) always passes."""
    if is_stdio(path):
        return
    p = Path(path)
    for src in inputs:
        if src is not None and not is_stdio(src) and _same_file(p, Path(src)):
            raise UsageError(f"{name} {p} is the input {src}; refusing to write over an input (choose another name)")
    if p.is_dir():
        raise UsageError(f"{name} {p} is a folder")
    if (p.exists() or p.is_symlink()) and not force:
        raise UsageError(f"{name} {p} exists; pass --force to overwrite it")


def write_output(path, write) -> str:
    """``write(f)`` into ``path`` (a binary file object), whole or not at all; ``-`` writes
    standard output (buffered in memory first, so that a failure writes nothing). Returns
    the name to report: the path as given, or ``standard output``."""
    if is_stdio(path):
        buf = io.BytesIO()
        write(buf)
        out = sys.stdout.buffer
        out.write(buf.getvalue())
        out.flush()
        return "standard output"
    from hotops.models._paths import atomic_write

    atomic_write(path, write)
    return str(path)


def read_input(path):
    """A binary file object over standard input for ``-`` (read whole), else ``Path(path)``."""
    if is_stdio(path):
        data = sys.stdin.buffer.read()
        f = io.BytesIO(data)
        f.name = "standard input"
        return f
    return Path(path)

