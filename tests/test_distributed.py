"""emo-train and emo-eval under torchrun (issue 25): two CPU processes (gloo) started by the real torchrun
(``python -m torch.distributed.run``) on tiny generated ImageFolders at 32x32, one OpenMP thread per process (see
``ONE_THREAD`` in test_misuse_train_eval.py: more threads on this shared 2-core machine made tiny steps 20-50x
slower). In-process tests cover what needs no second process: the shards, the epoch order and the crops."""

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emo import dataset as D
from emo import distributed
from emo import train as T
from emo.evaluate import main as eval_main
from emo_testutil import REPO

CLASSES = ["circle", "square", "stripes"]
BIN = Path(sys.executable).parent
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
TRAIN = ["--input-size", "32", "--warmup-epochs", "0", "--lr", "1e-3", "--device", "cpu", "--dist-timeout", "120"]
FIXTURE = REPO / "tests" / "fixtures" / "emo_1m_fashion_mnist.pth"
SUBSET = REPO / "tests" / "fixtures" / "fashion_mnist" / "test"
# WS2 x B vs WS1 x 2B after this module's epoch (24 images, 3 AdamW steps) with --sync-bn, measured here by
# tools/ddp_equivalence.py: |theta_2 - theta_1| is 0.04 % of the update |theta_1 - theta_0|, logits differ by at most
# 3.3e-5; two one-process runs that differ only in their float summation order (1 vs 2 OpenMP threads) differ by
# 0.05 % and 3.4e-5. Without --sync-bn (each process's own BatchNorm statistics): 10.65 % and 0.23.
UPDATE_TOLERANCE, LOGIT_TOLERANCE = 0.02, 1e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(tool: str, *args, rendezvous: str = "static") -> list[str]:
    """The command line of ``torchrun --nproc_per_node 2 ...`` for our console script (or ``-m emo.train``), with a
    static master address, the c10d rendezvous of several machines, or ``--standalone`` (as the README's commands)."""
    port = _free_port()
    where = {"static": ["--master_addr", "127.0.0.1", "--master_port", str(port)],
             "c10d": ["--nnodes", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}"],
             "standalone": ["--standalone"]}[rendezvous]
    target = ["-m", tool] if tool.startswith("emo.") else [str(BIN / tool)]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *where, *target, *map(str, args)]


def _run(cmd: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ONE_THREAD, **kwargs)


def _ours(stderr: str) -> list[str]:
    """The lines our tools said on stderr (torchrun adds its own warnings and its failure report)."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith(("emo-train:", "emo-eval:"))]


def _no_traceback_from_us(stderr: str) -> None:
    assert f'File "{REPO / "emo"}' not in stderr and "[rank" not in stderr, stderr[-3000:]


def _no_partial_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.rglob("*") if "partial" in p.name]
    assert not leftovers, leftovers


def _images(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (36, 36, 3)).astype(np.uint8)
            img[8 * c:8 * c + 12, 6:30] = 220
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the in-process runs below, as the processes above


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    _images(root / "train", 8, 0)
    _images(root / "val", 2, 1)
    return root


@pytest.fixture(scope="module")
def ws2(data, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One epoch of 3 steps on 2 processes x batch 4, SyncBatchNorm, the replicas compared after every step; started
    the way the README starts several machines (c10d rendezvous at an endpoint)."""
    out = tmp_path_factory.mktemp("ws2") / "out"
    proc = _run(_torchrun("emo-train", "--data", data, "--out", out, *TRAIN, "--epochs", 1, "--batch-size", 4,
                          "--sync-bn", "--check-replicas", rendezvous="c10d"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc


# ------------------------------------------------------------------------------------------- two processes train
def test_two_processes_train_with_identical_replicas(ws2):
    out, proc = ws2
    assert ("2 processes (gloo) x batch 4 = global batch 8, SyncBatchNorm" in proc.stdout
            and "1 epochs of 3 steps" in proc.stdout), proc.stdout
    assert proc.stdout.count("done in") == 1 and _ours(proc.stderr) == [], proc.stderr[-3000:]  # rank 0 speaks
    row, = (json.loads(line) for line in (out / "log.jsonl").read_text().splitlines())
    assert row["world_size"] == 2 and row["global_batch"] == 8 and row["step"] == 3
    assert row["replicas_identical_steps"] == 3  # every step's SHA-256 of both processes' parameters was equal
    last = torch.load(out / "last.pth", weights_only=True)
    assert (last["world_size"], last["global_batch"], last["train_config"]["batch_size"], last["step"]) == (2, 8, 4, 3)
    model = T.build_model(T.TrainConfig(input_size=(32, 32), classes=CLASSES))
    model.load_state_dict(last["net"])
    assert distributed.parameter_digest(model).hex() == row["params_sha256"]  # the digest is of the saved weights
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".lock", "best.pth", "last.pth", "log.jsonl"] + (["curves.png"] if (out / "curves.png").exists() else []))


