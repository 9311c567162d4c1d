"""Super-resolution pipeline for VDSR (Kim, Lee & Lee, CVPR 2016): data, training, evaluation.

- :func:`degrade`: the SR protocol's low-resolution input, MATLAB-exact bicubic down by 1/s
  and back up by s (Sec. 4.1 / 5; hotops' ``imresize``).
- :func:`luminance`: Y of MATLAB's ``rgb2ycbcr`` on 8-bit RGB, as float in [0, 1].
- :func:`evaluate`: the standard protocol (Y, crop to a multiple of s, shave s, PSNR peak 1,
  SSIM) for a model and the bicubic baseline; used by ``hotops eval-sr``, the tests and the
  training script's final report.
- :func:`build_patch_pool`: 41x41 sub-images cut without overlap from the 291 training
  images (Sec. 4.1), degraded at every scale (scales mixed in a batch, Sec. 4.3), cached as
  ``.npy`` in ``hotops.data.cache_dir()``.
- :func:`train`: SGD, momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 every quarter
  of the schedule (the paper's every 20 of 80 epochs), adjustable gradient clipping
  (Sec. 3.1, gradients clipped to [-theta/lr, theta/lr]), loss 1/2 ||r - f(x)||^2 (Eq. 5)
  averaged over the batch, augmentation by rotation and flips (Sec. 4.1). For short CPU
  budgets, ``optimizer='adamw'`` with a cosine schedule (not the paper's): in short runs
  from the same init the paper's SGD at lr 0.1 barely moves the PSNR where Adam at lr 1e-4
  learns, and Adam's coupled L2 weight decay shrinks the deep layers' kernels (their
  gradients are tiny next to it), hence the decoupled AdamW (docs/vdsr.md has the runs).

``hotops train vdsr`` runs :func:`run_training`; :func:`upscale_image` is ``hotops upscale``.
"""
from __future__ import annotations

import datetime
import hashlib
import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from .schedule import SCHEDULES

_log = logging.getLogger(__name__)

__all__ = [
    "PATCH",
    "degrade",
    "luminance",
    "evaluate",
    "format_table",
    "build_patch_pool",
    "train",
    "upscale_image",
    "upscaled_size",
    "check_scale",
    "load_train_state",
    "save_train_state",
    "state_path",
]

PATCH = 41
_POOL_VERSION = 1


# --------------------------------------------------------------------------- protocol

def check_scale(scale) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if int(scale) != scale:
        raise ValueError(f"scale must be an integer (the protocol crops to a multiple of it), got {scale!r}")
    return int(scale)


def luminance(img: np.ndarray) -> np.ndarray:
    """Y in [0, 1] (float64) of a uint8 RGB (H, W, 3) or grayscale (H, W) image.

    MATLAB's ``rgb2ycbcr`` on a uint8 image rounds Y to 8 bits (16..235); grayscale images
    are used as they are, as the usual protocol does.
    """
    from hotops.kernels.resize import rgb2ycbcr

    img = np.asarray(img)
    if img.ndim == 2:
        y = img
    elif img.ndim == 3 and img.shape[2] == 3:
        y = rgb2ycbcr(img)[..., 0] if img.dtype == np.uint8 else rgb2ycbcr(img.astype(np.float64))[..., 0]
    else:
        raise ValueError(f"img must be (H, W) or (H, W, 3), got shape {img.shape}")
    if y.dtype == np.uint8:
        return y.astype(np.float64) / 255.0
    return y.astype(np.float64)


def modcrop(y: np.ndarray, scale: int) -> np.ndarray:
    h, w = y.shape[:2]
    return y[: h - h % scale, : w - w % scale]


def degrade(y: np.ndarray, scale) -> np.ndarray:
    """Bicubic down by 1/scale then up by scale (MATLAB ``imresize``, float64).

    ``y`` must already be cropped to a multiple of ``scale``.
    """
    from hotops.kernels.resize import imresize

    s = check_scale(scale)
    y = np.asarray(y, dtype=np.float64)
    if y.shape[0] % s or y.shape[1] % s:
        raise ValueError(f"y of shape {y.shape} is not a multiple of scale {s}; crop it first (modcrop)")
    small = imresize(y, scale=1.0 / s)
    return imresize(small, scale=float(s))


