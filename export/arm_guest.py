"""The guest side of ``emo-verify --arm``: run one artifact on the bundled examples' inputs in its runtime and say
what CPU the runtime saw. Runs inside the Arm root under qemu (and, for the side-by-side x86 row, on the host).

Only the standard library, NumPy and the runtime: no emo, no torch (the Arm root has neither). Inputs arrive as
``INPUTS/0.npy, 1.npy, ...`` in the artifact's own layout (the examples file's tensors); outputs are written as
``OUT/0.npy, ...`` (float32: an int8 TFLite output is dequantized here, as ``emo.export.tflite.load`` does) and
``OUT/report.json`` (the guest's CPU features, the runtime and what it reported). Nothing is unpickled.

    python arm_guest.py --backend tflite --artifact model.tflite --inputs DIR --out DIR [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

CPUINFO_KEYS = {"Features": "features", "CPU implementer": "implementer", "CPU architecture": "architecture",
                "CPU variant": "variant", "CPU part": "part", "CPU revision": "revision"}


def cpuinfo() -> dict:
    """The first processor's entry of ``/proc/cpuinfo`` as the guest sees it (qemu 10 writes one per CPU model)."""
    info: dict = {"processors": 0}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError as e:
        return {"error": f"/proc/cpuinfo unreadable: {e}"}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            info["processors"] += 1
        elif key in CPUINFO_KEYS and CPUINFO_KEYS[key] not in info:
            info[CPUINFO_KEYS[key]] = value.split() if key == "Features" else value
    return info


def load_onnxruntime(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    devices = [{"ep": d.ep_name, "type": str(d.device.type).rsplit(".", 1)[-1], "vendor": d.device.vendor,
                "vendor_id": d.device.vendor_id} for d in ort.get_ep_devices()]
    report = {"name": "onnxruntime", "version": ort.__version__, "providers": session.get_providers(),
              "ep_devices": devices}
    return (lambda x: session.run(None, {name: x})[0]), report


def load_litert(path: Path, threads: int):
    """LiteRT with its default XNNPACK delegate; full-integer models take quantized input and give quantized
    output: the input's scale and zero point are applied and the output dequantized, as an app does."""
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    delegates = [op for op in interpreter._get_ops_details() if op["op_name"] == "DELEGATE"]
    graph_in, graph_out = {inp["index"]}, {out["index"]}
    whole = (len(delegates) == 1 and graph_in <= set(delegates[0]["inputs"].tolist())
             and graph_out <= set(delegates[0]["outputs"].tolist()))
    in_dtype, out_dtype = np.dtype(inp["dtype"]), np.dtype(out["dtype"])
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    report = {"name": "ai-edge-litert", "version": version("ai-edge-litert"), "delegate": "XNNPACK (default)",
              "xnnpack_partitions": len(delegates), "xnnpack_whole_graph": bool(whole),
              "input_dtype": in_dtype.name, "output_dtype": out_dtype.name}

    def run(x: np.ndarray) -> np.ndarray:
        if in_dtype.kind in "iu":
            info = np.iinfo(in_dtype)
            x = np.clip(np.round(x / in_scale) + in_zero, info.min, info.max).astype(in_dtype)
        interpreter.set_tensor(inp["index"], np.ascontiguousarray(x, dtype=in_dtype))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).copy()
        return (y.astype(np.float32) - out_zero) * out_scale if out_dtype.kind in "iu" else y

    return run, report


LOADERS = {"onnx": load_onnxruntime, "ort": load_onnxruntime, "tflite": load_litert}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", required=True, choices=sorted(LOADERS))
    p.add_argument("--artifact", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": platform.machine(), "cpuinfo": cpuinfo(), "python": platform.python_version(),
              "numpy": np.__version__, "threads": args.threads, "uid": os.getuid()}
    try:
        run, report["runtime"] = LOADERS[args.backend](Path(args.artifact), args.threads)
        count = len(list(Path(args.inputs).glob("*.npy")))
        for i in range(count):
            x = np.load(Path(args.inputs) / f"{i}.npy", allow_pickle=False)
            y = np.asarray(run(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float32)
            np.save(out / f"{i}.npy", y, allow_pickle=False)
        report["outputs"] = count
    except Exception as e:  # the runtime refused or failed: the host records it as the row's reason
        report["error"] = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
    tmp = out / f".report.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(report))
    os.replace(tmp, out / "report.json")
    return 1 if "error" in report else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
