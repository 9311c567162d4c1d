"""The L0-robust sparse-Fourier defence of Bafna, Murtagh & Vyas (NeurIPS 2018) on MNIST.

Pieces:

* :func:`choose_k`: k from the data (the DCT energy the top-k coefficients capture).
* :func:`train_classifier`: trains :class:`hotops.models.mnist_cnn.MnistCNN` on raw images
  (``normal``) or on their top-k DCT projections (``topk``).
* Attacks (L0): :func:`greedy_l0_attack`, a JSMA-style greedy attack (each step sets the one
  pixel to 0 or 1 whose first-order effect on the logit margin, from the gradient, is the
  most negative) and :func:`random_pixel_attack` (t random pixels flipped to the opposite
  extreme).
* :func:`evaluate_defense`: the accuracy table (clean and attacked, without and with IHT).
* ``hotops train defense`` (:func:`run_training`): both CNNs, the table, the checkpoints.

torch is imported inside the functions, so importing this module is cheap.
"""
from __future__ import annotations

import datetime
import logging
import platform
import time
from pathlib import Path

import numpy as np

from ._cpu_state import flushing_denormals

_log = logging.getLogger(__name__)

__all__ = [
    "choose_k", "train_classifier", "greedy_l0_attack", "random_pixel_attack", "evaluate_defense",
    "format_table", "run_training", "digits_28",
]

DEFAULT_ENERGY = 0.8
DEFAULT_T_DEFENSE = 20
GREEDY_TS = (5, 10, 20)
RANDOM_TS = (10, 20, 40)


# --------------------------------------------------------------------------- k from the data

def choose_k(images: np.ndarray, energy: float = DEFAULT_ENERGY) -> tuple[int, dict]:
    """The smallest k whose top-k 2-D DCT coefficients hold ``energy`` of the median image's energy.

    Parameters
    ----------
    images : (N, H, W) array, pixel values in [0, 1]
    energy : float in (0, 1]

    Returns
    -------
    k, info : info maps a few k to the median and 10th-percentile captured energy.

    Notes
    -----
    Bafna et al. (2018) model an image as k-sparse in the DCT plus a t-sparse attack; their
    recovery guarantee needs k * t small compared with the number of pixels, so k should be
    as small as the classifier tolerates. Captured energy sum_{top k} C^2 / sum C^2 (C the
    orthonormal DCT, so the denominator is ||x||^2) measures how much of the digit survives.
    """
    import scipy.fft as sfft

    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy!r}")
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got {x.shape}")
    c2 = sfft.dctn(x, type=2, norm="ortho", axes=(1, 2)).reshape(len(x), -1) ** 2
    c2 = -np.sort(-c2, axis=1)
    frac = np.cumsum(c2, axis=1) / np.maximum(c2.sum(1, keepdims=True), 1e-300)
    med = np.median(frac, axis=0)
    k = int(np.searchsorted(med, energy) + 1)
    k = min(k, frac.shape[1])
    info = {int(kk): {"median": round(float(med[kk - 1]), 4),
                      "p10": round(float(np.percentile(frac[:, kk - 1], 10)), 4)}
            for kk in (10, 20, 40, 60, 80, 120, k) if kk <= frac.shape[1]}
    return k, info


# --------------------------------------------------------------------------- training

def _to_float(images) -> np.ndarray:
    x = np.asarray(images)
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def project_images(x: np.ndarray, k: int) -> np.ndarray:
    """Top-k DCT projections of (N, 28, 28) float32 images (hotops.sparse_project)."""
    from hotops.sparse_fourier import sparse_project

    return sparse_project(np.ascontiguousarray(x, dtype=np.float32), k, "dct")


def train_classifier(x: np.ndarray, y: np.ndarray, epochs: int = 2, batch_size: int = 128, lr: float = 2e-3,
                     seed: int = 0, desc: str = "train", progress: bool = True):
    """Train an MnistCNN on float images x (N, 28, 28) in [0, 1] and labels y; returns the model.

    Adam with a cosine learning-rate decay; the inputs are used as given (pass top-k
    projections for the defended model).
    """
    import torch
    from tqdm.auto import tqdm

    from hotops.models.mnist_cnn import MnistCNN

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = MnistCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    n = len(xt)
    steps = n // batch_size
    total = steps * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, total) / total)))
    loss_fn = torch.nn.CrossEntropyLoss()
    bar = tqdm(total=total, desc=desc, unit="batch", mininterval=1.0, disable=not progress)
    for _epoch in range(epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(n))
        for b in range(steps):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            if b % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    return model


