"""The ``aihub:DEVICE_NAME`` target: Qualcomm AI Hub, an existing farm of real phones, through ``qai-hub``.

A .tflite artifact is profiled as it is; an .onnx one is first compiled by AI Hub for the device's ONNX Runtime.
The profile job's result (every inference time, load times, peak memory) is mapped into the same row.
It needs the user's API token, configured once with ``qai-hub configure --api_token TOKEN``.
"""

from __future__ import annotations

from pathlib import Path

from emo.contract.timing import summary
from emo.runtime_bench.results import Artifact, BenchError, BenchResult, base_row
from emo.runtime_bench.targets import Settings, Target

SUPPORTED = ("tflite", "onnx")
CONFIG = Path.home() / ".qai_hub" / "client.ini"


def import_hub():
    try:
        import qai_hub
    except ImportError:
        raise BenchError("the aihub target needs Qualcomm's client: pip install qai-hub") from None
    if not CONFIG.exists():
        raise BenchError(f"Qualcomm AI Hub needs your API token: run `qai-hub configure --api_token TOKEN` "
                         f"(it writes {CONFIG})")
    return qai_hub


def map_profile(profile: dict, artifact: Artifact, device_name: str, settings: Settings, job_id: str) -> BenchResult:
    """An AI Hub profile (times in microseconds, memory in bytes) -> a result row."""
    execution = profile.get("execution_summary", {})
    row = base_row(artifact, {"target": "aihub", "model": device_name, "job": job_id}, settings.as_row())
    row.latencies_ms = [t / 1000.0 for t in execution.get("all_inference_times", [])]
    if not row.latencies_ms and execution.get("estimated_inference_time") is not None:
        row.latencies_ms = [execution["estimated_inference_time"] / 1000.0]
        row.latencies_source = "runner summary"
    row.load_ms = _ms(execution.get("warm_load_time"))
    row.first_inference_ms = _ms(execution.get("first_load_time"))
    peak = execution.get("estimated_inference_peak_memory")
    row.peak_memory_mb = peak / 2**20 if peak is not None else None
    row.summary = summary(row.latencies_ms)
    row.versions = {"aihub": "qai-hub"}
    if not row.latencies_ms:
        row.status = "failed: the AI Hub profile holds no inference times"
    return row


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000.0


JOB_TIMEOUT_S = 3600  # a compile or profile job; AI Hub itself fails jobs that take longer than its own limit


def _finished(job, what: str) -> None:
    """Wait for an AI Hub job at most ``JOB_TIMEOUT_S`` (qai-hub raises TimeoutError, which fails the row); a job
    that finished without success fails the row with AI Hub's own message."""
    status = job.wait(timeout=JOB_TIMEOUT_S)
    if not getattr(status, "success", False):
        raise BenchError(f"the AI Hub {what} job {getattr(job, 'job_id', '?')} failed: "
                         f"{getattr(status, 'message', None) or getattr(status, 'code', '?')}")


def run_aihub(artifact: Artifact, device_name: str, settings: Settings, hub=None) -> BenchResult:
    hub = hub or import_hub()
    device = hub.Device(device_name)
    model = str(artifact.path)
    if artifact.backend == "onnx":  # AI Hub compiles ONNX for the device's ONNX Runtime first; .tflite runs as is
        compile_job = hub.submit_compile_job(model=model, device=device, options="--target_runtime onnx")
        _finished(compile_job, "compile")
        model = compile_job.get_target_model()
    iterations = settings.iters or 100
    job = hub.submit_profile_job(model=model, device=device, options=f"--max_profiler_iterations {iterations}")
    _finished(job, "profile")
    profile = job.download_profile()
    return map_profile(profile, artifact, device_name, settings, getattr(job, "job_id", "?"))


class AiHubTarget(Target):
    """``aihub:DEVICE``: Qualcomm AI Hub's hosted phones through ``qai-hub`` (compile for ONNX, profile)."""

    kind = "aihub"

    def __init__(self, settings: Settings, device_name: str) -> None:
        super().__init__(settings)
        self.hub = import_hub()
        self.device_name = device_name

    def supports(self, artifact: Artifact) -> str | None:
        return None if artifact.backend in SUPPORTED else (
            f"AI Hub profiles {' and '.join(SUPPORTED)} artifacts here, not {artifact.backend}")

    def describe(self) -> dict:
        return {"target": "aihub", "model": self.device_name}

    def run(self, artifact: Artifact) -> BenchResult:
        return run_aihub(artifact, self.device_name, self.settings, self.hub)
