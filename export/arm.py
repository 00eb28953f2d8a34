"""``emo-verify ARTIFACT --arm CPU[,CPU...]``: the artifact's bundled examples run by the aarch64 build of its runtime
under qemu user-mode emulation, one Arm CPU model at a time.

Why: every other parity number comes from x86 kernels. Phones run the same runtimes compiled for Arm, where XNNPACK
and ONNX Runtime's MLAS choose kernels by CPU feature (NEON, fp16 arithmetic, dot product, i8mm, SVE, SME) and by
core (XNNPACK has Cortex-A53/A55-tuned GEMMs), and int8 rounding differs. qemu makes each model's feature set real:
the guest's ``/proc/cpuinfo`` and HWCAPs are the model's, and an instruction the model lacks raises SIGILL, so a
runtime that picks a kernel the core cannot run fails here as it would on the phone.

How: ``tools/arm_root.sh`` (``make arm-root``) caches a Debian 12 arm64 root with the host's runtime versions and
qemu 10. Per CPU model, ``emo/export/arm_guest.py`` (NumPy + runtime only) is copied into a private folder of the
root with the inputs as ``.npy`` files and run as ``qemu-aarch64 -cpu MODEL`` in a chroot whose ``/proc`` and
``/sys`` are mounted in a private mount namespace of that one process: the mounts exist only while it runs and vanish
with it, also on Ctrl-C, SIGTERM or SIGKILL. The same script runs natively on the host for the x86 row beside them.
The outputs are judged against PyTorch's (the examples file) with the precision's tolerance, and the rows go into
the sidecar as ``arm_parity``, each labelled ``"emulated": true``. Emulated time says nothing about a phone's
latency, so none is printed or recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emo.contract import examples as examples_format
from emo.errors import EMOError

DEFAULT_ROOT = Path.home() / ".cache" / "emo-mobile" / "arm64-root"
STAMP = ".emo-arm-ready"
QEMU = "opt/emo/qemu/qemu-aarch64"
GUEST_PYTHON = "opt/emo/venv/bin/python"
GUEST_SCRIPT = Path(__file__).with_name("arm_guest.py")
SETUP_HINT = "build it once with `sudo make arm-root`"
GUEST_TIMEOUT_S = 1800  # qemu's `max` model runs SVE/SME code paths 10x slower than the Cortex models
THREADS = 1  # deterministic kernel choice, and the 2 shared cores of CI stay usable

# qemu 10's aarch64 CPU models (`qemu-aarch64 -cpu help`) and what they stand for on phones
CPU_MODELS = {
    "cortex-a35": "Armv8.0-A, in-order little core (low-end phones, watches)",
    "cortex-a53": "Armv8.0-A, in-order little core (2014-2019 phones; the arm64-v8a baseline)",
    "cortex-a55": "Armv8.2-A little core: fp16 arithmetic, dot product",
    "cortex-a57": "Armv8.0-A big core (2015 phones)",
    "cortex-a72": "Armv8.0-A big core (2016-2018 phones)",
    "cortex-a76": "Armv8.2-A big core (2019-2021 flagships): fp16 arithmetic, dot product",
    "cortex-a710": "Armv9.0-A big core (2022 flagships): SVE2, i8mm, bf16",
    "neoverse-n1": "Armv8.2-A server core (the A76's sibling)",
    "neoverse-n2": "Armv9.0-A server core (the A710's sibling)",
    "neoverse-v1": "Armv8.4-A server core with 256-bit SVE",
    "a64fx": "Armv8.2-A HPC core with 512-bit SVE",
    "max": "every feature qemu implements: Armv9.x with SVE2, SME and SME2 (as the newest phone cores)",
}
ALL_CPUS = ("cortex-a53", "cortex-a55", "cortex-a76", "cortex-a710", "max")
RUNTIMES = {"onnx": "onnxruntime (CPU EP, MLAS)", "ort": "onnxruntime (CPU EP, MLAS, ORT format)",
            "tflite": "ai-edge-litert (XNNPACK delegate)"}
NOT_ON_ARM = {
    "executorch": "ExecuTorch has an aarch64 wheel of 1.5.1, but its Python runtime links libtorch, and PyPI's only "
                  "torch 2.13.0 aarch64 wheel is a CUDA 13 build (427 MB plus the CUDA toolkit wheels), so the Arm "
                  "root has no ExecuTorch runtime",
    "pt2": "a .pt2 program is PyTorch's baseline, not a phone runtime",
}


class NotOnArmError(EMOError):
    """The artifact's runtime has no build in the Arm root (emo-verify exits 3: nothing was checked)."""