def test_two_processes_match_one_process_with_the_global_batch(ws2, data, tmp_path):
    """The first epoch of 2 processes x 4 is one process's first epoch at batch 8, batch for batch and crop for crop;
    with --sync-bn only the float summation order differs (tolerances and the measured values: top of the file)."""
    out2, _ = ws2
    assert T.main(["--data", str(data), "--out", str(tmp_path / "ws1"), *TRAIN, "--epochs", "1",
                   "--batch-size", "8"]) == 0
    one = torch.load(tmp_path / "ws1" / "last.pth", weights_only=True)
    two = torch.load(out2 / "last.pth", weights_only=True)
    config = T.TrainConfig(input_size=(32, 32), batch_size=8, classes=CLASSES)
    torch.manual_seed(0)
    start = T.build_model(config).state_dict()

    def weights(state):
        return torch.cat([v.flatten().double() for k, v in state.items() if v.is_floating_point()])

    update = (weights(one["net"]) - weights(start)).norm()
    assert (weights(two["net"]) - weights(one["net"])).norm() / update < UPDATE_TOLERANCE
    val = D.load_image_folder(data / "val", lambda im: D.eval_view(im, (32, 32)), classes=CLASSES)
    for key in ("net", "net_E"):
        logits = []
        for state in (one, two):
            model = T.build_model(config)
            model.load_state_dict(state[key])
            logits.append(T.predict(model, val.images, torch.device("cpu")))
        assert (logits[0] - logits[1]).abs().max() < LOGIT_TOLERANCE, key
    loss1, loss2 = (json.loads((o / "log.jsonl").read_text())["train_loss"] for o in (tmp_path / "ws1", out2))
    assert abs(loss1 - loss2) < 1e-3, (loss1, loss2)


def test_resume_with_one_process_continues_at_the_right_step(ws2, data, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(ws2[0], out)
    args = ["--data", str(data), "--out", str(out), *TRAIN, "--epochs", "2", "--resume", str(out / "last.pth")]
    assert T.main([*args, "--batch-size", "4"]) == 2  # the steps count global batches of 8
    assert (f"{out / 'last.pth'} was trained with a global batch of 8 (2 processes x 4) and its steps count batches "
            "of that size; with 1 process resume with --batch-size 8") in capsys.readouterr().err
    assert T.main([*args, "--batch-size", "8"]) == 0
    said = capsys.readouterr().out
    assert f"resumed from {out / 'last.pth'} at step 3 (epoch 2, 0/3 steps into it), written by 2 processes" in said
    last = torch.load(out / "last.pth", weights_only=True)
    assert (last["step"], last["epoch"], last["world_size"], last["global_batch"]) == (6, 2, 1, 8)
    assert [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2]


# -------------------------------------------------------------------------------------- stopping all processes
def _pids_by_rank(torchrun: subprocess.Popen) -> dict[int, int]:
    """The worker processes torchrun started, by the RANK torchrun gave them."""
    found = {}
    for pid in subprocess.run(["pgrep", "-P", str(torchrun.pid)], capture_output=True, text=True).stdout.split():
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        rank = [v for v in env if v.startswith(b"RANK=")]
        if rank:
            found[int(rank[0][5:])] = int(pid)
    return found


def _start_and_wait_for_training(cmd: list[str], err_path: Path) -> subprocess.Popen:
    err = open(err_path, "w")  # noqa: SIM115 - read while the processes write it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=ONE_THREAD)
    deadline = time.monotonic() + 300
    while "epoch 1/2 [" not in err_path.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()[-3000:]
        time.sleep(0.1)
    return proc


def test_ctrl_c_on_one_process_stops_both_after_the_same_step(data, tmp_path, capsys):
    """SIGINT to rank 1 only (``python -m emo.train``): both agree on the step, rank 0 saves it and says so once;
    one process resumes it mid-epoch at that step."""
    out = tmp_path / "out"
    cmd = _torchrun("emo.train", "--data", data, "--out", out, *TRAIN, "--epochs", 2, "--batch-size", 2)
    proc = _start_and_wait_for_training(cmd, tmp_path / "stderr")
    os.kill(_pids_by_rank(proc)[1], signal.SIGINT)
    stdout, _ = proc.communicate(timeout=300)
    stderr = (tmp_path / "stderr").read_text()
    assert proc.returncode != 0 and stderr.count("exitcode  : 130") == 2, stderr[-3000:]  # both stopped alike
    assert _ours(stderr) == ["emo-train: interrupted (no half-written file was left)"], stderr[-3000:]
    _no_traceback_from_us(stderr)
    saved = torch.load(out / "last.pth", weights_only=True)
    assert saved["interrupted"] is True and saved["world_size"] == 2 and 1 <= saved["step"] < 12
    said = [line for line in stdout.splitlines() if line.startswith("interrupted at step")]
    assert said == [f"interrupted at step {saved['step']}: saved {out / 'last.pth'}; continue with --resume "
                    f"{out / 'last.pth'}"], stdout
    _no_partial_files(out)
    step = saved["step"]
    assert T.main(["--data", str(data), "--out", str(out), *TRAIN, "--epochs", "2", "--batch-size", "4",
                   "--resume", str(out / "last.pth")]) == 0
    assert (f"at step {step} (epoch {step // 6 + 1}, {step % 6}/6 steps into it), written by 2 processes"
            in capsys.readouterr().out)
    assert torch.load(out / "last.pth", weights_only=True)["step"] == 12


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as ENOSPC would
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_on_rank_0_stops_both_processes_with_one_message(data, tmp_path):
    """A real write limit (RLIMIT_FSIZE 8 MB, inherited by both processes; best.pth fits, last.pth does not): rank 0
    fails at the end of epoch 1 while rank 1 waits in the next step's collective; neither hangs."""
    out = tmp_path / "out"
    proc = _run(_torchrun("emo-train", "--data", data, "--out", out, *TRAIN, "--epochs", 2, "--batch-size", 4),
                preexec_fn=_limit_file_size(8 << 20))
    assert proc.returncode != 0
    assert _ours(proc.stderr) == [f"emo-train: error: rank 0 of 2: cannot write {out / 'last.pth'}: File too large; "
                                  "no checkpoint has been saved yet"], proc.stderr[-3000:]
    _no_traceback_from_us(proc.stderr)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "best.pth"]


