"""``hotops saliency IMAGE``: the saliency map and the GraphCut box of one image."""
from __future__ import annotations

import sys
from pathlib import Path

from hotops.cli import CommandFailed, UsageError

from ._args import fraction
from ._files import check_output, is_stdio, read_input

#: GraphCut time grows with the pixel count: larger images are scaled down to this side
MAX_SIDE = 512
#: the classifiers pool the image down by 8 (SmallCifarNet) to 16 (the localizer)
MIN_SIDE = 16


def add_arguments(p) -> None:
    from hotops.attribution import SALIENCY_METHODS

    p.description = ("Saliency map (Simonyan et al. 2013, Sec. 3.1) and GraphCut box (Sec. 3.2) of one "
                     "image through a classifier checkpoint. Existing outputs are kept unless --force.")
    p.add_argument("image", metavar="IMAGE",
                   help=f"an image file (PNG, JPEG, ...), at least {MIN_SIDE}x{MIN_SIDE}; larger than "
                        f"{MAX_SIDE} px: scaled down; - reads it from standard input (then give --out)")
    p.add_argument("--model", type=Path, default=None, metavar="CKPT",
                   help="a checkpoint of hotops train localizer or of hotops train small-cifar "
                        "(default: the committed localizer)")
    p.add_argument("--target", type=int, default=None, metavar="C", help="class index (default: the top class)")
    p.add_argument("--method", choices=SALIENCY_METHODS, default="gradient", help="how the map is computed")
    p.add_argument("--out", default=None, metavar="PREFIX",
                   help="output prefix: writes PREFIX_saliency.png and PREFIX_box.png "
                        "(default: the image's path without its suffix)")
    p.add_argument("--fg-quantile", type=fraction, default=0.95,
                   help="saliency quantile above which pixels seed the foreground")
    p.add_argument("--bg-quantile", type=fraction, default=0.30,
                   help="saliency quantile at or below which pixels seed the background")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs (never the input)")


def _load_any(path):
    """(model, meta) from a localizer or small_cifar checkpoint (both fully convolutional),
    read once with ``weights_only=True``."""
    from hotops.models._paths import load_checkpoint
    from hotops.models.localizer import load_localizer

    if path is None:
        return load_localizer()
    ckpt = load_checkpoint(path, "classifier checkpoint")  # missing or unreadable: exit 1
    if isinstance(ckpt, dict) and "canvas" in ckpt:
        return load_localizer(path)
    if isinstance(ckpt, dict) and isinstance(ckpt.get("arch"), dict) and "widths" in ckpt["arch"]:
        from hotops.models.small_cifar import load_small_cifar

        return load_small_cifar(path=path)
    raise CommandFailed(f"--model: {path} is neither a localizer nor a small_cifar checkpoint")


def run(args) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from hotops.attribution import saliency
    from hotops.data import read_image
    from hotops.localization import localize
    from hotops.models._paths import atomic_write

    if not args.fg_quantile > args.bg_quantile:
        raise UsageError(f"--fg-quantile ({args.fg_quantile}) must be above --bg-quantile ({args.bg_quantile})")
    if is_stdio(args.image) and args.out is None:
        raise UsageError("reading the image from standard input: give --out PREFIX for the two PNGs")
    prefix = args.out if args.out is not None else str(Path(args.image).with_suffix(""))
    outputs = [Path(f"{prefix}_saliency.png"), Path(f"{prefix}_box.png")]
    for out in outputs:
        check_output(out, force=args.force, inputs=(args.image, args.model), name="output")
    rgb8, _note = read_image(read_input(args.image), mode="rgb")  # missing or unreadable: exit 1
    h, w = rgb8.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise UsageError(f"the image is {w}x{h} pixels; saliency needs at least {MIN_SIDE} per side")
    pil = Image.fromarray(rgb8)
    model, meta = _load_any(args.model)
    classes = meta["classes"]
    if args.target is not None and not 0 <= args.target < len(classes):
        raise UsageError(f"--target {args.target} is out of range (0..{len(classes) - 1})")
    if max(pil.size) > MAX_SIDE:
        scale = MAX_SIDE / max(pil.size)
        size = (max(MIN_SIDE, round(pil.size[0] * scale)), max(MIN_SIDE, round(pil.size[1] * scale)))
        pil = pil.resize(size, Image.BILINEAR)
    rgb = np.asarray(pil, dtype=np.float32) / 255.0
    mean = torch.tensor(meta["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"], dtype=torch.float32).view(1, 3, 1, 1)
    x = (torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0) - mean) / std
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)[0]
    target = int(probs.argmax()) if args.target is None else args.target
    sal = saliency(model, x, target, args.method)[0].numpy()
    try:
        mask, box = localize(rgb, sal, fg_quantile=args.fg_quantile, bg_quantile=args.bg_quantile)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    hi = float(np.percentile(sal, 99.5)) or 1.0
    sal_img = Image.fromarray((np.clip(sal / hi, 0, 1) * 255).astype(np.uint8))
    over = rgb.copy()
    over[mask] = 0.55 * over[mask] + 0.45 * np.array([1.0, 0.2, 0.2], np.float32)
    x0, y0, x1, y1 = box
    for yy in (y0, y1 - 1):
        over[yy, x0:x1] = (0.0, 1.0, 0.0)
    for xx in (x0, x1 - 1):
        over[y0:y1, xx] = (0.0, 1.0, 0.0)
    box_img = Image.fromarray((np.clip(over, 0, 1) * 255).astype(np.uint8))
    for img, out in zip((sal_img, box_img), outputs):
        atomic_write(out, lambda f, img=img: img.save(f, format="PNG"))
    print(f"class {target} ({classes[target]}, p={float(probs[target]):.2f}); box (x0, y0, x1, y1) = {box}")
    print(f"wrote {outputs[0]} and {outputs[1]}", file=sys.stdout)
    return 0
