"""The commands and their files: no silent overwrite, never over an input, whole files at
exactly the path given, ``-`` for stdin/stdout, one clear line (exit 1 or 2) for files that
cannot be read, help that shows every default, defaults that never write into the package."""
from __future__ import annotations

import argparse
import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hotops import cli


def _png_bytes(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels (a decompression bomb's header) with almost no data."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))


@pytest.fixture
def photo(tmp_path):
    import skimage.data

    path = tmp_path / "in.png"
    path.write_bytes(_png_bytes(skimage.data.astronaut()[100:132, 180:212]))
    return path


def _one_line(err: str, prefix: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix) and "Traceback" not in err, err


def _no_temp_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# --- upscale -------------------------------------------------------------------------------------


def test_upscale_refuses_to_overwrite_without_force(photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    assert cli.main(["upscale", str(photo), str(out), "--scale", "2"]) == 2
    _one_line(capsys.readouterr().err, "hotops upscale: error: OUT")
    assert out.read_bytes() == b"precious"
    assert cli.main(["upscale", str(photo), str(out), "--scale", "2", "--force"]) == 0
    assert f"wrote {out} (64x64, x2)" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size == (64, 64)
    _no_temp_files(tmp_path)


def test_upscale_never_writes_over_its_input(photo, tmp_path, capsys):
    before = photo.read_bytes()
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.png"
    link.symlink_to(photo)
    for out in (photo, tmp_path / "sub" / ".." / "in.png", link):
        for extra in ([], ["--force"]):
            assert cli.main(["upscale", str(photo), str(out), "--scale", "2", *extra]) == 2
            err = capsys.readouterr().err
            assert "refusing to write over an input" in err, err
    assert photo.read_bytes() == before


@pytest.mark.parametrize("name", ["out.xyz", "out", "out.psd"])
def test_upscale_unknown_output_extension(photo, tmp_path, capsys, name):
    assert cli.main(["upscale", str(photo), str(tmp_path / name), "--scale", "2"]) == 2
    _one_line(capsys.readouterr().err, "hotops upscale: error: OUT")
    assert not (tmp_path / name).exists()


def test_upscale_output_format_that_cannot_hold_the_image(photo, tmp_path, capsys):
    assert cli.main(["upscale", str(photo), str(tmp_path / "out.xbm"), "--scale", "2"]) == 2  # XBM: 1-bit only
    _one_line(capsys.readouterr().err, "hotops upscale: error: cannot write a RGB image as XBM")
    assert not (tmp_path / "out.xbm").exists()
    _no_temp_files(tmp_path)


def test_upscale_other_formats_by_extension(photo, tmp_path):
    for name, fmt in (("o.jpg", "JPEG"), ("o.tif", "TIFF"), ("o.bmp", "BMP")):
        assert cli.main(["upscale", str(photo), str(tmp_path / name), "--scale", "1.5"]) == 0
        with Image.open(tmp_path / name) as im:
            assert im.format == fmt and im.size == (48, 48)


def _bad_images(tmp_path, photo):
    good = photo.read_bytes()
    files = {
        "truncated.png": good[: len(good) // 2],
        "header.png": good[:20],
        "text.png": b"this is not an image\n",
        "empty.png": b"",
        "bomb.png": _png_header_only(30000, 30000),      # Pillow's DecompressionBombError
        "bomb-warning.png": _png_header_only(10000, 10000),  # Pillow's DecompressionBombWarning
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return files


def test_upscale_unreadable_images_fail_with_one_line(photo, tmp_path, capsys):
    for name in _bad_images(tmp_path, photo):
        assert cli.main(["upscale", str(tmp_path / name), str(tmp_path / "o.png"), "--scale", "2"]) == 1, name
        err = capsys.readouterr().err
        _one_line(err, f"hotops upscale: error: cannot read {tmp_path / name}")
        if name.startswith("bomb"):
            assert "decompression bomb" in err
    assert not (tmp_path / "o.png").exists()


def test_upscale_stdin_and_stdout(photo, tmp_path):
    """``upscale in.png -`` writes a PNG to stdout (messages to stderr); ``upscale - out.png``
    reads the image from stdin."""
    run = subprocess.run([sys.executable, "-m", "hotops", "upscale", str(photo), "-", "--scale", "2"],
                         capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    with Image.open(io.BytesIO(run.stdout)) as im:
        assert im.format == "PNG" and im.size == (64, 64)
        piped = np.asarray(im)
    assert b"wrote standard output (64x64, x2)" in run.stderr
    out = tmp_path / "from-stdin.png"
    run = subprocess.run([sys.executable, "-m", "hotops", "upscale", "-", str(out), "--scale", "2"],
                         input=photo.read_bytes(), capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im), piped)
    bad = subprocess.run([sys.executable, "-m", "hotops", "upscale", "-", str(tmp_path / "x.png"), "--scale", "2"],
                         input=b"not an image", capture_output=True, timeout=300)
    assert bad.returncode == 1 and b"cannot read standard input as an image" in bad.stderr
    assert b"Traceback" not in bad.stderr


# --- saliency ------------------------------------------------------------------------------------


def test_saliency_tiny_image_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "dot.png"
    path.write_bytes(_png_bytes(np.zeros((1, 1, 3), np.uint8)))
    assert cli.main(["saliency", str(path)]) == 2
    _one_line(capsys.readouterr().err, "hotops saliency: error: the image is 1x1 pixels")
    assert not list(tmp_path.glob("dot_*"))


def test_saliency_unreadable_images(photo, tmp_path, capsys):
    for name in _bad_images(tmp_path, photo):
        assert cli.main(["saliency", str(tmp_path / name), "--out", str(tmp_path / "res")]) == 1, name
        _one_line(capsys.readouterr().err, f"hotops saliency: error: cannot read {tmp_path / name}")
    assert cli.main(["saliency", str(tmp_path / "missing.png")]) == 1
    _one_line(capsys.readouterr().err, "hotops saliency: error: image not found")
    assert not list(tmp_path.glob("res_*"))


def test_saliency_outputs_overwrite_and_input(tmp_path, capsys):
    import skimage.data

    img = tmp_path / "x_box.png"
    img.write_bytes(_png_bytes(skimage.data.astronaut()[::8, ::8]))
    before = img.read_bytes()
    # PREFIX x makes x_box.png: the input itself, refused even with --force
    for extra in ([], ["--force"]):
        assert cli.main(["saliency", str(img), "--out", str(tmp_path / "x"), *extra]) == 2
        assert "refusing to write over an input" in capsys.readouterr().err
    assert img.read_bytes() == before
    assert cli.main(["saliency", str(img), "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert cli.main(["saliency", str(img), "--out", str(tmp_path / "r")]) == 2
    _one_line(capsys.readouterr().err, "hotops saliency: error: output")
    assert cli.main(["saliency", str(img), "--out", str(tmp_path / "r"), "--force"]) == 0
    _no_temp_files(tmp_path)


def test_saliency_reads_stdin(photo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(photo.read_bytes())))
    assert cli.main(["saliency", "-", "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s_saliency.png").exists() and (tmp_path / "s_box.png").exists()
    assert cli.main(["saliency", "-"]) == 2
    assert "give --out" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expect", [
    (["--fg-quantile", "1.5"], "argument --fg-quantile: must be between 0 and 1"),
    (["--bg-quantile", "nan"], "argument --bg-quantile: must be a finite number"),
    (["--fg-quantile", "0.2", "--bg-quantile", "0.5"], "must be above --bg-quantile"),
])
def test_saliency_bad_numbers(photo, capsys, argv, expect):
    assert cli.main(["saliency", str(photo), *argv]) == 2
    assert expect in capsys.readouterr().err


# --- every command -------------------------------------------------------------------------------


def _subparser(parser, name):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


def _all_parsers():
    from hotops.cli.train import TRAINERS

    for name in cli.COMMANDS:
        if name == "train":
            train = _subparser(cli.build_parser(["train"]), "train")
            for trainer in TRAINERS:
                yield f"train {trainer}", _subparser(train, trainer)
        else:
            yield name, _subparser(cli.build_parser([name]), name)


def test_every_option_has_help_that_shows_its_default():
    for name, parser in _all_parsers():
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"hotops {name} {action.dest}: no help text"
            if not action.option_strings or action.required or action.default is False:
                continue
            shown = (action.help % {"default": action.default} if "%(default)" in action.help else action.help)
            if action.default is None:  # nothing to show: the help says what happens without it
                assert "default" in action.help, f"hotops {name} {action.option_strings}: {action.help!r}"
            else:
                flat = " ".join(text.split())
                assert f"{' '.join(shown.split())} (default: " in flat or "default" in shown, \
                    f"hotops {name} {action.option_strings}: default not shown"


def test_help_shows_defaults(capsys):
    assert cli.main(["upscale", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "torch CPU threads (default: 2)" in out and "(default: pretrained)" in out
    assert cli.main(["train", "vdsr", "--help"]) == 0
    assert "(default: vdsr.pt)" in " ".join(capsys.readouterr().out.split())


def test_training_defaults_never_write_into_the_package(tmp_path, monkeypatch):
    from hotops.apps.revnet_train import default_out
    from hotops.apps.sr import state_path
    from hotops.models._paths import CHECKPOINT_DIR

    monkeypatch.setenv("HOTOPS_CACHE", str(tmp_path / "cache"))
    package = Path(CHECKPOINT_DIR).resolve().parent
    written = []
    for name, parser in _all_parsers():
        if not name.startswith("train"):
            continue
        args = parser.parse_args([])
        if name == "train vdsr":
            written += [args.out, state_path(args)]
        elif name == "train revnet":
            written += [default_out(args)]
        else:
            written += [args.out]
    for path in written:
        assert package not in Path(path).resolve().parents, path


@pytest.mark.parametrize("trainer, out", [("localizer", "localizer.pt"), ("small-cifar", "small_cifar.pt"),
                                          ("defense", "defense_topk.pt")])
def test_training_refuses_to_overwrite_its_output(tmp_path, monkeypatch, capsys, trainer, out):
    monkeypatch.chdir(tmp_path)
    Path(out).write_bytes(b"precious")
    assert cli.main(["train", trainer]) == 2
    _one_line(capsys.readouterr().err, f"hotops train {trainer}: error: --out")
    assert Path(out).read_bytes() == b"precious"


@pytest.mark.parametrize("argv, expect", [
    (["train", "localizer", "--lr", "nan"], "--lr must be > 0 and finite"),
    (["train", "small-cifar", "--lr", "inf"], "--lr must be > 0 and finite"),
    (["train", "small-cifar", "--threads", "0"], "--threads must be >= 1"),
    (["train", "defense", "--lr", "-1"], "--lr must be > 0"),
    (["train", "defense", "--threads", "0"], "--threads must be >= 1"),
    (["train", "vdsr", "--iterations", "3", "--threads", "0"], "--threads must be >= 1"),
    (["train", "revnet", "--budget", "-5"], "--budget must be > 0"),
    (["bench", "--threads", "0"], "argument --threads: must be an integer >= 1"),
])
def test_bad_numbers_are_refused_at_once(tmp_path, monkeypatch, capsys, argv, expect):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOTOPS_CACHE", str(tmp_path / "cache"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err
    assert not [p for p in tmp_path.iterdir() if p.name != "cache"]


def test_library_log_is_shown_only_while_a_command_runs(monkeypatch, capsys):
    import logging

    logger = logging.getLogger("hotops")
    before = (list(logger.handlers), logger.level, logger.propagate)

    def fake_run(args):
        logging.getLogger("hotops.apps.fake").info("progress %d", 7)
        logging.getLogger("hotops.apps.fake").warning("careful")
        return 0

    import hotops.cli.info

    monkeypatch.setattr(hotops.cli.info, "run", fake_run)
    assert cli.main(["info"]) == 0
    captured = capsys.readouterr()
    assert "progress 7" in captured.out and "careful" in captured.err
    assert (list(logger.handlers), logger.level, logger.propagate) == before


def test_exit_status_convention_is_written_down():
    doc = cli.__doc__
    for words in ("1, failure", "2, usage", "128 + N", "--force"):
        assert words in doc, words
    md = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for words in ("Exit status", "--force", "standard input", "128 + N"):
        assert words in md, words


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    from hotops.models._paths import atomic_write

    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def fails(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fails)
    assert path.read_bytes() == b"old"
    _no_temp_files(tmp_path)
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
