"""``emo-eval``: accuracy of a PyTorch checkpoint and of exported artifacts, each in its own runtime, on a labelled
ImageFolder: top-1/top-5, per-class accuracy and the confusion matrix, side by side with the difference to the
first row. The one accuracy report that every precision (fp32, fp16, int8) and format is measured with.

Images go through the eval transform of ``emo.preprocess`` once (``emo.dataset.eval_view``, kept as uint8; exact,
because the transform's pixels are k / 255). A checkpoint runs in PyTorch; an artifact runs through the loaders
``emo-verify`` uses (the contract's loader table ``emo.contract.runtimes``, then
``emo.export.pipeline.artifact_logits``), so the numbers are those of the runtime an app ships with. ``emo.export`` is
imported only for artifacts.

Class folders meet a model's outputs by exact class name, never silently by position: when the model knows its class
names and a folder matches none of them, emo-eval refuses and names them. ``--class-map FILE`` maps folders to
classes explicitly, ``--by-order`` maps sorted folder i to output i; the report states the mapping in its header
and in the JSON (``class_mapping``). Only a model without class names is mapped by order unasked, and said so.

Under ``torchrun`` (``emo.distributed``) each process decodes and runs a contiguous share of the images; the logits
and labels are gathered in the original order, so rank 0 prints (and writes) the same report as one process.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from emo import distributed
from emo.checkpoint import trained_metadata
from emo.cli_common import one_line_errors
from emo.data import MAX_CLASSES, check_class_name
from emo.dataset import ImageSet, eval_view, scan_image_folder
from emo.distributed import Group
from emo.errors import EMOError, first_line
from emo.train import integer_option, number_option, predict

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
    outputs: int | None = None            # number of outputs (classes), when known before running
    mapping: ClassMapping | None = None   # class folder -> output, decided before any image is decoded
    result: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- candidates
def checkpoint_candidate(path: str, model_name: str, ema: bool, input_size: tuple[int, int] | None) -> Candidate:
    from emo.checkpoint import read_checkpoint
    from emo.model import create_model

    model = create_model(model_name, path, ema=ema)
    obj = read_checkpoint(path)
    classes, recorded = trained_metadata(obj, path) if isinstance(obj, dict) else (None, None)
    outputs = model.head.out_features
    if classes is not None and len(classes) != outputs:
        raise EMOError(f"{path}: field 'classes' names {len(classes)} classes but the head has {outputs} outputs; "
                       "the checkpoint is inconsistent")
    if classes is None and outputs == 1000:
        from emo.data import imagenet_labels
        classes = list(imagenet_labels())
    size = input_size or recorded or (224, 224)

    def run(images: ImageSet) -> np.ndarray:
        return predict(model, images.images, torch.device("cpu"), batch_size=64).numpy()

    return Candidate(Path(path).name + (" (EMA)" if ema else ""), "pytorch", f"PyTorch {torch.__version__} (eager)",
                     size, classes, run, outputs=outputs)


def artifact_candidates(path: str) -> list[Candidate]:
    """An artifact in every runtime that runs it on this host (as ``emo-verify`` checks it)."""
    from emo.contract import runtimes
    from emo.contract.output import captured_output
    from emo.export.pipeline import (
        artifact_logits,
        contract_batch_and_size,
        read_sidecar,
        require_runtime,
        sidecar_backend,
    )

    artifact = Path(path)
    if not artifact.exists():
        raise EMOError(f"artifact not found: {artifact}")
    side = read_sidecar(artifact)
    backend = sidecar_backend(side)
    batch, size = contract_batch_and_size(side["input"])
    classes = (side.get("labels") or {}).get("names")
    outputs = side.get("num_classes") if isinstance(side.get("num_classes"), int) else None
    probabilities = side["output"].get("kind") == "probabilities"
    name = artifact.name
    loaders, reason = runtimes.choose(artifact, backend.name)  # another platform, or a file no runtime here takes
    if reason:
        return [Candidate(name, "artifact", backend.runtime, size, classes, skipped=reason, outputs=outputs)]
    require_runtime(backend)
    out = []
    for loader in loaders:  # every runtime of the format that runs here (the contract's loader table)
        runtime = loader.runtime
        try:
            with captured_output(io.StringIO()):
                fn = loader.open(artifact, None)
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
                        rows.append(artifact_logits(fn, np.ascontiguousarray(x, dtype=np.float32), step,
                                                    side["input"]))
                except Exception as e:  # the runtime cannot run it: a failed row, not a crash
                    raise RuntimeError(f"{runtime}: {first_line(e, 300)}") from None
            return np.concatenate(rows)

        out.append(Candidate(name if len(loaders) == 1 else f"{name} [{runtime}]", "artifact", runtime, size,
                             list(classes) if classes else None, run, probabilities=probabilities, outputs=outputs))
    return out


# ------------------------------------------------------------------------------------------------- class mapping
@dataclass
class ClassMapping:
    """Which output each class folder is scored against, and how that was decided (stated in the report)."""

    outputs: list[int]                    # folder i (sorted) -> output index
    mode: str                             # "by_name" | "class_map" | "by_order" | "by_order_unnamed"
    source: str | None = None             # the --class-map file


MAPPING_WORDS = {"by_name": "by name", "class_map": "by --class-map {source}",
                 "by_order": "BY ORDER (--by-order: sorted folder i -> output i)",
                 "by_order_unnamed": "by order (sorted folder i -> output i: the model has no class names)"}


def class_mapping(folders: list[str], model_classes: list[str] | None, outputs: int | None, where: str, *,
                  class_map: dict[str, str | int] | None = None, class_map_source: str | None = None,
                  by_order: bool = False) -> ClassMapping:
    """Each class folder's output index: by exact class name; never by position unless asked (``by_order``) or
    unless the model knows no names. A folder that matches no class name is refused, with the names and the ways
    to map explicitly. No fuzzy matching: "T-shirt_top" is not "0_t-shirt_top" unless a class map says so."""
    if outputs is None and model_classes is not None:
        outputs = len(model_classes)
    if class_map is not None:
        return ClassMapping(resolve_class_map(class_map, folders, model_classes, outputs, where, class_map_source),
                            "class_map", class_map_source)
    if by_order or model_classes is None:
        if outputs is not None and len(folders) > outputs:
            raise EMOError(f"{where} has {len(folders)} class folders but the model has {outputs} outputs")
        return ClassMapping(list(range(len(folders))), "by_order" if by_order else "by_order_unnamed")
    unmatched = [f for f in folders if f not in model_classes]
    if unmatched:
        raise EMOError(_refusal(unmatched, folders, model_classes, where))
    twice = [f for f in folders if model_classes.count(f) > 1]
    if twice:
        raise EMOError(f"class folder {twice[0]!r} of {where} names {model_classes.count(twice[0])} outputs of the "
                       "model (its class names repeat); map it to one output index with --class-map FILE")
    return ClassMapping([model_classes.index(f) for f in folders], "by_name")


def _refusal(unmatched: list[str], folders: list[str], model_classes: list[str], where: str) -> str:
    shown = ", ".join(repr(f) for f in unmatched[:4]) + (f" (+{len(unmatched) - 4} more)" if len(unmatched) > 4 else "")
    names = ", ".join(repr(c) for c in model_classes[:10]) + (", ..." if len(model_classes) > 10 else "")
    hint = ""
    if all(re.fullmatch(r"n\d{8}", f) for f in folders) and len(model_classes) == 1000:
        hint = " (ImageNet's WordNet-id folders: their sorted order is the class order, so --by-order is right)"
    else:
        alike = _lookalike(unmatched[0], model_classes)
        hint = f" ({unmatched[0]!r} looks like {alike!r})" if alike else ""
    return (f"{len(unmatched)} of the {len(folders)} class folders of {where} match none of the model's class "
            f"names: {shown}; the model's classes: {names}{hint}. Rename the folders after them, map them with "
            "--class-map FILE (JSON {\"folder\": \"class\"} or folder<TAB>class lines), or pass --by-order "
            "(sorted folder i -> output i)")


def _lookalike(folder: str, model_classes: list[str]) -> str | None:
    """The one class name equal to ``folder`` up to case, separators and a leading "3_" index: only a hint."""
    def key(name: str) -> str:
        return re.sub(r"[\s_\-/]+", "_", re.sub(r"^\d+[\s_\-.]+", "", name.lower())).strip("_")

    hits = [c for c in model_classes if key(c) == key(folder)]
    return hits[0] if len(hits) == 1 else None


MAX_CLASS_MAP_BYTES = 32 << 20


def read_class_map(path: str | Path) -> dict[str, str | int]:
    """``--class-map``: a JSON object ``{"folder": "class name" or output index}``, or lines ``folder<TAB>class``
    (the value a class name, or an output index when it is a number that names no class). Folder names are
    checked as class names; nothing is resolved against a model yet."""
    path = Path(path)
    try:
        if not path.is_file():
            raise EMOError(f"--class-map {path}: not a file")
        if path.stat().st_size > MAX_CLASS_MAP_BYTES:
            raise EMOError(f"--class-map {path} is larger than {MAX_CLASS_MAP_BYTES >> 20} MB")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EMOError(f"cannot read --class-map {path}: {first_line(e)}") from None
    if text.lstrip()[:1] in ("{", "["):
        try:
            mapping = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise EMOError(f"--class-map {path} is not valid JSON: {first_line(e)}") from None
        if not isinstance(mapping, dict):
            raise EMOError(f"--class-map {path} must be a JSON object {{\"folder\": \"class\"}}")
    else:
        mapping = {}
        for number, line in enumerate(text.split("\n"), 1):
            line = line.rstrip("\r")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise EMOError(f"--class-map {path} line {number}: expected folder<TAB>class, found "
                               f"{len(parts) - 1} tabs")
            if parts[0] in mapping:
                raise EMOError(f"--class-map {path} line {number}: folder {parts[0]!r} is mapped twice")
            mapping[parts[0]] = parts[1]
    if not 1 <= len(mapping) <= MAX_CLASSES:
        raise EMOError(f"--class-map {path} maps {len(mapping)} folders; use 1..{MAX_CLASSES}")
    for folder, value in mapping.items():
        check_class_name(folder, f"--class-map {path}: folder")
        if isinstance(value, str):
            check_class_name(value, f"--class-map {path}: class of folder {folder!r}")
        elif not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9):
            raise EMOError(f"--class-map {path}: folder {folder!r} maps to {str(value)[:40]}; use a class name or "
                           "an output index (an integer >= 0)")
    return mapping


def resolve_class_map(class_map: dict[str, str | int], folders: list[str], model_classes: list[str] | None,
                      outputs: int | None, where: str, source: str | None) -> list[int]:
    """Every folder mapped, each to a class of this model (by exact name) or an output index in range, no two
    folders to the same output."""
    label = f"--class-map {source}"
    unmapped = [f for f in folders if f not in class_map]
    if unmapped:
        raise EMOError(f"{label} does not map class folder {unmapped[0]!r} of {where}"
                       + (f" (+{len(unmapped) - 1} more)" if len(unmapped) > 1 else "") + "; map every folder")
    unknown = [f for f in class_map if f not in folders]
    if unknown:
        raise EMOError(f"{label} maps folder {unknown[0]!r}, which {where} does not have; remove it or fix the name")
    result, taken = [], {}
    for folder in folders:
        value = class_map[folder]
        if isinstance(value, str) and model_classes is not None and value in model_classes:
            if model_classes.count(value) > 1:
                raise EMOError(f"{label}: class {value!r} names {model_classes.count(value)} outputs of the model; "
                               "map the folder to an output index instead")
            index = model_classes.index(value)
        elif isinstance(value, int) or value.isdigit():
            index = int(value)
            if outputs is not None and index >= outputs:
                raise EMOError(f"{label}: folder {folder!r} maps to output {index}, but the model has {outputs} "
                               f"outputs (0..{outputs - 1})")
        else:
            names = ", ".join(repr(c) for c in (model_classes or [])[:10])
            raise EMOError(f"{label}: folder {folder!r} maps to {value!r}, which is not a class of the model"
                           + (f" ({names}{', ...' if len(model_classes) > 10 else ''})" if model_classes
                              else " (it has no class names: map to output indices)"))
        if index in taken:
            raise EMOError(f"{label}: folders {taken[index]!r} and {folder!r} both map to output {index}; each "
                           "output may score one folder")
        taken[index] = folder
        result.append(index)
    return result


# ------------------------------------------------------------------------------------------------------- metrics
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
    per_class = {c: (round(float(confusion[i, i] / confusion[i].sum() * 100), 2) if confusion[i].sum() else None)
                 for i, c in enumerate(classes)}  # None: every image of the class was unreadable
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


@dataclass
class Decoded:
    """The images at one input size: this process's share (all of them in one process), and every process's labels
    and unreadable files, in the order of the report."""

    mine: ImageSet
    labels: np.ndarray
    skipped: list[str]


def decode_share(picked: list[tuple[Path, int]], classes: list[str], size: tuple[int, int], workers: int,
                 group: Group) -> Decoded:
    """Each process decodes a contiguous share of ``picked`` (rank order is list order)."""
    from emo.dataset import decode

    n, k = len(picked), group.world_size
    share = picked[group.rank * n // k:(group.rank + 1) * n // k]
    mine = decode([p for p, _ in share], [c for _, c in share], classes, lambda im: eval_view(im, size),
                  workers=workers)
    return Decoded(mine, group.gather_rows(mine.labels).numpy(), group.gather_texts(mine.skipped, limit=10**6))


def evaluate(candidates: list[Candidate], data: Path, limit: int | None, workers: int, log=print,
             group: Group | None = None) -> dict:
    """Run every candidate on the images of ``data`` and score it; under torchrun (``group``) every process runs
    its share and every process gets every logit, in order, so the report is the same on all (rank 0 prints it)."""
    group = group or Group()
    classes, samples = scan_image_folder(data, min_classes=1)
    labels_all = np.array([c for _, c in samples])
    order = balanced_order(labels_all)[:limit] if limit else np.arange(len(samples))
    picked = [samples[i] for i in order]
    if len(picked) < group.world_size:
        raise EMOError(f"{data}: {len(picked)} images for {group.world_size} processes; start at most {len(picked)}")
    cache: dict[tuple[int, int], Decoded] = {}
    first = first_keys = None
    for cand in candidates:
        row = cand.result
        row.update({"name": cand.name, "kind": cand.kind, "runtime": cand.runtime, "input_size": list(cand.size)})
        if cand.skipped:
            row["status"] = f"skipped: {cand.skipped}"
            continue
        if cand.size not in cache:
            t0 = time.monotonic()
            cache[cand.size] = decoded = decode_share(picked, classes, cand.size, workers, group)
            log(f"decoded {len(decoded.labels)} images of {data} at {cand.size[0]}x{cand.size[1]} "
                f"in {group.largest(time.monotonic() - t0):.1f}s"
                + (f" ({len(decoded.skipped)} unreadable, skipped)" if decoded.skipped else "")
                + (f" ({group.world_size} processes)" if group.active else ""))
        decoded = cache[cand.size]
        t0 = time.monotonic()
        try:
            logits, failure = np.asarray(cand.run(decoded.mine), dtype=np.float64), ""
        except RuntimeError as e:
            logits, failure = None, f"failed: {first_line(e, 300)}"
        failures = [f for f in group.gather_texts([failure]) if f]  # a row fails on every process or on none
        if failures:
            row["status"] = failures[0]
            continue
        row["seconds"] = round(group.largest(time.monotonic() - t0), 2)
        logits = group.gather_rows(torch.from_numpy(logits)).numpy()
        mapping = cand.mapping or class_mapping(classes, cand.classes, logits.shape[1], str(data))
        if logits.ndim != 2 or logits.shape[1] != (cand.outputs or logits.shape[1]) or \
                max(mapping.outputs) >= logits.shape[1]:
            row["status"] = (f"failed: {cand.runtime} returned outputs of shape {list(logits.shape)}; the model has "
                             f"{cand.outputs or len(cand.classes or []) or '?'} classes")
            continue
        row.update(metrics(logits, decoded.labels, mapping.outputs, classes))
        row["class_mapping"] = {"mode": mapping.mode, "outputs": dict(zip(classes, mapping.outputs, strict=True)),
                                **({"source": mapping.source} if mapping.source else {})}
        row["status"] = "ok"
        log(f"{cand.name} ({cand.runtime}): top-1 {row['top1']:.2f}% on {len(decoded.labels)} images in "
            f"{row['seconds']:.1f}s")
        keys = predicted_classes(row["predictions"], mapping, classes, cand.classes)
        if first is None:
            first, first_keys = row, keys
        else:
            row["delta_top1"] = round(row["top1"] - first["top1"], 3)
            row["agreement_with_first"] = round(float(np.mean([a == b for a, b in zip(keys, first_keys, strict=True)]))
                                                * 100, 3)
    decoded = next(iter(cache.values()), None)
    return {"data": str(data), "classes": classes, "num_images": len(decoded.labels) if decoded else 0,
            "unreadable": decoded.skipped if decoded else [], "limit": limit,
            "rows": [c.result for c in candidates]}


def predicted_classes(predictions: list[int], mapping: ClassMapping, folders: list[str],
                      model_classes: list[str] | None) -> list[tuple[str, object]]:
    """What each prediction means as a class: the folder its output scores, else the model's class name, else the
    bare output index. Two models whose outputs are ordered differently are compared class by class, not by index."""
    scored = dict(zip(mapping.outputs, folders, strict=True))
    return [("folder", scored[p]) if p in scored else
            ("class", model_classes[p]) if model_classes and p < len(model_classes) else ("output", p)
            for p in predictions]


def mapping_header(report: dict) -> str:
    """The header line that says how class folders were matched to each row's outputs."""
    words = []
    for i, r in enumerate(report["rows"], 1):
        if r.get("status") == "ok":
            mode = r["class_mapping"]
            words.append((i, MAPPING_WORDS[mode["mode"]].format(source=mode.get("source"))))
    if not words:
        return ""
    if len({w for _, w in words}) == 1:
        return f"classes mapped {words[0][1]}"
    return "classes mapped: " + "; ".join(f"#{i} {w}" for i, w in words)


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
            *([mapping_header(report)] if mapping_header(report) else []),
            format_table(rows, ["model", "runtime", "input", "top-1 %", "top-5 %", "d top-1", "same pred %",
                                 "s", "status"])]
    done = [r for r in report["rows"] if r.get("status") == "ok"]
    classes = report["classes"]
    if done and len(classes) <= 50:
        per = [[c] + [_percent(r["per_class"][c]) for r in done] for c in classes]
        text += ["", "per-class top-1 %", format_table(per, ["class"] + [f"#{i + 1}" for i in range(len(done))])]
        m = done[0]["confusion"]
        short = [c[:10] for c in classes]
        conf = [[short[i]] + [str(v) for v in m[i]] for i in range(len(classes))]
        text += ["", f"confusion matrix of #1 ({done[0]['name']}; rows: true class, columns: predicted)",
                 format_table(conf, ["true \\ pred"] + short)]
    return "\n".join(text)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def eval_main(argv: list[str] | None = None) -> int:
    from emo.cli_common import Parser

    p = Parser(prog="emo-eval", description="Accuracy (top-1/top-5, per class, confusion matrix) of a checkpoint "
                "and of exported artifacts in their own runtimes, on a labelled ImageFolder. Under torchrun the "
                "images are shared out over its processes and rank 0 prints the report.")
    p.add_argument("models", nargs="+", help="a checkpoint (with --model) and/or exported artifacts (sidecar next "
                   "to them); the first is the baseline of the difference column")
    p.add_argument("--model", help="variant of the checkpoint(s): emo_1m | emo_2m | emo_5m | emo_6m")
    p.add_argument("--ema", action="store_true", help="checkpoint: load the EMA weights ('net_E')")
    p.add_argument("--data", required=True, help="ImageFolder (one sub-folder per class), or a folder holding test/")
    p.add_argument("--limit", type=integer_option("--limit", 1, 10**9),
                   help="evaluate only the first N images, balanced over classes")
    p.add_argument("--input-size", help="checkpoint input size N or HxW (default: the checkpoint's, else 224)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (for scripts) instead of tables")
    p.add_argument("--out", help="folder for eval.json and one confusion-matrix PNG per row")
    p.add_argument("--workers", type=integer_option("--workers", 1, 64), default=2,
                   help="image decoding threads (default 2)")
    p.add_argument("--class-map", help="map class folders to the model's classes explicitly: a JSON object "
                   "{\"folder\": \"class name\" or output index} or folder<TAB>class lines (default: by exact name)")
    p.add_argument("--by-order", action="store_true", help="map sorted class folder i to output i, whatever the "
                   "names (the report says so)")
    p.add_argument("--dist-timeout", type=number_option("--dist-timeout", 0, 86_400, lo_open=True), default=1800,
                   help="under torchrun: seconds a process waits for the others (default 1800)")
    args = distributed.quiet_unless_main(p).parse_intermixed_args(argv)  # checkpoint --model NAME artifact ...
    return distributed.run("emo-eval", lambda group, device: _eval(args, group), timeout_s=args.dist_timeout)


