"""hotops.data: locating the data folder, loaders, the CIFAR-10 decode cache."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from hotops import data
from hotops.data import data_available

needs_data = pytest.mark.skipif(
    not data_available(), reason="shared data folder not found (set HOTOPS_DATA or provide ../shared/data)"
)


# --------------------------------------------------------------------------- locating data

def test_env_var_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTOPS_DATA", str(tmp_path))
    assert data.data_root() == tmp_path.resolve()
    assert data_available()
    assert not data_available("mnist.npz")
    (tmp_path / "mnist.npz").write_bytes(b"")
    assert data_available("mnist.npz")


def test_env_var_not_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTOPS_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="HOTOPS_DATA"):
        data.data_root()
    assert data.data_root(required=False) is None
    assert not data_available()


def test_not_found_names_both_places(tmp_path, monkeypatch):
    # Pretend the package lives in tmp/repo/hotops and we run from tmp/work/sub.
    monkeypatch.delenv("HOTOPS_DATA", raising=False)
    monkeypatch.setattr(data, "__file__", str(tmp_path / "repo" / "hotops" / "data.py"))
    cwd = tmp_path / "work" / "sub"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    with pytest.raises(FileNotFoundError) as exc:
        data.data_root()
    msg = str(exc.value)
    assert str((tmp_path / "shared" / "data").resolve()) in msg  # repo root/../shared/data
    assert str((tmp_path / "work" / "shared" / "data").resolve()) in msg  # cwd/../shared/data
    assert "HOTOPS_DATA" in msg
    assert data.data_root(required=False) is None

    # The current-directory fallback is used when the repo-relative one is absent.
    (tmp_path / "work" / "shared" / "data").mkdir(parents=True)
    assert data.data_root() == (tmp_path / "work" / "shared" / "data").resolve()


def test_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTOPS_CACHE", str(tmp_path / "c"))
    assert data.cache_dir() == tmp_path / "c"
    assert (tmp_path / "c").is_dir()
    monkeypatch.delenv("HOTOPS_CACHE")
    assert data.cache_dir(create=False) == Path.home() / ".cache" / "hotops"


# --------------------------------------------------------------------------- CIFAR-10 (fake)

def _jpeg_buffer(images):
    from PIL import Image

    chunks, offsets = [], [0]
    for img in images:
        b = io.BytesIO()
        Image.fromarray(img).save(b, format="JPEG", quality=100, subsampling=0)
        chunks.append(np.frombuffer(b.getvalue(), dtype=np.uint8))
        offsets.append(offsets[-1] + len(chunks[-1]))
    return np.concatenate(chunks), np.asarray(offsets, dtype=np.int64)


@pytest.fixture
def fake_cifar(tmp_path):
    """A tiny npz in the layout of the shared cifar10_jpeg.npz: flat colour images
    (JPEG keeps them within a grey level or two)."""
    rng = np.random.default_rng(0)
    arrays, originals = {}, {}
    for split, n in (("train", 5), ("test", 3)):
        imgs = np.empty((n, 32, 32, 3), dtype=np.uint8)
        imgs[:] = rng.integers(20, 235, size=(n, 1, 1, 3), dtype=np.uint8)
        imgs[:, :16, :16] = 255 - imgs[:, :16, :16]  # one edge per image
        buf, off = _jpeg_buffer(imgs)
        arrays[f"jpeg_{split}"], arrays[f"offsets_{split}"] = buf, off
        arrays[f"y_{split}"] = np.arange(n, dtype=np.uint8) % 10
        originals[split] = imgs
    arrays["classes"] = np.array(data.CIFAR10_CLASSES)
    path = tmp_path / "cifar10_jpeg.npz"
    np.savez(path, **arrays)
    return path, originals


def test_cifar_decode_and_cache(fake_cifar, tmp_path, monkeypatch):
    path, originals = fake_cifar
    cache = tmp_path / "cache"
    x, y = data.load_cifar10("test", path=path, cache=cache, progress=False)
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8
    assert y.tolist() == [0, 1, 2]
    assert np.abs(x.astype(int) - originals["test"]).mean() < 2.0
    cached = list(cache.glob("cifar10_test_*.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(np.load(cached[0]), x)

    # The second call must come from the cache, not decode again.
    def boom(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(data, "_decode_jpegs", boom)
    x2, y2 = data.load_cifar10("test", path=path, cache=cache, progress=False)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)


def test_cifar_cache_env_and_no_cache(fake_cifar, tmp_path, monkeypatch):
    path, _ = fake_cifar
    monkeypatch.setenv("HOTOPS_CACHE", str(tmp_path / "envcache"))
    x, _ = data.load_cifar10("train", path=path, progress=False)
    assert x.shape == (5, 32, 32, 3)
    assert len(list((tmp_path / "envcache").glob("cifar10_train_*.npy"))) == 1
    x2, _ = data.load_cifar10("train", path=path, cache=False, progress=False)
    np.testing.assert_array_equal(x, x2)
    assert len(list((tmp_path / "envcache").glob("*.npy"))) == 1


def test_cifar_cache_follows_source(fake_cifar, tmp_path):
    """A changed npz gets a new cache entry instead of a stale decode; a truncated cache
    file is decoded again."""
    path, _ = fake_cifar
    cache = tmp_path / "cache"
    data.load_cifar10("test", path=path, cache=cache, progress=False)
    (first,) = cache.glob("*.npy")
    first.write_bytes(b"garbage")
    x, _ = data.load_cifar10("test", path=path, cache=cache, progress=False)
    assert x.shape == (3, 32, 32, 3)

    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["y_test"] = arrays["y_test"][::-1].copy()
    arrays["extra"] = np.zeros(100)
    np.savez(path, **arrays)
    _, y = data.load_cifar10("test", path=path, cache=cache, progress=False)
    assert y.tolist() == [2, 1, 0]
    assert len(list(cache.glob("cifar10_test_*.npy"))) == 2


def test_cifar_bad_split(fake_cifar):
    with pytest.raises(ValueError, match="split"):
        data.load_cifar10("valid", path=fake_cifar[0])


def test_cifar_classes_from_file(fake_cifar):
    assert data.cifar10_classes(fake_cifar[0]) == data.CIFAR10_CLASSES


def test_mnist_fake(tmp_path):
    p = tmp_path / "mnist.npz"
    np.savez(p, x_train=np.zeros((4, 28, 28), np.uint8), y_train=np.arange(4, dtype=np.uint8),
             x_test=np.ones((2, 28, 28), np.uint8), y_test=np.arange(2, dtype=np.uint8))
    d = data.load_mnist(p)
    assert sorted(d) == ["x_test", "x_train", "y_test", "y_train"]
    assert d["x_test"].shape == (2, 28, 28)


# --------------------------------------------------------------------------- real data

@needs_data
def test_mnist_real():
    d = data.load_mnist()
    assert d["x_train"].shape == (60000, 28, 28) and d["x_train"].dtype == np.uint8
    assert d["x_test"].shape == (10000, 28, 28)
    assert d["y_train"].shape == (60000,) and int(d["y_train"].max()) == 9


@needs_data
def test_cifar10_real_test_split(tmp_path):
    x, y = data.load_cifar10("test", cache=tmp_path, progress=False)
    assert x.shape == (10000, 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == [1000] * 10
    # Per-channel means close to CIFAR-10's (README: 0.4913/0.4821/0.4465 on train).
    means = x.reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(means, [0.4913, 0.4821, 0.4465], atol=0.01)
    assert data.cifar10_classes()[3] == "cat"


@needs_data
def test_sr_sets():
    set5 = data.load_sr_set("set5")
    assert [n for n, _ in set5] == [f"img_00{i}" for i in range(1, 6)]
    assert all(im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8 for _, im in set5)
    set14 = dict(data.load_sr_set("SET14"))
    assert len(set14) == 14
    assert set14["img_003"].ndim == 2  # the grayscale one
    folder = data.data_root() / "sr" / "set5"
    assert [n for n, _ in data.load_sr_set(folder)] == [n for n, _ in set5]
    assert [n for n, _ in data.load_sr_set(str(folder))] == [n for n, _ in set5]


def test_sr_set_unknown(tmp_path):
    with pytest.raises(FileNotFoundError, match="set5"):
        data.load_sr_set("set99")
    with pytest.raises(FileNotFoundError, match="no images"):
        data.load_sr_set(tmp_path)


def test_sr_set_from_directory(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((6, 7, 3), 9, np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(np.full((5, 4), 3, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((3, 3, 4), 200, np.uint8)).save(tmp_path / "c.png")  # RGBA
    (tmp_path / "notes.txt").write_text("not an image")
    got = data.load_sr_set(tmp_path)
    assert [n for n, _ in got] == ["a", "b", "c"]
    assert got[0][1].shape == (5, 4) and got[1][1].shape == (6, 7, 3) and got[2][1].shape == (3, 3, 3)


# --------------------------------------------------------------------------- sample images

def test_sample_images():
    imgs = data.sample_images()
    assert list(imgs) == list(data.SAMPLE_IMAGES)
    for im in imgs.values():
        assert im.dtype == np.float32 and im.ndim == 3 and im.shape[2] == 3
        assert 0.0 <= im.min() and im.max() <= 1.0
    small = data.sample_images(("chelsea", "camera"), size=40)
    assert all(im.shape == (40, 40, 3) for im in small.values())
    np.testing.assert_array_equal(small["camera"][..., 0], small["camera"][..., 2])  # grey -> RGB


def test_sample_images_unknown():
    with pytest.raises(ValueError, match="nonexistent"):
        data.sample_images(("nonexistent",))
