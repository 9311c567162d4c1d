"""``hotops train revnet`` (options, a tiny run with resume) and the demo section's measurements."""
from __future__ import annotations

import argparse

import pytest
import torch

from _support import needs_data
from hotops.apps import revnet_train as rt
from hotops.cli.train import TRAINERS


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def parse(*argv):
    p = argparse.ArgumentParser()
    TRAINERS["revnet"][1](p)  # the options of `hotops train revnet`
    return p.parse_args(list(argv))


@pytest.mark.parametrize("argv, match", [
    (("--arch", "vgg16", "--epochs", "1"), "--arch must be one of"),
    (("--arch", "revnet38"), "give --epochs N or --budget SECONDS"),
    (("--budget", "-3"), "--budget must be > 0"),
    (("--budget", "nan"), "--budget must be > 0 and finite"),
    (("--epochs", "inf"), "--epochs must be > 0 and finite"),
    (("--epochs", "1", "--lr", "0"), "--lr must be > 0"),
    (("--epochs", "1", "--momentum", "-1"), "--momentum must be >= 0"),
    (("--epochs", "1", "--threads", "0"), "--threads must be >= 1"),
    (("--epochs", "1", "--batch", "0"), "--batch must be >= 1"),
    (("--arch", "resnet32", "--epochs", "1", "--stored"), "--stored applies to RevNets only"),
])
def test_bad_options(argv, match):
    with pytest.raises(ValueError, match=match):
        rt._check_args(parse(*argv))


def test_schedule():
    from hotops.apps.schedule import lr_at

    assert [lr_at(0.1, p, "step", rt.STEP_MILESTONES) for p in (0.0, 0.49, 0.5, 0.74, 0.75, 1.0)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_cli_lists_the_trainer(capsys):
    from hotops.cli import main

    assert TRAINERS["revnet"][0] == "hotops.apps.revnet_train"
    assert main(["train", "revnet", "--help"]) == 0
    assert "--arch" in capsys.readouterr().out


@needs_data("cifar10_jpeg.npz")
def test_tiny_run_checkpoint_and_resume(tmp_path):
    ckpt = tmp_path / "r.pt"
    args = parse("--arch", "revnet38", "--epochs", "1", "--batch", "16", "--train-subset", "32", "--test-subset", "16",
                 "--out", str(ckpt), "--no-progress", "--threads", "1")
    first = rt.run_training(args)
    assert first["steps"] == 2 and ckpt.exists() and ckpt.with_suffix(".json").exists()
    assert 0.0 <= first["final_test_acc"] <= 1.0
    state = torch.load(ckpt, weights_only=True)  # tensors and plain data only
    assert state["step"] == 2 and len(state["history"]) == 1
    again = rt.run_training(parse("--resume", str(ckpt), "--epochs", "2", "--no-progress", "--threads", "1"))
    assert again["steps"] == 4 and [h["step"] for h in again["history"]] == [2, 4]


@needs_data("cifar10_jpeg.npz")
def test_interrupted_mid_epoch_then_resumed_equals_uninterrupted(tmp_path, monkeypatch, capsys):
    """SIGINT in the middle of an epoch: the step finishes, the checkpoint is saved (with the
    epoch's order of the images), the command exits 130; resuming ends with the very weights
    (BatchNorm statistics too) of a run never stopped."""
    import os
    import signal

    from hotops.cli import main

    common = ["--arch", "revnet38", "--epochs", "2", "--batch", "8", "--train-subset", "32", "--test-subset", "8",
              "--no-progress", "--threads", "1"]
    straight, stopped = tmp_path / "straight.pt", tmp_path / "stopped.pt"
    rt.run_training(parse(*common, "--out", str(straight)))
    real_augment, calls = rt._augment, [0]

    def augment_then_interrupt(x, rng):
        calls[0] += 1
        if calls[0] == 6:  # the second step of the second epoch (4 steps per epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return real_augment(x, rng)

    monkeypatch.setattr(rt, "_augment", augment_then_interrupt)
    before = signal.getsignal(signal.SIGINT)
    assert main(["train", "revnet", *common, "--out", str(stopped)]) == 130
    assert signal.getsignal(signal.SIGINT) is before
    err = capsys.readouterr().err
    assert f"resume with: hotops train revnet --resume {stopped}" in err and "Traceback" not in err
    saved = torch.load(stopped, weights_only=True)
    assert saved["step"] == 6 and saved["perm"] is not None and saved["scheduler"]["last_epoch"] == 6
    monkeypatch.setattr(rt, "_augment", real_augment)
    assert main(["train", "revnet", *common, "--out", str(stopped)]) == 2  # a fresh run would overwrite it
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["train", "revnet", "--resume", str(stopped), "--no-progress", "--threads", "1"]) == 0
    a, b = torch.load(straight, weights_only=True), torch.load(stopped, weights_only=True)
    assert a["step"] == b["step"] == 8
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert [h["step"] for h in b["history"]] == [4, 8]


def test_missing_resume_is_a_clear_error(tmp_path, capsys):
    from hotops.cli import main

    assert main(["train", "revnet", "--resume", str(tmp_path / "none.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"hotops train revnet: error: RevNet training checkpoint not found: {tmp_path / 'none.pt'}"


def test_default_checkpoint_is_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTOPS_CACHE", str(tmp_path))
    assert rt.default_out(parse("--epochs", "1")) == tmp_path / "revnet38.pt"
    assert rt.default_out(parse("--resume", "r.pt")).name == "r.pt"


def test_saved_bytes_vs_depth_shapes():
    mem = rt.saved_bytes_vs_depth([1, 4], channels=4, size=8, batch=2)
    assert mem["hotops"][1] == mem["hotops"][4]  # one output kept, whatever the depth
    assert mem["plain autograd"][4] > 3 * mem["plain autograd"][1]
    assert mem["torch.utils.checkpoint"][4] == 4 * mem["torch.utils.checkpoint"][1]  # one input per segment
    if "memcnn" in mem:  # its outputs are context attributes: found by walking the graph
        assert mem["memcnn"][1] == mem["memcnn"][4] > 0
    if "revlib" in mem:  # grows only by the RNG state it keeps per module
        assert mem["revlib"][4] - mem["revlib"][1] < mem["plain autograd"][4] - mem["plain autograd"][1]


def test_demo_section(tmp_path):
    class Ctx:
        quick = True
        steps = 0

        def step(self, desc):
            self.steps += 1

        def figure_path(self, name):
            return tmp_path / name

    ctx = Ctx()
    from hotops.demo.revnet import revnet_section

    md = revnet_section(ctx)
    assert ctx.steps == 3 and (tmp_path / "revnet_memory.png").exists()
    assert "| hotops |" in md and "BatchNorm running statistics equal: True" in md
