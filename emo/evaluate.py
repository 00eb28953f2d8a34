"""``emo-eval``: accuracy of a PyTorch checkpoint and of exported artifacts, each in its own runtime, on a labelled
ImageFolder: top-1/top-5, per-class accuracy and the confusion matrix, side by side with the difference to the
first row. The one accuracy report that every precision (fp32, fp16, int8) and format is measured with.

Images go through the eval transform of ``emo.preprocess`` once (``emo.train.eval_view``, kept as uint8; exact,
because the transform's pixels are k / 255). A checkpoint runs in PyTorch; an artifact runs through the loaders
``emo-verify`` uses (``emo.export``: the backend table, ``host_runtimes``/``load``, ``artifact_logits``), so the
numbers are those of the runtime an app ships with. ``emo.export`` is imported only for artifacts.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from emo.cli_common import one_line_errors
from emo.errors import EMOError, first_line
from emo.train import ImageSet, eval_view, predict, scan_image_folder

CHUNK = 256  # images converted to float32 at a time (10k images at 224 would be 6 GB at once)


@dataclass
class Candidate:
    """One row of the report: a checkpoint (PyTorch) or an artifact in one of its host runtimes."""

    name: str
    kind: str                             # "pytorch" | "artifact"
    runtime: str
    size: tuple[int, int]
    classes: list[str] | None             # class names in head order, if known
    run: object = None                    # uint8 ImageSet -> logits (N, classes)
    skipped: str | None = None
    probabilities: bool = False
    result: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- candidates
def checkpoint_candidate(path: str, model_name: str, ema: bool, input_size: tuple[int, int] | None) -> Candidate:
    from emo.checkpoint import read_checkpoint
    from emo.model import create_model

    model = create_model(model_name, path, ema=ema)
    obj = read_checkpoint(path)
    meta = obj if isinstance(obj, dict) else {}
    classes = meta.get("classes") if isinstance(meta.get("classes"), list) else None
    if classes is None and model.head.out_features == 1000:
        from emo.data import imagenet_labels
        classes = list(imagenet_labels())
    recorded = (meta.get("input") or {}).get("size") if isinstance(meta.get("input"), dict) else None
    size = input_size or (tuple(int(v) for v in recorded) if recorded else (224, 224))

    def run(images: ImageSet) -> np.ndarray:
        return predict(model, images.images, torch.device("cpu"), batch_size=64).numpy()

    return Candidate(Path(path).name + (" (EMA)" if ema else ""), "pytorch", f"PyTorch {torch.__version__} (eager)",
                     size, classes, run)


def artifact_candidates(path: str) -> list[Candidate]:
    """An artifact in every runtime that runs it on this host (as ``emo-verify`` checks it)."""
    from emo.export.output import captured_output
    from emo.export.pipeline import artifact_logits, contract_batch_and_size, read_sidecar, sidecar_backend

    artifact = Path(path)
    if not artifact.exists():
        raise EMOError(f"artifact not found: {artifact}")
    side = read_sidecar(artifact)
    backend = sidecar_backend(side)
    with captured_output(io.StringIO()):
        module = backend.load_module()
    batch, size = contract_batch_and_size(side["input"])
    in_graph = bool(side["input"]["normalization"]["in_graph"])
    classes = (side.get("labels") or {}).get("names")
    probabilities = side["output"].get("kind") == "probabilities"
    name = artifact.name
    if not getattr(module, "CAN_RUN_HERE", True):
        return [Candidate(name, "artifact", backend.runtime, size, classes, skipped=module.SKIP_REASON)]
    runtimes = module.host_runtimes(artifact) if hasattr(module, "host_runtimes") else [(backend.runtime, module.load)]
    out = []
    for runtime, load in runtimes:
        try:
            with captured_output(io.StringIO()):
                fn = load(artifact)
        except EMOError:
            raise
        except Exception as e:  # a truncated or foreign file: the runtime's own parser error, on one line
            raise EMOError(f"{runtime} cannot load {name} (truncated or not a {backend.name} artifact?): "
                           f"{first_line(e)}") from None

        def run(images: ImageSet, fn=fn, runtime=runtime) -> np.ndarray:
            step = batch or 32                       # a dynamic-batch artifact: 32 images a call
            chunk = max(step, CHUNK // step * step)  # whole batches; artifact_logits pads the last one as emo-verify
            rows = []
            for i in range(0, len(images), chunk):
                x = (images.images[i:i + chunk].float() / 255.0).expand(-1, 3, -1, -1).numpy()
                try:
                    with captured_output(io.StringIO()):
                        rows.append(artifact_logits(fn, np.ascontiguousarray(x, dtype=np.float32), step, in_graph))
                except Exception as e:  # the runtime cannot run it: a failed row, not a crash
                    raise RuntimeError(f"{runtime}: {first_line(e, 300)}") from None
            return np.concatenate(rows)

        out.append(Candidate(name if len(runtimes) == 1 else f"{name} [{runtime}]", "artifact", runtime, size,
                             list(classes) if classes else None, run, probabilities=probabilities))
    return out


# ------------------------------------------------------------------------------------------------------- metrics
def class_mapping(folder_classes: list[str], model_classes: list[str] | None, num_outputs: int, where: str
                  ) -> list[int]:
    """For each class folder, the model's output index: by name when the model knows its class names, else by
    sorted folder order."""
    if model_classes:
        missing = [c for c in folder_classes if c not in model_classes]
        if not missing:
            return [model_classes.index(c) for c in folder_classes]
        if len(folder_classes) != num_outputs:
            raise EMOError(f"class folder {missing[0]!r} of {where} is not one of the model's classes "
                           f"({', '.join(model_classes[:5])}{', ...' if len(model_classes) > 5 else ''}); "
                           "name the folders after the model's classes")
    if len(folder_classes) > num_outputs:
        raise EMOError(f"{where} has {len(folder_classes)} class folders but the model has {num_outputs} outputs")
    return list(range(len(folder_classes)))


def metrics(logits: np.ndarray, labels: np.ndarray, mapping: list[int], classes: list[str]) -> dict:
    """Top-1/top-5 over the folder's classes, per-class accuracy and the confusion matrix (rows: true class)."""
    target = np.asarray(mapping)[labels]
    order = np.argsort(-logits, axis=1)
    pred = order[:, 0]
    k = min(5, logits.shape[1])
    top5 = (order[:, :k] == target[:, None]).any(axis=1)
    inverse = {m: i for i, m in enumerate(mapping)}
    pred_folder = np.array([inverse.get(int(p), -1) for p in pred])  # -1: a class the folder does not hold
    n = len(classes)
    confusion = np.zeros((n, n + 1), dtype=np.int64)  # last column: predicted a class outside the folder
    np.add.at(confusion, (labels, np.where(pred_folder < 0, n, pred_folder)), 1)
    per_class = {c: round(float(confusion[i, i] / max(1, confusion[i].sum()) * 100), 2) for i, c in enumerate(classes)}
    result = {"top1": round(float((pred == target).mean() * 100), 3), "top5": round(float(top5.mean() * 100), 3),
              "per_class": per_class, "confusion": confusion[:, :n].tolist(), "predictions": pred.tolist()}
    if confusion[:, n].any():
        result["outside_folder_classes"] = int(confusion[:, n].sum())
    return result


