"""Train the Fashion-MNIST fixture straight from the idx files (no PNG round trip), e.g. on a rented GPU.

Pixel for pixel the same data as ``python -m emo.fashion_mnist`` + ``emo-train`` (PNG is lossless, the same PIL
resizes run in the same order), the same ``emo.train.fit`` loop; only the file reading is skipped. Used once to make
``tests/fixtures/emo_1m_fashion_mnist.pth`` on a GPU; ``make fixture`` reproduces it with ``emo-train`` on a CPU.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from emo import fashion_mnist as fm  # noqa: E402
from emo.dataset import decode, eval_view, train_view  # noqa: E402
from emo.train import TrainConfig, fit  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--root", default=str(fm.DEFAULT_ROOT))
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--limit", type=int, default=None, help="dry run: only this many training images")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    a = p.parse_args()
    t0 = time.monotonic()
    images, labels = fm.load_split("train", a.root)
    train_idx, val_idx = fm.split_indices(labels, 5000, 0)
    if a.limit:
        train_idx, val_idx = train_idx[:a.limit], val_idx[: max(10, a.limit // 10)]
    side = round(a.size / 0.875)
    classes = list(fm.CLASSES)
    train = decode((fm.upscale(images[i], a.size).convert("RGB") for i in train_idx), labels[train_idx].tolist(),
                   classes, lambda im: train_view(im, side), workers=a.workers)
    val = decode((fm.upscale(images[i], a.size).convert("RGB") for i in val_idx), labels[val_idx].tolist(),
                 classes, lambda im: eval_view(im, (a.size, a.size)), workers=a.workers)
    print(f"decoded {len(train)} train {tuple(train.images.shape)} + {len(val)} val in {time.monotonic() - t0:.1f}s",
          flush=True)
    config = TrainConfig(model="emo_1m", input_size=(a.size, a.size), epochs=a.epochs, batch_size=a.batch_size,
                         lr=a.lr, crop_scale=(0.25, 1.0), ema_decay=0.999, max_minutes=a.max_minutes,
                         classes=classes)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    out = Path(a.out)
    summary = fit(config, train, val, out, device, progress=None, log=lambda s: print(s, flush=True))
    summary["device"] = str(torch.cuda.get_device_name() if device.type == "cuda" else "cpu")
    summary["total_s"] = round(time.monotonic() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
