"""emo-train, emo-eval and the Fashion-MNIST importer: a few steps on a tiny generated ImageFolder, the trained
fixture's recorded accuracy, and bad inputs (one line on stderr, exit code 2, nothing half-written)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emo import dataset as D
from emo import train as T
from emo.evaluate import main as eval_main  # the console script: errors become one line and exit code 2
from emo.model import create_model
from emo_testutil import REF_CKPT, REPO, assert_one_line_error, run_tool

FIXTURE = REPO / "tests" / "fixtures" / "emo_1m_fashion_mnist.pth"
SUBSET = REPO / "tests" / "fixtures" / "fashion_mnist"
RECORDED = REPO / "tests" / "fixtures" / "emo_1m_fashion_mnist_training" / "accuracy.json"
CLASSES = ["circle", "square", "stripes"]
SIZE = 32


def _draw(kind: int, rng: np.random.Generator) -> np.ndarray:
    """A 40x36 RGB image of one of three easy classes, with noise and a random colour."""
    h, w = 40, 36
    img = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
    colour = rng.integers(150, 256, 3).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    if kind == 0:
        mask = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (rng.uniform(8, 14)) ** 2
    elif kind == 1:
        s = int(rng.integers(8, 14))
        mask = (abs(yy - h // 2) < s) & (abs(xx - w // 2) < s)
    else:
        mask = (yy // 4) % 2 == 0
    img[mask] = colour
    return img


def _folder(root: Path, per_class: int, seed: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(_draw(c, rng)).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    _folder(root / "train", 8, 0)
    _folder(root / "val", 2, 1)
    return root


def _config(**kw) -> T.TrainConfig:
    base = dict(model="emo_1m", input_size=(SIZE, SIZE), epochs=3, batch_size=6, lr=3e-3, warmup_epochs=0.5,
                ema_decay=0.9, crop_scale=(0.5, 1.0), classes=CLASSES)
    return T.TrainConfig(**{**base, **kw})


def _sets(tiny: Path):
    side = round(SIZE / 0.875)
    train = D.load_image_folder(tiny / "train", lambda im: D.train_view(im, side))
    val = D.load_image_folder(tiny / "val", lambda im: D.eval_view(im, (SIZE, SIZE)), classes=CLASSES)
    return train, val


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory) -> Path:
    """emo-train as a user runs it: 4 epochs of 4 steps on the tiny set, from scratch."""
    out = tmp_path_factory.mktemp("run")
    proc = run_tool("emo-train", "--model", "emo_1m", "--data", tiny, "--input-size", SIZE, "--epochs", 4,
                    "--batch-size", 6, "--lr", 3e-3, "--warmup-epochs", 0.5, "--ema-decay", 0.9,
                    "--crop-scale", "0.5,1", "--device", "cpu", "--out", out / "run", timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 4/4" in proc.stderr  # the progress bar
    return out / "run"


def test_train_loss_goes_down_and_checkpoints_reload(trained):
    rows = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.1, rows
    assert all(0 <= r["val_top1_ema"] <= 100 for r in rows)
    best = torch.load(trained / "best.pth", weights_only=True)
    last = torch.load(trained / "last.pth", weights_only=True)
    assert best["classes"] == CLASSES and best["input"]["size"] == [SIZE, SIZE] and best["arch"] == "emo_1m"
    assert {"net", "net_E", "epoch", "optimizer", "step"} <= set(last) and last["epoch"] == 4
    model = create_model("emo_1m", str(trained / "best.pth"))  # the authors' loader, head size from the file
    assert model.head.out_features == len(CLASSES)
    ema = create_model("emo_1m", str(trained / "last.pth"), ema=True)
    assert torch.equal(ema.head.weight, last["net_E"]["head.weight"])
    if (trained / "curves.png").exists() is False:
        pytest.importorskip("matplotlib")
        raise AssertionError("curves.png missing although matplotlib is installed")


def test_resume_after_interrupt_continues_at_the_right_step(tiny, tmp_path, monkeypatch):
    """Ctrl-C mid-epoch saves last.pth; --resume continues at that step and ends where an uninterrupted run ends."""
    train, val = _sets(tiny)
    config = lambda: _config(epochs=2, batch_size=12)  # noqa: E731 - 2 steps per epoch
    T.fit(config(), train, val, tmp_path / "straight", torch.device("cpu"), progress=None, log=lambda s: 0)
    update = T.EMA.update

    def interrupt(self, model, step):
        update(self, model, step)
        if step == 3:  # 1 step into the second epoch
            raise KeyboardInterrupt

    monkeypatch.setattr(T.EMA, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        T.fit(config(), train, val, tmp_path / "cut", torch.device("cpu"), progress=None, log=lambda s: 0)
    monkeypatch.setattr(T.EMA, "update", update)
    saved = torch.load(tmp_path / "cut" / "last.pth", weights_only=True)
    assert saved["step"] == 3 and saved["interrupted"] is True
    messages = []
    summary = T.fit(config(), train, val, tmp_path / "cut", torch.device("cpu"),
                    resume=str(tmp_path / "cut" / "last.pth"), progress=None, log=messages.append)
    assert "at step 3 (epoch 2, 1/2 steps into it)" in messages[0]
    assert summary["steps"] == 4
    a = torch.load(tmp_path / "straight" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pth", weights_only=True)
    for key in a["net"]:
        torch.testing.assert_close(b["net"][key], a["net"][key], rtol=1e-5, atol=1e-6, msg=key)
    for key in a["net_E"]:
        torch.testing.assert_close(b["net_E"][key], a["net_E"][key], rtol=1e-5, atol=1e-6, msg=key)


def test_interrupt_after_the_last_step_of_an_epoch_resumes(tiny, tmp_path, monkeypatch):
    """A stop after an epoch's last step saved that step with the epoch before it, and --resume refused the file."""
    train, val = _sets(tiny)
    config = lambda: _config(epochs=2, batch_size=12)  # noqa: E731 - 2 steps per epoch
    update = T.EMA.update

    def interrupt(self, model, step):
        update(self, model, step)
        if step == 2:  # the last step of the first epoch
            raise KeyboardInterrupt

    monkeypatch.setattr(T.EMA, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        T.fit(config(), train, val, tmp_path, torch.device("cpu"), progress=None, log=lambda s: 0)
    monkeypatch.setattr(T.EMA, "update", update)
    saved = torch.load(tmp_path / "last.pth", weights_only=True)
    assert (saved["step"], saved["epoch"], saved["interrupted"]) == (2, 1, True)
    messages = []
    summary = T.fit(config(), train, val, tmp_path, torch.device("cpu"), resume=str(tmp_path / "last.pth"),
                    progress=None, log=messages.append)
    assert "at step 2 (epoch 2, 0/2 steps into it)" in messages[0] and summary["steps"] == 4


def test_start_from_the_authors_form_replaces_the_head():
    if not REF_CKPT.exists():
        pytest.skip("reference checkpoint not available")
    model = T.build_model(_config(weights=str(REF_CKPT)))
    ref = torch.load(REF_CKPT, weights_only=True)["net"]
    assert model.head.out_features == len(CLASSES) and ref["head.weight"].shape[0] == 1000
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items() if not k.startswith("head."))