def plot_confusion(result: dict, classes: list[str], title: str, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    m = np.asarray(result["confusion"], dtype=np.float64)
    norm = m / np.maximum(1, m.sum(axis=1, keepdims=True))
    n = len(classes)
    fig, ax = plt.subplots(figsize=(max(5, 0.55 * n + 2), max(4.5, 0.5 * n + 1.5)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 40:
        ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), classes, fontsize=8)
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=f"{title}: top-1 {result['top1']:.2f}%")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return True


# --------------------------------------------------------------------------------------------------------- report
def balanced_order(labels: np.ndarray) -> np.ndarray:
    """Indices interleaved over classes (class 0's first image, class 1's first, ...): any prefix is balanced."""
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    rank = np.empty(len(labels), dtype=np.int64)
    for members in per_class:
        rank[members] = np.arange(len(members))
    return np.lexsort((labels, rank))


def evaluate(candidates: list[Candidate], data: Path, limit: int | None, workers: int, log=print) -> dict:
    classes, samples = scan_image_folder(data, min_classes=1)
    labels_all = np.array([c for _, c in samples])
    order = balanced_order(labels_all)[:limit] if limit else np.arange(len(samples))
    picked = [samples[i] for i in order]
    cache: dict[tuple[int, int], ImageSet] = {}
    first = None
    for cand in candidates:
        row = cand.result
        row.update({"name": cand.name, "kind": cand.kind, "runtime": cand.runtime, "input_size": list(cand.size)})
        if cand.skipped:
            row["status"] = f"skipped: {cand.skipped}"
            continue
        if cand.size not in cache:
            t0 = time.monotonic()
            from emo.train import decode
            cache[cand.size] = decode([p for p, _ in picked], [c for _, c in picked], classes,
                                      lambda im, s=cand.size: eval_view(im, s), workers=workers)
            log(f"decoded {len(cache[cand.size])} images of {data} at {cand.size[0]}x{cand.size[1]} "
                f"in {time.monotonic() - t0:.1f}s" + (f" ({len(cache[cand.size].skipped)} unreadable, skipped)"
                                                      if cache[cand.size].skipped else ""))
        images = cache[cand.size]
        t0 = time.monotonic()
        try:
            logits = np.asarray(cand.run(images), dtype=np.float64)
        except RuntimeError as e:
            row["status"] = f"failed: {first_line(e, 300)}"
            continue
        row["seconds"] = round(time.monotonic() - t0, 2)
        mapping = class_mapping(classes, cand.classes, logits.shape[1], str(data))
        row.update(metrics(logits, images.labels.numpy(), mapping, classes))
        row["status"] = "ok"
        log(f"{cand.name} ({cand.runtime}): top-1 {row['top1']:.2f}% on {len(images)} images in {row['seconds']:.1f}s")
        if first is None:
            first = row
        else:
            row["delta_top1"] = round(row["top1"] - first["top1"], 3)
            row["agreement_with_first"] = round(float(np.mean(np.asarray(row["predictions"])
                                                              == np.asarray(first["predictions"]))) * 100, 3)
    decoded = next(iter(cache.values()), None)
    return {"data": str(data), "classes": classes, "num_images": len(decoded) if decoded else 0,
            "unreadable": decoded.skipped if decoded else [], "limit": limit,
            "rows": [c.result for c in candidates]}


