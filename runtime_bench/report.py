"""Tables, CSV, the plot, and ``compare`` — all from result rows (dicts read back from JSON Lines)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from emo.contract.text import printable
from emo.runtime_bench.results import BenchError


def _device_name(row: dict) -> str:
    device = row.get("device") if isinstance(row.get("device"), dict) else {}
    name = device.get("model") or device.get("target", "?")
    return f"{device.get('target', '?')}:{name}"


def _setting(row: dict) -> str:
    s = row.get("settings") if isinstance(row.get("settings"), dict) else {}
    parts = [f"{s['threads']}t" if s.get("threads") else None, s.get("delegate"), s.get("compute_units"),
             s.get("backend")]
    return ",".join(p for p in parts if p)


def _model(row: dict) -> str:
    """Variant and the weights it was exported from (older rows have no weights: the variant alone)."""
    return " ".join(str(v) for v in (row.get("variant") or "?", row.get("weights")) if v)


def _fmt(value, spec=".2f") -> str:
    return "-" if value is None else format(value, spec)


def render(header: list[str], body: list[list[str]]) -> str:
    """A plain-text table; every cell made printable (result files and devices may hold terminal escapes)."""
    body = [[printable(c, 400) for c in row] for row in body]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body]
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    """Sorted by median (failed rows last, with their reason). "vs pt2": how many times faster than the PyTorch
    baseline artifact on the same device and settings in these rows."""
    def key(row):
        median = row.get("summary", {}).get("median", row.get("summary", {}).get("mean"))
        return (row.get("status") != "ok", median if median is not None else float("inf"))

    # the PyTorch baseline (a pt2 artifact) of each device and settings, measured in the same run
    baseline = {(_device_name(r), _setting(r)): r["summary"]["median"] for r in rows
                if r.get("backend") == "pt2" and r.get("status") == "ok" and r.get("summary", {}).get("median")}
    header = ["artifact", "model", "precision", "device", "settings", "median ms", "p90 ms", "min ms", "vs pt2",
              "load ms", "peak MB", "n", "status"]
    body = []
    for row in sorted(rows, key=key):
        s = row.get("summary", {})
        median = s.get("median", s.get("mean"))
        base = baseline.get((_device_name(row), _setting(row)))
        body.append([Path(row["artifact"]).name, _model(row), row.get("precision") or "?", _device_name(row),
                     _setting(row),
                     _fmt(median), _fmt(s.get("p90")), _fmt(s.get("min")),
                     f"{base / median:.2f}x" if base and median and row.get("status") == "ok" else "-",
                     _fmt(row.get("load_ms"), ".1f"), _fmt(row.get("peak_memory_mb"), ".1f"),
                     str(s.get("count", "-")), row.get("status", "?")])
    return render(header, body)


CSV_FIELDS = ["artifact", "variant", "backend", "precision", "device", "settings", "status", "median_ms", "p10_ms",
              "p90_ms", "min_ms", "trimmed_mean_ms", "std_ms", "count", "load_ms", "first_inference_ms",
              "peak_memory_mb", "git_revision", "timestamp_utc"]


def write_csv(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            s = row.get("summary", {})
            writer.writerow({
                "artifact": Path(row["artifact"]).name, "variant": row.get("variant"), "backend": row.get("backend"),
                "precision": row.get("precision"), "device": _device_name(row), "settings": _setting(row),
                "status": row.get("status"), "median_ms": s.get("median"), "p10_ms": s.get("p10"),
                "p90_ms": s.get("p90"), "min_ms": s.get("min"), "trimmed_mean_ms": s.get("trimmed_mean"),
                "std_ms": s.get("std"), "count": s.get("count"), "load_ms": row.get("load_ms"),
                "first_inference_ms": row.get("first_inference_ms"), "peak_memory_mb": row.get("peak_memory_mb"),
                "git_revision": row.get("git_revision"), "timestamp_utc": row.get("timestamp_utc")})


def require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError("--plot needs matplotlib: pip install 'emo-mobile[bench]'") from None
    return plt


def plot(rows: list[dict], path: str | Path) -> None:
    """Median latency with p10-p90 whiskers per artifact, one panel per device."""
    plt = require_matplotlib()
    ok = [r for r in rows if r.get("status") == "ok" and r.get("summary", {}).get("median") is not None]
    if not ok:
        raise BenchError("nothing to plot: no successful rows")
    by_device: dict[str, list[dict]] = defaultdict(list)
    for row in ok:
        by_device[_device_name(row)].append(row)
    fig, axes = plt.subplots(len(by_device), 1, figsize=(9, 1.2 + 0.45 * max(len(v) for v in by_device.values())
                                                         * len(by_device)), squeeze=False)
    for ax, (device, device_rows) in zip(axes[:, 0], sorted(by_device.items()), strict=True):
        device_rows.sort(key=lambda r: r["summary"]["median"])
        labels = [f"{Path(r['artifact']).name} [{_setting(r)}]" for r in device_rows]
        medians = [r["summary"]["median"] for r in device_rows]
        low = [m - r["summary"].get("p10", m) for m, r in zip(medians, device_rows, strict=True)]
        high = [r["summary"].get("p90", m) - m for m, r in zip(medians, device_rows, strict=True)]
        ax.barh(labels, medians, xerr=[low, high], capsize=3, color="#4c72b0")
        ax.set_title(device, fontsize=10)
        ax.set_xlabel("latency (ms): median, whiskers p10-p90")
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def comparable(row) -> bool:
    """A successful result row with an artifact name and a positive median (files may hold anything)."""
    if not isinstance(row, dict) or row.get("status") != "ok" or not isinstance(row.get("artifact"), str):
        return False
    median = (row.get("summary") if isinstance(row.get("summary"), dict) else {}).get("median")
    return isinstance(median, int | float) and not isinstance(median, bool) and 0 < median < float("inf")


def compare(rows_a: list[dict], rows_b: list[dict]) -> str:
    """Median of B over median of A for every (artifact, device, settings) present in both."""
    def keyed(rows):
        return {(Path(r["artifact"]).name, _device_name(r), _setting(r)): r for r in rows if comparable(r)}

    a, b = keyed(rows_a), keyed(rows_b)
    common = sorted(set(a) & set(b))
    if not common:
        raise BenchError("the two result files have no successful (artifact, device, settings) in common")
    header = ["artifact", "device", "settings", "A median ms", "B median ms", "B/A", "same file"]
    body = []
    for k in common:
        ma, mb = a[k]["summary"]["median"], b[k]["summary"]["median"]
        sha_a, sha_b = a[k].get("artifact_sha256"), b[k].get("artifact_sha256")
        same = "?" if not (sha_a and sha_b) else ("yes" if sha_a == sha_b else f"no ({_model(a[k])} / {_model(b[k])})")
        body.append([*k, f"{ma:.3f}", f"{mb:.3f}", f"{mb / ma:.3f}x", same])
    return render(header, body)
