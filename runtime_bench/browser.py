"""The ``browser`` target: each .onnx/.ort/.tflite artifact in headless Chromium, through the web demo's hook.

The page (``web_demo/``) runs the artifact with onnxruntime-web or LiteRT.js on ``--backend`` wasm (WebAssembly with
``--threads`` threads) or webgpu (WebGPU; Chromium is started with WebGPU on, SwiftShader's software adapter when
there is no GPU); at load it runs the artifact's bundled examples and compares them with PyTorch's outputs (the row's
``parity``; a failed check fails the row). ``window.emoDemo.benchmark`` times ``warmup`` + ``iters`` inferences with
``performance.now()`` (5 µs resolution in a cross-origin isolated page) and returns the raw latencies, which become
the same result row as the host's. The row records the backend that ran; one that fell back (no WebGPU adapter) fails.
Chromium is driven by ``web_demo/driver.mjs`` (playwright-core, the system's Chromium: nothing is downloaded).
"""

from __future__ import annotations

import collections
import contextlib
import json
import queue
import shutil
import subprocess
import threading
import urllib.parse
from pathlib import Path

from emo.contract import vocabulary
from emo.contract.timing import summary
from emo.runtime_bench.host import describe_host
from emo.runtime_bench.results import Artifact, BenchError, BenchResult, base_row, package_versions
from emo.runtime_bench.targets import Settings, Target, runnable_formats
from emo.runtime_bench.webserver import WEB_DEMO, DemoServer, WebDemoError, check_web_demo

BROWSER_BACKENDS = runnable_formats(lambda f: f.browser)
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CALL_TIMEOUT_S = 900.0  # one driver call: open the page, load a model, a benchmark (plus its --min-seconds)
STOP_GRACE_S = 10.0     # a stopped driver closes Chromium; after this it is killed


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


class BrowserTimeoutError(RuntimeError):
    """A driver call did not answer in time; the driver and its Chromium were stopped (``open`` starts afresh)."""


class DriverExitedError(RuntimeError):
    """The driver (or its Chromium) died during a call; ``open`` starts a fresh one."""