@dataclass(frozen=True)
class ArmRoot:
    """A complete cached root: its folder, the qemu it runs the guest with, and the versions it holds."""

    path: Path
    qemu_version: str
    versions: dict[str, str]


def parse_cpus(text: str) -> list[str]:
    """``cortex-a76,cortex-a53`` or ``all`` (the phone cores: A53, A55, A76, A710 and qemu's ``max``)."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if "all" in names:
        return list(ALL_CPUS)
    unknown = [n for n in names if n not in CPU_MODELS]
    if unknown or not names:
        raise EMOError(f"unknown Arm CPU model {', '.join(unknown) or repr(text)}; choose from: "
                       f"{', '.join(CPU_MODELS)}, or all ({', '.join(ALL_CPUS)})")
    return list(dict.fromkeys(names))


def find_root(path: Path = DEFAULT_ROOT) -> ArmRoot:
    """The cached root at ``path`` if it is complete (its stamp is written last) and this process may chroot."""
    stamp = path / STAMP
    if not stamp.is_file():
        raise EMOError(f"no Arm root at {path} (or a half-made one); {SETUP_HINT}")
    lines = stamp.read_text().splitlines()
    fields = dict(line.split(" ", 1) for line in lines if " " in line)
    versions = dict(line.split("==", 1) for line in lines if "==" in line)
    for part in (QEMU, GUEST_PYTHON):
        if not (path / part).exists() and not (path / part).is_symlink():
            raise EMOError(f"the Arm root at {path} lacks {part}; {SETUP_HINT}")
    if os.geteuid() != 0:
        raise EMOError("emo-verify --arm needs root (chroot and mounts in a private namespace); run it with sudo")
    return ArmRoot(path, fields.get("qemu", "unknown"), versions)


# ------------------------------------------------------------------------------------------------------ running
def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; on timeout, Ctrl-C or SIGTERM the whole group is killed and reaped
    before the exception goes on, so no emulator outlives us (and its private mounts die with it)."""
    # setpriv: the child gets SIGKILL when emo-verify dies, even by SIGKILL (PR_SET_PDEATHSIG survives the execs);
    # not a preexec_fn, which is unsafe once a converter has started threads in this process
    proc = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


# Mounts in a private mount namespace that only this one process (sh -> env -> chroot -> qemu, each exec'd) holds.
# No core files: qemu would write a crashed guest's core into the root (the crash is reported by its signal).
_GUEST_SH = """set -e
ulimit -c 0
root="$1"; shift
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
exec env -i PATH=/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 "$(command -v chroot)" --userspec=65534:65534 --groups=65534 \
    "$root" "$@"
"""
GUEST_UID = 65534  # nobody: the runtime parses a file someone sent; in the chroot it must not be root


def guest_command(root: ArmRoot, cpu: str, args: list[str]) -> list[str]:
    """The guest script under ``qemu-aarch64 -cpu CPU`` in the root, as ``nobody`` (qemu runs python itself: an exec
    through binfmt_misc would be the system's qemu, another version with its default CPU)."""
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", _GUEST_SH, "sh", str(root.path),
            f"/{QEMU}", "-cpu", cpu, f"/{GUEST_PYTHON}", *args]


@dataclass
class GuestRun:
    outputs: list[np.ndarray] | None
    report: dict
    error: str | None


MAX_GUEST_FILE_BYTES = 64 << 20