def predict(model, x, batch_size: int = 1000) -> np.ndarray:
    """Class predictions of ``model`` for (N, 28, 28) float images."""
    import torch

    out = []
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size], dtype=np.float32)).unsqueeze(1)
            out.append(model(xb).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


# --------------------------------------------------------------------------- attacks

def random_pixel_attack(x: np.ndarray, t: int, seed: int = 0) -> np.ndarray:
    """Flip t distinct random pixels of each image to the opposite extreme (v -> 1 - round(v)).

    An L0 attack of exactly t pixels, blind to the model. x: (N, H, W) in [0, 1]; returns a copy.
    """
    from hotops.kernels._validate import check_int

    t = check_int("t", t, min=0)
    x = np.array(x, dtype=np.float32, copy=True)
    n, h, w = x.shape
    if t > h * w:
        raise ValueError(f"t must be <= {h * w} (pixels per image), got {t}")
    rng = np.random.default_rng(seed)
    flat = x.reshape(n, -1)
    idx = np.argsort(rng.random((n, h * w)), axis=1)[:, :t]
    rows = np.arange(n)[:, None]
    flat[rows, idx] = 1.0 - np.round(flat[rows, idx])
    return x


def greedy_l0_attack(model_fn, x: np.ndarray, labels: np.ndarray, ts=GREEDY_TS, batch_size: int = 250):
    """JSMA-style greedy L0 attack: returns {t: adversarial images with at most t pixels changed}.

    Parameters
    ----------
    model_fn : callable
        (B, 1, 28, 28) float32 tensor -> logits, differentiable w.r.t. its input (e.g. a CNN,
        or a CNN after ``hotops.bindings.sparse_project``).
    x : (N, 28, 28) float images in [0, 1]
    labels : (N,) true classes
    ts : increasing pixel budgets to report

    Notes
    -----
    Untargeted variant of the Jacobian saliency map attack (Papernot et al. 2016) with single
    pixels and saturating changes: at each step, with margin m = z_y - max_{j != y} z_j and
    g = dm/dx, every pixel i not yet changed gets the candidate values v in {0, 1}, and the
    pixel and value with the most negative g_i (v - x_i) are applied. An image stops being
    changed once it is misclassified, so the result at budget t changes at most t pixels.
    """
    import torch

    ts = tuple(int(t) for t in ts)
    if not ts or any(b <= a for a, b in zip(ts, ts[1:])) or ts[0] < 1:
        raise ValueError(f"ts must be increasing positive budgets, got {ts}")
    t_max = ts[-1]
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = {t: np.empty_like(x) for t in ts}
    for s in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[s:s + batch_size].copy()).unsqueeze(1)
        yb = torch.from_numpy(np.asarray(labels[s:s + batch_size], dtype=np.int64))
        b = len(yb)
        used = torch.zeros((b, xb[0].numel()), dtype=torch.bool)
        rows = torch.arange(b)
        for step in range(1, t_max + 1):
            xv = xb.detach().requires_grad_(True)
            logits = model_fn(xv)
            true = logits.gather(1, yb[:, None])[:, 0]
            other = logits.masked_fill(torch.nn.functional.one_hot(yb, logits.shape[1]).bool(), -torch.inf).amax(1)
            margin = true - other
            (g,) = torch.autograd.grad(margin.sum(), xv)
            active = (margin > 0).detach()
            g = g.reshape(b, -1)
            cur = xb.reshape(b, -1)
            to0 = g * (0.0 - cur)
            to1 = g * (1.0 - cur)
            gain = torch.minimum(to0, to1).masked_fill(used, torch.inf)
            pix = gain.argmin(1)
            val = (to1 < to0).float().gather(1, pix[:, None])[:, 0]
            upd = active & torch.isfinite(gain[rows, pix])
            flat = xb.view(b, -1)
            flat[rows[upd], pix[upd]] = val[upd]
            used[rows[upd], pix[upd]] = True
            if step in out:
                out[step][s:s + b] = xb[:, 0].numpy()
    return out


# --------------------------------------------------------------------------- evaluation

