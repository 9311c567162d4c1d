"""``hotops demo``: run every hotops capability on embedded data and write a report.

The demo needs no data folder: it uses the committed checkpoint of the small CIFAR-10 net
(``hotops/checkpoints/small_cifar.pt``) and scikit-image's bundled sample photos. Each
capability is one *section*: a function that receives a :class:`DemoContext`, writes its
figures into the output folder, and returns the markdown of its part of the report.
Later capabilities (NMF, sparse Fourier, RevNet, VDSR) add a function and one line to
:data:`SECTIONS`.

Output: ``DIR/report.md`` (machine information, then one part per section) and the
figures it links (``DIR/saliency.png`` today).
"""
from __future__ import annotations

import dataclasses
import datetime
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["run_demo", "Section", "SECTIONS", "DemoContext", "time_call"]


# --------------------------------------------------------------------------- framework

@dataclasses.dataclass
class Section:
    """One capability of the demo.

    name : short id (also the stem of its figure files)
    title : heading in the report
    run : ``run(ctx) -> markdown``; it calls ``ctx.step(...)`` ``steps`` times. It may be
        given as ``"module:function"``, imported only when the section runs (sections that
        live with their capability, e.g. ``"hotops.nmf:demo_section"``).
    steps : how many progress-bar steps ``run`` reports
    """

    name: str
    title: str
    run: Callable[["DemoContext"], str]
    steps: int = 1


class DemoContext:
    """What a section gets: the output folder, the quick flag, shared helpers."""

    def __init__(self, out_dir: Path, quick: bool, bar):
        self.out_dir = out_dir
        self.quick = quick
        self._bar = bar
        self.figures: list[Path] = []
        self._cache: dict = {}

    def step(self, desc: str) -> None:
        """Advance the progress bar, showing what comes next."""
        if self._bar is not None:
            self._bar.set_postfix_str(desc, refresh=False)
            self._bar.update(1)

    def figure_path(self, name: str) -> Path:
        p = self.out_dir / name
        self.figures.append(p)
        return p

    def small_cifar(self):
        """The committed small CIFAR-10 net and its metadata (loaded once)."""
        if "small_cifar" not in self._cache:
            from hotops.models.small_cifar import load_small_cifar

            self._cache["small_cifar"] = load_small_cifar(pretrained=True)
        return self._cache["small_cifar"]


def time_call(fn, repeats: int, warmup: int = 2) -> dict:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    Returns dict with ``first`` (the first call, which pays any JIT compile, cache load or
    allocator warm-up not already paid), ``median``, ``min`` and ``repeats``, in seconds.
    """
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    for _ in range(max(0, warmup - 1)):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"first": first, "median": statistics.median(times), "min": min(times), "repeats": repeats}


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- saliency

_SALIENCY_IMAGES = ("chelsea", "coffee", "astronaut", "rocket")
_IMAGE_SIZE = 128


def _channel_max_abs():
    """hotops' torch op; the returned label says which implementation ran."""
    from hotops.bindings import channel_max_abs

    return channel_max_abs, "hotops.bindings.channel_max_abs"


def _input_gradient(model, x, classes):
    """dS_c/dI for each row: x (R, 3, H, W) normalised, classes (R,) -> (logits, grad).

    Rows are independent (the net is in eval mode), so summing the selected logits and
    back-propagating once gives every row's own gradient.
    """
    import torch

    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    score = logits.gather(1, classes.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, x)
    return logits.detach(), grad


