"""``hotops nmf DATA --rank R``: factorise a non-negative matrix and save W and H."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from hotops.cli import UsageError


def add_arguments(parser) -> None:
    parser.description = ("Factorise a non-negative matrix V ~ W H by Lee & Seung's multiplicative "
                          "updates (hotops.NMF) and save W and H.")
    parser.add_argument("data", type=Path, metavar="DATA",
                        help=".npy (dense) or .npz (scipy.sparse.save_npz, or np.savez: see --key)")
    parser.add_argument("--rank", "-r", type=int, required=True, help="n_components r")
    parser.add_argument("--beta", default="frobenius",
                        help="beta_loss: frobenius, kullback-leibler, itakura-saito or a number")
    parser.add_argument("--init", default=None,
                        choices=["random", "nndsvd", "nndsvda", "nndsvdar"],
                        help="initialisation (default: scikit-learn's rule)")
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--alpha-W", type=float, default=0.0)
    parser.add_argument("--alpha-H", default="same")
    parser.add_argument("--l1-ratio", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="random_state")
    parser.add_argument("--key", default=None, help="array name inside a np.savez .npz file")
    parser.add_argument("--mask", type=Path, default=None, help=".npy weights (0 = missing entry)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output .npz with W and H (default: DATA_nmf.npz next to DATA)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_matrix(path, key):
    if not path.exists():
        raise UsageError(f"DATA {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix != ".npz":
        raise UsageError(f"DATA must be a .npy or .npz file, got {path.name}")
    with np.load(path, allow_pickle=False) as z:
        names = list(z.files)
        if {"indptr", "indices", "data", "shape", "format"} <= set(names) and key is None:
            import scipy.sparse as sp

            return sp.load_npz(path)
        if key is None:
            if len(names) != 1:
                raise UsageError(f"{path.name} holds {names}: choose one with --key")
            key = names[0]
        if key not in names:
            raise UsageError(f"--key {key!r} is not in {path.name} (it holds {names})")
        return z[key]


def _beta_arg(text):
    if text in ("frobenius", "kullback-leibler", "itakura-saito"):
        return text
    try:
        return float(text)
    except ValueError:
        raise UsageError(
            f"--beta must be frobenius, kullback-leibler, itakura-saito or a number, got {text!r}"
        ) from None


def run(args) -> int:
    """Fit, save W and H, print a one-line summary; a tqdm bar shows the objective."""
    from sklearn.exceptions import ConvergenceWarning

    from hotops.nmf import NMF

    V = _load_matrix(args.data, args.key)
    if getattr(V, "ndim", 2) != 2:
        raise UsageError(f"DATA must hold a 2-D matrix, got shape {V.shape}")
    m, n = V.shape
    if args.rank < 1:
        raise UsageError(f"--rank must be >= 1, got {args.rank}")
    if args.max_iter < 1:
        raise UsageError(f"--max-iter must be >= 1, got {args.max_iter}")
    try:
        alpha_H = args.alpha_H if args.alpha_H == "same" else float(args.alpha_H)
    except ValueError:
        raise UsageError(f"--alpha-H must be 'same' or a number, got {args.alpha_H!r}") from None
    mask = None
    if args.mask is not None:
        if not args.mask.exists():
            raise UsageError(f"--mask {args.mask} does not exist")
        mask = np.load(args.mask, allow_pickle=False)
    out = args.out or args.data.with_name(args.data.stem + "_nmf.npz")
    est = NMF(args.rank, init=args.init, beta_loss=_beta_arg(args.beta), tol=args.tol,
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
    np.savez(out, W=W, H=est.components_)
    note = " (max_iter reached: not converged)" if any(
        issubclass(w.category, ConvergenceWarning) for w in caught) else ""
    print(f"W {W.shape} and H {est.components_.shape} -> {out}; {est.n_iter_} iterations in "
          f"{seconds:.2f} s, objective {est.reconstruction_err_:.6g}{note}")
    return 0
