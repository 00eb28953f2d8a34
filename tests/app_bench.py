"""Sample ``emo-mobile/app-bench/1`` results (what the Kotlin and Swift cores write), shared by the tests of the
Android and iOS targets and of their one mapper (``emo.runtime_bench.app_result``)."""

import copy

PARITY_PASSED = {"max_abs_diff": 2e-6, "cosine": 1.0, "top1_agreement": 1.0, "top5_agreement": 1.0, "num_examples": 3,
                 "status": "passed"}

DEVICES = {
    "android": {"model": "Pixel 7", "manufacturer": "Google", "soc": "Tensor G2", "os": "Android 14 (API 34)",
                "abi": "arm64-v8a"},
    "ios": {"model": "iPhone15,2", "manufacturer": "Apple", "soc": "A16", "os": "iOS 18.1", "abi": "arm64"},
}


def sample_result(platform: str, **overrides) -> dict:
    """A successful run of ``platform``'s app; ``overrides`` replace top-level fields."""
    android = platform == "android"
    result = {
        "schema": "emo-mobile/app-bench/1",
        "app": {"platform": platform, "version": "0.2.0"},
        "artifact": "model.tflite" if android else "model.mlpackage",
        "runtime": "litert" if android else "coreml",
        "runtime_version": None if android else "iOS 18.1",
        "request": {"accelerator": "gpu" if android else "ALL", "threads": 4 if android else None, "warmup": 5,
                    "iterations": 4},
        "accelerator": {"requested": "gpu" if android else "ALL", "used": ["gpu"] if android else ["cpu", "gpu", "ane"],
                        "source": "options" if android else "compute units", "nodes": None, "detail": None},
        "threads": 4 if android else None,
        "io": {"input": "float32", "output": "float32"},
        "load_ms": 120.5,
        "first_inference_ms": 9.1,
        "latencies_ms": [2.5, 2.25, 2.75, 2.5],
        "peak_memory_mb": 88.0,
        "device": dict(DEVICES[platform]),
        "status": "ok",
        "parity": dict(PARITY_PASSED),
    }
    result.update(copy.deepcopy(overrides))
    return result
