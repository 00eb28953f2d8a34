"""The local static server of the web demo: the page, its runtimes' WebAssembly from node_modules, and a folder of
exported artifacts, on 127.0.0.1 only, with the cross-origin isolation headers multi-threaded WASM needs.

It lives in ``runtime_bench`` because ``emo-bench --device browser`` serves the page with it and this package
never imports ``emo``; ``python -m emo.web_demo serve DIR`` (``emo-web-demo``) is the user's entry point to it.

    /                  web_demo/: the page's own files (the app shell: page, scripts, service worker, manifest,
                       icons) and the runtimes' dist folders in node_modules, nothing else
    /models/NAME       artifacts (.onnx/.ort/.tflite), sidecars and examples (.json) and images directly inside DIR,
    /models/SUB/NAME   or in one of its visible subfolders (``make demo``: DIR/fashion_mnist/)
    /models/index.json the artifacts the page can list (visible, with their sidecar), the sample photos, the images
                       of the model folders
    /samples/NAME      sample photos (given by the caller)
    /contract.json     the artifact contract for the page (vocabulary, JSON Schemas, parity policy, limits), built
                       from ``emo.contract``: the page restates none of it
    /version.json      the app shell's version (a hash of what the service worker caches) and its file list

What it promises (README "Security"; tests/test_security_web.py): answers only requests whose ``Host`` is a
loopback name with the bound port (DNS rebinding); opens every file exactly once, component by component with
``O_NOFOLLOW`` relative to the folder's descriptor, and serves the descriptor it checked (no symlink, no swap between
check and use, no FIFO or device); serves the data folders' files only with inert types; sends
``X-Content-Type-Options: nosniff`` and a Content-Security-Policy on every response; streams files (no whole-file
reads); caps concurrent connections (503 beyond) and drops a connection that has not sent its request in time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import re
import socket
import stat
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from emo.contract import examples as contract_examples
from emo.contract import jsonio, schema, text, vocabulary
from emo.contract import sidecar as contract_sidecar

WEB_DEMO = Path(__file__).resolve().parent.parent / "web_demo"
BROWSER_SUFFIXES = vocabulary.BROWSER_SUFFIXES
LISTED_SUFFIXES = vocabulary.ARTIFACT_SUFFIXES  # all listed, so that picking one gives the page's clear message
FOLDER_SUFFIXES = (vocabulary.FORMATS["coreml"].suffix,)  # artifacts that are folders (listed, never served)
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
# the data folders serve only what the page reads, and only as types a browser never runs: a .html, .svg or .js
# dropped into a model folder is a 404, not a script on the demo's origin
MODEL_TYPES = {**dict.fromkeys(BROWSER_SUFFIXES, "application/octet-stream"), ".json": "application/json",
               **IMAGE_TYPES}
SAMPLE_TYPES = IMAGE_TYPES
# web_demo/ serves the app shell and the runtimes the page imports (driver.mjs, package files and the rest of
# node_modules, playwright-core's own pages included, are not served). The service worker caches exactly these
# files (their list and version are /version.json); sw.js sits at the root, so its default scope is the whole page
# and no Service-Worker-Allowed header is needed.
PAGE_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript", "core.js": "text/javascript",
              "contract.js": "text/javascript", "runtimes.js": "text/javascript", "runtime-ort.js": "text/javascript",
              "runtime-litert.js": "text/javascript", "frame-worker.js": "text/javascript",
              "camera.js": "text/javascript", "sw.js": "text/javascript", "style.css": "text/css",
              "manifest.webmanifest": "application/manifest+json",
              **{f"icons/{name}": "image/png" for name in ("icon-192.png", "icon-512.png", "maskable-192.png",
                                                          "maskable-512.png", "apple-touch-icon.png",
                                                          "favicon-32.png")}}
RUNTIME_TREES = ("node_modules/onnxruntime-web/dist/", "node_modules/@litertjs/core/",
                 "node_modules/@litertjs/wasm-utils/dist/")
RUNTIME_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
                 ".json": "application/json", ".map": "application/json"}

MAX_CONNECTIONS = 32      # a page opens about 6 at a time; more are refused with 503
TIMEOUT_S = 30.0          # to send the request line and headers, and per socket read or write after that
MAX_PATH = 2048           # characters of a request path
MAX_LISTED = 1000         # artifacts in index.json (and images)
MAX_FOLDERS = 100         # subfolders of the model folder that are looked into
MAX_SIDECAR_BYTES = contract_sidecar.MAX_SIDECAR_BYTES
TEMPORARY = re.compile(r"\.tmp-\d+")  # emo-export's temporaries (hidden as well: .NAME.tmp-PID.SUFFIX)
CONTROL = text.CONTROL  # names with control or bidi characters are neither listed nor served

# The page needs its own scripts, WebAssembly compilation ('wasm-unsafe-eval'; never 'unsafe-eval'), workers from
# itself (the service worker, the camera's frame worker) or blob: (the runtimes' pthreads), its own fetches (WebGPU
# needs nothing more), its manifest, images it decodes from blob:/data:. The inline import map is allowed by its hash
# (computed from index.html at start). Everything else is refused.
PAGE_CSP = ("default-src 'none'; script-src 'self' 'wasm-unsafe-eval'{hashes}; worker-src 'self' blob:; "
            "connect-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; "
            "manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
            "frame-src 'none'")
# data files, index.json and errors: nothing may run even if a browser is made to render one
DATA_CSP = "default-src 'none'; sandbox; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


class WebDemoError(RuntimeError):
    """The page or its npm packages are missing: the message says how to install them."""


def check_web_demo(root: Path = WEB_DEMO) -> Path:
    """``root`` if it holds the page and the installed runtimes, else a WebDemoError naming the fix."""
    if not (root / "index.html").is_file():
        raise WebDemoError(f"the web demo page is not at {root}: run from a clone of emo-mobile (the page is not "
                           "part of the installed wheel)")
    for package in ("onnxruntime-web", "@litertjs/core", "playwright-core"):
        if not (root / "node_modules" / package / "package.json").is_file():
            raise WebDemoError(f"npm package {package} is missing in {root / 'node_modules'}: run `make web-deps` "
                               "(npm ci in web_demo/)")
    return root


def open_regular(root: Path, parts: list[str]) -> tuple[int, os.stat_result] | None:
    """(descriptor, fstat) of ``root/parts...`` if it is a regular file reached without a symlink, else None.

    One open per component, each relative to the descriptor of the folder before it, with ``O_NOFOLLOW`` (and
    ``O_DIRECTORY`` for folders): a symlink swapped in at any point fails the open instead of being followed. The
    last open is ``O_NONBLOCK`` (a FIFO never blocks) and the file type is checked on the same descriptor that is
    then served. ``root`` itself is the user's choice and may be a symlink.
    """
    if not parts or any(p in ("", ".", "..") or "/" in p or "\0" in p for p in parts):
        return None
    try:
        folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            os.close(folder)
            folder = inner
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                     dir_fd=folder)
    except OSError:
        return None
    finally:
        os.close(folder)
    try:
        info = os.fstat(fd)
    except OSError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return fd, info


def _read_small(root: Path, parts: list[str], limit: int) -> bytes | None:
    opened = open_regular(root, parts)
    if opened is None:
        return None
    fd, info = opened
    with os.fdopen(fd, "rb") as f:
        return f.read(limit + 1) if info.st_size <= limit else None


def describe_sidecar(raw: bytes | None, name: str = "sidecar") -> dict:
    """What tells artifacts of different models apart in the page's list: variant, precision, input, weights (read
    with the contract's one validator; a sidecar it refuses is listed with why, and the page gives the full line)."""
    if raw is None:
        return {"note": "sidecar unreadable or too large"}
    try:
        side = contract_sidecar.loads(raw, name)
    except jsonio.ContractError as e:
        return {"note": text.printable(str(e).split("; ")[0], 160)}
    return {"variant": side.variant, "backend": side.backend, "precision": side.precision,
            "input": f"{side.input.height}x{side.input.width}", "classes": side.num_classes,
            "weights": text.printable(side.weights_id, 80), "trained": not side.weights.get("random_init", False)}