def _guest_file(path: Path) -> Path:
    """A file the guest wrote, if it is a regular file of sane size (never a symlink it planted into the host)."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_GUEST_FILE_BYTES:
        raise EMOError(f"the guest wrote {path.name} as something other than a small regular file")
    return path


def _collect(out: Path, proc: subprocess.CompletedProcess, count: int) -> GuestRun:
    report_path = out / "report.json"
    report = json.loads(_guest_file(report_path).read_text()) if os.path.lexists(report_path) else {}
    error = report.get("error")
    if proc.returncode != 0 and not error:
        code = proc.returncode
        why = f"signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exit code {code}"
        tail = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or [""]
        error = f"guest ended with {why}: {tail[0][:300]}".rstrip(": ")
    # what the runtimes said on stderr (LiteRT: "Created TensorFlow Lite XNNPACK delegate for CPU."; cpuinfo's
    # complaints would show here too), a few unique lines
    messages = list(dict.fromkeys(line.strip()[:200] for line in proc.stderr.splitlines() if line.strip()))
    report["messages"] = messages[:6]
    if error:
        return GuestRun(None, report, error)
    outputs = [np.load(_guest_file(out / f"{i}.npy"), allow_pickle=False) for i in range(count)]
    return GuestRun(outputs, report, None)


def _write_inputs(folder: Path, inputs: list[np.ndarray]) -> None:
    folder.mkdir(parents=True)
    for i, x in enumerate(inputs):
        np.save(folder / f"{i}.npy", np.ascontiguousarray(x, dtype=np.float32), allow_pickle=False)


WORK_PREFIX = "emo-verify-arm-"


def _remove_stale_work(root: ArmRoot) -> None:
    """Private folders of runs whose emo-verify is gone (killed with SIGKILL: its finally never ran)."""
    for folder in (root.path / "tmp").glob(f"{WORK_PREFIX}*-*"):
        pid = folder.name[len(WORK_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def run_in_root(root: ArmRoot, cpu: str, artifact: Path, backend: str, inputs: list[np.ndarray]) -> GuestRun:
    """The artifact on ``inputs`` in the Arm root under CPU model ``cpu``; the private folder goes away after."""
    _remove_stale_work(root)
    work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=root.path / "tmp"))
    try:
        guest = Path("/tmp") / work.name
        shutil.copyfile(artifact, work / f"model{artifact.suffix}")
        shutil.copyfile(GUEST_SCRIPT, work / GUEST_SCRIPT.name)
        _write_inputs(work / "inputs", inputs)
        work.chmod(0o755)  # readable by the guest's nobody, which writes only into out/
        (work / "out").mkdir()
        os.chown(work / "out", GUEST_UID, GUEST_UID)
        proc = _run(guest_command(root, cpu, [str(guest / GUEST_SCRIPT.name), "--backend", backend,
                                              "--artifact", str(guest / f"model{artifact.suffix}"),
                                              "--inputs", str(guest / "inputs"), "--out", str(guest / "out"),
                                              "--threads", str(THREADS)]), GUEST_TIMEOUT_S)
        return _collect(work / "out", proc, len(inputs))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_on_host(artifact: Path, backend: str, inputs: list[np.ndarray]) -> GuestRun:
    """The same guest script natively, with this venv's x86-64 runtimes: the row the Arm rows are compared with."""
    with tempfile.TemporaryDirectory(prefix="emo-verify-x86-") as tmp:
        _write_inputs(Path(tmp) / "inputs", inputs)
        proc = _run([sys.executable, str(GUEST_SCRIPT), "--backend", backend, "--artifact", str(artifact),
                     "--inputs", str(Path(tmp) / "inputs"), "--out", str(Path(tmp) / "out"),
                     "--threads", str(THREADS)], GUEST_TIMEOUT_S)
        return _collect(Path(tmp) / "out", proc, len(inputs))


# ------------------------------------------------------------------------------------------------------ judging
def example_inputs(examples: dict, side: dict) -> list[np.ndarray]:
    """Each example's input tensor (batch 1); an artifact with a static batch N takes it repeated N times."""
    batch = side["input"]["shape"][0]
    repeat = batch if isinstance(batch, int) and batch > 1 else 1
    return [np.repeat(e["input"], repeat, axis=0) for e in examples["examples"]]


