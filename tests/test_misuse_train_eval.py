"""emo-train and emo-eval misused as a careless or hostile user would (issue 20), and emo-eval's class mapping
(issue 24 item 1): each case through the real console script where the process matters (exit codes, signals, file
size limits, locks), in-process where only the checks do. Tiny generated ImageFolders at 32x32, 1 epoch."""

import fcntl
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from emo import dataset as D
from emo import train as T
from emo.errors import EMOError
from emo.evaluate import main as eval_main
from emo_testutil import REPO, assert_one_line_error, run_tool, snapshot

FIXTURE = REPO / "tests" / "fixtures" / "emo_1m_fashion_mnist.pth"
SUBSET = REPO / "tests" / "fixtures" / "fashion_mnist" / "test"
# The names under which Fashion-MNIST publishes its classes (label order); the fixture knows them as "0_t-shirt_top"...
OFFICIAL = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CLASSES = ["circle", "square", "stripes"]
# The tools run one OpenMP thread here: batches of 4 images at 32x32 gain nothing from more, and on a busy shared
# machine OpenMP's spinning threads made each step 20-50x slower (measured: 0.2 s vs 5-15 s a step at load 12 on 2
# cores). The in-process tests of this module use one thread too (``_one_thread``).
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
TRAIN = ["--input-size", "32", "--epochs", "1", "--batch-size", "4", "--warmup-epochs", "0", "--device", "cpu"]


def _images(root: Path, per_class: int, classes=CLASSES, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (36, 36, 3)).astype(np.uint8)
            img[8 * (c % 3):8 * (c % 3) + 12, 6:30] = 220
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # after conftest's autouse fixture, which sets 2 again for the next module


def _train(*args, **kwargs):
    """The real emo-train console script, as a user runs it."""
    return run_tool("emo-train", *args, env=ONE_THREAD, **kwargs)


def _eval(*args, **kwargs):
    """The real emo-eval console script."""
    return run_tool("emo-eval", *args, env=ONE_THREAD, **kwargs)


