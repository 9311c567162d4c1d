"""``hotops nmf DATA --rank R``: factorise a non-negative matrix and save W and H."""
from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from hotops.cli import CommandFailed, UsageError

from ._args import finite_float, positive_int
from ._files import check_output, is_stdio, read_input, write_output


def add_arguments(parser) -> None:
    parser.description = ("Factorise a non-negative matrix V ~ W H by Lee & Seung's multiplicative "
                          "updates (hotops.NMF) and save W and H. The output is never an input, and an "
                          "existing one is kept unless --force.")
    parser.add_argument("data", metavar="DATA",
                        help=".npy (dense) or .npz (scipy.sparse.save_npz, or np.savez: see --key); "
                             "- reads either from standard input (then give --out)")
    parser.add_argument("--rank", "-r", type=positive_int, required=True, help="n_components r (required)")
    parser.add_argument("--beta", default="frobenius",
                        help="beta_loss: frobenius, kullback-leibler, itakura-saito or a number")
    parser.add_argument("--init", default=None,
                        choices=["random", "nndsvd", "nndsvda", "nndsvdar"],
                        help="initialisation (default: scikit-learn's rule)")
    parser.add_argument("--max-iter", type=positive_int, default=200, help="most iterations")
    parser.add_argument("--tol", type=finite_float, default=1e-4, help="relative tolerance of the stopping test")
    parser.add_argument("--alpha-W", type=finite_float, default=0.0, help="regularisation of W")
    parser.add_argument("--alpha-H", default="same", help="regularisation of H: a number or 'same' (as --alpha-W)")
    parser.add_argument("--l1-ratio", type=finite_float, default=0.0, help="L1 share of the regularisation")
    parser.add_argument("--seed", type=int, default=0, help="random_state")
    parser.add_argument("--key", default=None, help="array name inside a np.savez .npz file "
                                                    "(default: its only array)")
    parser.add_argument("--mask", type=Path, default=None, help=".npy weights, 0 = missing entry (default: none)")
    parser.add_argument("--out", default=None,
                        help="output .npz with W and H, written to exactly this path; - writes it to "
                             "standard output (default: DATA_nmf.npz next to DATA)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists (never an input)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _unreadable(name, exc) -> CommandFailed:
    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CommandFailed(f"cannot read {name} as a matrix ({why})")


def _load_matrix(path, key):
    """The matrix in ``path`` (``-``: standard input): a numpy array or a scipy.sparse matrix.
    Never unpickles (``allow_pickle=False``); a file that is missing or cannot be read as
    one is a failure (exit 1)."""
    import zipfile

    stdin = is_stdio(path)
    name = "standard input" if stdin else str(path)
    if stdin:
        source = read_input(path)
        head = source.getvalue()[:6]
        kind = ".npy" if head.startswith(b"\x93NUMPY") else ".npz" if head.startswith(b"PK") else None
        if kind is None:
            raise CommandFailed("standard input holds neither a .npy nor a .npz file")
    else:
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"DATA {path} does not exist")
        kind = source.suffix.lower()
        if kind not in (".npy", ".npz"):
            raise UsageError(f"DATA must be a .npy or .npz file, got {source.name}")
    try:
        if kind == ".npy":
            return np.load(source, allow_pickle=False)
        with np.load(source, allow_pickle=False) as z:
            names = list(z.files)
            if {"indptr", "indices", "data", "shape", "format"} <= set(names) and key is None:
                import scipy.sparse as sp

                if stdin:
                    source.seek(0)
                return sp.load_npz(source)
            if key is None:
                if len(names) != 1:
                    raise UsageError(f"{name} holds {names}: choose one with --key")
                key = names[0]
            if key not in names:
                raise UsageError(f"--key {key!r} is not in {name} (it holds {names})")
            return z[key]
    except (ValueError, EOFError, KeyError, zipfile.BadZipFile, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise _unreadable(name, exc) from None


def _beta_arg(text):
    if text in ("frobenius", "kullback-leibler", "itakura-saito"):
        return text
    try:
        return finite_float(text)
    except Exception:
        raise UsageError(
            f"--beta must be frobenius, kullback-leibler, itakura-saito or a finite number, got {text!r}"
        ) from None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def run(args) -> int:
    """Fit, save W and H, print a one-line summary; a tqdm bar shows the objective."""
    from sklearn.exceptions import ConvergenceWarning

    from hotops.nmf import NMF

    if is_stdio(args.data) and args.out is None:
        raise UsageError("reading DATA from standard input: give --out (a path, or - for standard output)")
    out = args.out if args.out is not None else str(Path(args.data).with_name(Path(args.data).stem + "_nmf.npz"))
    check_output(out, force=args.force, inputs=(args.data, args.mask), name="--out")
    beta = _beta_arg(args.beta)
    try:
        alpha_H = args.alpha_H if args.alpha_H == "same" else finite_float(args.alpha_H)
    except Exception:
        raise UsageError(f"--alpha-H must be 'same' or a finite number, got {args.alpha_H!r}") from None
    V = _load_matrix(args.data, args.key)
    if getattr(V, "ndim", 2) != 2:
        raise UsageError(f"DATA must hold a 2-D matrix, got shape {V.shape}")
    if V.dtype.kind not in "biuf":
        raise UsageError(f"DATA must hold numbers, got dtype {V.dtype}")
    m, n = V.shape
    need = 8 * (m + n) * args.rank  # W and H in float64
    have = _memory_bytes()
    if have is not None and 3 * need > have:
        raise UsageError(f"--rank {args.rank} needs W ({m} x {args.rank}) and H ({args.rank} x {n}) of "
                         f"{need / 2**30:.3g} GiB as float64, more than this machine's memory allows "
                         f"({have / 2**30:.3g} GiB)")
    mask = None
    if args.mask is not None:
        if not args.mask.is_file():
            raise FileNotFoundError(f"--mask {args.mask} does not exist")
        try:
            mask = np.load(args.mask, allow_pickle=False)
        except (ValueError, EOFError) as exc:
            raise _unreadable(args.mask, exc) from None
    est = NMF(args.rank, init=args.init, beta_loss=beta, tol=args.tol,
              max_iter=args.max_iter, random_state=args.seed, alpha_W=args.alpha_W,
              alpha_H=alpha_H, l1_ratio=args.l1_ratio)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=args.max_iter, desc=f"NMF {m}x{n} r={args.rank}", unit="it")
    seen = [0]

    def progress(it, error):
        if bar is not None:
            bar.update(it - seen[0])
            bar.set_postfix(objective=f"{error:.6g}")
        seen[0] = it

    est._progress = progress  # called at every objective evaluation (every 10 iterations)

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            W = est.fit_transform(V, mask=mask)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from exc
    finally:
        if bar is not None:
            bar.update(max(0, est.__dict__.get("n_iter_", seen[0]) - seen[0]))
            bar.close()
    seconds = time.perf_counter() - t0
    name = write_output(out, lambda f: np.savez(f, W=W, H=est.components_))
    note = " (max_iter reached: not converged)" if any(
        issubclass(w.category, ConvergenceWarning) for w in caught) else ""
    print(f"W {W.shape} and H {est.components_.shape} -> {name}; {est.n_iter_} iterations in "
          f"{seconds:.2f} s, objective {est.reconstruction_err_:.6g}{note}",
          file=sys.stderr if is_stdio(out) else sys.stdout)
    return 0
