"""VDSR (Kim, Lee & Lee, CVPR 2016): model, training loop, checkpoints, protocol, CLI."""
from __future__ import annotations

import numpy as np
import pytest

from _support import needs_data

torch = pytest.importorskip("torch")

from hotops.models import VDSR  # noqa: E402
from hotops.models.vdsr import CHECKPOINT  # noqa: E402
from hotops.apps.schedule import lr_at  # noqa: E402
from hotops.apps.sr import STEP_MILESTONES, build_patch_pool, degrade, evaluate, modcrop, train  # noqa: E402


def _crop_y(size=96, scale=3):
    import skimage.data

    from hotops.kernels.resize import rgb2ycbcr

    img = skimage.data.astronaut()[30:30 + size, 150:150 + size]
    hr = modcrop(rgb2ycbcr(img)[..., 0].astype(np.float64) / 255.0, scale)
    return hr, degrade(hr, scale)


def _synthetic_pool(n=96, seed=0):
    """Smooth random images, degraded x2 / x3: a tiny patch pool."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    hr = np.stack([gaussian_filter(rng.random((42, 42)), 1.2) for _ in range(n)])
    hr = (hr - hr.min()) / (hr.max() - hr.min())
    hr = hr[:, :41, :41]
    lr = np.stack([degrade(h[:36, :36], 2 + i % 2)[:36, :36] for i, h in enumerate(hr)])
    lr = np.pad(lr, ((0, 0), (0, 5), (0, 5)), mode="edge")
    return lr.astype(np.float32), hr.astype(np.float32)


# --- architecture -------------------------------------------------------------------------------


def test_architecture_matches_the_paper():
    m = VDSR()
    convs = m.convs
    assert len(convs) == 20
    assert (convs[0].in_channels, convs[0].out_channels) == (1, 64)
    assert all((c.in_channels, c.out_channels) == (64, 64) for c in convs[1:-1])
    assert (convs[-1].in_channels, convs[-1].out_channels) == (64, 1)
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(l, torch.nn.ReLU) for l in m.body) == 19
    assert not isinstance(m.body[-1], torch.nn.ReLU)
    # He init: std sqrt(2 / (9 * fan_in)), zero bias
    w = convs[5].weight
    assert abs(float(w.detach().std()) - (2 / (9 * 64)) ** 0.5) < 0.005
    assert float(convs[5].bias.detach().abs().max()) == 0.0
    assert sum(p.numel() for p in m.parameters()) == 665_921


def test_zero_last_layer_is_identity():
    m = VDSR()
    torch.nn.init.zeros_(m.convs[-1].weight)
    x = torch.rand(2, 1, 17, 23)
    with torch.no_grad():
        torch.testing.assert_close(m(x), x, rtol=0, atol=0)


def test_small_variant_and_bad_config():
    m = VDSR(depth=3, channels=4)
    assert len(m.convs) == 3
    with pytest.raises(ValueError, match="depth"):
        VDSR(depth=1)
    with pytest.raises(ValueError, match="channels"):
        VDSR(channels=0)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        m(torch.zeros(1, 3, 8, 8))


def test_upscale_y_tiled_equals_untiled():
    torch.manual_seed(0)
    m = VDSR(depth=6, channels=8)
    y = np.random.default_rng(1).random((45, 38)).astype(np.float32) * 0.8 + 0.1
    whole = m.upscale_y(y, tile=1000)
    tiled = m.upscale_y(y, tile=16)
    assert whole.shape == y.shape and whole.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
    assert whole.min() >= 0 and whole.max() <= 1
    # too little overlap changes the result (the check has teeth)
    assert np.abs(m.upscale_y(y, tile=16, overlap=0) - whole).max() > 1e-4
    # torch (N, 1, H, W) in, same out
    t = torch.from_numpy(y)[None, None].double()
    out = m.upscale_y(t, tile=16)
    assert out.shape == t.shape and out.dtype == torch.float64
    np.testing.assert_allclose(out[0, 0].numpy(), whole, atol=1e-5)


def test_upscale_y_bad_input():
    m = VDSR(depth=2, channels=2)
    with pytest.raises(ValueError, match="NaN"):
        m.upscale_y(np.full((8, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        m.upscale_y(np.zeros((1, 2, 8, 8), np.float32))
    with pytest.raises(TypeError, match="float"):
        m.upscale_y(np.zeros((8, 8), np.uint8))
    with pytest.raises(TypeError):
        m.upscale_y([[0.5]])


# --- training ------------------------------------------------------------------------------------


def test_lr_schedule_steps_every_quarter():
    assert [lr_at(0.1, i / 100, "step", STEP_MILESTONES) for i in (0, 24, 25, 49, 50, 75, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 1e-3, 1e-4, 1e-4])


def test_cosine_schedule_and_bad_schedule():
    assert [lr_at(1e-4, i / 100, "cosine") for i in (0, 50, 100)] == pytest.approx([1e-4, 5e-5, 0.0], abs=1e-12)
    assert lr_at(1.0, 0.25, "cosine") == pytest.approx(0.5 * (1 + np.cos(np.pi / 4)))
    with pytest.raises(ValueError, match="schedule"):
        lr_at(0.1, 0.0, "linear")


def test_adam_cosine_steps_reduce_the_loss_and_bad_optimizer():
    torch.manual_seed(0)
    lr, hr = _synthetic_pool(64)
    lr, hr = lr[:, :24, :24], np.clip(hr[:, :24, :24] + 0.1, 0, 1.2)
    m = VDSR(depth=5, channels=8)
    torch.nn.init.zeros_(m.convs[-1].weight)
    x, y = torch.from_numpy(lr)[:, None], torch.from_numpy(hr)[:, None]
    with torch.no_grad():
        before = float(0.5 * (m(x) - y).pow(2).mean())
    hist = train(m, lr, hr, iterations=30, batch=8, base_lr=3e-3, progress=False, seed=0,
                 optimizer="adamw", schedule="cosine")
    with torch.no_grad():
        after = float(0.5 * (m(x) - y).pow(2).mean())
    assert hist["config"]["optimizer"] == "adamw" and hist["config"]["schedule"] == "cosine"
    assert after < 0.5 * before, (before, after)
    with pytest.raises(ValueError, match="optimizer"):
        train(m, lr, hr, iterations=1, progress=False, optimizer="rmsprop")
    with pytest.raises(ValueError, match="schedule"):
        train(m, lr, hr, iterations=1, progress=False, schedule="linear")


def test_resume_refuses_another_optimizer(tmp_path):
    lr, hr = _synthetic_pool(32)
    state = tmp_path / "state.pt"
    m = VDSR(depth=3, channels=4)
    train(m, lr, hr, iterations=4, batch=4, progress=False, state_path=state, stop_at=2)
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        train(m, lr, hr, iterations=4, batch=4, progress=False, resume=state, optimizer="adamw")


def test_training_steps_reduce_the_loss():
    """A few SGD steps with adjustable clipping on a tiny pool whose residual has a learnable
    part (bicubic error + a brightness offset of 0.1) cut the loss."""
    torch.manual_seed(0)
    lr, hr = _synthetic_pool(64)
    lr, hr = lr[:, :24, :24], np.clip(hr[:, :24, :24] + 0.1, 0, 1.2)
    m = VDSR(depth=5, channels=8)
    torch.nn.init.zeros_(m.convs[-1].weight)
    x, y = torch.from_numpy(lr)[:, None], torch.from_numpy(hr)[:, None]
    with torch.no_grad():
        before = float(0.5 * (m(x) - y).pow(2).mean())
    hist = train(m, lr, hr, iterations=30, batch=8, base_lr=0.1, progress=False, seed=0)
    with torch.no_grad():
        after = float(0.5 * (m(x) - y).pow(2).mean())
    assert hist["iterations"] == 30 and len(hist["losses"]) == 30
    assert 0.0 <= hist["clip_fraction"] <= 1.0
    assert after < 0.5 * before, (before, after)


def test_budget_sizes_the_schedule():
    lr, hr = _synthetic_pool(32)
    m = VDSR(depth=3, channels=4)
    hist = train(m, lr, hr, budget=1.0, batch=4, progress=False, probe=3)
    assert hist["total"] >= 3 and hist["iterations"] == hist["total"]


def test_iterations_with_a_generous_budget_run_exactly_that_many():
    lr, hr = _synthetic_pool(32)
    m = VDSR(depth=3, channels=4)
    hist = train(m, lr, hr, iterations=7, budget=600.0, batch=4, progress=False, probe=3)
    assert hist["total"] == 7 and hist["iterations"] == 7
    # fewer iterations than the timing probe: still exactly that many
    hist = train(m, lr, hr, iterations=2, budget=600.0, batch=4, progress=False, probe=3)
    assert hist["total"] == 2 and hist["iterations"] == 2 and len(hist["losses"]) == 2


def _assert_bitwise_equal(m1, m2):
    for (k, p1), p2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(p1, p2), k


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_resume_round_trip(tmp_path, schedule):
    """Stopped at iteration 4 and resumed, the run ends with the very weights of a run that
    was never stopped (the schedule's steps at 25/50/75% fall on both sides of the stop)."""
    lr, hr = _synthetic_pool(32)
    state = tmp_path / "state.pt"
    torch.manual_seed(0)
    a = VDSR(depth=3, channels=4)
    b = VDSR(depth=3, channels=4)
    b.load_state_dict(a.state_dict())
    kw = dict(iterations=8, batch=4, progress=False, seed=3, schedule=schedule)
    train(a, lr, hr, **kw)  # straight through
    train(b, lr, hr, **kw, state_path=state, stop_at=4)
    saved = torch.load(state, weights_only=True)  # plain data and tensors only
    assert saved["iteration"] == 4 and "optimizer" in saved and "rng" in saved
    assert saved["scheduler"]["last_epoch"] == 4
    c = VDSR(depth=3, channels=4)
    hist = train(c, lr, hr, progress=False, resume=state, batch=4, schedule=schedule)
    assert hist["iterations"] == 8
    _assert_bitwise_equal(a, c)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_interrupted_by_a_signal_then_resumed_equals_uninterrupted(tmp_path, monkeypatch, signame):
    """SIGINT during training: the step finishes, the state is saved, TrainingInterrupted is
    raised, the caller's SIGINT handler is back; resuming gives the same weights bit for bit."""
    import os
    import signal

    import hotops.bindings
    from hotops.apps._training import TrainingInterrupted

    torch.set_num_threads(1)
    lr, hr = _synthetic_pool(32)
    state = tmp_path / "state.pt"
    torch.manual_seed(0)
    a, b, c = (VDSR(depth=3, channels=4) for _ in range(3))
    b.load_state_dict(a.state_dict())
    train(a, lr, hr, iterations=10, batch=4, progress=False, seed=5)

    real_clip, calls = hotops.bindings.clip_grad_adjustable_, [0]

    def clip_then_interrupt(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            os.kill(os.getpid(), getattr(signal, signame))  # Ctrl-C (or a kill) during the third step
        return real_clip(*args, **kwargs)

    monkeypatch.setattr(hotops.bindings, "clip_grad_adjustable_", clip_then_interrupt)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as info:
        train(b, lr, hr, iterations=10, batch=4, progress=False, seed=5, state_path=state)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    stop = info.value
    sig = getattr(signal, signame)
    assert stop.signum == sig and stop.exit_status == 128 + sig and stop.step == 3 and stop.total == 10
    assert str(state) in str(stop)
    monkeypatch.setattr(hotops.bindings, "clip_grad_adjustable_", real_clip)
    assert torch.load(state, weights_only=True)["iteration"] == 3
    hist = train(c, lr, hr, batch=4, progress=False, resume=state)
    assert hist["iterations"] == 10
    _assert_bitwise_equal(a, c)


def test_training_outside_the_main_thread_installs_no_handler():
    """Signals reach the main thread only: elsewhere training runs without handlers."""
    import threading

    lr, hr = _synthetic_pool(8)
    result = {}

    def work():
        try:
            result["hist"] = train(VDSR(depth=2, channels=2), lr, hr, iterations=2, batch=2, progress=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert "error" not in result and result["hist"]["iterations"] == 2


def test_resume_missing_or_foreign_state(tmp_path):
    from hotops.data import UnreadableFileError

    lr, hr = _synthetic_pool(4)
    m = VDSR(depth=2, channels=2)
    with pytest.raises(FileNotFoundError, match="VDSR training state not found"):
        train(m, lr, hr, batch=2, progress=False, resume=tmp_path / "absent.pt")
    m.save(tmp_path / "release.pt")
    with pytest.raises(UnreadableFileError, match="not a VDSR training state"):
        train(m, lr, hr, batch=2, progress=False, resume=tmp_path / "release.pt")


def test_release_checkpoint_round_trip(tmp_path):
    m = VDSR(depth=4, channels=8)
    path = m.save(tmp_path / "v.pt", metadata={"iterations": 3})
    back = VDSR.load(path)
    assert back.metadata == {"iterations": 3} and back.depth == 4 and not back.training
    for p, q in zip(m.parameters(), back.parameters()):
        torch.testing.assert_close(p.half().float(), q)
    with pytest.raises(FileNotFoundError, match="missing"):
        VDSR.pretrained(tmp_path / "absent.pt")
    # the file holds plain data only, and keeps its metadata types
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format"] == "hotops-vdsr-1" and all(v.dtype == torch.float16 for v in ckpt["state_dict"].values())
    import numpy as np_

    m.save(tmp_path / "w.pt", metadata={"torch": torch.__version__, "n": np_.int64(3), "s": (2, 3)})
    assert torch.load(tmp_path / "w.pt", weights_only=True)["metadata"] == {"torch": str(torch.__version__),
                                                                           "n": 3, "s": [2, 3]}


def test_patch_pool_from_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTOPS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    images = [("a", rng.integers(0, 256, (90, 130, 3)).astype(np.uint8)), ("b", rng.integers(0, 256, (50, 44, 3)).astype(np.uint8))]
    lr, hr = build_patch_pool(images, scales=(2, 3), max_patches=None)
    assert lr.shape == hr.shape and lr.shape[1:] == (41, 41)
    assert hr.dtype == np.uint8 and lr.dtype == np.float16
    # (2 x 3 patches in image a + 1 in b) at each scale
    assert len(hr) == 2 * (2 * 3 + 1)
    assert list((tmp_path / "cache").glob("vdsr_pool_*.npz"))
    lr2, _ = build_patch_pool(images, scales=(2, 3), max_patches=None)  # from the cache
    np.testing.assert_array_equal(lr, lr2)


@pytest.mark.parametrize("kw, match", [
    (dict(theta=0.0), "theta"), (dict(theta=-1.0), "theta"), (dict(base_lr=0.0), "base_lr"),
    (dict(batch=0), "batch"), (dict(iterations=0), "iterations"), (dict(budget=-1.0, iterations=None), "budget"),
])
def test_train_bad_input(kw, match):
    lr, hr = _synthetic_pool(4)
    args = dict(iterations=1, batch=2, progress=False)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        train(VDSR(depth=2, channels=2), lr, hr, **args)


@pytest.mark.parametrize("scale", [0, -2, 2.5, float("nan")])
def test_bad_scale(scale):
    hr, _ = _crop_y(48, 2)
    with pytest.raises(ValueError, match="scale"):
        degrade(hr, scale)
    with pytest.raises(ValueError, match="scale"):
        evaluate(None, [("x", np.zeros((24, 24), np.uint8))], scales=[scale])


# --- the committed checkpoint --------------------------------------------------------------------


def test_pretrained_checkpoint_is_small_and_documented():
    assert CHECKPOINT.is_file(), "train it with `hotops train vdsr --budget 900`"
    assert CHECKPOINT.stat().st_size < 5 * 2**20
    m = VDSR.pretrained()
    meta = m.metadata
    for key in ("scales", "iterations", "batch", "train_seconds", "hardware", "psnr_table"):
        assert key in meta, key
    assert set(meta["psnr_table"]) >= {"set5"}


def test_pretrained_beats_bicubic_on_a_sample_crop():
    from hotops.kernels.resize import psnr

    torch.set_num_threads(2)
    m = VDSR.pretrained()
    # measured with the committed checkpoint: +0.18 / +0.49 / +0.93 dB on this crop
    for scale in (2, 3, 4):
        hr, lr = _crop_y(96, scale)
        sr = m.upscale_y(lr.astype(np.float32)).astype(np.float64)
        assert psnr(sr, hr, shave=scale) > psnr(lr, hr, shave=scale) + 0.1, scale


@pytest.mark.slow
@needs_data("sr", "set5")
def test_eval_set5_matches_recorded_table():
    from hotops.data import load_sr_set

    m = VDSR.pretrained()
    res = evaluate(m, load_sr_set("set5"), scales=(3,), ssim_too=False)[3]
    assert res["bicubic_psnr"] == pytest.approx(30.39, abs=0.05)  # the protocol is right
    assert res["psnr"] > res["bicubic_psnr"] + 1.0  # the committed checkpoint: +1.55 dB
    assert res["psnr"] == pytest.approx(float(m.metadata["psnr_table"]["set5"]["3"]["psnr"]), abs=1e-3)


@needs_data("sr", "set5")
def test_bicubic_protocol_reproduces_set5():
    from hotops.data import load_sr_set

    res = evaluate(None, load_sr_set("set5"), scales=(2, 3, 4), ssim_too=False)
    assert [round(res[s]["bicubic_psnr"], 2) for s in (2, 3, 4)] == pytest.approx([33.68, 30.40, 28.43], abs=0.02)


# --- command line --------------------------------------------------------------------------------


def _write_png(path, arr, mode=None):
    from PIL import Image

    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)


def test_cli_upscale_round_trip(tmp_path, capsys):
    from PIL import Image

    from hotops.cli import main

    import skimage.data

    src = tmp_path / "in.png"
    _write_png(src, skimage.data.astronaut()[40:80, 160:190])
    assert main(["upscale", str(src), str(tmp_path / "out.png"), "--scale", "2"]) == 0
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (60, 80) and im.mode == "RGB"
    # grayscale stays grayscale; RGBA is converted with a note
    _write_png(tmp_path / "g.png", skimage.data.camera()[:30, :20])
    assert main(["upscale", str(tmp_path / "g.png"), str(tmp_path / "g2.png"), "--scale", "3"]) == 0
    with Image.open(tmp_path / "g2.png") as im:
        assert im.size == (60, 90) and im.mode == "L"
    rgba = np.dstack([skimage.data.astronaut()[:20, :20], np.full((20, 20), 200, np.uint8)])
    _write_png(tmp_path / "a.png", rgba)
    capsys.readouterr()
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "a2.png"), "--scale", "2"]) == 0
    assert "RGBA image converted to RGB" in capsys.readouterr().out


