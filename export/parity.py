"""Parity of an artifact with the PyTorch model: inputs, metrics and the written-down tolerances.

Inputs are the bundled photos (natural image statistics) plus seeded uniform-noise images, all float32 RGB in
[0, 1]. The reference is the *original* (not deployed) PyTorch model, so a check also covers ``emo.deploy``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from emo.contract.examples import TOLERANCES
from emo.data import load_image, normalize, sample_images, to_unit_array

# Tolerances per precision: the contract's parity policy (emo.contract.examples.TOLERANCES, where the reasons are).
NUM_RANDOM = 4
RANDOM_SEED = 1234


@dataclass
class Parity:
    checked_with: str
    max_abs_diff: float | None
    mean_abs_diff: float | None
    cosine: float | None          # the smallest per-image cosine similarity of the logit vectors
    top1_agreement: float | None  # fraction of images with the same arg-max
    top5_agreement: float | None  # fraction of images with the same set of five best classes
    tolerance: dict[str, float]
    status: str              # "passed" | "failed: <why>" | "skipped: <why>"
    num_images: int = 0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


def parity_inputs(size: tuple[int, int]) -> np.ndarray:
    """(N, 3, H, W) float32 in [0, 1]: every bundled photo, then NUM_RANDOM seeded noise images.

    Every value is a multiple of 1/255 (8-bit pixels, as a camera or a CVPixelBuffer delivers), so an artifact
    that takes pixel values (Core ML ImageType) sees exactly the input the reference sees.
    """
    photos = [to_unit_array(load_image(p), size) for p in sample_images()]
    rng = np.random.default_rng(RANDOM_SEED)
    noise = rng.integers(0, 256, (NUM_RANDOM, 3, *size)).astype(np.float32) / 255.0
    return np.concatenate([np.stack(photos), noise]).astype(np.float32)


def reference_logits(model: torch.nn.Module, images: np.ndarray, probabilities: bool = False) -> np.ndarray:
    """The PyTorch model on [0, 1] images (normalised here, as the exported graphs do inside); softmax-ed for an
    artifact whose output is probabilities (a Core ML classifier)."""
    with torch.no_grad():
        logits = model(normalize(torch.from_numpy(images)))
        return (torch.softmax(logits, dim=-1) if probabilities else logits).numpy()


def batches(images: np.ndarray, batch: int) -> list[np.ndarray]:
    """Split into batches of exactly ``batch`` (a static-batch artifact accepts no other size); the last is padded
    by repeating images, and ``run_batched`` drops the padding again."""
    out = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        if len(chunk) < batch:  # cycling: a batch may be larger than all the images (e.g. 50 vs 16 parity images)
            chunk = np.concatenate([chunk, images[np.arange(batch - len(chunk)) % len(images)]])
        out.append(np.ascontiguousarray(chunk))
    return out


def run_batched(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch: int,
                stacks: bool = False) -> np.ndarray:
    """``fn`` on ``images`` in batches of ``batch``; with ``stacks`` (a session that takes any whole number of
    batches, as the MIL interpreter's) the padded batches go in one call and run as one stack."""
    chunks = batches(images, batch)
    if stacks:
        chunks = [np.concatenate(chunks)]
    outputs = np.concatenate([np.asarray(fn(chunk)) for chunk in chunks])
    return outputs[: len(images)].astype(np.float32)


def compare(reference: np.ndarray, actual: np.ndarray, precision: str, checked_with: str) -> Parity:
    """Metrics of ``actual`` against ``reference`` (both (N, classes)), judged by the precision's tolerance."""
    tolerance = TOLERANCES[precision]
    if actual.shape != reference.shape:
        return Parity(checked_with, float("inf"), float("inf"), 0.0, 0.0, 0.0, tolerance,
                      f"failed: output shape {actual.shape} != {reference.shape}", len(reference))
    if not np.isfinite(actual).all():
        return Parity(checked_with, None, None, None, None, None, tolerance, "failed: non-finite outputs",
                      len(reference))
    ref64, act64 = reference.astype(np.float64), actual.astype(np.float64)
    diff = np.abs(act64 - ref64)
    denom = np.linalg.norm(ref64, axis=1) * np.linalg.norm(act64, axis=1)
    cosines = np.where(denom > 0, (ref64 * act64).sum(axis=1) / np.maximum(denom, 1e-300), 0.0)
    k = min(5, reference.shape[1])
    top5_ref = np.sort(np.argsort(-reference, axis=1)[:, :k], axis=1)
    top5_act = np.sort(np.argsort(-actual, axis=1)[:, :k], axis=1)
    parity = Parity(
        checked_with=checked_with,
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        cosine=float(cosines.min()),
        top1_agreement=float((reference.argmax(1) == actual.argmax(1)).mean()),
        top5_agreement=float((top5_ref == top5_act).all(axis=1).mean()),
        tolerance=tolerance,
        status="passed",
        num_images=len(reference),
    )
    failures = []
    for name, bound in tolerance.items():
        value = getattr(parity, name)
        upper = name == "max_abs_diff"  # an upper bound; the others are lower bounds
        if (value > bound) if upper else (value < bound):
            failures.append(f"{name} {value:.3g} {'>' if upper else '<'} {bound:g}")
    if failures:
        parity.status = "failed: " + "; ".join(failures)
    return parity


def combine(parities: list[Parity]) -> Parity:
    """Several runtimes checked one artifact (interpreter and Core ML on macOS): the worst of each metric; it
    passes only if every runtime passed."""
    if len(parities) == 1:
        return parities[0]
    failed = [p for p in parities if not p.passed]

    def worst(name: str, fn):
        values = [getattr(p, name) for p in parities if getattr(p, name) is not None]
        return fn(values) if values else None

    return Parity(
        checked_with=" + ".join(p.checked_with for p in parities),
        max_abs_diff=worst("max_abs_diff", max), mean_abs_diff=worst("mean_abs_diff", max),
        cosine=worst("cosine", min), top1_agreement=worst("top1_agreement", min),
        top5_agreement=worst("top5_agreement", min), tolerance=parities[0].tolerance,
        status="passed" if not failed else "; ".join(f"{p.checked_with}: {p.status}" for p in failed),
        num_images=parities[0].num_images)


def failed(checked_with: str, precision: str, why: str) -> Parity:
    """The runtime could not produce outputs at all (an error while loading or running the artifact)."""
    return Parity(checked_with, None, None, None, None, None, TOLERANCES[precision], f"failed: {why}")


def skipped(checked_with: str, precision: str, why: str) -> Parity:
    """A check that could not run here (JSON has no NaN: the metrics are null)."""
    return Parity(checked_with, None, None, None, None, None, TOLERANCES[precision], f"skipped: {why}")
