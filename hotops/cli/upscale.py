"""``hotops upscale IN OUT --scale S``: VDSR on the luminance, bicubic on the colour."""
from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.description = "Upscale an image: VDSR on Y, bicubic on Cb/Cr (grayscale: VDSR)."
    parser.add_argument("input", type=Path, metavar="IN")
    parser.add_argument("output", type=Path, metavar="OUT")
    parser.add_argument("--scale", type=float, required=True)
    parser.add_argument("--model", default="pretrained", metavar="CKPT")
    parser.add_argument("--threads", type=int, default=2)


def run(args) -> int:
    import torch
    from PIL import Image

    from hotops.apps.sr import upscale_image
    from hotops.cli import UsageError
    from hotops.data import read_image

    from .eval_sr import load_sr_model

    if not args.scale > 0:
        raise UsageError(f"--scale must be > 0, got {args.scale}")
    if not args.input.is_file():
        raise FileNotFoundError(f"input image not found: {args.input}")
    torch.set_num_threads(args.threads)
    try:
        img, note = read_image(args.input)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if note:
        print(f"note: {note}")
    model = load_sr_model(args.model)
    out = upscale_image(img, args.scale, model)
    Image.fromarray(out).save(args.output)
    print(f"wrote {args.output} ({out.shape[1]}x{out.shape[0]}, x{args.scale:g})")
    return 0