def test_cli_upscale_bad_input(tmp_path, capsys):
    from hotops.cli import main

    src = tmp_path / "in.png"
    _write_png(src, np.zeros((10, 10, 3), np.uint8))
    for scale in ("0", "-1", "inf", "nan"):
        assert main(["upscale", str(src), str(tmp_path / "o.png"), "--scale", scale]) == 2
        assert "argument --scale: must be" in capsys.readouterr().err
    # a finite scale whose output would be absurd: one line, nothing computed or written
    assert main(["upscale", str(src), str(tmp_path / "o.png"), "--scale", "1e6"]) == 2
    err = capsys.readouterr().err
    assert "the largest output is 65535 pixels per side" in err and "Traceback" not in err
    assert main(["upscale", str(src), str(tmp_path / "o.png"), "--scale", "3000"]) == 2  # 30000^2 > 2**28
    assert "268435456 pixels in all" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
    assert main(["upscale", str(tmp_path / "missing.png"), str(tmp_path / "o.png"), "--scale", "2"]) == 1
    assert main(["train", "vdsr", "--theta", "0", "--iterations", "1"]) == 2
    assert "--theta must be > 0" in capsys.readouterr().err
    assert main(["train", "vdsr", "--lr", "-1", "--iterations", "1"]) == 2
    assert main(["eval-sr", "--model", "bicubic", "--scales", "0"]) == 2
    assert main(["eval-sr", "--model", "bicubic", "--threads", "0"]) == 2
    assert "argument --threads: must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("budget", ["-5", "0", "nan", "inf"])
