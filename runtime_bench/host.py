"""The ``host`` target: every artifact in its own runtime, each in its own subprocess.

A subprocess per artifact keeps memory, thread pools and runtime state from leaking between runs, and makes the
peak RSS (``getrusage``) that run's own. The worker prints one JSON object; the parent turns it into a row.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from emo.contract import runtimes, vocabulary
from emo.contract.runtimes import RuntimeMissingError
from emo.contract.timing import measure, settled_turns, summary
from emo.runtime_bench.results import Artifact, BenchError, BenchResult, base_row, first_line, package_versions
from emo.runtime_bench.targets import Run, Target

# the packages whose versions a row records, by runtime family (emo.contract.vocabulary)
RUNTIME_PACKAGES = {vocabulary.ONNXRUNTIME: ("onnxruntime",), vocabulary.LITERT: ("ai-edge-litert",),
                    vocabulary.EXECUTORCH: ("executorch", "torch"), vocabulary.PYTORCH: ("torch",)}
APPLE_ONLY = {"coreml": "Core ML artifacts run with --device mac (macOS) or ios",
              "executorch-coreml": "Core ML-delegated .pte files run on Apple devices only (--device ios)",
              # not Apple, but the same answer: the host has only the HTP *simulator*, whose speed says nothing
              "qnn": "QNN HTP artifacts run on a Snapdragon phone (--device adb, onnxruntime_perf_test -e qnn) or "
                     "AI Hub; this host only simulates the HTP, so its latency would mean nothing",
              "litert-npu": "NPU-compiled .tflite files run on the phone SoC they were compiled for (LiteRT "
                            "CompiledModel with Accelerator.NPU); this host only simulates the HTP, so its latency "
                            "would mean nothing"}
WORKER_TIMEOUT_S = 900


def describe_host() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"target": "host", "model": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "os": f"{platform.system()} {platform.release()}", "abi": platform.machine()}


# ------------------------------------------------------------------------------------------ inside the worker
def _load(path: Path, backend: str, threads: int):
    """A callable ``run(x)`` doing one inference in the artifact's own runtime with ``threads`` threads: the
    contract's loader table (``emo.contract.runtimes``), as emo-verify and emo-eval open artifacts."""
    if backend in APPLE_ONLY:
        raise RuntimeMissingError(APPLE_ONLY[backend])
    return runtimes.open_session(path, backend, threads).run


def _family(backend: str) -> str:
    fmt = vocabulary.FORMATS.get(backend)
    return fmt.runtime if fmt else backend


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def worker(job: dict) -> dict:
    """Time the job's artifacts in this process: each alone (one artifact per worker: the default), or side by side
    in settled turns (``interleave``: the artifacts of one runtime, so machine noise hits them alike). Returns one
    result (or ``{"error": ...}``) per artifact, in order."""
    import numpy as np

    threads = job["threads"]
    loaded, results = {}, {}
    for i, item in enumerate(job["artifacts"]):
        x = np.random.default_rng(0).random(item["shape"], dtype=np.float32)
        try:
            start = time.perf_counter()
            run = _load(Path(item["path"]), item["backend"], threads)
            load_ms = (time.perf_counter() - start) * 1e3
            start = time.perf_counter()
            run(x)
            first_ms = (time.perf_counter() - start) * 1e3
        except Exception as e:  # reported as that artifact's reason; the others still run
            results[i] = {"error": first_line(e) if isinstance(e, RuntimeMissingError)
                          else f"{type(e).__name__}: {first_line(e)}"}
            continue
        loaded[i] = (lambda run=run, x=x: run(x))
        results[i] = {"load_ms": load_ms, "first_inference_ms": first_ms,
                      "versions": package_versions(*RUNTIME_PACKAGES.get(_family(item["backend"]), ()))}
        if not job.get("interleave"):  # alone: timed right after its own load, before the next is loaded
            _, results[i]["latencies_ms"] = measure(loaded[i], warmup=job["warmup"], iters=job["iters"],
                                                    min_seconds=job["min_seconds"])
            results[i]["peak_memory_mb"] = _peak_rss_mb()
    if job.get("interleave") and loaded:
        turns = job["interleave"]
        times = settled_turns(loaded, turns["rounds"], job["warmup"], turns["per_turn"], turns["settle"])
        for i, latencies in times.items():
            results[i].update(latencies_ms=latencies, peak_memory_mb=_peak_rss_mb())
    for i, item in enumerate(job["artifacts"]):  # after every timed run, in separate sessions
        if job.get("profile_runs") and i in loaded:
            x = np.random.default_rng(0).random(item["shape"], dtype=np.float32)
            results[i]["profile"] = _profile(Path(item["path"]), item["backend"], threads, x, job["profile_runs"])
    return {"results": [results[i] for i in range(len(job["artifacts"]))]}