def _visible(name: str) -> bool:
    return not name.startswith(".") and not TEMPORARY.search(name) and not CONTROL.search(name)


def _entries(folder: Path) -> list[tuple[str, bool, bool]]:
    """(name, is a regular file, is a folder) of the visible entries of ``folder``, sorted; never follows a link."""
    with os.scandir(folder) as entries:
        return sorted((e.name, e.is_file(follow_symlinks=False), e.is_dir(follow_symlinks=False))
                      for e in entries if _visible(e.name))


def model_index(models: Path | None, samples: Path | None) -> dict:
    """index.json: the artifacts of ``models`` and of its visible subfolders a user may pick (each with what its
    sidecar says; names are ``NAME`` or ``SUB/NAME``), the images beside them, the sample photos.

    Only visible regular files (or .mlpackage folders) whose sidecar is present are listed: never a hidden
    temporary that a killed export left, never a symlink (it would not be served).
    """
    index: dict = {"artifacts": [], "images": [], "samples": []}
    if models is not None:
        try:
            top = _entries(models)
        except OSError as e:
            top = []
            index["error"] = (f"the served model folder {models} cannot be read ({e.strerror}): was it deleted "
                              "or moved? restart emo-web-demo serve with the folder")
        folders = [("", top)]
        for name, _, is_dir in top:
            if is_dir and os.path.splitext(name)[1] not in FOLDER_SUFFIXES and len(folders) <= MAX_FOLDERS:
                with contextlib.suppress(OSError):
                    folders.append((name, _entries(models / name)))
        for prefix, found in folders:
            _list_folder(index, models, prefix, found)
    if samples is not None:
        with contextlib.suppress(OSError), os.scandir(samples) as entries:
            index["samples"] = sorted(e.name for e in entries if _visible(e.name) and e.is_file(follow_symlinks=False)
                                      and os.path.splitext(e.name)[1].lower() in SAMPLE_TYPES)
    return index