def test_a_killed_process_stops_the_other_at_once(data, tmp_path):
    """rank 1 killed (as the OOM killer does) mid-epoch: rank 0's next collective fails at once, it says so in one
    line with the checkpoint to resume from, and nothing is half-written."""
    out = tmp_path / "out"
    cmd = _torchrun("emo-train", "--data", data, "--out", out, *TRAIN, "--epochs", 2, "--batch-size", 2)
    proc = _start_and_wait_for_training(cmd, tmp_path / "stderr")
    os.kill(_pids_by_rank(proc)[1], signal.SIGKILL)
    proc.communicate(timeout=300)  # --dist-timeout is 120 s: an answer well before it comes from the closed socket
    stderr = (tmp_path / "stderr").read_text()
    assert proc.returncode != 0 and "(SIGKILL)" in stderr, stderr[-3000:]  # torchrun's report names rank 1's end
    line, = _ours(stderr)
    assert line.startswith("emo-train: error: rank 0 of 2: lost contact with the other processes ("), line
    going_on = (f"{out / 'last.pth'} (step " if (out / "last.pth").exists() else "no checkpoint has been saved yet")
    assert "torchrun's report names the process that failed; " + going_on in line, line
    _no_traceback_from_us(stderr)
    _no_partial_files(out)


# ---------------------------------------------------------------------------------------------------- emo-eval
def test_eval_with_two_processes_prints_the_same_report(tmp_path, capsys):
    """61 images (uneven shares) of the committed subset, one of them unreadable, in balanced order."""
    data = tmp_path / "data"
    shutil.copytree(SUBSET, data)
    (data / "3_dress" / "00000_broken.png").write_bytes(b"not a png")
    args = [FIXTURE, "--model", "emo_1m", "--data", data, "--limit", 61]
    proc = _run(_torchrun("emo-eval", *args, "--out", tmp_path / "two", rendezvous="standalone"))
    assert proc.returncode == 0 and _ours(proc.stderr) == [], proc.stderr[-3000:]
    assert eval_main([*map(str, args), "--out", str(tmp_path / "one")]) == 0
    printed = capsys.readouterr().out

    def masked(text: str, out: Path) -> list[list[str]]:  # the report: its time column and --out masked
        lines = text.replace(str(out), "OUT").splitlines()
        lines = lines[next(i for i, line in enumerate(lines) if line.startswith(f"{data}: ")):]
        return [words[:-2] + ["S", "ok"] if words[-1:] == ["ok"] else words for words in map(str.split, lines)]

    assert masked(proc.stdout, tmp_path / "two") == masked(printed, tmp_path / "one"), (proc.stdout, printed)
    one, two = (json.loads((tmp_path / d / "eval.json").read_text()) for d in ("one", "two"))
    for report in (one, two):
        for row in report["rows"]:
            row.pop("seconds")
            row.pop("confusion_png", None)
    assert one == two and one["num_images"] == 60 and len(one["unreadable"]) == 1