def format_report(report: dict) -> str:
    from emo.cli_common import format_table

    rows = []
    for r in report["rows"]:
        ok = r.get("status") == "ok"
        rows.append([r["name"], r["runtime"], "x".join(map(str, r["input_size"])),
                     f"{r['top1']:.2f}" if ok else "-", f"{r['top5']:.2f}" if ok else "-",
                     f"{r['delta_top1']:+.2f}" if "delta_top1" in r else "-",
                     f"{r['agreement_with_first']:.2f}" if "agreement_with_first" in r else "-",
                     f"{r['seconds']:.1f}" if ok else "-", r.get("status", "")])
    text = [f"{report['data']}: {report['num_images']} images, {len(report['classes'])} classes"
            + (f" (first {report['limit']}, balanced over classes)" if report["limit"] else "")
            + (f"; {len(report['unreadable'])} unreadable images skipped" if report["unreadable"] else ""),
            format_table(rows, ["model", "runtime", "input", "top-1 %", "top-5 %", "d top-1", "same pred %",
                                 "s", "status"])]
    done = [r for r in report["rows"] if r.get("status") == "ok"]
    classes = report["classes"]
    if done and len(classes) <= 50:
        per = [[c] + [f"{r['per_class'][c]:.1f}" for r in done] for c in classes]
        text += ["", "per-class top-1 %", format_table(per, ["class"] + [f"#{i + 1}" for i in range(len(done))])]
        m = done[0]["confusion"]
        short = [c[:10] for c in classes]
        conf = [[short[i]] + [str(v) for v in m[i]] for i in range(len(classes))]
        text += ["", f"confusion matrix of #1 ({done[0]['name']}; rows: true class, columns: predicted)",
                 format_table(conf, ["true \\ pred"] + short)]
    return "\n".join(text)