def test_cli_train_vdsr_refuses_bad_budgets_at_once(budget, capsys, tmp_path, monkeypatch):
    import time

    from hotops.cli import main

    monkeypatch.setenv("HOTOPS_CACHE", str(tmp_path / "cache"))
    t0 = time.perf_counter()
    assert main(["train", "vdsr", "--budget", budget, "--out", str(tmp_path / "v.pt")]) == 2
    assert time.perf_counter() - t0 < 5  # refused before the patch pool is built
    assert "--budget must be > 0 and finite" in capsys.readouterr().err


def test_augment_matches_per_sample_rotations_and_flips():
    """The grouped augmentation equals rotating/flipping each sample on its own."""
    import numpy as np
    import torch

    from hotops.apps.sr import _augment

    x = torch.arange(16 * 1 * 5 * 5, dtype=torch.float32).reshape(16, 1, 5, 5)
    y = -x
    xo, yo = _augment(x, y, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    k = rng.integers(0, 4, size=16)
    flip = rng.random(16) < 0.5
    assert len(set(zip(k.tolist(), flip.tolist()))) > 3  # several groups are exercised
    for i in range(16):
        a = x[i].flip(-1) if flip[i] else x[i]
        a = torch.rot90(a, int(k[i]), (-2, -1))
        assert torch.equal(xo[i], a) and torch.equal(yo[i], -a)


@pytest.mark.parametrize("name, msg", [("tpu", "auto, cpu or cuda"), ("banana", "auto, cpu or cuda")])
def test_resolve_device_bad_names(name, msg):
    from hotops.apps.sr import resolve_device

    with pytest.raises(ValueError, match=msg):
        resolve_device(name)


def test_resolve_device_cpu_and_auto():
    import torch

    from hotops.apps.sr import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cli_train_vdsr_ctrl_c_saves_the_state_and_resume_finishes_the_same_run(tmp_path, monkeypatch, capsys):
    """``hotops train vdsr`` on a tiny folder: Ctrl-C at step 3 exits 130 saying how to resume;
    resuming writes a checkpoint whose weights equal those of a run never stopped."""
    import os
    import signal

    import skimage.data

    import hotops.bindings
    from hotops.cli import main

    monkeypatch.setenv("HOTOPS_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "imgs"
    data.mkdir()
    _write_png(data / "a.png", skimage.data.astronaut()[:90, :90])
    common = ["--data", str(data), "--iterations", "6", "--batch", "2", "--scales", "2", "--max-patches", "12",
              "--threads", "1", "--eval-sets", "--no-progress"]
    assert main(["train", "vdsr", *common, "--out", str(tmp_path / "straight.pt")]) == 0
    out = capsys.readouterr().out
    assert "patch pool:" in out and "wrote" in out  # the library's log, shown by the command
    assert main(["train", "vdsr", *common, "--out", str(tmp_path / "straight.pt")]) == 2  # exists
    assert "exists; pass --force" in capsys.readouterr().err

    real_clip, calls = hotops.bindings.clip_grad_adjustable_, [0]

    def clip_then_interrupt(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_clip(*args, **kwargs)

    monkeypatch.setattr(hotops.bindings, "clip_grad_adjustable_", clip_then_interrupt)
    stopped = tmp_path / "stopped.pt"
    state = tmp_path / "cache" / "stopped.state.pt"
    assert main(["train", "vdsr", *common, "--out", str(stopped)]) == 130
    err = capsys.readouterr().err
    assert f"resume with: hotops train vdsr --resume {state}" in err and "Traceback" not in err
    assert state.is_file() and not stopped.exists()
    monkeypatch.setattr(hotops.bindings, "clip_grad_adjustable_", real_clip)
    # a fresh run would overwrite the interrupted one's state: refused, with the way out
    assert main(["train", "vdsr", *common, "--out", str(stopped)]) == 2
    assert f"continue it with --resume {state}" in capsys.readouterr().err
    assert main(["train", "vdsr", "--resume", str(state), "--out", str(stopped), "--no-progress",
                 "--eval-sets"]) == 0
    a, b = VDSR.load(tmp_path / "straight.pt"), VDSR.load(stopped)
    _assert_bitwise_equal(a, b)
    assert b.metadata["iterations"] == 6


def test_cli_train_vdsr_missing_resume_file(tmp_path, capsys, monkeypatch):
    from hotops.cli import main

    monkeypatch.setenv("HOTOPS_CACHE", str(tmp_path / "cache"))
    assert main(["train", "vdsr", "--resume", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "v.pt")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"hotops train vdsr: error: VDSR training state not found: {tmp_path / 'nope.pt'}"


def test_stopped_while_timing_a_budget_resumes_with_the_rest_of_it(tmp_path):
    """A budget run stopped before its length is known (the timing probe) saves the budget;
    the resumed run times its first steps again and fits in what is left."""
    lr, hr = _synthetic_pool(16)
    state = tmp_path / "state.pt"
    m = VDSR(depth=2, channels=2)
    train(m, lr, hr, budget=2.0, batch=2, progress=False, probe=4, state_path=state, stop_at=2)
    saved = torch.load(state, weights_only=True)
    assert saved["iteration"] == 2 and saved["total"] is None and saved["budget"] == 2.0
    hist = train(VDSR(depth=2, channels=2), lr, hr, batch=2, progress=False, probe=4, resume=state)
    assert hist["total"] is not None and hist["iterations"] == hist["total"] >= 4
