"""The hotops command line: info, bad usage, bench delegation."""
from __future__ import annotations

import subprocess
import sys

import pytest

from hotops import cli


def test_info_mentions_threads(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for label in ("Python", "NumPy", "Numba", "PyTorch", "SciPy", "torch threads", "numba threads",
                  "numba threading layer", "hotops CUDA kernels", "numba CUDA simulator", "data folder"):
        assert label in out, label
    line = next(l for l in out.splitlines() if l.startswith("numba threads"))
    assert int(line.split()[-1]) >= 1


def test_info_without_data(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOTOPS_DATA", str(tmp_path / "absent"))
    assert cli.main(["info"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("data folder"))
    assert "not found" in line


def test_environment_info_keys():
    from hotops.environment import environment_info

    info = environment_info(probe_threads=False)
    assert {"python", "numpy", "numba", "torch", "cupy", "torch_threads", "cpu", "data_root"} <= set(info)


@pytest.mark.parametrize(
    "argv, expect",
    [
        ([], "choose a command"),
        (["frobnicate"], "invalid choice"),
        (["demo", "--bogus"], "unrecognized arguments"),
        (["info", "extra"], "unrecognized arguments"),
    ],
)
def test_bad_usage_exits_2(argv, expect, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert expect in err
    assert "Traceback" not in err


def test_demo_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert cli.main(["demo", "--out", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_help_and_version(capsys):
    assert cli.main(["--help"]) == 0
    assert "info" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0
    assert "hotops" in capsys.readouterr().out


def test_bench_delegates(monkeypatch, capsys, tmp_path):
    import hotops.bench

    calls = {}

    def fake_run(out_dir, ops=None, quick=False, extra_args=(), *, threads=None):
        calls.update(out=str(out_dir), ops=ops, quick=quick, extra=extra_args, threads=threads)
        return {"returncode": 0}

    monkeypatch.setattr(hotops.bench, "run", fake_run)
    assert cli.main(["bench", "--quick", "--ops", "nmf", "--out", str(tmp_path), "--", "-k", "cpu"]) == 0
    assert calls == {"out": str(tmp_path), "ops": ["nmf"], "quick": True, "extra": ("-k", "cpu"), "threads": None}
    assert cli.main(["bench", "--nope"]) == 2  # the bench command's own parser rejects it


def test_bench_lists_the_shipped_suites(capsys):
    assert cli.main(["bench", "--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"channel_max", "nmf", "topk_threshold", "resize", "reversible", "saliency", "clip"} <= set(listed)


def test_bench_unknown_op_is_usage_error(capsys):
    assert cli.main(["bench", "--ops", "frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "no benchmark suite for op(s) 'frobnicate'" in err and "Traceback" not in err


def test_bench_missing_module(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hotops.cli.bench", None)  # import raises ImportError
    assert cli.main(["bench"]) == 2
    err = capsys.readouterr().err
    assert "hotops bench: error" in err and "Traceback" not in err


def test_python_dash_m():
    ok = subprocess.run([sys.executable, "-m", "hotops", "info"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "numba threads" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "hotops", "nonsense"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr and "Traceback" not in bad.stderr


# --- super-resolution subcommands (VDSR) ---------------------------------------------------------


def test_sr_commands_listed_and_help_does_not_import_torch():
    code = ("import sys; from hotops import cli; p = cli.build_parser(); "
            "h = p.format_help(); assert 'eval-sr' in h and 'upscale' in h and 'train' in h, h; "
            "argv = ['train', 'vdsr', '--budget', '60']; "
            "cli.build_parser(argv).parse_args(argv); "
            "assert 'torch' not in sys.modules, 'building the parser imported torch'")
    ok = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr


def test_eval_sr_bicubic_on_a_directory(tmp_path, capsys):
    import numpy as np
    import skimage.data
    from PIL import Image

    Image.fromarray(skimage.data.astronaut()[:60, :66]).save(tmp_path / "a.png")
    Image.fromarray(skimage.data.camera()[:48, :50]).save(tmp_path / "b.png")
    assert cli.main(["eval-sr", "--model", "bicubic", "--set", str(tmp_path), "--scales", "2", "3"]) == 0
    out = capsys.readouterr().out
    assert "2 images" in out and "| x2 |" in out and "| x3 |" in out and "bicubic PSNR" in out


@pytest.mark.parametrize("argv, expect", [
    (["train"], "required"),
    (["train", "vdsr", "--theta", "0", "--iterations", "1"], "--theta must be > 0"),
    (["train", "vdsr", "--lr", "0", "--iterations", "1"], "--lr must be > 0"),
    (["train", "vdsr", "--scales", "0", "--iterations", "1"], "scale must be a positive integer"),
    (["train", "vdsr"], "--budget"),
    (["eval-sr", "--model", "bicubic", "--scales", "-2"], "scale must be a positive integer"),
    (["upscale", "a.png", "b.png"], "--scale"),
])
def test_sr_bad_usage(argv, expect, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err


# --- command registry (COMMANDS, hotops.cli.train.TRAINERS) ---------------------------------------


def test_command_module_loaded_only_when_chosen(monkeypatch, tmp_path, capsys):
    mod = tmp_path / "hotops_fake_command.py"
    mod.write_text("import sys\n"
                   "def add_arguments(p):\n    p.add_argument('--n', type=int, default=1)\n"
                   "def run(args):\n    print('ran', args.n)\n    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "fake", ("hotops_fake_command", "a fake command"))
    monkeypatch.delitem(sys.modules, "hotops_fake_command", raising=False)
    assert cli.main(["info"]) == 0
    assert "hotops_fake_command" not in sys.modules
    assert cli.main(["fake", "--n", "3"]) == 0
    assert "ran 3" in capsys.readouterr().out


def test_missing_module_is_a_clear_error(monkeypatch, capsys):
    from hotops.cli import train

    monkeypatch.setitem(cli.COMMANDS, "ghost", ("hotops_no_such_module", "missing"))
    monkeypatch.setitem(train.TRAINERS, "ghost", ("hotops_no_such_module", lambda p: None, "missing"))
    assert cli.main(["ghost", "--x"]) == 2
    assert "cannot import hotops_no_such_module" in capsys.readouterr().err
    assert cli.main(["train", "ghost"]) == 2
    assert "cannot import hotops_no_such_module" in capsys.readouterr().err
