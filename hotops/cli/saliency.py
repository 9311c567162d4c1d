"""``hotops saliency IMAGE``: the saliency map and the GraphCut box of one image."""
from __future__ import annotations

from pathlib import Path

from hotops.cli import UsageError

#: GraphCut time grows with the pixel count: larger images are scaled down to this side
MAX_SIDE = 512


def add_arguments(p) -> None:
    from hotops.attribution import SALIENCY_METHODS

    p.description = ("Saliency map (Simonyan et al. 2013, Sec. 3.1) and GraphCut box (Sec. 3.2) of one "
                     "image through a classifier checkpoint.")
    p.add_argument("image", type=Path, help=f"an image file (PNG, JPEG, ...); larger than {MAX_SIDE} px: scaled down")
    p.add_argument("--model", type=Path, default=None, metavar="CKPT",
                   help="a checkpoint of hotops train localizer (default: the committed localizer) "
                        "or of hotops train small-cifar (SmallCifarNet)")
    p.add_argument("--target", type=int, default=None, metavar="C", help="class index (default: the top class)")
    p.add_argument("--method", choices=SALIENCY_METHODS, default="gradient")
    p.add_argument("--out", type=Path, default=None, metavar="PREFIX",
                   help="output prefix (default: the image's path without suffix): writes "
                        "PREFIX_saliency.png and PREFIX_box.png")
    p.add_argument("--fg-quantile", type=float, default=0.95)
    p.add_argument("--bg-quantile", type=float, default=0.30)


def _load_any(path):
    """(model, meta) from a localizer or small_cifar checkpoint (both fully convolutional)."""
    import torch

    from hotops.models.localizer import load_localizer

    if path is None:
        return load_localizer()
    if not Path(path).exists():
        raise UsageError(f"--model: checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"--model: cannot read {path} as a torch checkpoint ({exc})") from exc
    if isinstance(ckpt, dict) and "canvas" in ckpt:
        return load_localizer(path)
    if isinstance(ckpt, dict) and "widths" in ckpt.get("arch", {}):
        from hotops.models.small_cifar import load_small_cifar

        return load_small_cifar(path=path)
    raise UsageError(f"--model: {path} is neither a localizer nor a small_cifar checkpoint")


def run(args) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from hotops.attribution import saliency
    from hotops.data import read_image
    from hotops.localization import localize

    if not args.image.exists():
        raise UsageError(f"image not found: {args.image}")
    try:
        rgb8, _note = read_image(args.image, mode="rgb")
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    pil = Image.fromarray(rgb8)
    model, meta = _load_any(args.model)
    if max(pil.size) > MAX_SIDE:
        scale = MAX_SIDE / max(pil.size)
        pil = pil.resize((max(1, round(pil.size[0] * scale)), max(1, round(pil.size[1] * scale))), Image.BILINEAR)
    rgb = np.asarray(pil, dtype=np.float32) / 255.0
    mean = torch.tensor(meta["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"], dtype=torch.float32).view(1, 3, 1, 1)
    x = (torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0) - mean) / std
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)[0]
    classes = meta["classes"]
    target = int(probs.argmax()) if args.target is None else args.target
    if not 0 <= target < len(classes):
        raise UsageError(f"--target {target} is out of range (0..{len(classes) - 1})")
    sal = saliency(model, x, target, args.method)[0].numpy()
    try:
        mask, box = localize(rgb, sal, fg_quantile=args.fg_quantile, bg_quantile=args.bg_quantile)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    prefix = args.out if args.out is not None else args.image.with_suffix("")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    hi = float(np.percentile(sal, 99.5)) or 1.0
    sal_png = Path(f"{prefix}_saliency.png")
    Image.fromarray((np.clip(sal / hi, 0, 1) * 255).astype(np.uint8)).save(sal_png)
    over = rgb.copy()
    over[mask] = 0.55 * over[mask] + 0.45 * np.array([1.0, 0.2, 0.2], np.float32)
    x0, y0, x1, y1 = box
    for yy in (y0, y1 - 1):
        over[yy, x0:x1] = (0.0, 1.0, 0.0)
    for xx in (x0, x1 - 1):
        over[y0:y1, xx] = (0.0, 1.0, 0.0)
    box_png = Path(f"{prefix}_box.png")
    Image.fromarray((np.clip(over, 0, 1) * 255).astype(np.uint8)).save(box_png)
    print(f"class {target} ({classes[target]}, p={float(probs[target]):.2f}); box (x0, y0, x1, y1) = {box}")
    print(f"wrote {sal_png} and {box_png}")
    return 0