def _last_line(stderr: str) -> str:
    """The last line of stderr (progress bars are redrawn with carriage returns)."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()][-1]


def _no_partial_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.rglob("*") if "partial" in p.name]
    assert not leftovers, leftovers


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _images(tmp_path_factory.mktemp("data"), 4)


@pytest.fixture(scope="module")
def run1(data, tmp_path_factory) -> Path:
    """One real epoch (3 steps) into a folder holding the .lock file of a killed run: a stale lock never blocks."""
    out = tmp_path_factory.mktemp("run1") / "out"
    out.mkdir()
    (out / ".lock").write_text("999999\n")  # no process holds its flock
    proc = _train("--data", data, "--out", out, *TRAIN, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(out / "last.pth", weights_only=True)["step"] == 3
    return out


# ------------------------------------------------------------------------------------------- numeric options
def test_max_minutes_inf_is_refused_by_the_console_script(data, tmp_path):
    """It used to crash after the first epoch with nothing saved."""
    proc = _train("--data", data, "--out", tmp_path / "o", *TRAIN, "--max-minutes", "inf")
    assert_one_line_error(proc, 2, "argument --max-minutes: inf is out of range; use a finite number in (0, 525600]")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--seed", "1e23"], "argument --seed: 1e23 is not an integer; use one in 0..9223372036854775807"),
    (["--seed", str(2**63)], "argument --seed: 9223372036854775808 is out of range; use an integer in 0..9223372"),
    (["--seed", "-1"], "argument --seed: -1 is out of range"),
    (["--lr", "nan"], "argument --lr: nan is out of range; use a finite number in (0, 1)"),
    (["--lr", "1"], "argument --lr: 1 is out of range"),
    (["--min-lr", "inf"], "argument --min-lr: inf is out of range; use a finite number in [0, 1)"),
    (["--lr", "1e-4", "--min-lr", "1e-3"], "--min-lr 0.001 is out of range; use 0..--lr (0.0001)"),
    (["--warmup-epochs", "inf"], "argument --warmup-epochs: inf is out of range"),
    (["--warmup-epochs", "2"], "--warmup-epochs 2 is out of range; use 0..--epochs (1)"),
    (["--weight-decay", "inf"], "argument --weight-decay: inf is out of range; use a finite number in [0, 10]"),
    (["--weight-decay", "1e300"], "argument --weight-decay: 1e300 is out of range"),
    (["--label-smoothing", "nan"], "argument --label-smoothing: nan is out of range; use a finite number in [0, 1)"),
    (["--ema-decay", "1"], "argument --ema-decay: 1 is out of range; use a finite number in (0, 1)"),
    (["--max-minutes", "0"], "argument --max-minutes: 0 is out of range"),
    (["--max-minutes", "1e9"], "argument --max-minutes: 1e9 is out of range"),
    (["--epochs", "1e9"], "argument --epochs: 1e9 is not an integer; use one in 1..10000"),
    (["--epochs", "100000"], "argument --epochs: 100000 is out of range; use an integer in 1..10000"),
    (["--batch-size", "0"], "argument --batch-size: 0 is out of range; use an integer in 1..4096"),
    (["--crop-scale", "nan,1"], "--crop-scale 'nan,1' is out of range; use 0 < MIN <= MAX <= 1"),
    (["--crop-scale", "0.5,inf"], "--crop-scale '0.5,inf' is out of range"),
    (["--workers", "1e3"], "argument --workers: 1e3 is not an integer; use one in 1..64"),
])
def test_every_numeric_option_is_finite_and_in_range(data, tmp_path, args, message, capsys):
    assert T.main(["--data", str(data), "--out", str(tmp_path / "o"), *TRAIN, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_eval_limit_is_bounded(capsys):
    assert eval_main([str(FIXTURE), "--model", "emo_1m", "--data", str(SUBSET), "--limit", "1e30"]) == 2
    assert "argument --limit: 1e30 is not an integer; use one in 1..1000000000" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- never lose an epoch (A)
def test_non_finite_loss_stops_at_once_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch, capsys):
    """NaN from the second epoch on (step 4 of 3 per epoch): exit 1, the step named, last.pth still epoch 1."""
    crop = D.random_resized_crop
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        x = crop(*args, **kwargs)
        return x * float("nan") if len(calls) > 3 else x

    monkeypatch.setattr(T, "random_resized_crop", poisoned)
    out = tmp_path / "out"
    assert T.main(["--data", str(data), "--out", str(out), *TRAIN, "--epochs", "3"]) == 1
    line = _last_line(capsys.readouterr().err)
    assert line == (f"emo-train: error: the training loss is nan at step 4 (epoch 2): lower --lr (now 0.001) or "
                    f"--weight-decay (now 0.05); no checkpoint was written after it; {out / 'last.pth'} (step 3) is "
                    f"intact: continue from it with --resume {out / 'last.pth'}"), line
    assert len(calls) == 4  # stopped at the first non-finite loss, not at the end of the epoch
    last = torch.load(out / "last.pth", weights_only=True)
    assert last["step"] == 3 and all(v.isfinite().all() for v in last["net"].values() if v.is_floating_point())
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
    _no_partial_files(out)


def test_weights_that_give_nan_stop_before_any_checkpoint(data, tmp_path):
    """A finite --weights checkpoint whose outputs overflow: exit 1 at step 1, nothing written but the lock."""
    net = torch.load(FIXTURE, weights_only=True)["net"]
    torch.save({"net": {k: v * 1e30 if v.ndim == 4 else v for k, v in net.items()}}, tmp_path / "huge.pth")
    proc = _train("--data", data, "--out", tmp_path / "o", "--weights", tmp_path / "huge.pth", *TRAIN)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert _last_line(proc.stderr) == (
        f"emo-train: error: the training loss is nan at step 1 (epoch 1), before any update: the starting weights "
        f"(--weights {tmp_path / 'huge.pth'}) give non-finite outputs; no checkpoint has been saved yet")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [".lock"]


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as ENOSPC would
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_keeps_the_previous_checkpoint_and_leaves_no_partial_file(run1, data, tmp_path):
    """A real write limit (RLIMIT_FSIZE, 8 MB: best.pth fits, last.pth does not) while resuming for epoch 2."""
    out = tmp_path / "out"
    shutil.copytree(run1, out)
    before = (out / "last.pth").read_bytes()
    proc = subprocess.run([str(Path(sys.executable).parent / "emo-train"), "--data", str(data), "--out", str(out),
                           *TRAIN, "--epochs", "2", "--resume", str(out / "last.pth")], capture_output=True,
                          text=True, timeout=600, preexec_fn=_limit_file_size(8 << 20), env=ONE_THREAD)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert _last_line(proc.stderr) == (f"emo-train: error: cannot write {out / 'last.pth'}: File too large; "
                                f"{out / 'last.pth'} (step 3) is intact: continue from it with --resume "
                                f"{out / 'last.pth'}")
    assert (out / "last.pth").read_bytes() == before
    _no_partial_files(out)


def test_signals_during_a_save_wait_for_the_rename(tmp_path, monkeypatch):
    """Three SIGINTs while the checkpoint is being renamed: the file is whole, then the run stops."""
    replace = os.replace

    def interrupted_replace(src, dst):
        for _ in range(3):
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        T.save_atomic({"w": torch.arange(1000)}, tmp_path / "last.pth")
    monkeypatch.setattr(os, "replace", replace)
    assert torch.equal(torch.load(tmp_path / "last.pth", weights_only=True)["w"], torch.arange(1000))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_three_quick_ctrl_c_save_the_state_once_and_say_so(tmp_path):
    data = _images(tmp_path / "data", 8)
    out = tmp_path / "out"
    err = open(tmp_path / "stderr", "w+")  # noqa: SIM115 - read while the process writes it
    proc = subprocess.Popen([str(Path(sys.executable).parent / "emo-train"), "--data", str(data), "--out", str(out),
                             *TRAIN, "--batch-size", "2", "--epochs", "2"], stdout=subprocess.PIPE, stderr=err,
                            text=True, env=ONE_THREAD)
    deadline = time.monotonic() + 300
    while "epoch 1/2 [" not in (tmp_path / "stderr").read_text() and time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "stderr").read_text()
        time.sleep(0.1)
    for _ in range(3):  # mid-epoch (12 steps of 2 images): as fast as a user presses Ctrl-C
        try:
            proc.send_signal(signal.SIGINT)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    stdout, _ = proc.communicate(timeout=300)
    err.close()
    stderr = (tmp_path / "stderr").read_text()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.rstrip().endswith("emo-train: interrupted (no half-written file was left)"), stderr[-500:]
    said = [line for line in stdout.splitlines() if line.startswith("interrupted at step")]
    saved = torch.load(out / "last.pth", weights_only=True)
    assert said == [f"interrupted at step {saved['step']}: saved {out / 'last.pth'}; continue with --resume "
                    f"{out / 'last.pth'}"], stdout
    assert saved["interrupted"] is True and 1 <= saved["step"] < 12
    _no_partial_files(out)


def test_a_second_run_into_the_same_folder_is_refused(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "w") as lock:  # this process plays the running emo-train
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        before = snapshot(out)
        proc = _train("--data", data, "--out", out, *TRAIN)
    assert_one_line_error(proc, 2, f"{out} is in use by another emo-train (pid {os.getpid()}); wait for it to "
                                   "finish or choose another --out")
    assert snapshot(out) == before


def test_out_inside_data_is_refused_before_anything_is_created(tmp_path, capsys):
    data = _images(tmp_path / "data", 2)
    before = snapshot(data)
    assert T.main(["--data", str(data), "--out", str(data / "run"), *TRAIN]) == 2
    assert (f"--out {data / 'run'} must not be inside --data {data} (the checkpoints would be read as images)"
            in capsys.readouterr().err)
    assert snapshot(data) == before


def test_a_class_whose_only_file_is_unreadable_is_named(tmp_path, capsys):
    data = _images(tmp_path / "data", 2)
    (data / "zebra").mkdir()
    (data / "zebra" / "only.png").write_bytes(b"not a png")
    assert T.main(["--data", str(data), "--out", str(tmp_path / "o"), *TRAIN]) == 2
    assert (f"class 'zebra' of {data} has no readable image ({data / 'zebra' / 'only.png'} is not a readable image"
            in capsys.readouterr().err)
    assert not (tmp_path / "o").exists()  # it was made to be locked, and removed again


# --------------------------------------------------------------------------------- control characters (C)
def test_a_newline_in_a_class_folder_is_refused_by_both_console_scripts(tmp_path):
    """It shifted every later label of the exported metadata by one."""
    data = _images(tmp_path / "data", 1, classes=["a", "bad\nname", "c"])
    message = f"{data}: class folder 'bad\\nname' contains the control character U+000A"
    assert_one_line_error(_train("--data", data, "--out", tmp_path / "o", *TRAIN), 2, message)
    assert_one_line_error(_eval(FIXTURE, "--model", "emo_1m", "--data", data), 2, message)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("folder, message", [("red\x1b[31m", "class folder 'red\\x1b[31m' contains the control "
                                              "character U+001B"),
                                             (" ", "class folder ' ' is blank"),
                                             ("a\u202eb", "class folder 'a\\u202eb' contains U+202E (a "
                                              "bidirectional control")])
def test_class_folders_that_cannot_be_one_label_line_are_refused(tmp_path, folder, message, capsys):
    data = _images(tmp_path / "data", 1, classes=["a", folder, "c"])
    assert T.main(["--data", str(data), "--out", str(tmp_path / "o"), *TRAIN]) == 2
    assert eval_main([str(FIXTURE), "--model", "emo_1m", "--data", str(data)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(message in line for line in err), err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------ resume checkpoints are input (B)
def _edit(state: dict, path: str, value) -> dict:
    """Set ``value`` at a "/"-separated path ("optimizer/state/0/exp_avg": list indices and int keys as numbers)."""
    def key(node, part: str):
        if isinstance(node, list) or (part.isdigit() and isinstance(node, dict) and int(part) in node):
            return int(part)
        return part

    *parents, last = path.split("/")
    node = state
    for part in parents:
        node = node[key(node, part)]
    node[key(node, last)] = value
    return state


RESUME_CASES = {
    "negative step": ("step", -5, "field 'step' must be an integer >= 0, not -5"),
    "huge step": ("step", 10**15, "field 'step' must be an integer >= 0"),
    "step a string": ("step", "3", "field 'step' must be an integer >= 0, not '3'"),
    "step past the schedule": ("step", 300, "step 300 is not in epoch 1 at 3 steps per epoch"),
    "epoch a float": ("epoch", 1.5, "field 'epoch' must be an integer in 0..10000, not 1.5"),
    "best_top1 nan": ("best_top1", float("nan"), "field 'best_top1' must be a number in -1..10000, not nan"),
    "history a string": ("history", "x", "field 'history' must be a list of at most 10000 rows"),
    "history row nested": ("history", [{"epoch": 1, "train_loss": [1]}], "field 'history[0]'"),
    "interrupted a string": ("interrupted", "yes", "field 'interrupted' must be true or false"),
    "optimizer empty": ("optimizer", {}, "field 'optimizer' must be an AdamW state dict"),
    "negative lr": ("optimizer/param_groups/0/lr", -1.0, "field 'optimizer.param_groups[0].lr' must be a number"),
    "one beta": ("optimizer/param_groups/0/betas", (0.9,), "field 'optimizer.param_groups[0].betas'"),
    "maximize": ("optimizer/param_groups/1/maximize", True, "field 'optimizer.param_groups[1].maximize'"),
    "params swapped": ("optimizer/param_groups/0/params", [0], "field 'optimizer.param_groups[0].params'"),
    "moment shape": ("optimizer/state/0/exp_avg", torch.zeros(3), "field 'optimizer.state[0].exp_avg' must be a "
                     "float tensor of shape"),
    "moment step a list": ("optimizer/state/0/step", [1], "field 'optimizer.state[0].step'"),
    "net missing": ("net", {}, "field 'net' must be the model's state dict"),
    "net_E nan": ("net_E/head.bias", torch.full((3,), float("nan")), "field 'net_E.head.bias' must be finite"),
    "classes with a newline": ("classes", ["circle", "squ\nare", "stripes"], "field 'classes': class 1 'squ\\nare' "
                               "contains the control character U+000A"),
    "1e5+1 classes": ("classes", ["c"] * 100_001, "field 'classes' holds 100001 class names; use 1..100000"),
    "classes not strings": ("classes", [1, 2, 3], "field 'classes': class 0 1 is not a string"),
    "input size huge": ("input/size", [10**6, 32], "field 'input.size' must be [height, width], integers 32..4096"),
    "batch size": ("train_config/batch_size", 7, "was trained with --batch-size 7; resume with the same --batch-size"),
}


@pytest.fixture(scope="module")
def last_state(run1) -> dict:
    return torch.load(run1 / "last.pth", weights_only=True)


@pytest.fixture(scope="module")
def resume_target():
    """What ``fit`` checks a resume checkpoint against: this run's config, model and optimizer (3 steps an epoch)."""
    config = T.TrainConfig(input_size=(32, 32), batch_size=4, epochs=2, classes=list(CLASSES))
    return config, T.build_model(config)