def evaluate_defense(normal, topk, k: int, x: np.ndarray, labels: np.ndarray, t_defense: int = DEFAULT_T_DEFENSE,
                     n_iter: int = 10, greedy_ts=GREEDY_TS, random_ts=RANDOM_TS, seed: int = 0,
                     progress: bool = True) -> dict:
    """Accuracy of the four pipelines, clean and under each attack (see :func:`format_table`).

    Rows (pipelines):

    * ``normal CNN``: the normal model on the input; greedy attacks computed on it;
    * ``normal CNN adv -> IHT -> top-k CNN``: the same adversarial images, defended;
    * ``top-k CNN on H_k(y)``: the top-k model on the top-k projection of the input; greedy
      attacks computed through the projection (``hotops.bindings.sparse_project``);
    * ``top-k CNN adv -> IHT -> top-k CNN``: those adversarial images, defended;
    * ``IHT -> top-k CNN, adaptive (BPDA) greedy``: greedy attacks computed on the defended
      pipeline itself, IHT's gradient taken as the identity (BPDA, Athalye et al. 2018;
      ``IHTDefense(straight_through=True)``).

    The attacks of rows 1-4 see the classifier (and the projection) but not IHT. Random
    attacks are the same images for every row.
    """
    from tqdm.auto import tqdm

    from hotops.bindings.topk_threshold import IHTDefense
    from hotops.bindings.topk_threshold import sparse_project as torch_project
    from hotops.sparse_fourier import iht

    labels = np.asarray(labels)
    bar = tqdm(total=5 + len(random_ts), desc="evaluate", disable=not progress)

    def acc(pred):
        return float((pred == labels).mean())

    def defended(imgs):
        x_hat, _ = iht(np.ascontiguousarray(imgs, dtype=np.float32), k, t_defense, n_iter=n_iter)
        return predict(topk, x_hat)

    def topk_on_projection(imgs):
        return predict(topk, project_images(imgs, k))

    def topk_fn(xv):
        return topk(torch_project(xv, k, "dct"))

    cols = ["clean"] + [f"greedy t={t}" for t in greedy_ts] + [f"random t={t}" for t in random_ts]
    adaptive = "IHT -> top-k CNN, adaptive (BPDA) greedy"
    rows = {name: {} for name in ("normal CNN", "normal CNN adv -> IHT -> top-k CNN",
                                  "top-k CNN on H_k(y)", "top-k CNN adv -> IHT -> top-k CNN", adaptive)}
    rows["normal CNN"]["clean"] = acc(predict(normal, x))
    rows["normal CNN adv -> IHT -> top-k CNN"]["clean"] = acc(defended(x))
    rows["top-k CNN on H_k(y)"]["clean"] = acc(topk_on_projection(x))
    rows["top-k CNN adv -> IHT -> top-k CNN"]["clean"] = rows["normal CNN adv -> IHT -> top-k CNN"]["clean"]
    rows[adaptive]["clean"] = rows["normal CNN adv -> IHT -> top-k CNN"]["clean"]
    bar.update(1)
    adv_n = greedy_l0_attack(normal, x, labels, greedy_ts)
    bar.update(1)
    adv_k = greedy_l0_attack(topk_fn, x, labels, greedy_ts)
    bar.update(1)
    for t in greedy_ts:
        c = f"greedy t={t}"
        rows["normal CNN"][c] = acc(predict(normal, adv_n[t]))
        rows["normal CNN adv -> IHT -> top-k CNN"][c] = acc(defended(adv_n[t]))
        rows["top-k CNN on H_k(y)"][c] = acc(topk_on_projection(adv_k[t]))
        rows["top-k CNN adv -> IHT -> top-k CNN"][c] = acc(defended(adv_k[t]))
    bar.update(1)
    bpda = IHTDefense(topk, k, t_defense, n_iter=n_iter, straight_through=True)
    adv_a = greedy_l0_attack(bpda, x, labels, greedy_ts)
    for t in greedy_ts:
        rows[adaptive][f"greedy t={t}"] = acc(defended(adv_a[t]))
    bar.update(1)
    for i, t in enumerate(random_ts):
        c = f"random t={t}"
        adv = random_pixel_attack(x, t, seed=seed + i)
        rows["normal CNN"][c] = acc(predict(normal, adv))
        d = acc(defended(adv))
        rows["normal CNN adv -> IHT -> top-k CNN"][c] = d
        rows["top-k CNN on H_k(y)"][c] = acc(topk_on_projection(adv))
        rows["top-k CNN adv -> IHT -> top-k CNN"][c] = d
        rows[adaptive][c] = d
        bar.update(1)
    bar.close()
    return {"columns": cols, "rows": rows, "n_images": int(len(x)), "k": int(k), "t_defense": int(t_defense),
            "n_iter": int(n_iter)}


def format_table(result: dict) -> str:
    """Markdown table of :func:`evaluate_defense`'s result (accuracy in %)."""
    cols = result["columns"]
    lines = ["| pipeline | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * r[c]:.1f}" for c in cols) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI

def _save(model, path: Path, meta: dict) -> None:
    from hotops.models._paths import plain, save_checkpoint

    state16 = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    save_checkpoint({"state_dict": state16, "arch": plain(model.arch), **plain(meta)}, path)


def _reload16(model):
    """Round the weights to float16 and back: evaluate exactly what the checkpoint stores."""
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    return model