# ------------------------------------------------------------------------------------ the order, in one process
@pytest.mark.parametrize("space, world, batch", [(24, 2, 4), (50, 3, 4), (7, 2, 2), (64, 4, 1)])
def test_shards_cover_the_data_once_and_deal_the_first_epoch_as_one_process(space, world, batch):
    shards = [D.shard(space, r, world, batch, seed=5) for r in range(world)]
    assert torch.equal(torch.cat(shards).sort().values, torch.arange(space))  # disjoint, and the union is all
    ones = D.ImageSet(torch.zeros(space, 1, 1, 1), torch.zeros(space, dtype=torch.int64), ["a"])
    first = D.epoch_order(ones, 5, 0)  # one process: the epoch's permutation itself, as before torchrun
    expected = torch.randperm(space, generator=torch.Generator().manual_seed(D.derived_seed(5, 1009, 0)))
    assert torch.equal(first, expected)
    orders = []
    for r, rows in enumerate(shards):
        mine = D.ImageSet(torch.zeros(len(rows), 1, 1, 1), torch.zeros(len(rows), dtype=torch.int64), ["a"],
                          index=rows, space=space)
        orders.append([rows[D.epoch_order(mine, 5, epoch)] for epoch in (0, 1)])
        assert torch.equal(orders[r][1].sort().values, rows)  # a later epoch: a permutation of the same shard
    g = world * batch
    for i in range(space // g):  # the first epoch's global batch i is one process's batch i at batch size g
        together = torch.cat([orders[r][0][i * batch:(i + 1) * batch] for r in range(world)])
        assert torch.equal(together, first[i * g:(i + 1) * g])


def test_a_process_crops_its_slice_of_the_global_batch():
    x = (torch.arange(6 * 3 * 10 * 10) % 251).to(torch.uint8).reshape(6, 3, 10, 10)
    g = lambda: torch.Generator().manual_seed(11)  # noqa: E731
    whole = D.random_resized_crop(x, (8, 8), g())
    parts = [D.random_resized_crop(x[r * 2:(r + 1) * 2], (8, 8), g(), part=(r, 3)) for r in range(3)]
    assert torch.equal(torch.cat(parts), whole)


def test_replica_digest_tells_weights_apart():
    model = T.build_model(T.TrainConfig(input_size=(32, 32), classes=CLASSES))
    before = distributed.parameter_digest(model)
    assert distributed.parameter_digest(model) == before
    with torch.no_grad():
        model.head.bias[0] += 1e-7
    assert distributed.parameter_digest(model) != before


def test_malformed_world_size_in_a_resume_checkpoint_is_named(ws2):
    state = torch.load(ws2[0] / "last.pth", weights_only=True)
    config = T.TrainConfig(input_size=(32, 32), batch_size=8, classes=CLASSES)
    T.check_resume_state(state, "last.pth", config)  # 2 x 4 resumes as 1 x 8
    for edit, message in [({"world_size": 0}, "field 'world_size' must be an integer in 1..65536, not 0"),
                          ({"world_size": "2"}, "field 'world_size' must be an integer"),
                          ({"global_batch": 9}, "field 'global_batch' must be world_size x train_config.batch_size "
                                                "(2 x 4), not 9")]:
        with pytest.raises(T.EMOError, match=message.replace("(", r"\(").replace(")", r"\)")):
            T.check_resume_state({**state, **edit}, "last.pth", config)
    with pytest.raises(T.EMOError, match="with 3 processes resume with a number of processes that divides 8"):
        T.check_resume_state(state, "last.pth", config, world_size=3)


def test_a_failed_collective_is_one_line_and_other_errors_stay_what_they_are():
    """gloo's own words (as it raised them in the runs above) without its source location and advice; a hung peer
    names --dist-timeout; an error that is not the peers' doing is not disguised as one."""
    group = distributed.Group(rank=0, world_size=2, timeout_s=5)
    with pytest.raises(distributed.PeersLost, match=r"^lost contact with the other processes \(Read error "
                       r"\[127\.0\.0\.1\]:58569: Connection reset by peer\); torchrun's report names the process"):
        with group.guard():
            raise RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
                               "[127.0.0.1]:58569: Connection reset by peer. This is typically caused by a remote "
                               "worker hanging or bugs in the application.")
    with pytest.raises(distributed.PeersLost, match=r"^no answer from the other processes within --dist-timeout 5 s "
                       r"\(Timed out waiting 5000ms for recv operation to complete\)"):
        with group.guard():
            raise RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] "
                               "Timed out waiting 5000ms for recv operation to complete")
    with pytest.raises(torch.OutOfMemoryError):
        with group.guard():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
