"""Artifacts on disk, their sidecars, and the result row: one JSON object per (artifact, device, settings).

This package never imports ``emo``: it reads artifacts and the sidecar JSON that ``emo-export`` writes next to
them, so it runs on a machine that has only a runtime installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from emo.contract import jsonio, sidecar, vocabulary

SUFFIXES = vocabulary.ARTIFACT_SUFFIXES
SCHEMA = "emo-mobile/bench/1"


class BenchError(Exception):
    """Bad input for emo-bench: one line on stderr, exit code 2."""


def first_line(error: BaseException) -> str:
    """An exception's first message line, or its type name if it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass
class Artifact:
    path: Path
    sidecar: dict | None          # None when missing or unreadable (the row then fails with the reason)
    sidecar_error: str | None = None

    @property
    def backend(self) -> str:
        if self.sidecar:
            return self.sidecar.get("backend", "?")
        return vocabulary.guess_format(self.path.suffix)

    @property
    def variant(self) -> str:
        return (self.sidecar or {}).get("variant", "?")

    @property
    def precision(self) -> str:
        return (self.sidecar or {}).get("precision", "?")

    @property
    def weights(self) -> str:
        """What the artifact was exported from ("random-init (seed 0)", "best.pth@1a2b3c4d"): two artifacts of the
        same variant and format from different checkpoints never look alike in a table."""
        return sidecar.weights_id(self.sidecar.get("weights")) if self.sidecar else "?"

    @property
    def input_shape(self) -> list:
        shape = list((self.sidecar or {}).get("input", {}).get("shape", [1, 3, 224, 224]))
        return [1 if d == "batch" else int(d) for d in shape]


def read_artifact(path: Path) -> Artifact:
    """The artifact with its sidecar; a missing or malformed sidecar is kept as the reason its row fails."""
    try:
        return Artifact(path, sidecar.read(path).data)
    except sidecar.SidecarError as e:
        return Artifact(path, None, str(e))


def find_artifacts(paths: list[str]) -> list[Artifact]:
    """Artifacts named directly, and every artifact inside the folders named (not recursive)."""
    found: list[Artifact] = []
    for item in paths:
        path = Path(item)
        if not path.exists():
            raise BenchError(f"no such file or folder: {path}")
        if path.is_dir() and path.suffix != ".mlpackage":
            inside = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and not p.name.startswith("."))
            if not inside:
                raise BenchError(f"{path} holds no artifacts ({', '.join(SUFFIXES)}); export some with emo-export")
            found += [read_artifact(p) for p in inside]
        elif path.suffix in SUFFIXES:
            found.append(read_artifact(path))
        else:
            raise BenchError(f"{path} is not an artifact ({', '.join(SUFFIXES)})")
    return found


def file_sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_revision() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def package_versions(*names: str) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("emo-mobile", *names):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


@dataclass
class BenchResult:
    """One result row (JSON Lines). Latencies in ms, memory in MB."""

    artifact: str
    artifact_sha256: str | None
    variant: str
    backend: str
    precision: str
    device: dict
    settings: dict
    status: str = "ok"                         # "ok" | "failed: <reason>"
    load_ms: float | None = None
    first_inference_ms: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    latencies_source: str = "raw"              # "raw" per-iteration, or "runner summary" (phones' runners)
    summary: dict = field(default_factory=dict)
    peak_memory_mb: float | None = None
    versions: dict = field(default_factory=dict)
    git_revision: str | None = None
    profile: dict | None = None                # --profile: {"source": ..., "ops": [{op, nodes, ms, percent}]}
    parity: dict | None = None                 # adb --parity / the demo app's self-test: outputs vs the examples
    weights: str | None = None                 # what the artifact was exported from (Artifact.weights)
    timestamp_utc: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    schema: str = SCHEMA

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def base_row(artifact: Artifact, device: dict, settings: dict) -> BenchResult:
    return BenchResult(artifact=str(artifact.path), artifact_sha256=(artifact.sidecar or {}).get("sha256")
                       or file_sha256(artifact.path), variant=artifact.variant, backend=artifact.backend,
                       precision=artifact.precision, device=device, settings=settings, git_revision=git_revision(),
                       weights=artifact.weights)


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a results file (JSON Lines); a line that is not bounded JSON is bad input (its line number)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, IsADirectoryError):
        raise BenchError(f"no such results file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BenchError(f"cannot read results file {path}: {first_line(e)}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(jsonio.loads(line, f"{path}:{number}"))
        except jsonio.ContractError as e:
            raise BenchError(str(e)) from None
    return rows
