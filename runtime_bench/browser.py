"""The ``browser`` target: each .onnx/.ort/.tflite artifact in headless Chromium, through the web demo's hook.

The page (``web_demo/``) runs the artifact in WebAssembly (onnxruntime-web, LiteRT.js) with ``--threads`` threads;
``window.emoDemo.benchmark`` times ``warmup`` + ``iters`` inferences with ``performance.now()`` (5 µs resolution in
a cross-origin isolated page) and returns the raw latencies, which become the same result row as the host's.
Chromium is driven by ``web_demo/driver.mjs`` (playwright-core, the system's Chromium: nothing is downloaded).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from emo.runtime_bench.host import describe_host
from emo.runtime_bench.results import Artifact, BenchError, BenchResult, base_row, package_versions
from emo.runtime_bench.stats import summary
from emo.runtime_bench.webserver import WEB_DEMO, DemoServer, WebDemoError, check_web_demo

BROWSER_BACKENDS = ("onnx", "ort", "tflite")
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CALL_TIMEOUT_S = 900


def find_chromium() -> str:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise BenchError("no Chromium found (chromium, google-chrome): install it (Debian: apt install chromium)")


def find_node() -> str:
    found = shutil.which("node")
    if not found:
        raise BenchError("no node found: install Node.js 18+ (Debian: apt install nodejs), then `make web-deps`")
    return found


class Browser:
    """Headless Chromium behind ``web_demo/driver.mjs``: ``open(url)``, ``call(fn, *args)``, ``screenshot(path)``."""

    def __init__(self, chromium: str | None = None) -> None:
        try:
            check_web_demo()
        except WebDemoError as e:
            raise BenchError(str(e)) from None
        self.chromium = chromium or find_chromium()
        self.proc = subprocess.Popen([find_node(), str(WEB_DEMO / "driver.mjs"), self.chromium], cwd=WEB_DEMO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.version: str | None = None

    def _ask(self, **command) -> object:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the browser driver exited: {self._stderr_tail()}")
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the browser driver exited: {self._stderr_tail()}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise PageError(answer["error"])
        return answer["value"]

    def _stderr_tail(self) -> str:
        self.proc.wait(timeout=10)
        lines = [line for line in self.proc.stderr.read().splitlines() if line.strip()]
        return lines[-1][:300] if lines else f"exit code {self.proc.returncode}"

    def open(self, url: str) -> dict:
        info = self._ask(op="open", url=url)
        self.version = info["version"]
        return info

    def call(self, fn: str, *args) -> object:
        return self._ask(op="call", fn=fn, args=list(args))

    def text(self, selector: str) -> str:
        return self._ask(op="text", selector=selector)

    def screenshot(self, path: str | Path) -> None:
        self._ask(op="screenshot", path=str(path))

    def evaluate(self, expression: str) -> object:
        return self._ask(op="eval", expr=expression)

    def set_files(self, selector: str, paths: list) -> None:
        self._ask(op="files", selector=selector, paths=[str(p) for p in paths])

    def wait_for(self, expression: str) -> None:
        self._ask(op="wait", expr=expression)

    def console(self) -> list[str]:
        return self._ask(op="console")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "close"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PageError(RuntimeError):
    """The page refused or failed (its message is what the page shows the user)."""


def describe_browser(browser: Browser, bench: dict) -> dict:
    host = describe_host()
    return {"target": "browser", "model": f"{browser.version} (headless)", "browser": browser.version,
            "user_agent": bench.get("userAgent"), "cpu": host["cpu"], "cores": bench.get("hardwareConcurrency"),
            "os": host["os"], "abi": "wasm32", "host_abi": host["abi"],
            "wasm": {k: bench["info"].get(k) for k in ("runtime", "version", "backend", "threads", "simd",
                                                       "crossOriginIsolated")}}


def _npm_versions() -> dict[str, str]:
    versions = {}
    for package in ("onnxruntime-web", "@litertjs/core", "playwright-core"):
        try:
            manifest = WEB_DEMO / "node_modules" / package / "package.json"
            versions[package] = json.loads(manifest.read_text())["version"]
        except (OSError, ValueError, KeyError):
            pass
    return versions


def run_browser(artifact: Artifact, browser: Browser, settings: dict) -> BenchResult:
    row = base_row(artifact, {"target": "browser", "browser": browser.version}, settings)
    if artifact.sidecar is None:
        row.status = f"failed: {artifact.sidecar_error}"
        return row
    if artifact.backend not in BROWSER_BACKENDS:
        row.status = (f"failed: the browser runs .onnx, .ort and .tflite artifacts, not {artifact.backend} "
                      "(use --device host, adb, mac or ios)")
        return row
    with DemoServer(models=artifact.path.parent) as server:
        try:
            browser.open(server.url)
            browser.call("load", f"models/{artifact.path.name}", {"threads": settings["threads"]})
            bench = browser.call("benchmark", {"warmup": settings["warmup"], "iters": settings.get("iters"),
                                               "minSeconds": settings.get("min_seconds")})
        except PageError as e:
            row.status = f"failed: {e}"
            return row
    row.device = describe_browser(browser, bench)
    row.load_ms, row.first_inference_ms = bench["loadMs"], bench["firstMs"]
    row.latencies_ms = bench["latenciesMs"]
    row.summary = summary(row.latencies_ms)
    row.versions = {**package_versions(), **_npm_versions(), "chromium": browser.version,
                    "node": _node_version()}
    if bench["info"]["threads"] != settings["threads"]:
        row.status = (f"failed: the page ran {bench['info']['threads']} thread(s), not {settings['threads']} "
                      "(is the page cross-origin isolated?)")
    return row


def _node_version() -> str | None:
    try:
        return subprocess.run([find_node(), "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (BenchError, OSError, subprocess.SubprocessError):
        return None
