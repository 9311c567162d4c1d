"""Pack the super-resolution data for a GPU machine: what ``bench/gpu_check.sh`` trains on.

The device tool carries at most 64 MiB of working tree, and ``train291`` as RGB PNGs is
about 60 MB. VDSR trains on the luminance only (Kim et al. 2016, Sec. 4.1), so this writes
the 8-bit Y channel of every training image (MATLAB's ``rgb2ycbcr`` of the 8-bit RGB, the
same Y that ``hotops.apps.sr.build_patch_pool`` computes) as grayscale PNGs (about a third of
the size), and copies Set5 and Set14 unchanged, into a folder laid out like the data
folder::

    python bench/prepare_gpu_data.py .gpu_data      # then: echo /.gpu_data/ >> .git/info/exclude

and the GPU run carries ``.gpu_data`` and sets ``HOTOPS_DATA=.gpu_data`` (gpu_check.sh
trains VDSR when ``$HOTOPS_DATA/sr/train291`` exists).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to write (sr/train291 as Y, sr/set5, sr/set14)")
    args = p.parse_args(argv)
    from hotops.data import data_root
    from hotops.kernels.resize import rgb2ycbcr

    src = data_root() / "sr"
    dst = args.out / "sr"
    for name in ("set5", "set14"):
        shutil.copytree(src / name, dst / name, dirs_exist_ok=True)
    (dst / "train291").mkdir(parents=True, exist_ok=True)
    n, size = 0, 0
    for f in sorted((src / "train291").iterdir()):
        if f.suffix.lower() not in (".png", ".bmp", ".jpg", ".tif"):
            continue
        img = np.asarray(Image.open(f).convert("RGB"))
        y = rgb2ycbcr(img)[..., 0]
        out = dst / "train291" / f"{f.stem}.png"
        Image.fromarray(y).save(out, optimize=True)
        n += 1
        size += out.stat().st_size
    print(f"wrote {n} Y-channel images ({size / 2**20:.1f} MiB) and set5/set14 under {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
