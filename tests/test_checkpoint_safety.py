"""A checkpoint file never runs code: every loader of a file the user names reads it with
``torch.load(weights_only=True)`` and refuses a crafted one with a clear error.

The crafted file is a torch checkpoint whose unpickling would write a marker file (through
``exec``); every test checks that the marker never appears and that the error names the file.
"""
from __future__ import annotations

import argparse
import glob

import pytest

torch = pytest.importorskip("torch")

from hotops import cli  # noqa: E402
from hotops.data import UnreadableFileError  # noqa: E402
from hotops.models._paths import CHECKPOINT_DIR, load_checkpoint  # noqa: E402


class _WritesMarker:
    """Unpickled, this object runs ``exec(code)``: what a hostile checkpoint can do."""

    def __init__(self, marker):
        self.code = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('pwned')"

    def __reduce__(self):
        return (exec, (self.code,))


@pytest.fixture
def hostile(tmp_path):
    """(path of a crafted checkpoint shaped like every hotops format, marker path)."""
    marker = tmp_path / "marker"
    path = tmp_path / "crafted.pt"
    evil = _WritesMarker(marker)
    torch.save({"format": "hotops-vdsr-1", "state_dict": {}, "config": {}, "metadata": evil, "model": {},
                "arch": {"widths": [1, 1, 1, 1]}, "canvas": 96, "args": {}, "payload": evil}, path)
    yield path, marker
    assert not marker.exists(), "loading the crafted checkpoint ran its code"


@pytest.fixture
def image(tmp_path):
    import numpy as np
    from PIL import Image

    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def _refused(exc_info, path):
    text = str(exc_info.value)
    assert str(path) in text and "refusing to load" in text and "run code" in text, text


def test_the_crafted_file_runs_code_when_unpickled_unsafely(tmp_path):
    """The fixture has teeth: ``weights_only=False`` (the old VDSR.load and train resumes) runs it."""
    marker = tmp_path / "marker"
    torch.save({"metadata": _WritesMarker(marker)}, tmp_path / "x.pt")
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.read_text() == "pwned"


def test_load_checkpoint(hostile):
    path, _ = hostile
    with pytest.raises(UnreadableFileError) as info:
        load_checkpoint(path, "VDSR checkpoint")
    _refused(info, path)
    assert isinstance(info.value, ValueError)


def test_vdsr_load_and_pretrained(hostile):
    from hotops.models.vdsr import VDSR

    path, _ = hostile
    for load in (VDSR.load, VDSR.pretrained):
        with pytest.raises(ValueError) as info:
            load(path)
        _refused(info, path)


def test_vdsr_train_resume(hostile):
    import numpy as np

    from hotops.apps.sr import train
    from hotops.models.vdsr import VDSR

    path, _ = hostile
    pool = np.zeros((4, 41, 41), np.float32)
    with pytest.raises(ValueError) as info:
        train(VDSR(depth=2, channels=2), pool, pool, batch=2, progress=False, resume=path)
    _refused(info, path)


def test_revnet_resume(hostile):
    from hotops.apps import revnet_train as rt
    from hotops.cli.train import TRAINERS

    path, _ = hostile
    p = argparse.ArgumentParser()
    TRAINERS["revnet"][1](p)
    with pytest.raises(ValueError) as info:
        rt.run_training(p.parse_args(["--resume", str(path), "--no-progress"]))
    _refused(info, path)


def test_classifier_loaders(hostile):
    from hotops.models.localizer import load_localizer
    from hotops.models.mnist_cnn import load_defense_model
    from hotops.models.small_cifar import load_small_cifar

    path, _ = hostile
    for load in (lambda: load_localizer(path), lambda: load_small_cifar(path=path),
                 lambda: load_defense_model(path=path)):
        with pytest.raises(ValueError) as info:
            load()
        _refused(info, path)


@pytest.mark.parametrize("command", [
    ["upscale", "{image}", "{tmp}/out.png", "--scale", "2", "--model", "{ckpt}"],
    ["eval-sr", "--model", "{ckpt}", "--set", "{tmp}", "--scales", "2"],
    ["saliency", "{image}", "--model", "{ckpt}", "--out", "{tmp}/res"],
    ["train", "vdsr", "--resume", "{ckpt}", "--out", "{tmp}/v.pt"],
    ["train", "revnet", "--resume", "{ckpt}"],
])
def test_commands_refuse_it_with_one_line(hostile, image, tmp_path, capsys, command, monkeypatch):
    path, _ = hostile
    monkeypatch.setenv("HOTOPS_CACHE", str(tmp_path / "cache"))
    argv = [a.format(image=image, tmp=tmp_path, ckpt=path) for a in command]
    assert cli.main(argv) == 1  # a file that cannot be read: a failure
    err = capsys.readouterr().err
    assert "refusing to load" in err and str(path) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.png").exists() and not list(tmp_path.glob("res_*"))


@pytest.mark.parametrize("content", [b"this is a text file\n", b"", b"PK\x03\x04truncated"])
def test_a_file_that_is_no_checkpoint(tmp_path, image, capsys, content):
    bad = tmp_path / "model.pt"
    bad.write_bytes(content)
    for argv in (["upscale", str(image), str(tmp_path / "o.png"), "--scale", "2", "--model", str(bad)],
                 ["saliency", str(image), "--model", str(bad), "--out", str(tmp_path / "r")]):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert f"cannot read {bad}" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_checkpoint_of_another_model(tmp_path, image, capsys):
    """A readable checkpoint of the wrong kind: a clear failure, not a traceback."""
    from hotops.models.mnist_cnn import defense_checkpoint

    assert cli.main(["upscale", str(image), str(tmp_path / "o.png"), "--scale", "2",
                     "--model", str(defense_checkpoint("topk"))]) == 1
    assert "is not a hotops VDSR checkpoint" in capsys.readouterr().err
    assert cli.main(["saliency", str(image), "--model", str(defense_checkpoint("topk")),
                     "--out", str(tmp_path / "r")]) == 1
    assert "neither a localizer nor a small_cifar checkpoint" in capsys.readouterr().err


def test_committed_checkpoints_load_safely_and_are_small():
    paths = sorted(glob.glob(str(CHECKPOINT_DIR / "*.pt")))
    assert {p.rsplit("/", 1)[-1] for p in paths} >= {"vdsr.pt", "localizer.pt", "small_cifar.pt",
                                                      "defense_normal.pt", "defense_topk.pt"}
    for p in paths:
        assert CHECKPOINT_DIR.joinpath(p).stat().st_size < 5 * 2**20, p
        ckpt = torch.load(p, weights_only=True)  # no Python objects besides tensors and plain data
        assert isinstance(ckpt, dict) and "state_dict" in ckpt, p


def test_vdsr_checkpoint_metadata_is_plain():
    ckpt = torch.load(CHECKPOINT_DIR / "vdsr.pt", weights_only=True)

    def walk(v):
        if isinstance(v, dict):
            assert all(isinstance(k, (str, int)) for k in v)
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        else:
            assert v is None or type(v) in (str, int, float, bool), type(v)

    walk(ckpt["metadata"])
    assert type(ckpt["metadata"]["torch"]) is str