def _structure_copy(value):
    """Dicts and lists copied, tensors shared: an edit replaces a value, it never writes into a tensor."""
    if isinstance(value, dict):
        return {k: _structure_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_structure_copy(v) for v in value]
    return value


def _check_resume(state: dict, target) -> None:
    """Every check ``emo-train --resume`` makes (before decoding and in ``fit``), in order."""
    config, model = target
    optimizer = torch.optim.AdamW(T.param_groups(model, config.weight_decay))
    T.check_resume_state(state, "last.pth", config)
    T.check_resume_tensors(state, "last.pth", model, model, optimizer)
    T.check_resume_position(state, "last.pth", 3, config.epochs)


@pytest.mark.parametrize("case", RESUME_CASES)
def test_a_malformed_resume_checkpoint_names_the_field(last_state, resume_target, case):
    path, value, message = RESUME_CASES[case]
    with pytest.raises(EMOError) as error:
        _check_resume(_edit(_structure_copy(last_state), path, value), resume_target)
    assert str(error.value).startswith("last.pth") and message in str(error.value) and "\n" not in str(error.value)


def test_the_resume_checks_run_before_decoding_and_in_fit(last_state, data, tmp_path, capsys):
    """Through the console entry: the tensors are checked before any image is decoded, the position in the
    schedule (which needs the decoded set's size) in fit; neither leaves an output folder behind."""
    finished = ("step", 6, "has finished all 2 epochs (6 steps) of the 2-epoch schedule; raise --epochs")
    for name, (path, value, message) in (("net_E nan", RESUME_CASES["net_E nan"]), ("finished", finished)):
        state = _edit(_structure_copy(last_state), path, value)
        if name == "finished":
            state["epoch"] = 2
        torch.save(state, tmp_path / "last.pth")
        assert T.main(["--data", str(data), "--out", str(tmp_path / "o"), *TRAIN, "--epochs", "2", "--resume",
                       str(tmp_path / "last.pth")]) == 2
        err = capsys.readouterr().err
        assert message in err.strip().splitlines()[-1] and "Traceback" not in err, err[-2000:]
        assert not (tmp_path / "o").exists()