def test_freeze_backbone_trains_the_head_only(tiny, tmp_path):
    train, val = _sets(tiny)
    T.fit(_config(epochs=1, batch_size=12, freeze_backbone=True), train, val, tmp_path, torch.device("cpu"),
          progress=None, log=lambda s: 0)
    torch.manual_seed(0)
    start = T.build_model(_config(freeze_backbone=True)).state_dict()
    after = torch.load(tmp_path / "last.pth", weights_only=True)["net"]
    assert not torch.equal(after["head.weight"], start["head.weight"])
    frozen = [k for k in start if not k.startswith("head.") and start[k].is_floating_point()]
    assert frozen and all(torch.equal(after[k], start[k]) for k in frozen)  # weights and BatchNorm statistics


def test_labels_round_trip_into_the_sidecar_and_eval_matches(trained, tiny, tmp_path):
    proc = run_tool("emo-export", "--model", "emo_1m", "--weights", trained / "best.pth", "--format", "pt2",
                    "--out", tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    side = json.loads((tmp_path / "emo_1m_pytorch_fp32.json").read_text())
    assert side["labels"]["names"] == CLASSES and side["num_classes"] == len(CLASSES)
    assert side["input"]["shape"][-2:] == [SIZE, SIZE]  # the trained input size, without --input-size
    out = tmp_path / "eval"
    assert eval_main([str(trained / "best.pth"), "--model", "emo_1m", str(tmp_path / "emo_1m_pytorch_fp32.pt2"),
                      "--data", str(tiny / "val"), "--out", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    torch_row, pt2_row = report["rows"]
    assert report["num_images"] == 6 and torch_row["status"] == pt2_row["status"] == "ok"
    assert pt2_row["delta_top1"] == 0 and pt2_row["agreement_with_first"] == 100
    assert np.asarray(torch_row["confusion"]).sum() == 6 and set(torch_row["per_class"]) == set(CLASSES)


def test_eval_reproduces_the_fixture_accuracy(capsys):
    """The committed fixture on the committed 500-image subset: the accuracy recorded when it was made, +-1 point."""
    recorded = json.loads(RECORDED.read_text())["subset"]["pytorch_fp32_top1"]
    assert eval_main([str(FIXTURE), "--model", "emo_1m", "--data", str(SUBSET), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_images"] == 500 and report["classes"][0] == "0_t-shirt_top"
    assert abs(report["rows"][0]["top1"] - recorded) <= 1.0, (report["rows"][0]["top1"], recorded)
    assert report["rows"][0]["top1"] >= 90


def test_unreadable_images_are_skipped_and_counted(tiny, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny / "train", data)
    (data / "circle" / "broken.png").write_bytes(b"not a png")
    train = D.load_image_folder(data, lambda im: D.train_view(im, 36))
    assert len(train) == 24 and len(train.skipped) == 1 and "broken.png" in train.skipped[0]
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, 36, 36)


def test_batched_crop_is_seeded_and_identity_at_full_scale():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) % 255
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a = D.random_resized_crop(x.to(torch.uint8), (8, 8), g(), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    torch.testing.assert_close(a, D.to_model_input(x.to(torch.uint8)), atol=1e-5, rtol=0)
    b1 = D.random_resized_crop(x.to(torch.uint8), (6, 6), g())
    b2 = D.random_resized_crop(x.to(torch.uint8), (6, 6), g())
    assert torch.equal(b1, b2) and b1.shape == (2, 3, 6, 6)


def test_schedule_warms_up_then_decays():
    lrs = [T.learning_rate(s, 100, 10, 1e-3, 1e-6, 1e-6) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-6) and lrs[10] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11], strict=True))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False)) and lrs[100] == pytest.approx(1e-6)