def _profile(path: Path, backend: str, threads: int, x, runs: int) -> dict:
    from emo.runtime_bench import profile

    try:
        if backend in ("onnx", "ort"):
            return {"source": "onnxruntime profiling JSON", "runs": runs,
                    "ops": profile.profile_onnxruntime(path, threads, x, runs)}
        if backend == "executorch":
            return {"source": "ExecuTorch ETDump (executorch.devtools.Inspector)", "runs": runs,
                    "ops": profile.profile_executorch(path, threads, x, runs)}
    except Exception as e:  # a profiler failure is noted in the row; the latencies stand
        return {"error": f"{type(e).__name__}: {first_line(e)}"}
    return {"error": f"no per-operator profiler for {backend} artifacts on the host"}


def profile_tflite_host(path: Path, runner: Path, threads: int, runs: int) -> dict:
    """LiteRT on the host: a host build of ``benchmark_model`` with ``--enable_op_profiling=true`` (the Python
    interpreter has no per-operator profiler); the same parser as on phones."""
    from emo.runtime_bench import profile

    cmd = [str(runner), f"--graph={path}", f"--num_threads={threads}", f"--num_runs={runs}",
           "--use_xnnpack=true", "--enable_op_profiling=true"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"{runner.name}: {first_line(e)}"}
    ops = profile.parse_op_profile(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0 or not ops:
        return {"error": f"{runner.name} exited {proc.returncode} without an operator profile"}
    return {"source": "benchmark_model --enable_op_profiling (host)", "runs": runs, "ops": ops}


def _worker_main(argv: list[str]) -> int:
    """``python -m emo.runtime_bench.host JOB_JSON``: the job on the command line, the results as one JSON line."""
    try:
        result = worker(json.loads(argv[0]))
    except Exception as e:  # reported to the parent as every row's reason
        print(json.dumps({"error": f"{type(e).__name__}: {first_line(e)}"}))
        return 1
    print(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------------- in the parent
class HostTarget(Target):
    """Every artifact in its own runtime on this machine, in a worker subprocess (memory, thread pools and runtime
    state never leak between runs; the peak RSS is that run's own). ``--interleave``: one worker per runtime, its
    artifacts timed side by side in settled turns."""

    kind = "host"

    def supports(self, artifact: Artifact) -> str | None:
        return APPLE_ONLY.get(artifact.backend)

    def describe(self) -> dict:
        return describe_host()

    def runs(self, artifacts: list[Artifact]) -> list[Run]:
        if not self.settings.interleave:
            return super().runs(artifacts)
        groups: dict[str, list[Artifact]] = {}
        for artifact in artifacts:
            fmt = vocabulary.FORMATS.get(artifact.backend)
            groups.setdefault(fmt.runtime if fmt else artifact.backend, []).append(artifact)
        return [Run(group, f"{runtime}: {len(group)} artifact(s) interleaved", self.run_group)
                for runtime, group in groups.items()]

    def run(self, artifact: Artifact) -> BenchResult:
        return self.run_group([artifact])[0]

    def run_group(self, artifacts: list[Artifact]) -> list[BenchResult]:
        s = self.settings
        extra = {"interleaved": {"artifacts": len(artifacts), "rounds": s.rounds, "per_turn": s.per_turn,
                                 "settle_s": s.settle}} if s.interleave else {}
        rows = [base_row(a, describe_host(), s.as_row(**extra)) for a in artifacts]
        job = {"artifacts": [{"path": str(a.path), "backend": a.backend, "shape": a.input_shape} for a in artifacts],
               "threads": s.threads, "warmup": s.warmup, "iters": s.iters, "min_seconds": s.min_seconds,
               "profile_runs": s.profile if s.profile and artifacts[0].backend != "tflite" else 0,
               "interleave": {"rounds": s.rounds, "per_turn": s.per_turn, "settle": s.settle} if s.interleave
               else None}
        env = {**os.environ, "OMP_NUM_THREADS": str(s.threads)}  # the child's OpenMP pool, never ours
        timeout = WORKER_TIMEOUT_S * len(artifacts)
        try:
            proc = subprocess.run([sys.executable, "-m", "emo.runtime_bench.host", json.dumps(job)],
                                  capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise BenchError(f"timed out after {timeout} s") from None
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        answer = json.loads(lines[-1]) if lines else {"error": (proc.stderr.strip().splitlines() or ["crashed"])[-1]}
        if "error" in answer:
            raise BenchError(answer["error"])
        for artifact, row, result in zip(artifacts, rows, answer["results"], strict=True):
            if "error" in result:
                row.status = f"failed: {result['error']}"
                continue
            row.load_ms, row.first_inference_ms = result["load_ms"], result["first_inference_ms"]
            row.latencies_ms, row.peak_memory_mb = result["latencies_ms"], result["peak_memory_mb"]
            row.summary, row.versions = summary(row.latencies_ms), result["versions"]
            row.profile = result.get("profile")
            if s.profile and artifact.backend == "tflite":
                row.profile = self._tflite_profile(artifact)
        return rows

    def _tflite_profile(self, artifact: Artifact) -> dict:
        runner = next((Path(r) for r in self.settings.runners if Path(r).name.startswith("benchmark_model")), None)
        if runner is None:
            return {"error": "LiteRT's Python interpreter has no per-operator profiler: pass --runner "
                             "PATH/benchmark_model (a host build) to profile .tflite on the host"}
        return profile_tflite_host(artifact.path, runner, self.settings.threads, self.settings.profile)


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
