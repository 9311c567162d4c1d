"""Where the committed checkpoints live, and the one way hotops reads and writes checkpoint
files (importing this does not import torch).

Reading: :func:`load_checkpoint` unpickles with ``torch.load(weights_only=True)``, which
rebuilds tensors and plain containers only, so a crafted file cannot run code; anything
else in the file (a class, a function, a numpy scalar) makes it refuse the file with a
``ValueError`` that names it. Writing: :func:`save_checkpoint` stores :func:`plain` data
through :func:`atomic_write` (a temporary file in the same folder, then ``os.replace``), so
a reader never sees half a file and an interrupted save leaves the previous file intact.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["CHECKPOINT_DIR", "checkpoint", "load_checkpoint", "save_checkpoint", "atomic_write", "plain"]

#: ``hotops/checkpoints``: the float16 checkpoints this project trained and ships.
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def checkpoint(name: str) -> Path:
    """Path of the committed checkpoint ``name`` (e.g. ``"vdsr.pt"``)."""
    return CHECKPOINT_DIR / name


def plain(value):
    """``value`` as plain data that ``torch.load(weights_only=True)`` accepts.

    dicts (str and int keys kept, others turned into strings), lists and tuples (as lists),
    str, bool, int, float and None stay; numpy scalars become Python numbers, paths and any
    other object (a ``torch.torch_version.TorchVersion``, a str subclass) their ``str``. Tensors are left as
    they are. Non-finite floats are kept (pickle stores them).
    """
    import numbers

    if value is None or type(value) in (bool, str, int, float):
        return value
    if isinstance(value, dict):
        return {(k if type(k) in (str, int) else str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if type(value).__module__.startswith("torch") and type(value).__name__ in ("Tensor", "Parameter"):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)  # also turns str subclasses (torch's TorchVersion) into str


def _new_temp(path: Path):
    """(temporary path, binary file) next to ``path``, created with the usual permissions."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        return tmp, os.fdopen(fd, "wb")
    raise FileExistsError(f"cannot create a temporary file next to {path}")


def atomic_write(path, write) -> Path:
    """Call ``write(f)`` on a binary file that becomes ``path`` only once it is complete.

    The data goes to a temporary file in the same folder (created as needed), which
    ``os.replace`` then renames to ``path``: readers see the old file or the new one, never
    a mix, and a failure (or Ctrl-C) part-way removes the temporary file and leaves ``path``
    as it was. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, f = _new_temp(path)
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    return path


def save_checkpoint(obj, path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (:func:`atomic_write`).

    ``obj`` should hold tensors and :func:`plain` data only, so that :func:`load_checkpoint`
    can read it back.
    """
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path, what: str = "checkpoint", map_location="cpu"):
    """The contents of the checkpoint file ``path``, read without running any of its code.

    Parameters
    ----------
    path : path of a file written by ``torch.save``
    what : what the file should be, for the error messages ("VDSR checkpoint", ...)
    map_location : as ``torch.load``'s

    Raises
    ------
    FileNotFoundError
        There is no file at ``path``.
    hotops.data.UnreadableFileError
        A ``ValueError``: the file is not a readable torch file (text, truncated, corrupt),
        or it holds Python objects other than tensors and plain containers (``weights_only=True`` refuses them:
        loading them would run code chosen by whoever wrote the file).
    """
    import pickle

    import torch

    from hotops.data import UnreadableFileError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise UnreadableFileError(
                f"refusing to load {path} as a {what}: it holds Python objects other than tensors and "
                f"plain data{_unsupported_global(str(exc))}, and loading them could run code; "
                f"hotops never writes such files"
            ) from None
        raise UnreadableFileError(f"cannot read {path} as a {what}: not a torch checkpoint ({_why(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError, KeyError,
            IndexError, UnicodeDecodeError, MemoryError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a file-system error (permission denied...), not the file's content
        raise UnreadableFileError(f"cannot read {path} as a {what}: not a torch checkpoint file, "
                                  f"or a damaged one ({_why(exc)})") from None


def _why(exc) -> str:
    """The exception's type and the first sentence of its message, short."""
    text = str(exc).strip()
    first = text.splitlines()[0].split(". ")[0][:160] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _unsupported_global(message: str) -> str:
    """' (GLOBAL name)' from torch's weights-only error message, when it names one."""
    import re

    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message) or re.search(r"GLOBAL ([\w.]+)", message)
    return f" ({m.group(1)})" if m else ""