# --------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("layout, message", [
    ("empty", "has no class folders"),
    ("one_class", "only one class folder"),
    ("empty_class", "has no images"),
    ("missing", "data folder not found"),
])
def test_train_refuses_bad_data(tmp_path, layout, message):
    data = tmp_path / "data"
    if layout != "missing":
        data.mkdir()
    if layout == "one_class":
        _folder(data, 2, 0)
        for name in CLASSES[1:]:
            for f in (data / name).iterdir():
                f.unlink()
            (data / name).rmdir()
    if layout == "empty_class":
        _folder(data, 2, 0)
        (data / "zzz_empty").mkdir()
    proc = run_tool("emo-train", "--data", data, "--out", tmp_path / "out", "--device", "cpu")
    assert_one_line_error(proc, 2, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--crop-scale", "0.5"], "--crop-scale '0.5' is not MIN,MAX"),
    (["--epochs", "0"], "argument --epochs: 0 is out of range; use an integer in 1..10000"),
    (["--model", "emo_9m"], "unknown model 'emo_9m'"),
    (["--weights", "nope.pth"], "--weights nope.pth: checkpoint not found"),
    (["--device", "cuda:7"], "--device cuda:7"),
])
def test_train_refuses_bad_options(tiny, tmp_path, args, message, capsys):
    if message.startswith("--device") and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert T.main(["--data", str(tiny), "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err


def test_train_refuses_an_existing_run_and_a_foreign_resume(trained, tiny, tmp_path):
    proc = run_tool("emo-train", "--data", tiny, "--out", trained, "--input-size", SIZE, "--device", "cpu")
    assert_one_line_error(proc, 2, "already holds a run (last.pth)")
    proc = run_tool("emo-train", "--data", tiny, "--out", tmp_path / "o", "--input-size", 64, "--device", "cpu",
                    "--batch-size", 6, "--resume", trained / "last.pth")
    assert_one_line_error(proc, 2, "resume with the same --input-size")


def test_eval_refuses_bad_input(tiny, tmp_path, capsys):
    assert eval_main([str(FIXTURE), "--data", str(SUBSET)]) == 2
    assert "name its variant with --model" in capsys.readouterr().err
    assert eval_main([str(FIXTURE), "--model", "emo_1m", "--data", str(tiny / "val")]) == 2
    assert "3 of the 3 class folders of" in capsys.readouterr().err  # never mapped by position
    assert eval_main([str(FIXTURE), "--model", "emo_1m", "--data", str(tmp_path / "none")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    assert eval_main([str(tmp_path / "x.onnx"), "--data", str(SUBSET)]) == 2
    assert "not found" in capsys.readouterr().err


def test_fashion_mnist_importer(tmp_path):
    from emo import fashion_mnist as fm

    if not (fm.DEFAULT_ROOT / fm.FILES["test"][0]).exists():
        pytest.skip("dataset-fashion-mnist is not installed (make sysdeps)")
    assert fm.main(["--out", str(tmp_path), "--splits", "test", "--test-per-class", "2", "--size", "32"]) == 0
    files = sorted((tmp_path / "test").rglob("*.png"))
    assert len(files) == 20 and sorted(p.parent.name for p in files)[::2] == list(fm.CLASSES)
    images, labels = fm.load_split("test")
    picked = fm.balanced_indices(labels, 50, 0)  # the committed subset is exactly this draw
    committed = sorted(int(p.stem) for p in SUBSET.joinpath("test").rglob("*.png"))
    assert committed == picked.tolist()
    assert fm.main(["--out", str(tmp_path), "--splits", "test"]) == 2  # test/ exists: refused, nothing replaced
    assert fm.main(["--out", str(tmp_path / "x"), "--root", str(tmp_path / "nothing")]) == 2
    assert fm.main(["--out", str(tmp_path / "y"), "--splits", "test", "--test-per-class", "-1"]) == 2  # a traceback
    assert fm.main(["--out", str(tmp_path / "y"), "--splits", "test", "--seed", "-1"]) == 2            # before
    assert not (tmp_path / "x" / "train").exists()
