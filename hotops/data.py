"""Data sets for tests, benchmarks, training and the demo.

The project's data live outside the repository (``../shared/data`` next to the project
root; see ``shared/data/README.md``). This module finds that folder, loads MNIST,
CIFAR-10 (stored as JPEG bytes, decoded once and cached as a uint8 ``.npy``), the
super-resolution sets, and the scikit-image sample images that the demo embeds.

Where the data are looked for, first hit wins:

1. ``$HOTOPS_DATA`` if set (an error if it is set but is not a directory);
2. ``<repo root>/../shared/data``, the repo root being the parent of the ``hotops`` package
   folder (an editable install or a checkout);
3. ``<current directory>/../shared/data``.

Decoded CIFAR-10 arrays are cached under ``$HOTOPS_CACHE`` or ``~/.cache/hotops``.
Nothing here imports torch.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

__all__ = [
    "CIFAR10_CLASSES",
    "SR_SETS",
    "SAMPLE_IMAGES",
    "UnreadableFileError",
    "cache_dir",
    "cifar10_classes",
    "data_available",
    "data_root",
    "load_cifar10",
    "load_mnist",
    "load_sr_set",
    "read_image",
    "sample_images",
]

ENV_DATA = "HOTOPS_DATA"
ENV_CACHE = "HOTOPS_CACHE"

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
SR_SETS = ("set5", "set14", "train291")
#: scikit-image sample images used by default (all ship with scikit-image, no download).
SAMPLE_IMAGES = ("chelsea", "coffee", "astronaut", "rocket")

_SPLITS = ("train", "test")


class UnreadableFileError(ValueError):
    """A file that exists cannot be read as what it should be: truncated, corrupt, of another
    format, too large to decode safely, or holding objects hotops refuses to unpickle.

    A ``ValueError``, raised by :func:`read_image` and the checkpoint loaders
    (``hotops.models._paths.load_checkpoint``); the command line reports it as a failure
    (exit status 1) rather than as bad usage.
    """

_IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff"}


# --------------------------------------------------------------------------- locations

def _candidates() -> list[Path]:
    """The default places tried when ``$HOTOPS_DATA`` is not set, in order."""
    repo_root = Path(__file__).resolve().parent.parent
    out = []
    for base in (repo_root, Path.cwd()):
        p = (base / ".." / "shared" / "data").resolve()
        if p not in out:
            out.append(p)
    return out


def data_root(required: bool = True) -> Path | None:
    """Return the data folder, or None when it is absent and ``required`` is False.

    Raises
    ------
    FileNotFoundError
        When ``required`` and no folder is found; the message names every place tried
        and how to point hotops at a copy (``HOTOPS_DATA``).
    """
    env = os.environ.get(ENV_DATA)
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            return p.resolve()
        if required:
            raise FileNotFoundError(
                f"{ENV_DATA}={env!r} is set but is not a directory; point it at the folder "
                "holding mnist.npz, cifar10_jpeg.npz and sr/, or unset it"
            )
        return None
    tried = _candidates()
    for p in tried:
        if p.is_dir():
            return p
    if required:
        places = " and ".join(str(p) for p in tried)
        raise FileNotFoundError(
            f"hotops data folder not found: tried {places}. Set {ENV_DATA}=/path/to/data "
            "(the folder holding mnist.npz, cifar10_jpeg.npz and sr/)."
        )
    return None


def data_available(*names: str) -> bool:
    """True when the data folder exists (and holds each of ``names``, paths relative to it)."""
    try:
        root = data_root(required=False)
    except OSError:
        return False
    if root is None:
        return False
    return all((root / n).exists() for n in names)


def _data_file(name: str) -> Path:
    p = data_root() / name
    if not p.exists():
        raise FileNotFoundError(f"{name} not found in the data folder {p.parent}")
    return p


def cache_dir(create: bool = True) -> Path:
    """The folder for decoded caches: ``$HOTOPS_CACHE`` or ``~/.cache/hotops``."""
    env = os.environ.get(ENV_CACHE)
    p = Path(env).expanduser() if env else Path.home() / ".cache" / "hotops"
    if create:
        p.mkdir(parents=True, exist_ok=True)
    return p


# --------------------------------------------------------------------------- MNIST

def load_mnist(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """MNIST in its canonical split.

    Returns
    -------
    dict with ``x_train`` uint8 (60000, 28, 28), ``y_train`` uint8 (60000,),
    ``x_test`` uint8 (10000, 28, 28), ``y_test`` uint8 (10000,).
    """
    p = Path(path) if path is not None else _data_file("mnist.npz")
    with np.load(p) as f:
        return {k: np.asarray(f[k]) for k in ("x_train", "y_train", "x_test", "y_test")}


# --------------------------------------------------------------------------- CIFAR-10

def _check_split(split: str) -> str:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    return split


def _cache_path(src: Path, split: str, cdir: Path) -> Path:
    """A cache file name tied to the source file (path, size, mtime), so a changed or
    different npz never serves a stale decode."""
    st = src.stat()
    key = f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    digest = hashlib.sha1(key).hexdigest()[:12]
    return cdir / f"cifar10_{split}_{digest}.npy"


def _decode_jpegs(buf: np.ndarray, offsets: np.ndarray, desc: str, progress: bool) -> np.ndarray:
    from PIL import Image
    from tqdm.auto import tqdm

    n = len(offsets) - 1
    out = None
    for i in tqdm(range(n), desc=desc, unit="img", disable=not progress, mininterval=0.5):
        with Image.open(io.BytesIO(buf[offsets[i]:offsets[i + 1]].tobytes())) as im:
            a = np.asarray(im.convert("RGB"))
        if out is None:
            out = np.empty((n,) + a.shape, dtype=np.uint8)
        elif a.shape != out.shape[1:]:
            raise ValueError(f"{desc}: image {i} has shape {a.shape}, expected {out.shape[1:]}")
        out[i] = a
    if out is None:
        out = np.empty((0, 32, 32, 3), dtype=np.uint8)
    return out


def load_cifar10(
    split: str = "train",
    *,
    path: str | os.PathLike | None = None,
    cache: str | os.PathLike | None | bool = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 images and labels of one split.

    The shared copy stores JPEG bytes; the first call decodes them with Pillow (with a
    progress bar) and caches the uint8 array as ``.npy``; later calls memory-map nothing
    and just ``np.load`` the cache (about 150 MB for the training split).

    Parameters
    ----------
    split : {'train', 'test'}
    path : path, optional
        The ``cifar10_jpeg.npz`` file (default: the one in :func:`data_root`).
    cache : path or False, optional
        Cache folder (default :func:`cache_dir`); ``False`` decodes without caching.
    progress : bool
        Show a tqdm bar while decoding.

    Returns
    -------
    images : uint8 array (N, 32, 32, 3), RGB
    labels : uint8 array (N,), indices into :func:`cifar10_classes`
    """
    split = _check_split(split)
    src = Path(path) if path is not None else _data_file("cifar10_jpeg.npz")
    with np.load(src) as f:
        labels = np.asarray(f[f"y_{split}"])
        target = None
        if cache is not False:
            cdir = Path(cache) if cache not in (None, True) else cache_dir()
            cdir.mkdir(parents=True, exist_ok=True)
            target = _cache_path(src, split, cdir)
            if target.exists():
                try:
                    images = np.load(target)
                except (OSError, ValueError):
                    images = None  # truncated or foreign file: decode again
                if images is not None and images.shape[0] == len(labels) and images.dtype == np.uint8:
                    return images, labels
        images = _decode_jpegs(f[f"jpeg_{split}"], f[f"offsets_{split}"],
                               f"decoding CIFAR-10 {split}", progress)
    if len(images) != len(labels):
        raise ValueError(f"{src}: {len(images)} images but {len(labels)} labels in split {split!r}")
    if target is not None:
        tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, images)
        os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
    return images, labels


