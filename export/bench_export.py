"""Time ``emo-export --format all`` end to end (a benchmark script, not a test).

    python -m emo.export.bench_export --model emo_1m [--weights PATH] [--repeat 1]

Runs the real console script in a fresh process (imports and every parity check included) and prints the
wall-clock time next to the per-format export seconds read back from the sidecars, so the two can be compared in
one run on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="emo_1m")
    p.add_argument("--weights")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--target-seconds", type=float, default=90.0)
    args = p.parse_args(argv)
    exe = Path(sys.executable).with_name("emo-export")
    for i in range(args.repeat):
        out = Path(tempfile.mkdtemp(prefix="emo-bench-export-"))
        cmd = [str(exe), "--model", args.model, "--format", "all", "--out", str(out)]
        if args.weights:
            cmd += ["--weights", args.weights]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        print(f"run {i + 1}: exit {proc.returncode}, wall {wall:.1f} s "
              f"(target {args.target_seconds:.0f} s: {'met' if wall < args.target_seconds else 'MISSED'})")
        for side in sorted(p for p in out.glob("*.json") if not p.name.endswith(".examples.json")):
            data = json.loads(side.read_text())
            print(f"  {data['file']:<28} export {data['export_seconds']:6.1f} s  parity {data['parity']['status']}")
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
