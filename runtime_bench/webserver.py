"""The local static server of the web demo: the page, its runtimes' WebAssembly from node_modules, and a folder of
exported artifacts, on 127.0.0.1 only, with the cross-origin isolation headers multi-threaded WASM needs.

It lives in ``runtime_bench`` because ``emo-bench --device browser`` serves the page with it and this package
never imports ``emo``; ``python -m emo.web_demo serve DIR`` (``emo-web-demo``) is the user's entry point to it.

    /                  web_demo/ (index.html, app.js, core.js, runtimes.js, node_modules/...)
    /models/NAME       the artifacts and sidecars of DIR (regular files directly inside DIR, nothing else)
    /models/index.json the artifacts the browser can run, and the sample photos
    /samples/NAME      sample photos (given by the caller)
"""

from __future__ import annotations

import http.server
import json
import mimetypes
import stat
import threading
import urllib.parse
from pathlib import Path

WEB_DEMO = Path(__file__).resolve().parent.parent / "web_demo"
BROWSER_SUFFIXES = (".onnx", ".ort", ".tflite")
LISTED_SUFFIXES = (*BROWSER_SUFFIXES, ".pte", ".pt2")  # shown so that picking one gives the page's clear message
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
         ".css": "text/css", ".html": "text/html", ".onnx": "application/octet-stream",
         ".ort": "application/octet-stream", ".tflite": "application/octet-stream", ".map": "application/json"}


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


def _regular_file_under(root: Path, relative: str) -> Path | None:
    """``root/relative`` if it is a regular file inside ``root`` (no '..', no symlink out of it), else None."""
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if any(p == ".." or p.startswith(".") and p != ".well-known" for p in parts):
        return None
    path = (root / Path(*parts)) if parts else root
    try:
        resolved = path.resolve(strict=True)
        resolved.relative_to(root.resolve())
        return resolved if stat.S_ISREG(resolved.stat().st_mode) else None
    except (OSError, ValueError):
        return None


def model_index(models: Path | None, samples: Path | None) -> dict:
    artifacts = sorted(p.name for p in models.iterdir() if p.suffix in LISTED_SUFFIXES
                       and p.with_suffix(".json").is_file()) if models else []
    artifacts += sorted(p.name for p in models.iterdir() if p.suffix == ".mlpackage") if models else []
    photos = sorted(p.name for p in samples.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if samples \
        else []
    return {"artifacts": artifacts, "samples": photos}


def make_handler(root: Path, models: Path | None, samples: Path | None):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "emo-web-demo"

        def log_message(self, format, *args):  # noqa: A002 - the base class's name; quiet: the page is the UI
            pass

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            # cross-origin isolation: SharedArrayBuffer, hence WASM threads, in onnxruntime-web and LiteRT.js
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):  # noqa: N802 - http.server's naming
            self.do_GET()

        def do_GET(self):  # noqa: N802
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            if path == "/models/index.json":
                self._send(200, json.dumps(model_index(models, samples)).encode(), "application/json")
                return
            if path.startswith("/models/"):
                base, relative = models, path[len("/models/"):]
                if "/" in relative:  # only the files directly in DIR (an .mlpackage folder is not served)
                    base = None
            elif path.startswith("/samples/"):
                base, relative = samples, path[len("/samples/"):]
            else:
                base, relative = root, ("index.html" if path == "/" else path.lstrip("/"))
            file = _regular_file_under(base, relative) if base else None
            if file is None:
                self._send(404, b"not found\n", "text/plain")
                return
            content_type = TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            self._send(200, file.read_bytes(), content_type)

    return Handler


class DemoServer:
    """The demo page on http://127.0.0.1:PORT/ in a background thread (``with DemoServer(...) as s: s.url``)."""

    def __init__(self, models: Path | None = None, samples: Path | None = None, port: int = 0,
                 root: Path = WEB_DEMO) -> None:
        self.root = check_web_demo(root)
        handler = make_handler(self.root, Path(models) if models else None, Path(samples) if samples else None)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> DemoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