def test_a_negative_step_is_refused_by_the_console_script(last_state, data, tmp_path):
    torch.save({**last_state, "step": -5}, tmp_path / "last.pth")
    proc = _train("--data", data, "--out", tmp_path / "o", *TRAIN, "--resume", tmp_path / "last.pth")
    assert_one_line_error(proc, 2, f"{tmp_path / 'last.pth'}: field 'step' must be an integer >= 0, not -5")
    assert not (tmp_path / "o").exists()


_values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=5), st.lists(st.integers(-3, 3), max_size=3),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                    st.builds(lambda n: torch.ones(n), st.integers(0, 4)))
_paths = st.sampled_from(["step", "epoch", "best_top1", "history", "arch", "classes", "input", "input/size",
                          "interrupted", "train_config", "optimizer", "optimizer/state", "optimizer/param_groups",
                          "optimizer/param_groups/0/lr", "optimizer/param_groups/0/eps",
                          "optimizer/param_groups/1/betas", "optimizer/param_groups/0/params",
                          "optimizer/param_groups/0/fused", "optimizer/state/0", "optimizer/state/0/step",
                          "optimizer/state/0/exp_avg_sq", "net", "net/head.weight", "net_E/head.bias", "history/0",
                          "classes/1"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(_paths, _values), min_size=1, max_size=3))