def _saliency_figure(path, rows, dpi=110):
    """rows: dicts with image (H, W, 3) in [0, 1], saliency (H, W), and titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.ndimage import gaussian_filter

    n = len(rows)
    fig, axes = plt.subplots(n, 3, figsize=(9.0, 3.05 * n), squeeze=False)
    for r, row in enumerate(rows):
        img, sal = row["image"], row["saliency"]
        # Scale each map by its 99.5th percentile so a few extreme pixels don't wash it out.
        hi = float(np.percentile(sal, 99.5)) or 1.0
        s = np.clip(sal / hi, 0.0, 1.0)
        axes[r, 0].imshow(img)
        axes[r, 0].set_title(row["title"], fontsize=10)
        axes[r, 1].imshow(s, cmap="gray")
        axes[r, 1].set_title(row["map_title"], fontsize=10)
        # The overlay shows a lightly smoothed map (Gaussian, sigma 1.5 px) so that the
        # salient regions read at a glance; the middle column is the raw M.
        sm = gaussian_filter(s, 1.5)
        sm = np.clip(sm / (float(sm.max()) or 1.0), 0.0, 1.0)
        heat = plt.get_cmap("inferno")(sm)[..., :3]
        alpha = sm[..., None] ** 0.8
        overlay = (1 - 0.75 * alpha) * (0.35 + 0.65 * img.mean(axis=2, keepdims=True)) + 0.75 * alpha * heat
        axes[r, 2].imshow(np.clip(overlay, 0, 1))
        axes[r, 2].set_title("overlay (smoothed map)", fontsize=10)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Image-specific class saliency, $M_{ij} = \\max_c |w_{h(i,j,c)}|$ "
                 "(Simonyan et al. 2013)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def saliency_section(ctx: DemoContext) -> str:
    """Class saliency maps through the small CIFAR-10 net.

    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks" (2013), Sec. 3.1:
    for a class score S_c and image I, w = dS_c/dI; the saliency map of a colour image is
    M_ij = max_c |w_h(i,j,c)|, computed here by ``hotops.bindings.channel_max_abs`` and
    timed against ``g.abs().amax(1)`` (same result) and ``g.clone()`` (a pure memory copy
    of the input, the floor for any op that reads g once).
    """
    import torch

    from hotops.data import sample_images

    op, op_name = _channel_max_abs()
    model, meta = ctx.small_cifar()
    classes = list(meta["classes"])
    mean = torch.tensor(meta["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"], dtype=torch.float32).view(1, 3, 1, 1)

    ctx.step("saliency: sample images")
    imgs = sample_images(_SALIENCY_IMAGES, size=_IMAGE_SIZE)
    names = list(imgs)
    batch = torch.from_numpy(np.stack([imgs[k] for k in names])).permute(0, 3, 1, 2).contiguous()
    x = (batch - mean) / std

    ctx.step("saliency: gradients")
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
    top = probs.argmax(1)
    # One row per image for its top class, plus chelsea (a cat) for CIFAR's 'cat' class
    # when that is not already its top class.
    row_img, row_cls = list(range(len(names))), top.tolist()
    cat = classes.index("cat") if "cat" in classes else None
    if "chelsea" in names and cat is not None:
        i = names.index("chelsea")
        if row_cls[i] != cat:
            row_img.insert(i + 1, i)
            row_cls.insert(i + 1, cat)
    _, grad = _input_gradient(model, x[row_img], torch.tensor(row_cls))

    ctx.step("saliency: channel-max reduction")
    sal = op(grad)  # (R, H, W): M_ij = max_c |w_h(i,j,c)|, Simonyan et al. (2013)
    ref = grad.abs().amax(1)
    max_err = float((sal - ref).abs().max())

    ctx.step("saliency: figure")
    rows, table = [], []
    for r, (i, c) in enumerate(zip(row_img, row_cls)):
        p_top, p_c = float(probs[i, top[i]]), float(probs[i, c])
        is_top = c == int(top[i])
        rows.append({
            "image": imgs[names[i]],
            "saliency": sal[r].numpy(),
            "title": f"{names[i]}: {classes[int(top[i])]} (p={p_top:.2f})",
            "map_title": f"saliency of '{classes[c]}'" + ("" if is_top else f" (p={p_c:.2f})"),
        })
        table.append((names[i], f"{classes[int(top[i])]} ({p_top:.2f})",
                      classes[c] + (" (top)" if is_top else ""), f"{float(sal[r].max()):.3g}"))
    fig_path = ctx.figure_path("saliency.png")
    _saliency_figure(fig_path, rows)

    ctx.step("saliency: timing")
    timing_md = _saliency_timing(ctx, model, x, op)

    acc = meta.get("test_accuracy")
    acc_txt = f"{100 * acc:.1f}% CIFAR-10 test accuracy" if acc is not None else "accuracy not recorded"
    return "\n\n".join([
        "Simonyan, Vedaldi & Zisserman, *Deep Inside Convolutional Networks* (2013), Sec. 3.1: "
        "the saliency of pixel (i, j) for class c is M_ij = max_c |w_h(i,j,c)|, the largest "
        "magnitude over colour channels of the gradient w = dS_c/dI of the class score.",
        f"Network: `SmallCifarNet` from the committed checkpoint ({acc_txt}; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters), fed scikit-image sample "
        f"photos centre-cropped and resized to {_IMAGE_SIZE}x{_IMAGE_SIZE} (it was trained on "
        "32x32 CIFAR images; global average pooling lets it run on any size). "
        f"Reduction: `{op_name}`; largest difference from `g.abs().amax(1)`: {max_err:.1e}.",
        f"![saliency maps]({fig_path.name})",
        _md_table(("image", "predicted (p)", "saliency of class", "max M"), table),
        timing_md,
    ])


def _saliency_timing(ctx: DemoContext, model, x, op) -> str:
    import torch

    n = 8 if ctx.quick else 32
    repeats = 10 if ctx.quick else 50
    # A real gradient batch: the sample images, flipped and rolled to make n distinct inputs.
    reps = []
    for k in range(n):
        v = x[k % len(x)]
        if (k // len(x)) % 2:
            v = v.flip(-1)
        reps.append(v.roll(shifts=(3 * k, 5 * k), dims=(1, 2)))
    xb = torch.stack(reps)
    with torch.no_grad():
        cls = model(xb).argmax(1)
    _, g = _input_gradient(model, xb, cls)
    g = g.contiguous()
    contenders = [
        ("hotops `channel_max_abs(g)`", lambda: op(g)),
        ("torch `g.abs().amax(1)`", lambda: g.abs().amax(1)),
        ("torch `g.clone()` (memory-copy floor)", lambda: g.clone()),
    ]
    results = [(name, time_call(fn, repeats)) for name, fn in contenders]
    base = results[1][1]["median"]
    rows = []
    for name, r in results:
        rows.append((name, f"{1e3 * r['median']:.3f}", f"{1e3 * r['min']:.3f}",
                     f"{base / r['median']:.2f}x", f"{1e3 * r['first']:.1f}"))
    shape = "x".join(str(s) for s in g.shape)
    return "\n\n".join([
        f"Timing on one gradient batch g of shape ({shape}), {str(g.dtype).replace('torch.', '')}, "
        f"{g.numel() * g.element_size() / 2**20:.1f} MiB, measured in this run on the CPU: median and "
        f"minimum of {repeats} calls after warm-up; speed-up is relative to `g.abs().amax(1)`. "
        f"torch threads: {torch.get_num_threads()}, numba threads: {_numba_threads()}.",
        _md_table(("op", "median ms", "min ms", "speed-up vs amax", "first call ms"), rows),
    ])


def _numba_threads():
    try:
        import numba

        return numba.get_num_threads()
    except Exception:
        return "n/a"


# --------------------------------------------------------------------------- super-resolution

def vdsr_section(ctx: DemoContext) -> str:
    """A scikit-image crop shrunk by x3 (hotops imresize), enlarged by bicubic and by VDSR.

    Kim, Lee & Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional
    Networks" (CVPR 2016), Sec. 3.1: the network restores the bicubic-enlarged luminance
    (residual output, Eq. 5); Cb/Cr stay bicubic. PSNR on Y, shave = scale, peak 1.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import skimage.data

    from hotops.kernels.resize import imresize, psnr, rgb2ycbcr, ycbcr2rgb
    from hotops.models.vdsr import VDSR
    from hotops.sr import degrade

    scale = 3
    ctx.step("vdsr: load checkpoint")
    model = VDSR.pretrained()
    meta = model.metadata
    img = skimage.data.astronaut()[30:30 + 144, 150:150 + 144]  # the face, 144 = 48 * 3
    hr_rgb = img.astype(np.float64) / 255.0
    ycc = rgb2ycbcr(img).astype(np.float64) / 255.0  # 8-bit Y as the protocol reads it
    ctx.step("vdsr: upscale")
    t = time.perf_counter()
    small = imresize(ycc, scale=1.0 / scale)
    big = imresize(small, scale=float(scale))
    y_bic = degrade(ycc[..., 0], scale)
    y_sr = model.upscale_y(y_bic.astype(np.float32)).astype(np.float64)
    seconds = time.perf_counter() - t
    p_bic = psnr(y_bic, ycc[..., 0], shave=scale, data_range=1.0)
    p_sr = psnr(y_sr, ycc[..., 0], shave=scale, data_range=1.0)
    rgb_bic = ycbcr2rgb(np.clip(np.dstack([y_bic, big[..., 1:]]), 0, 1))
    rgb_sr = ycbcr2rgb(np.clip(np.dstack([y_sr, big[..., 1:]]), 0, 1))
    low = np.clip(ycbcr2rgb(np.clip(small, 0, 1)), 0, 1)

    fig_path = ctx.figure_path("vdsr.png")
    fig, axes = plt.subplots(1, 4, figsize=(12.4, 3.5))
    panels = [(low, f"input {small.shape[1]}x{small.shape[0]} (x1/{scale})"),
              (rgb_bic, f"bicubic x{scale}: {p_bic:.2f} dB"),
              (rgb_sr, f"VDSR x{scale}: {p_sr:.2f} dB"),
              (hr_rgb, "original")]
    for ax, (im, title) in zip(axes, panels):
        ax.imshow(np.clip(im, 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Super-resolution x3 (Y PSNR, shave 3): VDSR, Kim et al. 2016", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(fig_path, dpi=100)
    plt.close(fig)

    table = meta.get("psnr_table", {})
    rows = []
    for name, res in table.items():
        for s_, r in sorted(res.items(), key=lambda kv: int(kv[0])):
            rows.append((name, f"x{s_}", f"{r['psnr']:.2f}", f"{r['bicubic_psnr']:.2f}", f"{r['psnr'] - r['bicubic_psnr']:+.2f}"))
    trained = (f"{meta.get('iterations', '?')} iterations of batch {meta.get('batch', '?')} in "
               f"{meta.get('train_seconds', 0) / 60:.0f} min on {meta.get('hardware', '?')}")
    parts = [
        "Kim, Lee & Lee, *Accurate Image Super-Resolution Using Very Deep Convolutional Networks* "
        "(CVPR 2016): 20 3x3 conv layers predict the residual between the bicubic-enlarged "
        "luminance and the original. Here: a 144x144 crop of scikit-image's `astronaut`, shrunk "
        f"x1/{scale} and enlarged x{scale} with hotops' MATLAB-exact `imresize`; VDSR on Y, bicubic "
        f"on Cb/Cr ({seconds * 1000:.0f} ms).",
        f"![VDSR vs bicubic]({fig_path.name})",
        f"Crop PSNR (Y): bicubic {p_bic:.2f} dB, VDSR {p_sr:.2f} dB ({p_sr - p_bic:+.2f} dB). "
        f"Committed checkpoint: {trained}; the paper trains 9,960 iterations of batch 64 "
        "(Set5 37.53 / 33.66 / 31.35 dB), so this CPU-trained model is far from it.",
    ]
    if rows:
        parts.append("Measured by `hotops eval-sr` (stored in the checkpoint):\n\n"
                     + _md_table(("set", "scale", "VDSR dB", "bicubic dB", "gain"), rows))
    return "\n\n".join(parts)


#: The demo's capabilities, in report order. Each capability appends one Section line here
#: (its function may live in its own module: ``Section(name, title, "module:func", steps)``).
SECTIONS: list[Section] = [
    Section("saliency", "Class saliency maps: channel-max reduction (Simonyan et al. 2013)",
            saliency_section, steps=5),
    Section("vdsr", "Super-resolution (VDSR, Kim et al. 2016)", vdsr_section, steps=2),
    Section("defense", "L0-robust sparse Fourier defence: IHT + top-k CNN (Bafna et al. 2018)",
            "hotops.defense:demo_section", steps=3),
    Section("revnet", "Reversible residual networks: activation memory vs depth (Gomez et al. 2017)",
            "hotops.revnet_train:demo_section", steps=3),
    Section("nmf", "Parts-based faces: NMF by multiplicative updates (Lee & Seung 2001)", "hotops.nmf:demo_section", steps=3),
    Section("localization", "Saliency maps, GraphCut boxes and class models (Simonyan et al. 2013)", "hotops.loc_bench:demo_section", steps=4),
]


# --------------------------------------------------------------------------- driver

def _machine_md(info: dict) -> str:
    from hotops.cli import _LABELS

    keys = ("cpu", "cpu_count", "torch_threads", "numba_threads", "numba_threading_layer",
            "torch_cuda", "hotops_cuda_kernels", "cuda_simulator", "platform",
            "python", "hotops", "numpy", "numba", "torch", "scipy", "scikit-image", "matplotlib", "cupy")
    return _md_table(("", "value"), [(_LABELS.get(k, k), info.get(k)) for k in keys if k in info])


def _resolve(run):
    """A section's run function; ``"module:function"`` strings are imported here."""
    if isinstance(run, str):
        import importlib

        module_name, _, func = run.partition(":")
        return getattr(importlib.import_module(module_name), func)
    return run


def run_demo(out_dir="demo-out", quick: bool = False, sections=None, progress: bool = True) -> dict:
    """Run the demo's sections and write ``out_dir/report.md`` and its figures.

    Parameters
    ----------
    out_dir : path
        Created if needed; existing files of the same names are overwritten.
    quick : bool
        Smaller timing batches and fewer repeats (for tests).
    sections : list of str, optional
        Names from :data:`SECTIONS` to run (default: all).
    progress : bool
        Show a tqdm bar over the demo's steps.

    Returns
    -------
    dict with ``report`` (path of report.md), ``figures`` (paths), ``seconds`` (runtime),
    ``sections`` (names run).
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen = SECTIONS
    if sections is not None:
        known = {s.name: s for s in SECTIONS}
        unknown = [s for s in sections if s not in known]
        if unknown:
            raise ValueError(f"unknown demo sections {unknown}; available: {sorted(known)}")
        chosen = [known[s] for s in sections]

    total = 1 + sum(s.steps for s in chosen)
    with tqdm(total=total, desc="hotops demo", unit="step", disable=not progress) as bar:
        ctx = DemoContext(out, quick, bar)
        ctx.step("machine info")
        from hotops.cli import environment_info

        info = environment_info()
        parts = []
        for s in chosen:
            t = time.perf_counter()
            body = _resolve(s.run)(ctx)
            parts.append(f"## {s.title}\n\n{body}\n\n_Section time: {time.perf_counter() - t:.1f} s._")

    seconds = time.perf_counter() - t0
    head = [
        "# hotops demo report",
        f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} by `hotops demo"
        f"{' --quick' if quick else ''}` in {seconds:.1f} s, on embedded data only (the committed "
        "checkpoint and scikit-image sample images).",
        "## Machine",
        _machine_md(info),
    ]
    report = out / "report.md"
    report.write_text("\n\n".join(head + parts) + "\n", encoding="utf-8")
    return {"report": report, "figures": list(ctx.figures), "seconds": seconds,
            "sections": [s.name for s in chosen]}
