"""Demo section: parts-based faces by NMF, against scikit-learn from the same start (Lee & Seung 2001)."""
from __future__ import annotations

import time
import warnings

import numpy as np

from ._context import DemoContext, md_table


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def nmf_section(ctx: DemoContext) -> str:
    """``hotops demo``: parts-based basis images from scikit-image's ``lfw_subset`` faces,
    and the fit time against scikit-learn's MU solver from the same start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.data import lfw_subset
    from sklearn.decomposition import NMF as SkNMF

    from hotops.nmf import NMF

    ctx.step("load lfw_subset faces")
    faces = lfw_subset()  # (200, 25, 25) in [0, 1]
    V = faces.reshape(len(faces), -1).astype(np.float64)
    r = 16
    iters = 30 if ctx.quick else 400  # the whole quick demo must stay under a minute
    repeats = 1 if ctx.quick else 3
    rows = []
    ctx.step("fit hotops.NMF and scikit-learn (same init)")
    fits = {}
    for beta in (("kullback-leibler",) if ctx.quick else ("frobenius", "kullback-leibler")):
        kw = dict(n_components=r, init="nndsvda", beta_loss=beta, tol=0, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            NMF(max_iter=2, **kw).fit(V)  # compile / load the kernels outside the timing
            ho = NMF(max_iter=iters, **kw)
            sk = SkNMF(solver="mu", max_iter=iters, **kw)
            t_ho = min(_timed(lambda: ho.fit(V)) for _ in range(repeats))
            t_sk = min(_timed(lambda: sk.fit(V)) for _ in range(repeats))
        diff = np.abs(ho.components_ - sk.components_).max() / np.abs(sk.components_).max()
        fits[beta] = ho
        rows.append((beta, f"{iters}", f"{t_ho * 1e3:.0f}", f"{t_sk * 1e3:.0f}",
                     f"{t_sk / t_ho:.1f}x", f"{diff:.1e}"))
    ctx.step("draw the basis images")
    H = fits["kullback-leibler"].components_
    fig, axes = plt.subplots(2, 8, figsize=(8.8, 2.6))
    for k, ax in enumerate(axes.ravel()):
        ax.imshow(H[k].reshape(25, 25), cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"NMF (KL, r = {r}) basis images of 200 LFW faces: parts, not eigenfaces", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.86, wspace=0.06, hspace=0.12)
    path = ctx.figure_path("nmf.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    table = md_table(("loss", "iterations", "hotops ms", "scikit-learn ms", "speed-up",
                       "max rel. diff of H"), rows)
    return "\n\n".join([
        "Lee & Seung, *Algorithms for Non-negative Matrix Factorization* (NIPS 2001): V ~ W H "
        "with W, H >= 0 by multiplicative updates. Here V is scikit-image's `lfw_subset` (200 "
        f"faces of 25 x 25 pixels, one per row); r = {r}, init 'nndsvda', `tol=0`, the same "
        "start for hotops and scikit-learn's `NMF(solver='mu')`.",
        f"![NMF basis images]({path.name})",
        f"Fit time (best of {repeats}, wall clock, this machine, threads as configured), and how far apart the "
        "two solutions are:\n\n" + table,
    ])