def test_fuzzed_resume_checkpoints_are_accepted_or_refused_in_one_line(last_state, resume_target, edits):
    """Any value at any field: either the checks pass or an EMOError says which field, never another exception."""
    state = _structure_copy(last_state)
    for path, value in edits:
        try:
            _edit(state, path, value)
        except Exception:  # noqa: BLE001 - the parent was replaced by an earlier edit: nothing to set
            pass
    try:
        _check_resume(state, resume_target)
    except EMOError as e:
        assert "\n" not in str(e)
        return
    config, model = resume_target
    model.load_state_dict(state["net"])  # what passed the checks loads
    torch.optim.AdamW(T.param_groups(model, config.weight_decay)).load_state_dict(state["optimizer"])


def test_weights_trained_on_other_class_names_get_a_new_head():
    keep, message = T.head_reuse(str(FIXTURE), [f"class{i}" for i in range(10)], 10)
    assert not keep and "trained on 10 other class names ('0_t-shirt_top' vs 'class0'), so it is not reused" in message
    from emo.fashion_mnist import CLASSES as FASHION

    keep, message = T.head_reuse(str(FIXTURE), list(FASHION), 10)
    assert keep and "keeping the head" in message


# ------------------------------------------------------------------------ emo-eval maps classes explicitly (D)
@pytest.fixture(scope="module")
def official(tmp_path_factory) -> Path:
    """The committed 500 test images in folders named as Fashion-MNIST publishes its classes."""
    root = tmp_path_factory.mktemp("official")
    for folder, name in zip(sorted(SUBSET.iterdir()), OFFICIAL, strict=True):
        shutil.copytree(folder, root / name)
    return root