def cifar10_classes(path: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The class names stored with the data (falls back to the standard names)."""
    try:
        src = Path(path) if path is not None else _data_file("cifar10_jpeg.npz")
        with np.load(src) as f:
            if "classes" in f.files:
                return tuple(str(c) for c in f["classes"])
    except FileNotFoundError:
        pass
    return CIFAR10_CLASSES


# --------------------------------------------------------------------------- SR sets

_READ_MODES = ("auto", "rgb", "gray")


def read_image(path, mode: str = "auto") -> tuple[np.ndarray, str | None]:
    """Read an image file as 8-bit pixels; the one image reader of hotops.

    Parameters
    ----------
    path : path of a PNG, JPEG, BMP, TIFF... file (anything Pillow opens), or a binary file
        object (``sys.stdin.buffer``, ``io.BytesIO``) holding one
    mode : {'auto', 'rgb', 'gray'}
        'auto': grayscale files give (H, W), colour files (H, W, 3); 'rgb': always
        (H, W, 3); 'gray': always (H, W) (ITU-R 601 luma, Pillow's ``convert('L')``).

    Returns
    -------
    (array, note): uint8 pixels, and a sentence saying what was converted (None when the
    file was plain 8-bit L or RGB).

    Notes
    -----
    16-bit grayscale (Pillow modes ``I;16*`` and ``I``, as 16-bit PNGs open) is scaled to 8
    bits as round(v * 255 / 65535), whatever the values; float images (mode ``F``) are read
    as [0, 1] and scaled by 255. An alpha channel is dropped (not composited), palette
    images are expanded. Raises ``ValueError`` for a bad ``mode``,
    :class:`UnreadableFileError` (a ``ValueError``) for a file Pillow cannot decode
    (truncated, corrupt, not an image) and for one larger than Pillow's decompression-bomb
    limit (``PIL.Image.MAX_IMAGE_PIXELS``; its warning counts as the error), and
    ``FileNotFoundError`` for a missing file.
    """
    import struct
    import warnings
    import zlib

    from PIL import Image

    if mode not in _READ_MODES:
        raise ValueError(f"mode must be one of {_READ_MODES}, got {mode!r}")
    if hasattr(path, "read"):
        source, name = path, getattr(path, "name", None) or "the input stream"
        if not isinstance(name, str) or name == "<stdin>":
            name = "standard input"
    else:
        source = name = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"image not found: {source}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                im.load()
                arr, note = _pixels_of(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableFileError(
            f"cannot read {name}: the image is larger than the {Image.MAX_IMAGE_PIXELS} pixels Pillow "
            f"decodes safely ({str(exc).split(',')[0]}); a decompression bomb?") from None
    except (OSError, SyntaxError, EOFError, ValueError, struct.error, zlib.error, IndexError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a file-system error (permission denied...), not the file's content
        why = str(exc).split(" <_io.")[0] or type(exc).__name__
        raise UnreadableFileError(f"cannot read {name} as an image ({why})") from None
    if mode == "rgb" and arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif mode == "gray" and arr.ndim == 3:
        from PIL import Image as _Image

        arr = np.asarray(_Image.fromarray(arr).convert("L"), np.uint8)
    return np.ascontiguousarray(arr), note


def _pixels_of(im) -> tuple[np.ndarray, str | None]:
    """(uint8 pixels, note) of an opened, loaded Pillow image (see :func:`read_image`)."""
    src = im.mode
    note = None
    if src in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        v = np.asarray(im).astype(np.float64)
        arr = np.clip(np.round(v * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        note = f"{src} (16-bit) grayscale scaled to 8 bits"
    elif src == "F":
        arr = np.clip(np.round(np.asarray(im, np.float64) * 255.0), 0, 255).astype(np.uint8)
        note = "float grayscale scaled from [0, 1] to 8 bits"
    elif src == "L":
        arr = np.asarray(im, np.uint8)
    elif src == "RGB":
        arr = np.asarray(im, np.uint8)
    elif src in ("LA", "1") or (src == "P" and im.palette is not None and im.palette.mode == "L"
                                and "transparency" not in im.info):
        arr = np.asarray(im.convert("L"), np.uint8)
        note = f"{src} image converted to grayscale" + (", alpha dropped" if src == "LA" else "")
    else:
        alpha = "A" in src or "transparency" in im.info
        arr = np.asarray(im.convert("RGB"), np.uint8)
        note = f"{src} image converted to RGB" + (", alpha dropped" if alpha else "")
    return arr, note


def load_sr_set(name: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """A super-resolution image set, sorted by file name.

    Parameters
    ----------
    name : 'set5', 'set14', 'train291' or a directory path
        A directory is read as is (every png/bmp/jpg/tif file in it).

    Returns
    -------
    list of (file stem, image): uint8 (H, W, 3) for colour, (H, W) for grayscale
    (Set14's img_003).
    """
    key = str(name).lower()
    if key in SR_SETS:
        folder = data_root() / "sr" / key
    else:
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"super-resolution set {str(name)!r} is neither one of {SR_SETS} nor a directory"
            )
    if not folder.is_dir():
        raise FileNotFoundError(f"super-resolution set folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return [(p.stem, read_image(p)[0]) for p in files]


# --------------------------------------------------------------------------- sample images

def _square_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then resize to size x size (antialiased)."""
    from skimage.transform import resize

    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = img[top:top + s, left:left + s]
    return resize(crop, (size, size), order=1, anti_aliasing=True, preserve_range=True)


def sample_images(names=SAMPLE_IMAGES, size: int | None = None) -> dict[str, np.ndarray]:
    """scikit-image's bundled sample images as float32 RGB in [0, 1].

    Parameters
    ----------
    names : iterable of str
        Functions of ``skimage.data`` (default: chelsea, coffee, astronaut, rocket).
        Grayscale images are repeated over three channels, an alpha channel is dropped.
    size : int, optional
        When given, each image is centre-cropped to a square and resized to size x size.

    Returns
    -------
    dict name -> float32 array (H, W, 3), in the order of ``names``.
    """
    import skimage.data

    out = {}
    for name in names:
        fn = getattr(skimage.data, name, None)
        if fn is None or not callable(fn):
            raise ValueError(f"unknown scikit-image sample image {name!r}")
        img = np.asarray(fn())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        elif img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"sample image {name!r} has unsupported shape {img.shape}")
        if np.issubdtype(img.dtype, np.integer):
            scale = float(np.iinfo(img.dtype).max)
            img = img.astype(np.float32) / scale
        else:
            img = img.astype(np.float32)
        if size is not None:
            img = _square_resize(img, int(size)).astype(np.float32)
        out[name] = np.clip(img, 0.0, 1.0)
    return out