class Browser:
    """Headless Chromium behind ``web_demo/driver.mjs``: ``open(url)``, ``call(fn, *args)``, ``screenshot(path)``;
    for the tests also ``new_context`` (a phone's viewport and touch), ``set_offline``, ``reload``, ``tap``, ``cdp``.
    ``webgpu`` starts Chromium with WebGPU on, ``fake_camera`` with a fake camera playing a .y4m file, ``persistent``
    with a normal (not incognito) temporary profile.

    Every call waits at most ``call_timeout_s`` (default ``CALL_TIMEOUT_S``): a page that never answers (a model
    whose loop never ends holds the page's thread) raises ``BrowserTimeoutError`` after the driver and its Chromium
    were stopped, and the next ``open`` starts a fresh one, so one bad artifact cannot hold a whole bench run.
    """

    def __init__(self, chromium: str | None = None, call_timeout_s: float | None = None, *, webgpu: bool = False,
                 fake_camera: Path | None = None, persistent: bool = False) -> None:
        try:
            check_web_demo()
        except WebDemoError as e:
            raise BenchError(str(e)) from None
        self.chromium = chromium or find_chromium()
        self.call_timeout_s = float(call_timeout_s or CALL_TIMEOUT_S)
        # launch options of the driver: WebGPU on (else --disable-gpu); a fake camera playing a .y4m file; a
        # temporary profile that is not incognito (where Chromium judges whether a web app is installable)
        self.options = {"webgpu": webgpu, "persistent": persistent,
                        **({"fakeCamera": str(fake_camera)} if fake_camera else {})}
        self.version: str | None = None
        self.proc: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen([find_node(), str(WEB_DEMO / "driver.mjs"), self.chromium,
                                      json.dumps(self.options)], cwd=WEB_DEMO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     encoding="utf-8", errors="replace")
        # the answers and the driver's stderr are read by threads: a wait has a deadline, and a chatty stderr can
        # never fill its pipe and stall the driver
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        threading.Thread(target=_pump, args=(self.proc.stdout, self._answers.put), daemon=True).start()
        threading.Thread(target=_pump, args=(self.proc.stderr, self._stderr.append), daemon=True).start()

    def _ask(self, timeout_s: float | None = None, **command) -> object:
        if self.proc is None or self.proc.poll() is not None:
            if command["op"] != "open":
                raise DriverExitedError("the browser driver was stopped after a timeout: open a page first"
                                        if self.proc is None else f"the browser driver exited: {self._stderr_tail()}")
            self._stop()
            self._start()  # a fresh driver and Chromium (after a timeout, or if it died)
        timeout_s = timeout_s or self.call_timeout_s
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
            line = self._answers.get(timeout=timeout_s)
        except OSError:
            line = None
        except queue.Empty:
            self._stop()
            what = command.get("fn") or command["op"]
            raise BrowserTimeoutError(f"timed out after {timeout_s:g} s ({what})") from None
        if not line:
            raise DriverExitedError(f"the browser driver exited: {self._stderr_tail()}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise PageError(answer["error"])
        return answer["value"]

    def _stderr_tail(self) -> str:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        lines = [line.strip() for line in self._stderr if line and line.strip()]
        code = self.proc.returncode if self.proc is not None else None
        return lines[-1][:300] if lines else f"exit code {code}"

    def _stop(self) -> None:
        """Stop the driver: SIGTERM (it exits and kills its Chromium's process group), then SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()

    def open(self, url: str) -> dict:
        info = self._ask(op="open", url=url)
        self.version = info["version"]
        return info

    def call(self, fn: str, *args, timeout_s: float | None = None) -> object:
        return self._ask(timeout_s, op="call", fn=fn, args=list(args))

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

    def new_context(self, **options) -> None:
        """A fresh browser context (Playwright's options: viewport, deviceScaleFactor, isMobile, hasTouch)."""
        self._ask(op="context", options=options)

    def set_offline(self, offline: bool) -> None:
        self._ask(op="offline", value=offline)

    def reload(self) -> bool:
        """Reload the page and wait for it; True if it is cross-origin isolated."""
        return self._ask(op="reload")

    def tap(self, selector: str) -> None:
        self._ask(op="tap", selector=selector)

    def cdp(self, method: str, **params) -> object:
        return self._ask(op="cdp", method=method, params=params)

    @property
    def pid(self) -> int | None:
        """The driver's process id (None while stopped)."""
        return self.proc.pid if self.proc is not None else None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(json.dumps({"op": "close"}) + "\n")
                self.proc.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        self._stop()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pump(stream, put) -> None:
    """Each line of ``stream`` to ``put``; None at the end."""
    with contextlib.suppress(OSError, ValueError):
        for line in stream:
            put(line)
    put(None)


class PageError(RuntimeError):
    """The page refused or failed (its message is what the page shows the user)."""


def describe_browser(browser: Browser, bench: dict) -> dict:
    host = describe_host()
    return {"target": "browser", "model": f"{browser.version} (headless)", "browser": browser.version,
            "user_agent": bench.get("userAgent"), "cpu": host["cpu"], "cores": bench.get("hardwareConcurrency"),
            "os": host["os"], "abi": "wasm32", "host_abi": host["abi"],
            "runtime": {k: bench["info"].get(k) for k in ("runtime", "version", "backend", "detail", "threads", "simd",
                                                          "crossOriginIsolated", "adapter", "fallback")}}


def _npm_versions() -> dict[str, str]:
    versions = {}
    for package in ("onnxruntime-web", "@litertjs/core", "playwright-core"):
        try:
            manifest = WEB_DEMO / "node_modules" / package / "package.json"
            versions[package] = json.loads(manifest.read_text())["version"]
        except (OSError, ValueError, KeyError):
            pass
    return versions


def run_browser(artifact: Artifact, browser: Browser, settings: Settings) -> BenchResult:
    """One artifact the page can run (``BrowserTarget.supports``), on a fresh page served from its folder."""
    row = base_row(artifact, {"target": "browser", "browser": browser.version}, settings.as_row())
    # the name goes into a URL: percent-encoded (a '%41', '#', '?' or space is part of the name), decoded once
    url = "models/" + urllib.parse.quote(artifact.path.name, safe="")
    with DemoServer(models=artifact.path.parent) as server:
        try:
            browser.open(server.url + "?offline=off")  # no service worker caching in the background while timing
            backend = settings.backend or "wasm"
            loaded = browser.call("load", url, {"threads": settings.threads, "backend": backend})
            if loaded.get("sha256") != artifact.sidecar.get("sha256"):
                row.status = (f"failed: the page loaded {loaded.get('name')!r} (sha256 {loaded.get('sha256')}), "
                              f"not {artifact.path.name}; report this as a bug")
                return row
            # the page times iters runs, or for at least --min-seconds: the call may take that much longer
            bench = browser.call("benchmark", {"warmup": settings.warmup, "iters": settings.iters,
                                               "minSeconds": settings.min_seconds},
                                 timeout_s=browser.call_timeout_s + (settings.min_seconds or 0))
        except PageError as e:
            row.status = f"failed: {e}"
            return row
        except BrowserTimeoutError as e:
            row.status = (f"failed: {e}: the page did not answer (a model that never finishes?); Chromium was "
                          "stopped and starts afresh for the next artifact")
            return row
        except DriverExitedError as e:
            row.status = f"failed: {e} (Chromium starts afresh for the next artifact)"
            return row
    row.device = describe_browser(browser, bench)
    row.load_ms, row.first_inference_ms = bench["loadMs"], bench["firstMs"]
    row.latencies_ms = bench["latenciesMs"]
    row.summary = summary(row.latencies_ms)
    row.versions = {**package_versions(), **_npm_versions(), "chromium": browser.version,
                    "node": _node_version()}
    parity = loaded.get("parity") or {}
    row.parity = {**parity, "where": f"{bench['info'].get('runtime')} {bench['info'].get('backend')} in the page"}
    if bench["info"]["threads"] != settings.threads:
        row.status = (f"failed: the page ran {bench['info']['threads']} thread(s), not {settings.threads} "
                      "(is the page cross-origin isolated?)")
    elif bench["info"].get("backend") != backend:
        row.status = (f"failed: the page ran {bench['info'].get('backend')}, not {backend}: "
                      f"{bench['info'].get('fallback') or 'the runtime fell back'}")
    elif str(parity.get("status", "")).startswith("failed"):
        row.status = f"failed: parity of the bundled examples in the page: {parity['status']}"
    return row


def _node_version() -> str | None:
    try:
        return subprocess.run([find_node(), "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (BenchError, OSError, subprocess.SubprocessError):
        return None


class BrowserTarget(Target):
    """``browser``: headless Chromium (Debian's) with the web demo page; a fresh page per artifact."""

    kind = "browser"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.browser = Browser(webgpu=settings.backend == "webgpu")

    def supports(self, artifact: Artifact) -> str | None:
        if artifact.backend in BROWSER_BACKENDS:
            return None
        runs = vocabulary.BROWSER_SUFFIXES
        return (f"the browser runs {', '.join(runs[:-1])} and {runs[-1]} artifacts, not {artifact.backend} "
                "(use --device host, adb, mac or ios)")

    def describe(self) -> dict:
        return {"target": "browser", "browser": self.browser.version, "backend": self.settings.backend}

    def run(self, artifact: Artifact) -> BenchResult:
        return run_browser(artifact, self.browser, self.settings)

    def close(self) -> None:
        self.browser.close()