def test_folders_named_otherwise_are_refused_not_mapped_by_position(official):
    proc = _eval(FIXTURE, "--model", "emo_1m", "--data", official)
    assert_one_line_error(proc, 2, f"10 of the 10 class folders of {official} match none of the model's class names: "
                                   "'Ankle boot', 'Bag', 'Coat', 'Dress' (+6 more); the model's classes: "
                                   "'0_t-shirt_top', '1_trouser'")
    assert "--class-map FILE" in proc.stderr and "--by-order" in proc.stderr


def test_one_renamed_folder_is_refused(tmp_path, capsys):
    """It turned 90 % into 1 %, exit 0, no warning."""
    shutil.copytree(SUBSET, tmp_path / "test")
    (tmp_path / "test" / "3_dress").rename(tmp_path / "test" / "3_dresses")
    assert eval_main([str(FIXTURE), "--model", "emo_1m", "--data", str(tmp_path)]) == 2
    assert (f"1 of the 10 class folders of {tmp_path / 'test'} match none of the model's class names: '3_dresses'"
            in capsys.readouterr().err)


def test_class_map_gives_the_fixture_accuracy(official, tmp_path):
    classes = [p.name for p in sorted(SUBSET.iterdir())]
    (tmp_path / "map.tsv").write_text("".join(f"{o}\t{c}\n" for o, c in zip(OFFICIAL, classes, strict=True)))
    proc = _eval(FIXTURE, "--model", "emo_1m", "--data", official, "--class-map", tmp_path / "map.tsv",
                    "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    row = report["rows"][0]
    assert report["class_mapping"] == "class_map" and row["class_mapping"]["mode"] == "class_map"
    assert row["class_mapping"]["outputs"]["Ankle boot"] == 9 and row["class_mapping"]["outputs"]["T-shirt_top"] == 0
    recorded = json.loads((REPO / "tests" / "fixtures" / "emo_1m_fashion_mnist_training" / "accuracy.json")
                          .read_text())["subset"]["pytorch_fp32_top1"]
    assert report["num_images"] == 500 and abs(row["top1"] - recorded) <= 1.0, (row["top1"], recorded)


def test_by_order_is_stated_in_the_header_and_the_json(official, tmp_path):
    proc = _eval(FIXTURE, "--model", "emo_1m", "--data", official, "--by-order", "--limit", "20",
                    "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "classes mapped BY ORDER (--by-order: sorted folder i -> output i)" in proc.stdout.splitlines()
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["class_mapping"] == "by_order" and report["rows"][0]["class_mapping"]["mode"] == "by_order"


def test_models_with_other_output_orders_are_compared_class_by_class(tmp_path):
    """The fixture and a copy whose head rows and class names are permuted: the same classifier, 100 % agreement."""
    state = torch.load(FIXTURE, weights_only=True)
    perm = torch.tensor([3, 1, 4, 0, 5, 9, 2, 6, 8, 7])
    state["net"]["head.weight"] = state["net"]["head.weight"][perm]
    state["net"]["head.bias"] = state["net"]["head.bias"][perm]
    state["classes"] = [state["classes"][i] for i in perm]
    torch.save(state, tmp_path / "permuted.pth")
    proc = _eval(FIXTURE, tmp_path / "permuted.pth", "--model", "emo_1m", "--data", SUBSET.parent,
                    "--limit", "30", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = json.loads(proc.stdout)["rows"]
    assert second["predictions"] != first["predictions"]  # other output indices ...
    assert second["agreement_with_first"] == 100 and second["delta_top1"] == 0  # ... the same classes


@pytest.mark.parametrize("content, message", [
    ({"T-shirt_top": "0_t-shirt_top"}, "does not map class folder 'Ankle boot'"),
    ({**dict.fromkeys(OFFICIAL, 0), "Extra": 1}, "maps folder 'Extra', which"),
    (dict(zip(OFFICIAL, ["0_tshirt"] + list(range(1, 10)), strict=True)), "maps to '0_tshirt', which is not a class"),
    (dict(zip(OFFICIAL, range(1, 11), strict=True)), "folder 'Ankle boot' maps to output 10, but the model has 10"),
    (dict(zip(OFFICIAL, [0] * 10, strict=True)), "folders 'Ankle boot' and 'Bag' both map to output 0"),
    (dict(zip(OFFICIAL, [0.5] * 10, strict=True)), "maps to 0.5; use a class name or an output index"),
    ("[1]", "must be a JSON object"),
    ("[" * 100_000 + "]" * 100_000, "is not valid JSON"),
    ("{" + '"a": {' * 100_000 + "}" * 100_001, "is not valid JSON"),
    ("T-shirt_top\t0\tx\n", "line 1: expected folder<TAB>class, found 2 tabs"),
    ("T-shirt_top\t0\nT-shirt_top\t1\n", "line 2: folder 'T-shirt_top' is mapped twice"),
    ("Trou\x1bser\t1\n", "folder 'Trou\\x1bser' contains the control character U+001B"),
])
def test_bad_class_maps_name_the_problem(official, tmp_path, content, message, capsys):
    text = content if isinstance(content, str) else json.dumps(content)
    (tmp_path / "map").write_text(text)
    assert eval_main([str(FIXTURE), "--model", "emo_1m", "--data", str(official), "--class-map",
                      str(tmp_path / "map"), "--limit", "10"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err[-2000:]


def test_eval_refuses_malformed_checkpoint_metadata(tmp_path, capsys):
    state = torch.load(FIXTURE, weights_only=True)
    cases = [({"classes": list(range(10))}, "field 'classes': class 0 0 is not a string"),
             ({"classes": state["classes"][:9]}, "field 'classes' names 9 classes but the head has 10 outputs"),
             ({"input": {"size": [10**6, 112]}}, "field 'input.size' must be [height, width], integers 32..4096")]
    for edit, message in cases:
        torch.save({**state, **edit}, tmp_path / "c.pth")
        assert eval_main([str(tmp_path / "c.pth"), "--model", "emo_1m", "--data", str(SUBSET.parent)]) == 2
        assert message in capsys.readouterr().err
