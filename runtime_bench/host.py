"""The ``host`` target: every artifact in its own runtime, each in its own subprocess.

A subprocess per artifact keeps memory, thread pools and runtime state from leaking between runs, and makes the
peak RSS (``getrusage``) that run's own. The worker prints one JSON object; the parent turns it into a row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from emo.runtime_bench.results import Artifact, BenchResult, base_row, first_line, package_versions
from emo.runtime_bench.stats import measure, summary

RUNTIME_PACKAGES = {"onnx": ("onnxruntime",), "ort": ("onnxruntime",), "tflite": ("ai-edge-litert",),
                    "executorch": ("executorch", "torch"), "pt2": ("torch",)}
APPLE_ONLY = {"coreml": "Core ML artifacts run with --device mac (macOS) or ios",
              "executorch-coreml": "Core ML-delegated .pte files run on Apple devices only (--device ios)",
              # not Apple, but the same answer: the host has only the HTP *simulator*, whose speed says nothing
              "qnn": "QNN HTP artifacts run on a Snapdragon phone (--device adb, onnxruntime_perf_test -e qnn) or "
                     "AI Hub; this host only simulates the HTP, so its latency would mean nothing",
              "litert-npu": "NPU-compiled .tflite files run on the phone SoC they were compiled for (LiteRT "
                            "CompiledModel with Accelerator.NPU); this host only simulates the HTP, so its latency "
                            "would mean nothing"}
WORKER_TIMEOUT_S = 900


class RuntimeMissingError(RuntimeError):
    pass


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
    """A callable ``run(x)`` doing one inference in the artifact's own runtime with ``threads`` threads."""
    try:
        if backend in ("onnx", "ort"):
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            return lambda x: session.run(None, {name: x})
        if backend == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
            inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
            quantized_input = _input_quantizer(interpreter.get_input_details()[0])

            def run_tflite(x):
                interpreter.set_tensor(inp, quantized_input(x))
                interpreter.invoke()
                return interpreter.get_tensor(out)

            return run_tflite
        if backend == "executorch":
            import torch
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
            from executorch.runtime import Runtime

            _unsafe_reset_threadpool(threads)  # XNNPACK's thread pool
            method = Runtime.get().load_program(path).load_method("forward")
            return lambda x: method.execute([torch.from_numpy(x)])
        if backend == "pt2":
            import torch

            from emo.runtime_bench.pt2_archive import load_program

            torch.set_num_threads(threads)
            module = load_program(path)

            def run_pt2(x):
                with torch.no_grad():
                    return module(torch.from_numpy(x))

            return run_pt2
    except ImportError as e:
        raise RuntimeMissingError(f"{backend} runtime not installed ({e.name}); pip install "
                             f"{' '.join(RUNTIME_PACKAGES.get(backend, ()))}") from None
    raise RuntimeMissingError(APPLE_ONLY.get(backend, f"no host runtime for backend {backend!r}"))


def _input_quantizer(detail: dict):
    """A full-integer (int8) TFLite model takes quantized pixels: apply its scale and zero point, as an app does."""
    import numpy as np

    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return lambda x: x
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return lambda x: np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def worker(path: Path, backend: str, shape: list[int], threads: int, warmup: int, iters: int | None,
           min_seconds: float | None, profile_runs: int = 0) -> dict:
    import numpy as np

    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    start = time.perf_counter()
    run = _load(path, backend, threads)
    load_ms = (time.perf_counter() - start) * 1e3
    first_ms, latencies = measure(lambda: run(x), warmup=warmup, iters=iters, min_seconds=min_seconds)
    result = {"load_ms": load_ms, "first_inference_ms": first_ms, "latencies_ms": latencies,
              "peak_memory_mb": _peak_rss_mb(), "versions": package_versions(*RUNTIME_PACKAGES.get(backend, ()))}
    if profile_runs:  # after the timed runs, in separate sessions: profiling must not slow the latencies down
        result["profile"] = _profile(path, backend, threads, x, profile_runs)
    return result


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
    p = argparse.ArgumentParser()
    p.add_argument("artifact")
    p.add_argument("--backend", required=True)
    p.add_argument("--shape", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--iters", type=int)
    p.add_argument("--min-seconds", type=float)
    p.add_argument("--profile-runs", type=int, default=0)
    args = p.parse_args(argv)
    try:
        result = worker(Path(args.artifact), args.backend, json.loads(args.shape), args.threads, args.warmup,
                        args.iters, args.min_seconds, args.profile_runs)
    except Exception as e:  # reported to the parent as the row's reason
        reason = first_line(e) if isinstance(e, RuntimeMissingError) else f"{type(e).__name__}: {first_line(e)}"
        print(json.dumps({"error": reason}))
        return 1
    print(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------------- in the parent
def run_host(artifact: Artifact, settings: dict) -> BenchResult:
    row = base_row(artifact, describe_host(), settings)
    if artifact.sidecar is None:
        row.status = f"failed: {artifact.sidecar_error}"
        return row
    if artifact.backend in APPLE_ONLY:
        row.status = f"failed: {APPLE_ONLY[artifact.backend]}"
        return row
    cmd = [sys.executable, "-m", "emo.runtime_bench.host", str(artifact.path), "--backend", artifact.backend,
           "--shape", json.dumps(artifact.input_shape), "--threads", str(settings["threads"]),
           "--warmup", str(settings["warmup"])]
    if settings.get("iters"):
        cmd += ["--iters", str(settings["iters"])]
    if settings.get("min_seconds"):
        cmd += ["--min-seconds", str(settings["min_seconds"])]
    if settings.get("profile") and artifact.backend != "tflite":
        cmd += ["--profile-runs", str(settings["profile"])]
    env = {**os.environ, "OMP_NUM_THREADS": str(settings["threads"])}  # the child's OpenMP pool, never ours
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        row.status = f"failed: timed out after {WORKER_TIMEOUT_S} s"
        return row
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"error": (proc.stderr.strip().splitlines() or ["crashed"])[-1]}
    if "error" in result or proc.returncode != 0:
        row.status = f"failed: {result.get('error', f'worker exited {proc.returncode}')}"
        return row
    row.load_ms, row.first_inference_ms = result["load_ms"], result["first_inference_ms"]
    row.latencies_ms, row.peak_memory_mb = result["latencies_ms"], result["peak_memory_mb"]
    row.summary, row.versions = summary(row.latencies_ms), result["versions"]
    row.profile = result.get("profile")
    if settings.get("profile") and artifact.backend == "tflite":
        runner = next((Path(r) for r in settings.get("runners", []) if Path(r).name.startswith("benchmark_model")),
                      None)
        row.profile = (profile_tflite_host(artifact.path, runner, settings["threads"], settings["profile"]) if runner
                       else {"error": "LiteRT's Python interpreter has no per-operator profiler: pass --runner "
                                      "PATH/benchmark_model (a host build) to profile .tflite on the host"})
    return row


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
