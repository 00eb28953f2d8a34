"""How close is emo-train on 2 processes x batch B to 1 process x batch 2B? Prints the README's table.

Four real runs of one epoch on a generated 3-class ImageFolder at 32x32 (emo_1m, AdamW lr 1e-3, no warm-up), each
with one OpenMP thread per process unless said: 1 process x 2B (the reference), the same with 2 threads (the noise
floor: only the float summation order differs), 2 processes x B with --sync-bn and without, started by torchrun
(gloo). For each: |theta - theta_ref| / |theta_ref - theta_0| over every float tensor of the state dict, and the
largest logit difference on the validation images (raw weights and EMA).

    .venv/bin/python tools/ddp_equivalence.py [--per-class 8] [--batch 4] [--out /tmp/ddp_equivalence]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from emo import dataset as D
from emo import train as T

CLASSES = ["circle", "square", "stripes"]


def images(root: Path, per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (36, 36, 3)).astype(np.uint8)
            img[8 * c:8 * c + 12, 6:30] = 220
            Image.fromarray(img).save(root / name / f"{i:03d}.png")


def train(out: Path, data: Path, processes: int, batch: int, threads: int, *extra: str) -> float:
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "emo-train"), "--data", str(data), "--out", str(out), "--input-size", "32", "--epochs", "1",
           "--warmup-epochs", "0", "--lr", "1e-3", "--device", "cpu", "--batch-size", str(batch), *extra]
    if processes > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(port), *cmd]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-class", type=int, default=8, help="training images per class (validation: a quarter)")
    p.add_argument("--batch", type=int, default=4, help="per-process batch B of the 2-process runs")
    p.add_argument("--out", default="/tmp/ddp_equivalence")
    a = p.parse_args()
    root = Path(a.out)
    shutil.rmtree(root, ignore_errors=True)
    images(root / "data" / "train", a.per_class, 0)
    images(root / "data" / "val", max(1, a.per_class // 4), 1)
    runs = {"1 process x 2B, 1 thread (reference)": (1, 2 * a.batch, 1, ()),
            "1 process x 2B, 2 threads (noise floor)": (1, 2 * a.batch, 2, ()),
            "2 processes x B, --sync-bn": (2, a.batch, 1, ("--sync-bn",)),
            "2 processes x B, no --sync-bn": (2, a.batch, 1, ())}
    states, seconds = {}, {}
    for i, (name, (procs, batch, threads, extra)) in enumerate(runs.items()):
        out = root / f"run{i}"
        seconds[name] = train(out, root / "data", procs, batch, threads, *extra)
        states[name] = torch.load(out / "last.pth", weights_only=True)
    config = T.TrainConfig(input_size=(32, 32), batch_size=2 * a.batch, classes=CLASSES)
    torch.manual_seed(0)
    start = T.build_model(config).state_dict()
    val = D.load_image_folder(root / "data" / "val", lambda im: D.eval_view(im, (32, 32)), classes=CLASSES)

    def flat(state: dict) -> torch.Tensor:
        return torch.cat([v.flatten().double() for v in state.values() if v.is_floating_point()])

    def logits(state: dict, key: str) -> torch.Tensor:
        model = T.build_model(config)
        model.load_state_dict(state[key])
        return T.predict(model, val.images, torch.device("cpu"))

    ref_name = next(iter(runs))
    ref = states[ref_name]
    update = (flat(ref["net"]) - flat(start)).norm()
    steps = ref["step"]
    print(f"{3 * a.per_class} training images, one epoch of {steps} steps at a global batch of {2 * a.batch}; "
          f"{len(val)} validation images")
    print("| run | parameter difference / parameter update | largest logit difference (weights, EMA) | s |")
    print("|---|---|---|---|")
    for name, state in states.items():
        if name == ref_name:
            print(f"| {name} | - | - | {seconds[name]:.1f} |")
            continue
        rel = float((flat(state["net"]) - flat(ref["net"])).norm() / update)
        dl = [float((logits(state, k) - logits(ref, k)).abs().max()) for k in ("net", "net_E")]
        print(f"| {name} | {rel * 100:.2f} % | {dl[0]:.1e}, {dl[1]:.1e} | {seconds[name]:.1f} |")
    losses = {n: json.loads((root / f"run{i}" / "log.jsonl").read_text())["train_loss"]
              for i, n in enumerate(runs)}
    print("training loss of the epoch:", losses)


if __name__ == "__main__":
    main()