def _list_folder(index: dict, models: Path, prefix: str, found: list[tuple[str, bool, bool]]) -> None:
    names = {name for name, is_file, _ in found if is_file}
    for name, is_file, is_dir in found:
        suffix = os.path.splitext(name)[1]
        shown = f"{prefix}/{name}" if prefix else name
        if is_file and suffix.lower() in IMAGE_TYPES and len(index["images"]) < MAX_LISTED:
            index["images"].append(shown)
        listed = (is_file and suffix in LISTED_SUFFIXES and suffix not in FOLDER_SUFFIXES) or (
            is_dir and suffix in FOLDER_SUFFIXES)
        sidecar = name[: -len(suffix)] + vocabulary.SIDECAR_SUFFIX
        if not listed or sidecar not in names:
            continue
        if len(index["artifacts"]) >= MAX_LISTED:
            index["truncated"] = True
            return
        parts = [prefix, sidecar] if prefix else [sidecar]  # opened component by component, as a request would be
        details = describe_sidecar(_read_small(models, parts, MAX_SIDECAR_BYTES), sidecar)
        index["artifacts"].append({"name": shown, **details})


def contract_document() -> dict:
    """The contract as the page reads it (``web_demo/contract.js``): the vocabulary (vocabulary.json itself), the
    sidecar and examples JSON Schemas, the parity policy and the readers' limits, all from ``emo.contract``."""
    return {
        "vocabulary": json.loads(vocabulary.VOCABULARY_JSON.read_text(encoding="utf-8")),
        "schemas": {"sidecar": schema.schema("sidecar"), "examples": schema.schema("examples")},
        "parity": {"tolerances": contract_examples.TOLERANCES, "upper_bounds": list(contract_examples.UPPER_BOUNDS)},
        "limits": {"max_json_depth": jsonio.MAX_DEPTH, "max_sidecar_bytes": contract_sidecar.MAX_SIDECAR_BYTES,
                   "max_input_elements": contract_sidecar.MAX_INPUT_ELEMENTS,
                   "max_examples_bytes": contract_examples.MAX_EXAMPLES_BYTES,
                   "max_tensor_elements": contract_examples.MAX_TENSOR_ELEMENTS,
                   "crop_pct": contract_sidecar.CROP_PCT},
    }