def _eval(args, group: Group) -> int:
    from emo.cli_common import parse_input_size

    if args.class_map and args.by_order:
        raise EMOError("--class-map and --by-order exclude each other: choose one way to map the class folders")
    size = parse_input_size(args.input_size) if args.input_size else None
    data = Path(args.data)
    if (data / "test").is_dir():
        data = data / "test"
    folders, _ = scan_image_folder(data, min_classes=1)  # bad data fails before any model is loaded
    class_map = read_class_map(args.class_map) if args.class_map else None
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
    for cand in candidates:  # a folder that matches no class is refused before any image is decoded
        if not cand.skipped:
            cand.mapping = class_mapping(folders, cand.classes, cand.outputs, str(data), class_map=class_map,
                                         class_map_source=args.class_map, by_order=args.by_order)
    out = Path(args.out) if args.out else None
    if out is not None and group.is_main:  # created only once every input has been accepted
        from emo.cli_common import check_out_dir
        check_out_dir(out)
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    report = evaluate(candidates, data, args.limit, args.workers, log if group.is_main else lambda s: None, group)
    failed = [r for r in report["rows"] if r.get("status", "").startswith("failed")]
    if not group.is_main:
        return 1 if failed else 0
    report["class_mapping"] = "class_map" if class_map else "by_order" if args.by_order else "by_name"
    if class_map:
        report["class_map_file"] = args.class_map
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
    return 1 if failed else 0


main = one_line_errors(eval_main)

if __name__ == "__main__":
    sys.exit(main())
