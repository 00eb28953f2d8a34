"""emo-bench's targets behind one small interface, its typed settings, and the one wrapper that turns any failure of
a run into a failed row (with the device it happened on) instead of ending the whole run.

A target is opened once (``open_target``: a bad set-up, such as no phone attached, is bad input, exit 2), then runs
artifacts one at a time::

    target.supports(artifact) -> None, or why it cannot run it (the row fails with that reason, nothing is tried)
    target.describe()         -> the device: what every row of this target records
    target.runs(artifacts)    -> the labelled runs (one per artifact; per compute unit on Apple targets; one per
                                 runtime group when the host interleaves)
    target.close()
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from emo.contract import vocabulary
from emo.runtime_bench.results import Artifact, BenchError, BenchResult, base_row, first_line

# the web page's runtime backends (web_demo/runtimes.js BACKENDS): WebAssembly, or WebGPU where there is an adapter
PAGE_BACKENDS = ("wasm", "webgpu")


@dataclass(frozen=True)
class Settings:
    """What the user asked emo-bench for (validated by the CLI before anything runs); rows record ``as_row()``."""

    threads: int = 2
    warmup: int = 5
    iters: int | None = 50            # None: time for ``min_seconds`` instead
    min_seconds: float | None = None
    delegate: str | None = None       # adb: cpu | xnnpack | gpu | nnapi | npu (what the runner or app offers)
    runners: tuple[str, ...] = ()     # adb: runner binaries, or ("app",): drive the installed demo app
    profile: int = 0                  # per-operator profile over this many runs after timing (0: none)
    parity: bool = False              # adb: also run the bundled examples on the phone
    cooldown: float = 10.0            # adb: seconds of rest between runs
    compute_units: tuple[str, ...] = ()  # mac/ios
    interleave: bool = False          # host: time the artifacts of one runtime side by side in settled turns
    settle: float = 0.05              # host --interleave: seconds of untimed runs at the start of each turn
    per_turn: int = 3                 # host --interleave: timed runs per turn
    backend: str | None = None        # browser: wasm | webgpu (the page's runtime backend; None elsewhere)

    @property
    def rounds(self) -> int:
        """Interleaved rounds that give every artifact at least ``iters`` timed runs."""
        return max(1, math.ceil((self.iters or 50) / self.per_turn))

    def as_row(self, **extra) -> dict:
        """The settings as a result row records them (JSON)."""
        row = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        return {**row, **extra}


@dataclass
class Run:
    """One labelled unit of work: ``call(usable)`` times the artifacts the target supports (all of ``artifacts`` but
    those that fail up front) and returns their rows."""

    artifacts: list[Artifact]
    label: str
    call: Callable[[list[Artifact]], list[BenchResult]]
    settings: dict = field(default_factory=dict)   # what rows record, when it differs from the target's (per unit)


class Target:
    """The interface every emo-bench target implements (see the module docstring)."""

    kind = "?"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def supports(self, artifact: Artifact) -> str | None:
        return None

    def describe(self) -> dict:
        return {"target": self.kind}

    def run(self, artifact: Artifact) -> BenchResult:
        raise NotImplementedError

    def runs(self, artifacts: list[Artifact]) -> list[Run]:
        return [Run([a], a.path.name, lambda usable: [self.run(usable[0])]) for a in artifacts]

    def close(self) -> None:
        pass


def failed_row(artifact: Artifact, device: dict, settings: dict, reason: str) -> BenchResult:
    row = base_row(artifact, device, settings)
    row.status = f"failed: {reason}"
    return row


def execute(target: Target, run: Run) -> list[BenchResult]:
    """The rows of one run. An artifact without a usable sidecar, or one the target cannot run, fails its row with the
    reason before anything is tried; any failure while running fails the row(s) with its first line and the target's
    device, and the run goes on with the next artifact."""
    settings = run.settings or target.settings.as_row()
    usable, rows = [], []
    for artifact in run.artifacts:
        reason = artifact.sidecar_error if artifact.sidecar is None else target.supports(artifact)
        if reason:
            rows.append(failed_row(artifact, target.describe(), settings, reason))
        else:
            usable.append(artifact)
    if not usable:
        return rows
    try:
        return rows + run.call(usable)
    except (BenchError, OSError, RuntimeError, ValueError) as e:  # one run's trouble fails its rows only
        return rows + [failed_row(a, target.describe(), settings, first_line(e)) for a in usable]


def runnable_formats(predicate: Callable[[vocabulary.Format], bool]) -> tuple[str, ...]:
    """Format names a target runs, from the contract's table (never restated per target)."""
    return tuple(f.name for f in vocabulary.FORMATS.values() if predicate(f))