# what the service worker caches up front (the runtimes' JS and WASM are cached as they are first used)
SHELL = ("./", *(name for name in PAGE_FILES if name not in ("index.html", "sw.js")), "contract.json")
RUNTIME_PACKAGES = ("onnxruntime-web", "@litertjs/core", "@litertjs/wasm-utils")


def shell_version(root: Path, contract: bytes) -> str:
    """A hash of the app shell (the page's files, the contract) and the runtimes' package versions: a new value
    makes the page register a new service worker, which replaces the old cache."""
    digest = hashlib.sha256(contract)
    for name in sorted(PAGE_FILES) + [f"node_modules/{p}/package.json" for p in RUNTIME_PACKAGES]:
        opened = open_regular(root, name.split("/"))
        if opened is None:
            digest.update(f"{name}: missing".encode())
            continue
        with os.fdopen(opened[0], "rb") as f:
            digest.update(name.encode() + b"\0" + hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:16]


def _inline_script_hashes(html: str) -> str:
    """CSP sources for the inline scripts of index.html (its import map): ``'sha256-...'`` of each exact text."""
    bodies = re.findall(r"<script(?![^>]*\ssrc=)[^>]*>(.*?)</script>", html, flags=re.DOTALL | re.IGNORECASE)
    return "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
                   for b in bodies if b.strip())


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of the routes in the module docstring; every other method is 501."""

    server: _Server
    server_version = "emo-web-demo"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive connections to time out
    default_request_version = "HTTP/1.0"  # errors always have a status line and headers (never HTTP/0.9's bare body)

    def setup(self) -> None:
        self.timeout = self.server.timeout_s  # StreamRequestHandler applies it to every socket read and write
        self.csp = DATA_CSP
        super().setup()

    def log_message(self, format, *args):  # noqa: A002 - the base class's name; quiet: the page is the UI
        pass

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.server.unwatch(self.connection)  # the request arrived in time; the socket timeout covers the rest
        return ok

    def end_headers(self) -> None:
        # on every response, errors included
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", self.csp)
        # cross-origin isolation: SharedArrayBuffer, hence WASM threads, in onnxruntime-web and LiteRT.js
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A short plain-text error (the base class would send an HTML page)."""
        self.close_connection = True
        self.csp = DATA_CSP
        body = b"" if code == 421 else f"{code} {self.responses.get(code, ('error',))[0].lower()}\n".encode()
        with contextlib.suppress(OSError):
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or hosts[0].strip().lower() not in self.server.allowed_hosts:
            self.send_error(421)  # DNS rebinding: a page of another name that resolves to 127.0.0.1
            return
        raw = self.path.split("?", 1)[0]
        if not raw.startswith("/") or any(not 0x21 <= ord(c) <= 0x7e or c == "#" for c in raw):
            self.send_error(400)
            return
        if len(raw) > MAX_PATH:
            self.send_error(414)
            return
        try:
            path = urllib.parse.unquote(raw, errors="strict")  # decoded exactly once
        except UnicodeDecodeError:
            self.send_error(400)
            return
        if path == "/models/index.json":
            index = model_index(self.server.models, self.server.samples)
            self._send_bytes(json.dumps(index).encode(), "application/json", body)
            return
        if path == "/contract.json":
            self._send_bytes(self.server.contract, "application/json", body)
            return
        if path == "/version.json":
            version = {"version": shell_version(self.server.root, self.server.contract), "shell": list(SHELL)}
            self._send_bytes(json.dumps(version).encode(), "application/json", body)
            return
        routed = self._route(path)
        opened = open_regular(routed[0], routed[1]) if routed else None
        if opened is None:
            self.send_error(404)
            return
        fd, info = opened
        with os.fdopen(fd, "rb", buffering=0) as f:
            self.send_response(200)
            self.send_header("Content-Type", routed[2])
            self.send_header("Content-Length", str(info.st_size))
            self.end_headers()
            if body and info.st_size:
                self.connection.sendfile(f, 0, info.st_size)  # streamed from the descriptor that was checked

    def _route(self, path: str) -> tuple[Path, list[str], str] | None:
        """(folder, path components, content type) of a request path, or None: only the listed kinds of file."""
        parts = path.split("/")[1:]
        if any(p in ("", ".", "..") or p.startswith(".") or CONTROL.search(p) for p in parts) and path != "/":
            return None
        suffix = os.path.splitext(parts[-1])[1].lower()
        if (parts[0] == "models" and len(parts) in (2, 3)) or (parts[0] == "samples" and len(parts) == 2):
            folder, types = (self.server.models, MODEL_TYPES) if parts[0] == "models" else \
                (self.server.samples, SAMPLE_TYPES)
            if len(parts) == 3 and (TEMPORARY.search(parts[1]) or os.path.splitext(parts[1])[1] in FOLDER_SUFFIXES):
                return None
            return (folder, parts[1:], types[suffix]) if folder is not None and suffix in types else None
        relative = "/".join(parts) or "index.html"
        self.csp = self.server.page_csp
        if relative in PAGE_FILES:
            return self.server.root, relative.split("/"), PAGE_FILES[relative]
        if relative.startswith(RUNTIME_TREES) and suffix in RUNTIME_TYPES:
            return self.server.root, relative.split("/"), RUNTIME_TYPES[suffix]
        self.csp = DATA_CSP
        return None

    def _send_bytes(self, data: bytes, content_type: str, body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


class _Server(http.server.ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once; a watchdog drops slow requests."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, port: int, root: Path, models: Path | None, samples: Path | None, max_connections: int,
                 timeout_s: float) -> None:
        self.root, self.models, self.samples, self.timeout_s = root, models, samples, timeout_s
        self.page_csp = PAGE_CSP.format(hashes=_inline_script_hashes((root / "index.html").read_text("utf-8")))
        self.contract = json.dumps(contract_document()).encode()
        self.slots = threading.BoundedSemaphore(max_connections)
        self.deadlines: dict[socket.socket, float] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        super().__init__(("127.0.0.1", port), _Handler)
        bound = self.server_address[1]
        self.allowed_hosts = {f"{name}:{bound}" for name in ("127.0.0.1", "localhost", "[::1]")}
        if bound == 80:
            self.allowed_hosts |= {"127.0.0.1", "localhost", "[::1]"}

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            with contextlib.suppress(OSError):  # full: say so at once and close (never queue without bound)
                request.setblocking(False)
                request.send(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                             b"Retry-After: 1\r\nX-Content-Type-Options: nosniff\r\nContent-Security-Policy: "
                             + DATA_CSP.encode() + b"\r\nConnection: close\r\n\r\nbusy\n")
            self.shutdown_request(request)
            return
        with self.lock:
            self.deadlines[request] = time.monotonic() + self.timeout_s
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.unwatch(request)
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.unwatch(request)
            self.slots.release()

    def unwatch(self, request) -> None:
        with self.lock:
            self.deadlines.pop(request, None)

    def watchdog(self) -> None:
        """Shut down connections that have not sent a whole request in time (slow-loris)."""
        while not self.stopped.wait(min(0.25, self.timeout_s / 4)):
            now = time.monotonic()
            with self.lock:
                late = [r for r, deadline in self.deadlines.items() if deadline < now]
                for request in late:
                    del self.deadlines[request]
            for request in late:
                with contextlib.suppress(OSError):
                    request.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address) -> None:
        """One line on stderr, never a traceback; a client that went away is not an error."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        text = str(error).splitlines()[0][:200] if str(error) else ""
        print(f"emo-web-demo: a request failed: {type(error).__name__}: {text}", file=sys.stderr, flush=True)


class DemoServer:
    """The demo page on http://127.0.0.1:PORT/ in a background thread (``with DemoServer(...) as s: s.url``).

    ``max_connections`` and ``timeout_s`` bound what one client can hold (the tests make them small).
    """

    def __init__(self, models: Path | None = None, samples: Path | None = None, port: int = 0,
                 root: Path = WEB_DEMO, *, max_connections: int = MAX_CONNECTIONS,
                 timeout_s: float = TIMEOUT_S) -> None:
        self.root = check_web_demo(root)
        self.httpd = _Server(port, self.root, Path(models) if models else None, Path(samples) if samples else None,
                             max_connections, timeout_s)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.watchdog = threading.Thread(target=self.httpd.watchdog, daemon=True)

    def __enter__(self) -> DemoServer:
        self.thread.start()
        self.watchdog.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()