def row(cpu: str, emulated: bool, emulator: str | None, run: GuestRun, examples: dict,
        host: GuestRun | None = None) -> dict:
    """One table row / sidecar record: the metrics against PyTorch and the verdict, what the guest saw, and how far
    the outputs are from the x86 runtime's on the same inputs."""
    info = run.report.get("cpuinfo", {})
    record = {"cpu": cpu, "emulated": emulated, "emulator": emulator, "cpu_part": info.get("part"),
              "cpu_features": info.get("features"), "runtime": run.report.get("runtime"),
              "runtime_messages": run.report.get("messages", []), "threads": THREADS,
              "guest_uid": run.report.get("uid")}
    if run.error:
        record.update(status=f"failed: {run.error}")
        return record
    outputs = [o[:1] for o in run.outputs]  # a static batch N repeats the image: its first row is the answer
    record.update(examples_format.agreement(examples, outputs))
    # equal digests across CPU models: the same bits came out (kernels that round alike); different: other kernels
    record["outputs_sha256"] = hashlib.sha256(b"".join(o.astype("<f4").tobytes() for o in outputs)).hexdigest()[:16]
    if host is not None and host.outputs is not None:
        diffs = [float(np.abs(a.astype(np.float64) - b[:1]).max()) for a, b in zip(outputs, host.outputs, strict=True)]
        record["vs_host_max_abs_diff"] = max(diffs)
        record["bitwise_equal_to_host"] = all(np.array_equal(a, b[:1]) for a, b in zip(outputs, host.outputs,
                                                                                        strict=True))
    record["checked_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return record


@dataclass
class ArmCheck:
    side: dict
    tolerance: dict
    host_row: dict
    rows: list[dict]

    @property
    def passed(self) -> bool:
        return all(r["status"] == "passed" for r in self.rows)


def check(artifact: Path, cpus: list[str], root_path: Path | None = None, record: bool = True) -> ArmCheck:
    """Run ``artifact``'s bundled examples on every CPU model in ``cpus`` and (``record``) store the rows in its
    sidecar as ``arm_parity`` (rows of other CPU models already there are kept)."""
    from emo.export.pipeline import read_sidecar

    if not artifact.is_file():
        raise EMOError(f"artifact not found (or not a file): {artifact}")
    side = read_sidecar(artifact)
    backend = side["backend"]
    if backend not in RUNTIMES:
        reason = NOT_ON_ARM.get(backend, f"no Arm runtime for {backend} artifacts in the Arm root")
        raise NotOnArmError(f"{artifact.name} is not checked on Arm: {reason}; Arm runtimes: {', '.join(RUNTIMES)}")
    root = find_root(root_path or DEFAULT_ROOT)
    try:
        examples = examples_format.read(artifact)
    except examples_format.ExamplesError as e:
        raise EMOError(str(e)) from None
    inputs = example_inputs(examples, side)
    host_run = run_on_host(artifact, backend, inputs)
    host_row = row("x86-64 (host)", False, None, host_run, examples)
    emulator = f"qemu-aarch64 {root.qemu_version}"
    rows = [row(cpu, True, emulator, run_in_root(root, cpu, artifact, backend, inputs), examples, host_run)
            for cpu in cpus]
    if record:
        _record(artifact, rows)
    return ArmCheck(side, dict(examples["tolerance"]), host_row, rows)


def _record(artifact: Path, rows: list[dict]) -> None:
    """Merge ``rows`` into the sidecar's ``arm_parity`` (one row per CPU model, in ``CPU_MODELS`` order), atomically."""
    from emo.contract import sidecar

    data = sidecar.read(artifact).data  # read and validated again: it may have changed during the emulated runs
    kept = {r["cpu"]: r for r in data.get("arm_parity") or [] if isinstance(r, dict) and "cpu" in r}
    kept.update({r["cpu"]: r for r in rows})
    order = list(CPU_MODELS)
    data["arm_parity"] = sorted(kept.values(), key=lambda r: order.index(r["cpu"]) if r["cpu"] in order else 99)
    sidecar.write(sidecar.sidecar_path(artifact), data)  # validated as every reader will read it, then atomic


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def features_text(features: list[str] | None) -> str:
    """The features that choose kernels, in the order they arrived in Arm's history; the full list is recorded."""
    if not features:
        return "-"
    shown = [name for name in ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme", "sme2")
             if name in features]
    return " ".join(shown) + f" ({len(features)} in all)"


def table_rows(check_result: ArmCheck) -> list[list[str]]:
    rows = []
    for r in [check_result.host_row, *check_result.rows]:
        runtime = r.get("runtime") or {}
        note = ""
        if "xnnpack_partitions" in runtime:
            note = f"XNNPACK {runtime['xnnpack_partitions']} part." + (" (whole)" if runtime.get(
                "xnnpack_whole_graph") else "")
        elif runtime.get("ep_devices"):  # what ORT's device discovery made of the CPU
            note = f"CPU EP on {runtime['ep_devices'][0]['vendor'] or '?'} CPU"
        rows.append([r["cpu"], "yes" if r["emulated"] else "no", _fmt(r.get("max_abs_diff"), ".2e"),
                     _fmt(r.get("cosine"), ".6f"), _fmt(r.get("top1_agreement"), ".0%"),
                     _fmt(r.get("top5_agreement"), ".0%"), _fmt(r.get("vs_host_max_abs_diff"), ".1e"),
                     features_text(r.get("cpu_features")) if r["emulated"] else "(host)", note, r["status"]])
    return rows


TABLE_HEADER = ["cpu", "emulated", "max|diff|", "cosine", "top-1", "top-5", "vs x86", "features the guest saw",
                "runtime", "verdict"]