def eval_main(argv: list[str] | None = None) -> int:
    from emo.cli_common import Parser, parse_input_size

    p = Parser(prog="emo-eval", description="Accuracy (top-1/top-5, per class, confusion matrix) of a checkpoint "
                "and of exported artifacts in their own runtimes, on a labelled ImageFolder.")
    p.add_argument("models", nargs="+", help="a checkpoint (with --model) and/or exported artifacts (sidecar next "
                   "to them); the first is the baseline of the difference column")
    p.add_argument("--model", help="variant of the checkpoint(s): emo_1m | emo_2m | emo_5m | emo_6m")
    p.add_argument("--ema", action="store_true", help="checkpoint: load the EMA weights ('net_E')")
    p.add_argument("--data", required=True, help="ImageFolder (one sub-folder per class), or a folder holding test/")
    p.add_argument("--limit", type=int, help="evaluate only the first N images, balanced over classes")
    p.add_argument("--input-size", help="checkpoint input size N or HxW (default: the checkpoint's, else 224)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (for scripts) instead of tables")
    p.add_argument("--out", help="folder for eval.json and one confusion-matrix PNG per row")
    p.add_argument("--workers", type=int, default=2, help="image decoding threads (default 2)")
    args = p.parse_intermixed_args(argv)  # checkpoint --model NAME artifact ... in any order
    if args.limit is not None and args.limit < 1:
        raise EMOError(f"--limit {args.limit} must be at least 1")
    if not 1 <= args.workers <= 64:
        raise EMOError(f"--workers {args.workers} is out of range; use 1..64")
    size = parse_input_size(args.input_size) if args.input_size else None
    data = Path(args.data)
    if (data / "test").is_dir():
        data = data / "test"
    scan_image_folder(data, min_classes=1)  # bad data fails before any model is loaded
    out = Path(args.out) if args.out else None
    if out is not None:
        from emo.cli_common import check_out_dir
        check_out_dir(out)
    candidates: list[Candidate] = []
    for item in args.models:
        path = Path(item)
        if not path.exists():
            raise EMOError(f"not found: {item}")
        if path.suffix in (".pth", ".pt", ".bin", ".ckpt") and path.is_file():
            if not args.model:
                raise EMOError(f"{item} is a checkpoint: name its variant with --model (emo_1m, emo_2m, ...)")
            candidates.append(checkpoint_candidate(item, args.model, args.ema, size))
        else:
            candidates += artifact_candidates(item)
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    report = evaluate(candidates, data, args.limit, args.workers, log)
    if out is not None:
        from emo.contract.jsonio import write_json_atomic
        for i, row in enumerate(report["rows"], 1):
            if row.get("status") == "ok":
                png = out / f"confusion_{i}_{Path(row['name'].split(' ')[0]).stem}.png"
                if plot_confusion(row, report["classes"], row["name"], png):
                    row["confusion_png"] = str(png)
        write_json_atomic(out / "eval.json", report)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
        if out is not None:
            plotted = any("confusion_png" in r for r in report["rows"])
            print(f"wrote {out / 'eval.json'}"
                  + ("" if plotted else " (no PNG: matplotlib missing, pip install 'emo-mobile[bench]')"))
    failed = [r for r in report["rows"] if r.get("status", "").startswith("failed")]
    return 1 if failed else 0


main = one_line_errors(eval_main)

if __name__ == "__main__":
    sys.exit(main())
