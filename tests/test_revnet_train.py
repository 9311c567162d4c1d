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
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == 2 and len(state["history"]) == 1
    again = rt.run_training(parse("--resume", str(ckpt), "--epochs", "2", "--no-progress", "--threads", "1"))
    assert again["steps"] == 4 and [h["step"] for h in again["history"]] == [2, 4]


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