#: the largest output :func:`upscale_image` makes: pixels, and pixels per side (PNG and most
#: viewers stop at 65535; 2**28 pixels of float64 YCbCr are already 6 GiB of working memory)
MAX_OUTPUT_PIXELS = 2 ** 28
MAX_OUTPUT_SIDE = 65535


def upscaled_size(hw, scale) -> tuple[int, int]:
    """(height, width) of an image of size ``hw`` enlarged by ``scale`` (``ceil(scale * side)``,
    MATLAB's rule); ``ValueError`` for a scale that is not a finite number > 0 or an output
    larger than ``MAX_OUTPUT_SIDE`` per side or ``MAX_OUTPUT_PIXELS`` in all."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
            or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    h, w = (int(math.ceil(float(scale) * int(n))) for n in hw)
    if max(h, w) > MAX_OUTPUT_SIDE or h * w > MAX_OUTPUT_PIXELS:
        raise ValueError(f"scale {scale:g} would make a {w}x{h} image; the largest output is "
                         f"{MAX_OUTPUT_SIDE} pixels per side and {MAX_OUTPUT_PIXELS} pixels in all")
    return h, w


def upscale_image(img: np.ndarray, scale, model) -> np.ndarray:
    """Upscale a uint8 RGB (H, W, 3) or grayscale (H, W) image by ``scale``.

    VDSR restores the bicubic-enlarged luminance Y (Kim et al. 2016, Sec. 3.1); Cb and Cr
    stay bicubic (MATLAB-exact ``imresize``). A grayscale image is all luminance.
    """
    from hotops.kernels.resize import imresize, rgb2ycbcr, ycbcr2rgb

    img = np.asarray(img)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"img must be uint8 (H, W) or (H, W, 3), got {img.dtype} {img.shape}")
    out_h, out_w = upscaled_size(img.shape[:2], scale)
    if img.ndim == 2:
        y = imresize(img.astype(np.float64) / 255.0, scale=float(scale))
        out = model.upscale_y(y.astype(np.float32))
        return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
    ycc = rgb2ycbcr(img.astype(np.float64) / 255.0)
    big = imresize(ycc, scale=float(scale))
    big[..., 0] = model.upscale_y(np.clip(big[..., 0], 0, 1).astype(np.float32)).astype(np.float64)
    rgb = ycbcr2rgb(np.clip(big, 0.0, 1.0))
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def evaluate(model, images, scales=(2, 3, 4), ssim_too: bool = True) -> dict:
    """The standard SR protocol for ``model`` and bicubic, per scale.

    Parameters
    ----------
    model : VDSR or None
        None evaluates bicubic only.
    images : list of (name, uint8 image) as ``hotops.data.load_sr_set`` returns.
    scales : iterable of int

    Returns
    -------
    dict scale -> {'psnr', 'ssim', 'bicubic_psnr', 'bicubic_ssim', 'n'} (means over images).

    Notes
    -----
    Kim et al. (2016) Sec. 5: Y channel; crop to a multiple of s; ``imresize(y, 1/s)`` then
    ``imresize(., s)`` (bicubic, MATLAB); shave s pixels; PSNR with peak 1.
    """
    from hotops.kernels.resize import psnr, ssim

    images = list(images)
    if not images:
        raise ValueError("images is empty")
    out = {}
    for scale in scales:
        s = check_scale(scale)
        rows = {"psnr": [], "ssim": [], "bicubic_psnr": [], "bicubic_ssim": []}
        for _name, img in images:
            hr = modcrop(luminance(img), s)
            lr = degrade(hr, s)
            rows["bicubic_psnr"].append(psnr(lr, hr, shave=s, data_range=1.0))
            if ssim_too:
                rows["bicubic_ssim"].append(ssim(lr, hr, shave=s, data_range=1.0))
            if model is not None:
                sr = model.upscale_y(lr.astype(np.float32)).astype(np.float64)
                rows["psnr"].append(psnr(sr, hr, shave=s, data_range=1.0))
                if ssim_too:
                    rows["ssim"].append(ssim(sr, hr, shave=s, data_range=1.0))
        out[s] = {k: (float(np.mean(v)) if v else None) for k, v in rows.items()}
        out[s]["n"] = len(images)
    return out


def format_table(results: dict, title: str = "") -> str:
    """A markdown table of :func:`evaluate` results, one or more sets (``{set: results}``)."""
    if results and all(isinstance(k, (int, np.integer)) for k in results):
        results = {title or "set": results}
    f = lambda v, d: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = ["| set | scale | VDSR PSNR | bicubic PSNR | gain | VDSR SSIM | bicubic SSIM |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, res in results.items():
        for s, r in sorted(res.items(), key=lambda kv: int(kv[0])):
            gain = None if r.get("psnr") is None else r["psnr"] - r["bicubic_psnr"]
            lines.append(f"| {name} | x{s} | {f(r.get('psnr'), 3)} | {f(r['bicubic_psnr'], 3)} | "
                         f"{'-' if gain is None else f'{gain:+.3f}'} | {f(r.get('ssim'), 4)} | {f(r.get('bicubic_ssim'), 4)} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- patch pool

def _pool_key(images, scales, max_patches, seed) -> str:
    h = hashlib.sha1()
    h.update(f"v{_POOL_VERSION};{PATCH};{tuple(scales)};{max_patches};{seed}".encode())
    for name, img in images:
        h.update(f"{name}:{img.shape}".encode())
        h.update(hashlib.sha1(np.ascontiguousarray(img[:: max(1, img.shape[0] // 16)])).digest())
    return h.hexdigest()[:16]


def build_patch_pool(images, scales=(2, 3, 4), max_patches: int | None = 24000, seed: int = 0,
                     cache: bool = True, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """41x41 (input, target) sub-images at every scale, cut without overlap (Sec. 4.1).

    Each image's Y (8-bit, ``rgb2ycbcr``) is cropped to a multiple of s, degraded as a whole
    (:func:`degrade`: no border effects inside patches), then cut on a stride-41 grid.
    With ``max_patches`` a random subset is kept (memory); scales stay mixed.

    Returns
    -------
    lr : float16 (N, 41, 41), the bicubic input; hr : uint8 (N, 41, 41), the 8-bit target Y.
    Cached in ``hotops.data.cache_dir()`` keyed by the images and the settings.
    """
    scales = tuple(check_scale(s) for s in scales)
    if not scales:
        raise ValueError("scales is empty")
    images = list(images)
    if not images:
        raise ValueError("images is empty")
    path = None
    if cache:
        from hotops.data import cache_dir

        path = cache_dir() / f"vdsr_pool_{_pool_key(images, scales, max_patches, seed)}.npz"
        if path.is_file():
            with np.load(path) as z:
                return z["lr"], z["hr"]
    lrs, hrs = [], []
    it = images
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(images, desc="patch pool", unit="img")
    for _name, img in it:
        y8 = np.asarray(img)
        if y8.ndim == 3:
            from hotops.kernels.resize import rgb2ycbcr

            y8 = rgb2ycbcr(y8)[..., 0] if y8.dtype == np.uint8 else None
        if y8 is None or y8.dtype != np.uint8:
            raise TypeError("training images must be uint8")
        for s in scales:
            hr8 = modcrop(y8, s)
            if min(hr8.shape) < PATCH:
                continue
            lr = degrade(hr8.astype(np.float64) / 255.0, s)
            nh, nw = hr8.shape[0] // PATCH, hr8.shape[1] // PATCH
            hh, ww = nh * PATCH, nw * PATCH
            hrs.append(hr8[:hh, :ww].reshape(nh, PATCH, nw, PATCH).transpose(0, 2, 1, 3).reshape(-1, PATCH, PATCH))
            lrs.append(lr[:hh, :ww].reshape(nh, PATCH, nw, PATCH).transpose(0, 2, 1, 3).reshape(-1, PATCH, PATCH).astype(np.float16))
    if not hrs:
        raise ValueError(f"no image is at least {PATCH}x{PATCH} pixels")
    lr_all, hr_all = np.concatenate(lrs), np.concatenate(hrs)
    if max_patches is not None and len(hr_all) > max_patches:
        keep = np.sort(np.random.default_rng(seed).choice(len(hr_all), max_patches, replace=False))
        lr_all, hr_all = lr_all[keep], hr_all[keep]
    if path is not None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, lr=lr_all, hr=hr_all)
        os.replace(tmp, path)
    return lr_all, hr_all


# --------------------------------------------------------------------------- training

#: the paper's: lr / 10 every 20 of 80 epochs
STEP_MILESTONES = (0.25, 0.5, 0.75)


def _augment(x, y, rng):
    """Random rotation by 0/90/180/270 degrees and horizontal flip, per sample (Sec. 4.1).

    The draws come from the numpy ``rng`` (two arrays per batch); the transforms run where
    the tensors are, one call per (rotation, flip) combination present in the batch (at
    most 8), not one per sample, so that a GPU batch costs a handful of launches.
    """
    import torch

    k = rng.integers(0, 4, size=x.shape[0])
    flip = rng.random(x.shape[0]) < 0.5
    xo, yo = torch.empty_like(x), torch.empty_like(y)
    for kk in range(4):
        for ff in (False, True):
            sel = np.flatnonzero((k == kk) & (flip == ff))
            if sel.size == 0:
                continue
            idx = torch.from_numpy(sel).to(x.device)
            a, b = x.index_select(0, idx), y.index_select(0, idx)
            if ff:
                a, b = a.flip(-1), b.flip(-1)
            if kk:
                a, b = torch.rot90(a, kk, (-2, -1)), torch.rot90(b, kk, (-2, -1))
            xo.index_copy_(0, idx, a)
            yo.index_copy_(0, idx, b)
    return xo, yo


TRAIN_STATE_FORMAT = "hotops-vdsr-train-2"
#: earlier states (no scheduler saved; the rate followed from the iteration alone)
_OLD_STATE_FORMATS = ("hotops-vdsr-train-1",)
#: settings a resumed run must share with the saved one (else it would not be the same run)
_RESUME_KEYS = ("optimizer", "schedule", "reduction", "batch", "theta", "base_lr", "momentum", "weight_decay")


def _rng_state(rng):
    import torch

    from hotops.models._paths import plain

    return {"numpy": plain(rng.bit_generator.state), "torch": torch.get_rng_state()}


def save_train_state(path, model, optimizer, iteration, total, rng, config, elapsed, scheduler=None,
                     budget=None) -> Path:
    """Everything needed to resume: model (float32), optimizer, scheduler, iteration, RNG states.

    Plain data and tensors only (``weights_only=True`` reads it back), written atomically:
    an interrupted save leaves the previous state intact.
    """
    from hotops.models._paths import plain, save_checkpoint

    return save_checkpoint({
        "format": TRAIN_STATE_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else plain(scheduler.state_dict()),
        "iteration": int(iteration), "total": None if total is None else int(total),
        "budget": None if budget is None else float(budget), "rng": _rng_state(rng), "config": plain(config),
        "elapsed": float(elapsed), "model_config": {"depth": model.depth, "channels": model.channels},
    }, path)


def load_train_state(path, map_location="cpu") -> dict:
    """A state written by :func:`save_train_state`, read with ``weights_only=True``.

    ``FileNotFoundError`` when the file is missing; ``ValueError`` naming the file when it is
    not a VDSR training state (or holds anything but tensors and plain data).
    """
    from hotops.data import UnreadableFileError
    from hotops.models._paths import load_checkpoint

    st = load_checkpoint(path, "VDSR training state", map_location=map_location)
    if not isinstance(st, dict) or st.get("format") not in (TRAIN_STATE_FORMAT, *_OLD_STATE_FORMATS):
        raise UnreadableFileError(f"{path} is not a VDSR training state (hotops train vdsr writes them)")
    return st


def train(model, lr_pool, hr_pool, iterations: int | None = None, batch: int = 64, theta: float = 0.4,
          base_lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4, budget: float | None = None,
          seed: int = 0, resume=None, state_path=None, save_every: float = 120.0, progress: bool = True,
          probe: int = 5, log=None, stop_at: int | None = None, reduction: str = "mean",
          optimizer: str = "sgd", schedule: str = "step", run_config: dict | None = None) -> dict:
    """Train ``model`` on a patch pool (Kim et al. 2016, Sec. 3.1 and 4.1).

    Parameters
    ----------
    lr_pool, hr_pool : (N, 41, 41) arrays: bicubic inputs (float) and targets (uint8 or float in [0, 1]).
    iterations : total SGD steps (with ``budget`` too: at most that many, fewer if the budget is short);
        with ``budget`` (seconds) alone, the first ``probe`` steps are
        timed and the total is set so that the run fits the budget; the lr schedule (divide by
        10 every quarter) follows the total.
    theta : adjustable-clipping threshold (> 0): gradients clipped to [-theta/lr, theta/lr].
    resume : a train-state file (from ``state_path``), or the dict :func:`load_train_state`
        returned, to continue from; the run's settings must be the saved ones.
    state_path : where the state is saved: every ``save_every`` seconds, at the end, at
        ``stop_at`` and when a signal stops the run.
    reduction : 'mean' (over pixels and batch) or 'sum' (over a patch's pixels, mean over the
        batch, as caffe-vdsr's EuclideanLoss); 'sum' scales the gradients by 41 * 41.
    stop_at : stop (and save the state) at this iteration, keeping the schedule of ``total``.
    optimizer : 'sgd' (the paper's: momentum, weight decay) or 'adamw' (Adam, Kingma & Ba 2015,
        with the weight decay decoupled, Loshchilov & Hutter 2019); the adjustable clipping
        applies to both (with Adam's small lr its bound theta/lr rarely bites).
    schedule : 'step' (the paper's) or 'cosine'; see :func:`hotops.apps.schedule.lr_at`, run
        by ``torch.optim.lr_scheduler.LambdaLR`` (:func:`hotops.apps.schedule.progress_scheduler`).
    run_config : more settings to store in the state's ``config`` (the pipeline's data options).
    log : callable(str) for progress messages (default: the ``hotops.apps.sr`` logger).

    Returns
    -------
    dict with 'iterations', 'losses' (per step), 'clip_fraction' (mean), 'seconds', 'total'.

    Raises
    ------
    TrainingInterrupted
        On SIGINT or SIGTERM (in the main thread) the step under way finishes, the state is
        saved to ``state_path`` and the run stops; resuming from that state gives the same
        weights, bit for bit, as a run that was never stopped.
    """
    import torch

    from hotops.bindings import clip_grad_adjustable_

    from ._training import TrainingInterrupted, check_count, check_positive, stop_requests
    from .schedule import progress_scheduler

    check_positive("theta", theta)
    check_positive("base_lr", base_lr)
    check_count("batch", batch)
    check_count("iterations", iterations, allow_none=True)
    check_count("stop_at", stop_at, minimum=0, allow_none=True)
    check_count("probe", probe, minimum=2)
    check_positive("budget", budget, allow_none=True)
    check_positive("save_every", save_every)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if iterations is None and budget is None and resume is None:
        raise ValueError("give iterations, budget or resume")
    if len(lr_pool) != len(hr_pool) or len(lr_pool) == 0:
        raise ValueError(f"lr_pool and hr_pool must be non-empty and of equal length, got {len(lr_pool)} and {len(hr_pool)}")
    if optimizer not in ("sgd", "adamw"):
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    log = log or _log.info

    hr_scale = 1.0 / 255.0 if np.asarray(hr_pool[:1]).dtype == np.uint8 else 1.0
    # the pool lives where the model is: on a GPU, batches are gathered, augmented and
    # converted there, so the GPU never waits on the CPU (the degradation was done once,
    # with hotops' MATLAB-exact imresize, when the pool was built)
    device = next(model.parameters()).device
    lr_t = torch.from_numpy(np.ascontiguousarray(lr_pool)).to(device)
    hr_t = torch.from_numpy(np.ascontiguousarray(hr_pool)).to(device)
    opt_name = optimizer
    if optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=base_lr, momentum=momentum, weight_decay=weight_decay)
    else:
        # decoupled weight decay (Loshchilov & Hutter, ICLR 2019): Adam's coupled L2 term
        # is normalised like a gradient, and with the tiny gradients of the deep layers (mean
        # loss, zero-initialised last layer) it shrank every hidden kernel 4x in 850 steps
        optimizer = torch.optim.AdamW(model.parameters(), lr=base_lr, weight_decay=weight_decay)
    config = {"optimizer": opt_name, "schedule": schedule, "reduction": reduction, "batch": batch, "theta": theta,
              "base_lr": base_lr, "momentum": momentum, "weight_decay": weight_decay, "seed": seed,
              **(run_config or {})}
    rng = np.random.default_rng(seed)
    # with both iterations and budget, the schedule is the given length unless the budget
    # cannot fit it (then it is shortened, the lr steps scaled with it)
    start_it, total, elapsed0 = 0, (None if budget is not None else iterations), 0.0
    budget_total = budget  # the run's whole budget, saved with the state
    if resume is not None:
        st = resume if isinstance(resume, dict) else load_train_state(resume, map_location=device)
        where = "the saved state" if isinstance(resume, dict) else str(resume)
        saved = st.get("config", {})
        defaults = {"optimizer": "sgd", "schedule": "step", "reduction": "mean"}
        for key in _RESUME_KEYS:
            was, now = saved.get(key, defaults.get(key)), config[key]
            if was is not None and was != now:
                raise ValueError(f"{where} was trained with {key}={was!r}; resume it with the same {key}, not {now!r}")
        try:
            model.load_state_dict(st["model"])
            optimizer.load_state_dict(st["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ValueError(f"{where} does not fit this model and optimizer ({str(exc).splitlines()[0]})") from None
        start_it, elapsed0 = int(st["iteration"]), float(st.get("elapsed", 0.0))
        if iterations is not None:
            total = iterations
        elif st.get("total") is not None:
            total = int(st["total"])
        else:  # stopped while timing the first steps of a budget: time them again
            budget_total = float(st.get("budget") or 1.0)
            total, budget = None, max(1.0, budget_total - elapsed0)
        if total is not None:
            budget = budget_total = None
        rng.bit_generator.state = st["rng"]["numpy"]
        torch.set_rng_state(st["rng"]["torch"].cpu())
        for g in optimizer.param_groups:  # states from before the scheduler: the base rate
            g.setdefault("initial_lr", base_lr)
    plan = {"total": total}
    sched = progress_scheduler(optimizer, lambda step: step / plan["total"] if plan["total"] else 0.0,
                               schedule, STEP_MILESTONES, last_step=start_it)
    model.train()
    losses, clips = [], []
    t0 = time.perf_counter()
    last_save = t0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start_it, desc="VDSR", unit="it", dynamic_ncols=True)
    it = start_it
    probe_t = None

    def save(now):
        save_train_state(state_path, model, optimizer, it, plan["total"], rng, config, elapsed0 + now - t0,
                         sched, budget_total)

    with stop_requests() as stop:
        while True:
            total = plan["total"]
            if (total is not None and it >= total) or (stop_at is not None and it >= stop_at):
                break
            if total is None and iterations is not None and it >= iterations:
                plan["total"] = iterations  # a budget was given, but the run ended while probing
                break
            lr = optimizer.param_groups[0]["lr"]
            idx = torch.from_numpy(rng.integers(0, len(lr_t), size=batch)).to(device)
            x = lr_t[idx].float().unsqueeze(1)
            y = hr_t[idx].float().mul_(hr_scale).unsqueeze(1)
            x, y = _augment(x, y, rng)
            pred = model(x)
            # Eq. 5: 1/2 ||r - f(x)||^2, averaged over the batch *and the pixels*. Summed over a
            # 41x41 patch (caffe-vdsr's EuclideanLoss) with lr 0.1 and *element-wise* clipping,
            # the first step already overflows (every element moves by theta = 0.4); the mean
            # keeps lr 0.1 / theta 0.4 usable and clipping then only bites in early steps.
            loss = 0.5 * (pred - y).pow(2).mean()
            if reduction == "sum":
                loss = loss * (pred[0].numel())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            frac = clip_grad_adjustable_(model.parameters(), theta, lr)
            optimizer.step()
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise FloatingPointError(f"loss became {lv} at iteration {it}")
            losses.append(lv)
            clips.append(float(frac))
            it += 1
            if it - start_it == 1:
                probe_t = time.perf_counter()
            if plan["total"] is None and it - start_it == probe:  # budget: size the schedule now
                per_it = (time.perf_counter() - probe_t) / max(1, probe - 1)
                remaining = budget - (time.perf_counter() - t0)
                plan["total"] = it + max(1, int(remaining / per_it))
                if iterations is not None:
                    plan["total"] = min(plan["total"], iterations)
                if bar is not None:
                    bar.total = plan["total"]
                    bar.refresh()
                log(f"budget {budget:.0f} s, {per_it:.2f} s/it -> {plan['total']} iterations")
            sched.step()  # the rate of iteration `it`
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{lv:.4f}", lr=f"{lr:.0e}", clipped=f"{frac:.1%}")
            now = time.perf_counter()
            if stop:
                if state_path is not None:
                    save(now)
                if bar is not None:
                    bar.close()
                model.eval()
                raise TrainingInterrupted(stop.signum, state_path, it, plan["total"])
            if state_path is not None and now - last_save > save_every:
                save(now)
                last_save = now
        seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        if state_path is not None:
            save(t0 + seconds)
    model.eval()
    return {"iterations": it, "total": plan["total"], "losses": losses, "seconds": seconds,
            "elapsed_total": elapsed0 + seconds,
            "clip_fraction": float(np.mean(clips)) if clips else 0.0, "config": config}


# --------------------------------------------------------------------------- script

def measure(ckpt, sets=("set5", "set14"), scales=(2, 3, 4), model_fp32=None, verbose: bool = True,
            device="cpu"):
    """The :func:`evaluate` table of a checkpoint *as stored* (float16 weights) on each set
    found, plus the Set5 PSNR of ``model_fp32`` (the unrounded weights) when given.

    ``ckpt`` is a checkpoint path or a VDSR holding the stored weights. Returns (tables
    {set: {str(scale): row}}, fp16 check {str(scale): {float32, float16}} or None, seconds);
    with ``verbose`` the tables are logged as they are measured.
    """
    from hotops.data import data_available, load_sr_set
    from hotops.models.vdsr import VDSR

    say = _log.info if verbose else (lambda *a: None)
    t0 = time.perf_counter()
    stored = (ckpt if isinstance(ckpt, VDSR) else VDSR.load(ckpt)).to(device)
    tables = {}
    for name in sets:
        found = data_available(f"sr/{name}") if name in ("set5", "set14") else Path(name).is_dir()
        if not found:
            say("%s: not found, not evaluated", name)
            continue
        res = evaluate(stored, load_sr_set(name), scales)
        say("%s", format_table({name: res}))
        tables[name] = {str(s): r for s, r in res.items()}
    fp16_check = None
    if model_fp32 is not None and "set5" in tables:
        f32 = evaluate(model_fp32, load_sr_set("set5"), scales, ssim_too=False)
        fp16_check = {str(s): {"float32": f32[s]["psnr"], "float16": tables["set5"][str(s)]["psnr"]} for s in scales}
        say("Set5 PSNR, float32 vs stored float16 weights: %s", fp16_check)
    return tables, fp16_check, time.perf_counter() - t0


def resolve_device(name):
    """``'auto'`` (CUDA when torch sees a GPU, else CPU), ``'cpu'`` or ``'cuda[:N]'``."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"--device must be auto, cpu or cuda[:N], got {name!r}") from exc
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA GPU here")
    return device


#: options of ``hotops train vdsr`` that a resumed run takes from the saved state (its
#: config key -> the option's attribute), so that it stays the same run
_SAVED_OPTIONS = {"batch": "batch", "theta": "theta", "base_lr": "lr", "optimizer": "optimizer",
                  "schedule": "schedule", "seed": "seed", "data": "data", "scales": "scales",
                  "max_patches": "max_patches", "last_layer_init": "last_layer_init"}


def state_path(args) -> Path:
    """The training-state file of ``hotops train vdsr``: ``--state``; else, resuming, the
    ``--resume`` file itself; else ``<cache dir>/<stem of --out>.state.pt``."""
    from hotops.data import cache_dir

    if getattr(args, "state", None) is not None:
        return Path(args.state)
    if getattr(args, "resume", None) is not None:
        return Path(args.resume)
    return cache_dir() / f"{Path(args.out).stem}.state.pt"


def run_training(args) -> dict:
    """``hotops train vdsr``: the patch pool, :func:`train`, the measured release checkpoint.

    Writes the training state (:func:`state_path`) and, at the end, ``args.out`` (float16
    weights and metadata with the measured tables). Resuming (``args.resume``) takes the
    saved run's settings; ``args.iterations`` may lengthen it. Raises ``ValueError`` for bad
    options and :class:`hotops.apps._training.TrainingInterrupted` when a signal stops it
    (the state is saved first).
    """
    import torch

    from hotops.data import load_sr_set
    from hotops.models.vdsr import VDSR

    from ._training import check_count, check_positive

    saved_state = None
    if args.resume is not None:
        saved_state = load_train_state(args.resume)
        saved = saved_state.get("config", {})
        for key, attr in _SAVED_OPTIONS.items():
            if key in saved:
                setattr(args, attr, saved[key])
    elif args.budget is None and args.iterations is None:
        raise ValueError("give --budget SECONDS or --iterations N (or --resume)")
    if getattr(args, "lr", None) is None:
        args.lr = 1e-4 if getattr(args, "optimizer", "sgd") == "adamw" else 0.1
    check_positive("--budget", args.budget, allow_none=True)
    check_count("--iterations", args.iterations, allow_none=True)
    for name in ("theta", "lr"):
        check_positive(f"--{name}", getattr(args, name))
    check_count("--batch", args.batch)
    check_count("--max-patches", args.max_patches, allow_none=True)
    check_count("--threads", args.threads)
    for s in args.scales:
        check_scale(s)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = resolve_device(getattr(args, "device", "auto"))
    t_start = time.perf_counter()
    images = load_sr_set(args.data if args.data is not None else "train291")
    lr_pool, hr_pool = build_patch_pool(images, args.scales, args.max_patches, args.seed, progress=not args.no_progress)
    t_pool = time.perf_counter() - t_start
    _log.info("patch pool: %d patches of %dx%d at scales %s (%.1f s)", len(lr_pool), PATCH, PATCH, args.scales, t_pool)
    state = state_path(args)
    init = getattr(args, "last_layer_init", "zero")
    model = VDSR()
    if init == "zero":
        torch.nn.init.zeros_(model.convs[-1].weight)
    model.to(device)
    budget = None if args.budget is None else max(1.0, args.budget - t_pool)
    run_config = {"data": None if args.data is None else str(args.data), "scales": [int(s) for s in args.scales],
                  "max_patches": args.max_patches, "last_layer_init": init}
    hist = train(model, lr_pool, hr_pool, iterations=args.iterations, batch=args.batch, theta=args.theta,
                 base_lr=args.lr, budget=budget, seed=args.seed, resume=saved_state, state_path=state,
                 progress=not args.no_progress, optimizer=getattr(args, "optimizer", "sgd"),
                 schedule=getattr(args, "schedule", "step"), run_config=run_config)
    _log.info("trained %d iterations in %.0f s; state: %s", hist["iterations"], hist["seconds"], state)
    # measure the weights as the checkpoint stores them (float16), then write it once
    stored = VDSR(depth=model.depth, channels=model.channels)
    stored.load_state_dict({k: v.detach().half().float().cpu() for k, v in model.state_dict().items()})
    stored.eval()
    tables, fp16_check, t_eval = measure(stored, args.eval_sets, args.scales, model_fp32=model, device=device)
    from hotops.environment import cpu_name

    meta = {
        "paper": "Kim, Lee & Lee, Accurate Image Super-Resolution Using Very Deep Convolutional Networks, CVPR 2016",
        "scales": list(args.scales),
        "iterations": hist["iterations"],
        "batch": args.batch,
        "batch_note": "the paper uses 64; reduced for a CPU budget" if args.batch < 64 else "as the paper",
        "patch": PATCH,
        "pool_patches": int(len(lr_pool)),
        "last_layer_init": init,
        "loss": "0.5 * mean over pixels and batch of (r - f(x))^2",
        "optimizer": getattr(args, "optimizer", "sgd"),
        "theta": args.theta, "base_lr": args.lr, "weight_decay": 1e-4,
        **({"momentum": 0.9} if getattr(args, "optimizer", "sgd") == "sgd" else {"adam_betas": [0.9, 0.999], "weight_decay_note": "decoupled (AdamW)"}),
        "schedule": ("lr divided by 10 every quarter of the iterations" if getattr(args, "schedule", "step") == "step"
                     else "cosine decay from base_lr to 0 over the iterations"),
        "train_seconds": round(hist["elapsed_total"], 1),
        "pool_seconds": round(t_pool, 1),
        "final_loss_mean_last50": float(np.mean(hist["losses"][-50:])) if hist["losses"] else None,
        "clip_fraction_mean": hist["clip_fraction"],
        "hardware": (torch.cuda.get_device_name(device) if device.type == "cuda"
                     else f"{cpu_name()}, torch threads {args.threads}"),
        "torch": str(torch.__version__),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "psnr_table": tables,
        "protocol": "Y (rgb2ycbcr of 8-bit RGB), crop to multiple of s, imresize 1/s then s (MATLAB bicubic, float64), shave s, peak 1",
        "weights": "float16",
        "fp16_check_set5_psnr": fp16_check,
        "eval_seconds": round(t_eval, 1),
    }
    model.save(args.out, metadata=meta)
    _log.info("wrote %s (%.2f MB)", args.out, Path(args.out).stat().st_size / 1e6)
    return meta