def run_training(args) -> dict:
    """``hotops train defense``: train both CNNs, measure them, write the two checkpoints."""
    import torch

    from ._training import check_count, check_positive

    if args.epochs < 1 or args.batch_size < 1:
        raise ValueError(f"--epochs and --batch-size must be >= 1, got {args.epochs} and {args.batch_size}")
    check_count("--threads", args.threads)
    check_positive("--lr", args.lr)
    if not 0 < args.energy <= 1:
        raise ValueError(f"--energy must be in (0, 1], got {args.energy}")
    if args.eval_images < 0 or (args.limit is not None and args.limit < 1):
        raise ValueError("--eval-images must be >= 0 and --limit >= 1")
    if args.k is not None and not 1 <= args.k <= 784:
        raise ValueError(f"--k must be in [1, 784], got {args.k}")
    if not 1 <= args.t_defense <= 784:
        raise ValueError(f"--t-defense must be in [1, 784], got {args.t_defense}")
    torch.set_num_threads(args.threads)
    with flushing_denormals():
        return _run_training(args)


def _run_training(args) -> dict:
    import torch

    from hotops.data import load_mnist

    data = load_mnist()
    x_train, y_train = _to_float(data["x_train"]), data["y_train"].astype(np.int64)
    x_test, y_test = _to_float(data["x_test"]), data["y_test"].astype(np.int64)
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    k_info = None
    if args.k is None:
        k, k_info = choose_k(x_train[:10000], args.energy)
        _log.info("k = %d: the smallest k whose top-k DCT coefficients hold %.0f%% of the median "
                  "training image's energy (%s)", k, 100 * args.energy, k_info)
    else:
        k = int(args.k)
    t0 = time.perf_counter()
    normal = train_classifier(x_train, y_train, args.epochs, args.batch_size, args.lr, args.seed, "normal CNN")
    t_normal = time.perf_counter() - t0
    t0 = time.perf_counter()
    xk = project_images(x_train, k)
    topk = train_classifier(xk, y_train, args.epochs, args.batch_size, args.lr, args.seed, f"top-{k} CNN")
    t_topk = time.perf_counter() - t0
    _reload16(normal)
    _reload16(topk)
    acc_normal = float((predict(normal, x_test) == y_test).mean())
    acc_topk = float((predict(topk, project_images(x_test, k)) == y_test).mean())
    _log.info("test accuracy (%d images, float16 weights): normal %.4f, top-%d on H_k(x) %.4f", len(x_test),
              acc_normal, k, acc_topk)
    train_meta = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                  "threads": args.threads, "train_images": int(len(x_train)), "torch": str(torch.__version__),
                  "python": platform.python_version(), "date": datetime.date.today().isoformat()}
    result = None
    if args.evaluate and args.eval_images:
        n = min(args.eval_images, len(x_test))
        result = evaluate_defense(normal, topk, k, x_test[:n], y_test[:n], t_defense=args.t_defense, seed=args.seed)
        _log.info("accuracy (%%) on the first %d test images; IHT: k=%d, t=%d, 10 iterations", n, k,
                  args.t_defense)
        _log.info("%s", format_table(result))
    common = {"k": int(k), "energy": float(args.energy) if args.k is None else None, "k_info": k_info,
              "t_defense": int(args.t_defense), "evaluation": result}
    _save(normal, Path(args.out) / "defense_normal.pt",
          {"kind": "normal", "test_accuracy": acc_normal, "train": {**train_meta, "seconds": round(t_normal, 1)},
           **common})
    _save(topk, Path(args.out) / "defense_topk.pt",
          {"kind": "topk", "test_accuracy": acc_topk, "train": {**train_meta, "seconds": round(t_topk, 1)},
           **common})
    _log.info("wrote %s and defense_topk.pt (training %.0f s + %.0f s)", Path(args.out) / "defense_normal.pt",
              t_normal, t_topk)
    return {"k": k, "acc_normal": acc_normal, "acc_topk": acc_topk, "evaluation": result}


def digits_28(n: int, seed: int = 0):
    """(images (n, 28, 28) in [0, 1], labels, source): MNIST test digits when the data folder
    is there, else scikit-learn's bundled 8x8 digits enlarged to 20x20 and centred in 28x28
    (the MNIST layout)."""
    from hotops.data import data_available

    if data_available("mnist.npz"):
        from hotops.data import load_mnist

        d = load_mnist()
        return _to_float(d["x_test"][:n]), d["y_test"][:n].astype(np.int64), "MNIST test set"
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    dig = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(dig.images), n, replace=False)
    out = np.zeros((n, 28, 28), np.float32)
    # 8x8 -> 20x20 (bilinear), in the centre of 28x28 as MNIST digits are
    out[:, 4:24, 4:24] = np.clip(zoom(dig.images[idx] / 16.0, (1, 2.5, 2.5), order=1), 0, 1)
    return out, dig.target[idx].astype(np.int64), "scikit-learn's bundled digits (8x8, enlarged to 28x28)"
