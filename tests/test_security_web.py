"""The web demo under hostile input (issue 20): the real server on loopback, the real page in Debian's Chromium.

Server: a symlink swapped in while requests race never serves a byte from outside the served folders; the data
folders serve only inert types and every response carries nosniff and a CSP; only loopback Host headers are
answered (DNS rebinding); names are percent-decoded exactly once; big files stream with bounded memory; a connection
cap and a request deadline hold against slow clients; a deleted folder gives 404s and an error JSON, not a
traceback; index.json lists only visible artifacts with a sidecar, told apart by what their sidecar says; a bounded
hypothesis fuzz of raw HTTP requests. Page: same-origin models only (a picked file stays allowed) and the model card
names the source; ?threads, sidecar shapes and JSON depth are bounded; labels are shown inertly. Browser runner:
names are percent-encoded, and a page that never answers fails its row after the timeout and leaves no Chromium.

The models here are tiny ONNX graphs built with onnx.helper (one with a Loop of 2^50 steps): no export is needed.
"""

import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from emo.runtime_bench.webserver import WEB_DEMO, DemoServer
from emo_testutil import REPO, need_browser_tools, tiny_onnx, write_tiny_sidecar

SAMPLES = REPO / "emo" / "assets" / "samples"
SECRET = b"OUTSIDE-THE-SERVED-FOLDER-7f3a"


# ------------------------------------------------------------------------------------------------ helpers
def raw_request(port: int, data: bytes, timeout: float = 10) -> tuple[int | None, dict, bytes]:
    """(status, headers, body) of one raw request to 127.0.0.1:port; status None when nothing came back."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        with contextlib.suppress(OSError):
            while chunk := s.recv(1 << 16):
                chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return (int(match.group(1)) if match else None), headers, body


def get(port: int, path: str, host: str | None = None, method: str = "GET") -> tuple[int | None, dict, bytes]:
    host = f"127.0.0.1:{port}" if host is None else host
    return raw_request(port, f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())


def port_of(server: DemoServer) -> int:
    return server.httpd.server_address[1]


def fake_root(folder: Path) -> Path:
    """A web_demo folder with stand-in files (check_web_demo accepts it): lets a test swap its subfolders."""
    (folder / "index.html").parent.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text('<script type="importmap">{"imports": {}}</script>')
    for package in ("onnxruntime-web", "@litertjs/core", "playwright-core"):
        (folder / "node_modules" / package).mkdir(parents=True)
        (folder / "node_modules" / package / "package.json").write_text("{}")
    (folder / "node_modules" / "onnxruntime-web" / "dist").mkdir()
    (folder / "node_modules" / "onnxruntime-web" / "dist" / "ort.wasm.min.mjs").write_text("export const inside = 1;")
    return folder


# ------------------------------------------------------------------------------------- 1. TOCTOU: open once
def _race(port: int, path: str, swap, seconds: float = 2.0, max_requests: int = 400) -> tuple[int, int, int]:
    """Request ``path`` while ``swap`` runs in a loop: (responses 200, other responses, responses with SECRET)."""
    stop = threading.Event()

    def swapper():
        while not stop.is_set():
            swap()

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    ok = other = leaked = 0
    deadline = time.monotonic() + seconds
    try:
        for _ in range(max_requests):
            if time.monotonic() > deadline:
                break
            status, _, body = get(port, path)
            ok += status == 200
            other += status != 200
            leaked += SECRET in body
    finally:
        stop.set()
        thread.join(10)
    return ok, other, leaked


def test_symlink_swapped_in_while_serving_serves_nothing_from_outside(tmp_path):
    """A racing loop swaps a served file, and a served folder, for symlinks out of the root: zero outside bytes."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_bytes(SECRET)
    (outside / "ort.wasm.min.mjs").write_bytes(SECRET)
    models = tmp_path / "models"
    models.mkdir()
    race = models / "race.json"
    race.write_bytes(b'{"inside": true}')
    root = fake_root(tmp_path / "root")
    dist = root / "node_modules" / "onnxruntime-web" / "dist"

    def swap_file():
        os.symlink(outside / "secret.json", models / ".link")
        os.replace(models / ".link", race)  # atomically a symlink out of the folder...
        (models / ".file").write_bytes(b'{"inside": true}')
        os.replace(models / ".file", race)  # ...and atomically a regular file again

    def swap_folder():
        os.rename(dist, root / "node_modules" / "onnxruntime-web" / ".dist")
        os.symlink(outside, dist)  # a folder component that is a symlink out of the root
        os.unlink(dist)
        os.rename(root / "node_modules" / "onnxruntime-web" / ".dist", dist)

    with DemoServer(models=models, root=root) as server:
        port = port_of(server)
        ok, other, leaked = _race(port, "/models/race.json", swap_file)
        print(f"race: {ok} x 200, {other} x 404, {leaked} leaked")
        assert leaked == 0 and ok > 0, (ok, other, leaked)
        ok, other, leaked = _race(port, "/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs", swap_folder)
        print(f"race: {ok} x 200, {other} x 404, {leaked} leaked")
        assert leaked == 0 and ok > 0, (ok, other, leaked)


def test_symlinks_fifos_devices_and_folders_are_404_without_blocking(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (tmp_path / "secret.json").write_bytes(SECRET)
    (models / "real.json").write_text("{}")
    os.symlink(tmp_path / "secret.json", models / "out.json")
    os.symlink(models / "real.json", models / "in.json")  # even a symlink to a file inside: never followed
    os.symlink("/dev/zero", models / "zero.onnx")
    os.mkfifo(models / "fifo.json")  # opening it for reading would block without O_NONBLOCK
    (models / "folder.json").mkdir()
    with DemoServer(models=models, timeout_s=5) as server:
        port = port_of(server)
        assert get(port, "/models/real.json")[0] == 200
        for name in ("out.json", "in.json", "zero.onnx", "fifo.json", "folder.json", "missing.json"):
            started = time.monotonic()
            status, _, body = get(port, f"/models/{name}")
            assert status == 404 and SECRET not in body, name
            assert time.monotonic() - started < 4, name  # answered, not stuck on the FIFO


def test_model_subfolders_are_served_one_level_deep_and_never_through_a_link(tmp_path):
    """`make demo` serves DIR/fashion_mnist/: a visible subfolder's files are served and listed (one level only);
    a hidden or temporary subfolder, a symlinked one, a deeper one and a Core ML package's insides are not."""
    models = tmp_path / "models"
    for sub in ("sub", ".hidden", "x.tmp-12", "sub/deeper", "m.mlpackage"):
        (models / sub).mkdir(parents=True)
        tiny_onnx(models / sub / "t.onnx")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "t.json").write_bytes(SECRET)
    os.symlink(tmp_path / "outside", models / "link")
    with DemoServer(models=models) as server:
        port = port_of(server)
        assert get(port, "/models/sub/t.json")[0] == 200 and get(port, "/models/sub/t.onnx")[0] == 200
        for path in ("/models/.hidden/t.json", "/models/x.tmp-12/t.json", "/models/sub/deeper/t.json",
                     "/models/m.mlpackage/t.json", "/models/link/t.json", "/models/sub/%2e%2e/link/t.json"):
            status, _, body = get(port, path)
            assert status == 404 and SECRET not in body, path
        index = json.loads(get(port, "/models/index.json")[2])
    assert [a["name"] for a in index["artifacts"]] == ["sub/t.onnx"], index


# ------------------------------------------------------------------ 2. inert types from data roots; CSP + nosniff
def test_data_roots_serve_only_inert_types_and_every_response_has_csp_and_nosniff(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    active = b"<script>window.pwned = 1</script>"
    for name in ("x.html", "x.htm", "x.svg", "x.js", "x.mjs", "x.xhtml", "x.xml", "x.txt", "x.wasm", "x.css",
                 "x.pte", "x.pt2", ".hidden.json", "X.HTML"):
        (models / name).write_bytes(active)
    for name in ("a.onnx", "a.ort", "a.tflite", "a.json", "a.examples.json", "p.png", "p.jpg", "p.jpeg", "p.webp",
                 "P.JPG"):
        (models / name).write_bytes(b"\x89PNG data" if name.lower().startswith("p") else b"{}")
    expected = {"a.onnx": "application/octet-stream", "a.ort": "application/octet-stream",
                "a.tflite": "application/octet-stream", "a.json": "application/json",
                "a.examples.json": "application/json", "p.png": "image/png", "p.jpg": "image/jpeg",
                "p.jpeg": "image/jpeg", "p.webp": "image/webp", "P.JPG": "image/jpeg"}
    with DemoServer(models=models, samples=models) as server:
        port = port_of(server)
        for name in ("x.html", "x.htm", "x.svg", "x.js", "x.mjs", "x.xhtml", "x.xml", "x.txt", "x.wasm", "x.css",
                     "x.pte", "x.pt2", ".hidden.json", "X.HTML"):
            for folder in ("models", "samples"):
                status, headers, body = get(port, f"/{folder}/{name}")
                assert status == 404 and active not in body, (folder, name)
                assert headers["x-content-type-options"] == "nosniff"
                assert "sandbox" in headers["content-security-policy"]
        for name, content_type in expected.items():
            status, headers, _ = get(port, f"/models/{name}")
            assert (status, headers["content-type"]) == (200, content_type), name
            assert headers["x-content-type-options"] == "nosniff", name
            assert headers["content-security-policy"].startswith("default-src 'none'; sandbox"), name
        assert get(port, "/samples/a.onnx")[0] == 404  # samples: images only
        # the page: its own CSP (WebAssembly, workers, the import map by hash), still cross-origin isolated
        status, headers, _ = get(port, "/")
        csp = headers["content-security-policy"]
        assert status == 200 and headers["x-content-type-options"] == "nosniff"
        for directive in ("default-src 'none'", "script-src 'self' 'wasm-unsafe-eval' 'sha256-", "object-src 'none'",
                          "base-uri 'none'", "frame-ancestors 'none'", "connect-src 'self'",
                          "img-src 'self' blob: data:", "worker-src 'self' blob:"):
            assert directive in csp, directive
        assert "'unsafe-eval'" not in csp and "'unsafe-inline'" not in csp
        assert headers["cross-origin-opener-policy"] == "same-origin"
        assert headers["cross-origin-embedder-policy"] == "require-corp"
        # web_demo/ serves the page and the runtimes, not the driver, package files or the rest of node_modules
        for path in ("/driver.mjs", "/package.json", "/package-lock.json", "/node_modules/playwright-core/package.json",
                     "/node_modules/.package-lock.json", "/node_modules/onnxruntime-web/package.json"):
            assert get(port, path)[0] == 404, path
        assert get(port, "/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs")[1]["content-type"] == \
            "text/javascript"
        # errors too: a 501 for another method, a 400 for a bad request line, all with the headers and no HTML
        for request in (b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port, b"GARBAGE\r\n\r\n",
                        b"GET / HTTP/9.9\r\n\r\n"):
            status, headers, body = raw_request(port, request)
            assert status in (400, 501, 505) and headers["x-content-type-options"] == "nosniff", request
            assert b"<" not in body and headers["content-type"].startswith("text/plain"), request


# ------------------------------------------------------------------------------------------ 3. DNS rebinding
def test_only_loopback_host_headers_are_answered(tmp_path):
    with DemoServer(models=tmp_path) as server:
        port = port_of(server)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
            assert get(port, "/", host=host)[0] == 200, host
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{port + 1}", "127.0.0.1", "localhost",
                     f"127.0.0.2:{port}", f"localhost.:{port}", f"0.0.0.0:{port}", "", f"127.0.0.1:{port}.evil"):
            status, _, body = get(port, "/models/index.json", host=host)
            assert (status, body) == (421, b""), host
        two_hosts = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\n\r\n".encode()
        assert raw_request(port, two_hosts)[0] == 421
        assert raw_request(port, b"GET / HTTP/1.0\r\n\r\n")[0] == 421  # no Host at all
        absolute = f"GET http://evil.example/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        assert raw_request(port, absolute)[0] == 400


# ------------------------------------------------------------------------------- 5. names decoded exactly once
NAMES = ["p%41.json", "pA.json", "a#b.json", "q?x=1.json", "with space.json", "quo'te\".json", "ünï©ødé.json",
         "per%cent%2e%2e.json", "plus+sign.json"]


def test_names_are_percent_decoded_exactly_once(tmp_path):
    for name in NAMES:
        (tmp_path / name).write_text(json.dumps({"name": name}))
    with DemoServer(models=tmp_path) as server:
        port = port_of(server)
        for name in NAMES:
            status, _, body = get(port, "/models/" + urllib.parse.quote(name, safe=""))
            assert status == 200 and json.loads(body) == {"name": name}, name
        assert json.loads(get(port, "/models/p%2541.json")[2]) == {"name": "p%41.json"}  # not pA.json
        assert get(port, "/models/a#b.json")[0] == 400  # a raw '#' never comes from a browser
        assert get(port, "/models/%ff.json")[0] == 400  # not UTF-8
        assert get(port, "/models/%00.json")[0] == 404
        assert get(port, "/models/%2e%2e%2fsecret.json")[0] == 404
        assert get(port, "/" + "a" * 3000)[0] == 414


# ------------------------------------------------------------------------- 6. memory, connections, timeouts
def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_big_files_stream_with_bounded_memory_and_head_has_no_body(tmp_path):
    size = 512 << 20
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:  # sparse: 512 MiB that take no disk
        f.truncate(size)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.01):
            peak[0] = max(peak[0], _rss_kib())

    def download(results, i):
        received = 0
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(f"GET /models/big.onnx HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            while chunk := s.recv(1 << 20):  # read and drop: the client holds no copy either
                received += len(chunk)
        results[i] = received

    with DemoServer(models=tmp_path) as server:
        port = port_of(server)
        status, headers, body = get(port, "/models/big.onnx", method="HEAD")
        assert (status, headers["content-length"], body) == (200, str(size), b"")
        before = _rss_kib()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results = [0] * 4
        clients = [threading.Thread(target=download, args=(results, i)) for i in range(4)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(120)
        done.set()
        sampler.join()
    assert all(r > size for r in results), results  # headers + the whole file, four times
    growth_mib = (peak[0] - before) / 1024
    print(f"4 x 512 MiB served: peak RSS growth {growth_mib:.1f} MiB")
    assert growth_mib < 200, growth_mib  # reading whole files would take 2 GiB


def test_connection_cap_and_slow_clients_are_dropped(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    with DemoServer(models=tmp_path, max_connections=2, timeout_s=1.5) as server:
        port = port_of(server)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        time.sleep(0.3)  # both accepted: the cap is reached
        with socket.create_connection(("127.0.0.1", port), timeout=10) as third:
            answer = third.recv(4096)
        assert answer.startswith(b"HTTP/1.0 503"), answer
        assert b"nosniff" in answer
        # slow-loris: a request sent a byte at a time, each well within the socket timeout, is dropped at the deadline
        for idle_socket in idle:  # connections that send nothing are dropped at the deadline (1.5 s)
            assert idle_socket.recv(10) == b""
            idle_socket.close()
        # slow-loris: a request sent a byte at a time, each well within the socket timeout, is dropped at the deadline
        request = f"GET /models/a.json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Padding: {'x' * 200}\r\n\r\n".encode()
        closed_after = None
        with socket.create_connection(("127.0.0.1", port), timeout=10) as loris:
            started = time.monotonic()
            with contextlib.suppress(OSError):
                for byte in request:
                    loris.sendall(bytes([byte]))
                    if select.select([loris], [], [], 0.2)[0]:
                        assert loris.recv(100) == b""  # closed, not answered
                        break
                    if time.monotonic() - started > 8:
                        break
            closed_after = time.monotonic() - started
        assert closed_after < 4, closed_after
        assert get(port, "/models/a.json")[0] == 200  # and the server still answers


def test_folder_deleted_while_serving_gives_404_and_an_error_json(tmp_path):
    """Through the real command: 404s and an index.json with an error, no traceback on the console."""
    models = tmp_path / "models"
    models.mkdir()
    tiny_onnx(models / "p%41 #1.onnx")
    (models / ".emo_1m_onnx_fp32.tmp-1234.onnx").write_bytes(b"partial")  # a killed export's temporary
    write_tiny_sidecar(models / ".emo_1m_onnx_fp32.tmp-1234.onnx")
    proc = subprocess.Popen([sys.executable, "-m", "emo.web_demo", "serve", str(models), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        example = proc.stdout.readline().strip()
        port = int(first.rsplit(":", 1)[1].strip("/"))
        assert example.endswith("?model=models/p%252541%2520%25231.onnx"), example  # encoded twice: a query value
        assert json.loads(get(port, "/models/index.json")[2])["artifacts"][0]["name"] == "p%41 #1.onnx"
        shutil.rmtree(models)
        assert get(port, "/models/" + urllib.parse.quote("p%41 #1.onnx"))[0] == 404
        status, headers, body = get(port, "/models/index.json")
        index = json.loads(body)
        assert status == 200 and index["artifacts"] == [] and "cannot be read" in index["error"], index
        assert get(port, "/")[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err


# -------------------------------------------------------------------------------------- 8. what index.json lists
def test_index_lists_only_visible_artifacts_with_sidecars_and_tells_them_apart(tmp_path):
    for name, run in (("a_onnx_fp32.onnx", "1"), ("b_onnx_fp32.onnx", "2")):
        tiny_onnx(tmp_path / name, weights={"path": f"/runs/{run}/best.pth", "sha256": run * 64})
    tiny_onnx(tmp_path / ".a_onnx_fp32.tmp-1234.onnx")                     # a killed export's hidden temporary
    tiny_onnx(tmp_path / "a_onnx_fp32.tmp-99.onnx")                        # a temporary made visible
    (tmp_path / "lonely.onnx").write_bytes(b"no sidecar")
    os.symlink(tmp_path / "a_onnx_fp32.onnx", tmp_path / "link.onnx")      # not served, so not listed
    shutil.copy(tmp_path / "a_onnx_fp32.json", tmp_path / "link.json")
    (tmp_path / "broken.tflite").write_bytes(b"x")
    (tmp_path / "broken.json").write_text("[" * 100000)                    # listed: the page gives its message
    (tmp_path / "esc\x1b[31m.onnx").write_bytes(b"x")
    shutil.copy(tmp_path / "a_onnx_fp32.json", tmp_path / "esc\x1b[31m.json")
    with DemoServer(models=tmp_path, samples=SAMPLES) as server:
        index = json.loads(get(port_of(server), "/models/index.json")[2])
    names = [a["name"] for a in index["artifacts"]]
    assert names == ["a_onnx_fp32.onnx", "b_onnx_fp32.onnx", "broken.tflite"], names
    a, b, broken = index["artifacts"]
    assert (a["weights"], b["weights"]) == ("best.pth@11111111", "best.pth@22222222")  # emo.contract weights_id
    assert a["variant"] == "emo_1m" and a["precision"] == "fp32" and a["input"] == "32x32"
    assert broken["note"] == "sidecar broken.json nests deeper than 32 levels"  # the contract's reader says why
    assert "cat.jpg" in index["samples"]


# ------------------------------------------------------------------------------------- 10. HTTP fuzz (bounded)
SEGMENTS = st.sampled_from(["models", "samples", "node_modules", "..", "%2e%2e", "%2E%2e", ".", "%2f", "%2F..",
                            "secret.json", "inside.json", "index.json", "index.html", "app.js", "%00", "\\..",
                            "..%5c", "%c0%ae%c0%ae", "link.json", "onnxruntime-web", "dist", "a" * 300, "%25",
                            "%", "~", "", "%ff", "driver.mjs", ";", "?q=1", "#frag", "%23", "%3f"])
# mostly well-formed requests (so that paths reach the routing), with odd methods, versions and hosts mixed in
METHODS = st.one_of(st.just("GET"), st.just("HEAD"), st.sampled_from(
    ["POST", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PATCH", "get", "G\x00ET", "BREW", ""]))
HOSTS = st.one_of(st.just("{loopback}"), st.just("localhost:{port}"), st.sampled_from(
    ["evil.example", "{loopback}\x00", "", "127.0.0.1:{port}@evil", "[::1]:{port}", "x" * 10000, "{loopback}, evil"]),
    st.text(st.characters(min_codepoint=1, max_codepoint=0x2ff), max_size=30))
VERSIONS = st.one_of(st.just("HTTP/1.1"), st.just("HTTP/1.0"),
                     st.sampled_from(["HTTP/2.0", "HTTP/0.9", "", "HTTP/1.1 extra", "HTTP/x"]))
HEADER_NAMES = ["X-A", "Range", "Content-Length", "Transfer-Encoding", "Expect", "Connection"] * 3 + ["X" * 70000]
HEADER_VALUES = ["1", "-1", "bytes=0-10", "chunked", "100-continue", "close"] * 3 + ["y" * 70000]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """The real command serving a folder with a symlink out of it; its stderr goes to a file."""
    base = tmp_path_factory.mktemp("fuzz")
    (base / "secret.json").write_bytes(SECRET)
    models = base / "models"
    models.mkdir()
    (models / "inside.json").write_text("{}")
    os.symlink(base / "secret.json", models / "link.json")
    err = open(base / "stderr.txt", "w+")  # noqa: SIM115 - read and closed by the fixture
    proc = subprocess.Popen([sys.executable, "-m", "emo.web_demo", "serve", str(models), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=err, text=True)
    port = int(proc.stdout.readline().strip().rsplit(":", 1)[1].strip("/"))
    yield port, base / "stderr.txt"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    proc.stdout.close()
    err.close()


@settings(max_examples=400, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(method=METHODS, segments=st.lists(SEGMENTS, max_size=8), host=HOSTS, version=VERSIONS,
       extra=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), st.sampled_from(HEADER_VALUES)), max_size=3),
       many_headers=st.sampled_from([False, False, False, True]))
def test_fuzz_http_requests(fuzz_server, method, segments, host, version, extra, many_headers):
    port, stderr = fuzz_server
    path = "/" + "/".join(segments)
    host = host.replace("{loopback}", f"127.0.0.1:{port}").replace("{port}", str(port))  # not format: '{' fuzzed
    lines = [f"{method} {path} {version}".rstrip(), f"Host: {host}", *(f"{k}: {v}" for k, v in extra)]
    if many_headers:
        lines += [f"X-{i}: {i}" for i in range(150)]
    status, _, body = raw_request(port, ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogatepass"))
    event(f"status {status}")  # --hypothesis-show-statistics: how the requests were answered
    assert SECRET not in body
    if status is not None and 200 <= status < 300:
        decoded = urllib.parse.unquote(path.split("?", 1)[0])
        assert ".." not in decoded.split("/") and "link.json" not in decoded and "secret" not in decoded, path
        assert host.lower() in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"), host
    assert get(port, "/models/inside.json")[0] == 200  # still answering
    text = stderr.read_text()
    assert "Traceback" not in text, text[-3000:]


# ---------------------------------------------------------------------------------------------- the page
@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """(browser, server url, models folder): tiny real models served, one headless Chromium for the module."""
    need_browser_tools()
    from emo.runtime_bench.browser import Browser

    models = tmp_path_factory.mktemp("page_models")
    tiny_onnx(models / "tiny.onnx")
    with DemoServer(models=models, samples=SAMPLES) as server, Browser() as browser:
        yield browser, server.url, models


def _error(browser) -> str | None:
    return browser.evaluate("document.getElementById('error').hidden ? null : "
                            "document.getElementById('error').textContent")


def test_page_loads_only_same_origin_models_and_names_the_source(page):
    from emo.runtime_bench.browser import PageError

    browser, url, models = page
    with DemoServer(models=models) as other:  # another origin serving a model that would otherwise run
        foreign = other.url + "models/tiny.onnx"
        origin = url.rstrip("/")
        refused = {foreign: f"another origin ({other.url.rstrip('/')})",
                   foreign.replace("127.0.0.1", "localhost"): "another origin",
                   url.replace("127.0.0.1", "localhost") + "models/tiny.onnx": "another origin",
                   "//evil.example/x.onnx": "another origin (http://evil.example)",
                   "https://evil.example/x.onnx": "another origin (https://evil.example)",
                   "data:application/octet-stream;base64,AAAA": "a data: URL",
                   "blob:" + origin + "/0b7e0f7e-0000-4000-8000-000000000000": "a blob: URL",
                   "javascript:alert(1)//.onnx": "a javascript: URL",
                   url.replace("http://", "http://user:pw@") + "models/tiny.onnx": "a URL with a user name or password"}
        browser.open(url)
        for model, kind in refused.items():
            with pytest.raises(PageError) as caught:
                browser.call("load", model)
            message = str(caught.value)
            assert f"the page loads only from its own origin {origin}, not {kind}" in message, (model, message)
            assert _error(browser) == message and "\n" not in message
            assert browser.evaluate("document.getElementById('model-info').hidden"), model
        # the same through ?model=: the page says so and runs nothing
        browser.open(f"{url}?model={urllib.parse.quote(foreign, safe='')}")
        assert "is refused: the page loads only from its own origin" in _error(browser)
        assert browser.evaluate("document.getElementById('model-info').hidden")
    # same origin: allowed, and the card says where the model came from
    browser.open(f"{url}?model=models/tiny.onnx")
    assert _error(browser) is None
    assert f"{url}models/tiny.onnx (this page's server)" in browser.text("#model-info")
    # a file the user picks stays allowed, and the card says so
    browser.open(url)
    browser.set_files("#model-files", [models / "tiny.onnx", models / "tiny.json"])
    browser.wait_for("!document.getElementById('model-info').hidden || !document.getElementById('error').hidden")
    assert _error(browser) is None
    assert "your file tiny.onnx (picked on this computer)" in browser.text("#model-info")
    with pytest.raises(PageError) as caught:  # the image hook too
        browser.call("classify", foreign.replace("models/tiny.onnx", "samples/cat.jpg"))
    assert "image URL" in str(caught.value) and "another origin" in str(caught.value)


def test_page_bounds_threads_shapes_and_json_depth(page, tmp_path):
    from emo.runtime_bench.browser import PageError

    browser, url, models = page
    browser.open(url)
    cores = browser.evaluate("navigator.hardwareConcurrency")
    limit = min(cores, 64)
    browser.open(f"{url}?threads=200&model=models/tiny.onnx")
    assert _error(browser) == (f"?threads=200 is out of range: use 1..{limit} (this computer has {cores} logical "
                               "cores; at most 64)")
    assert browser.evaluate("document.getElementById('model-info').hidden")  # not loaded with a wrong setting
    for threads in (0, -1, 1.5, "two", limit + 1, 200):
        with pytest.raises(PageError, match=r"threads .* is out of range: use 1\.\."):
            browser.call("load", "models/tiny.onnx", {"threads": threads})
    assert browser.call("load", "models/tiny.onnx", {"threads": 1})["info"]["threads"] == 1
    # sidecars that would make the page allocate gigabytes, or recurse: refused before anything is allocated
    served = tmp_path / "bounds"
    served.mkdir()
    # beyond the contract (every reader refuses them, naming the element), and within it but beyond the page's bounds
    contract = {"huge": ("input.shape[2]", [1, 3, 16384, 16384]), "wide": ("input.shape[3]", [1, 3, 32, 4097])}
    cases = {"small": {"input": {"shape": [1, 3, 16, 16]}}, "batch": {"input": {"shape": [1000, 3, 32, 32]}},
             **{stem: {"input": {"shape": shape}} for stem, (_, shape) in contract.items()}}
    for stem, change in cases.items():
        tiny_onnx(served / f"{stem}.onnx")
        side = json.loads((served / f"{stem}.json").read_text())
        side["input"].update(change["input"])
        (served / f"{stem}.json").write_text(json.dumps(side))
    tiny_onnx(served / "deep.onnx")
    (served / "deep.json").write_text('{"a": ' + "[" * 100000 + "]" * 100000 + "}")
    tiny_onnx(served / "big.onnx")
    with open(served / "big.json", "ab") as f:
        f.truncate(17 << 20)
    with DemoServer(models=served) as server:
        browser.open(server.url)
        for stem in cases:
            with pytest.raises(PageError) as caught:
                browser.call("load", f"models/{stem}.onnx")
            expected = (f"field '{contract[stem][0]}' must be a size in 1..4096, not" if stem in contract else
                        "field 'input.shape' must be a size emo-export writes (height and width 32..4096, batch at "
                        "most 64)")
            assert expected in str(caught.value), (stem, str(caught.value))
        with pytest.raises(PageError, match="sidecar deep.json nests deeper than 32 levels"):
            browser.call("load", "models/deep.onnx")
        with pytest.raises(PageError, match="the sidecar is larger than 16 MiB"):
            browser.call("load", "models/big.onnx")


def test_labels_and_names_with_markup_and_escapes_are_shown_inertly(page, tmp_path):
    """Markup (which the contract allows in a class name) and a bidi override (allowed in a checkpoint path) are shown
    as text; terminal escapes and bidi controls in a class name (which it refuses) fail the load with the contract's
    field, and the message shows them inertly."""
    from emo.runtime_bench.browser import PageError

    browser, _, _ = page
    hostile = ["<img src=x onerror=\"window.pwned=1\">", "&lt;evil&gt;", "<b onmouseover=window.pwned=2>v</b>"]
    served = tmp_path / "hostile"
    served.mkdir()
    tiny_onnx(served / "h.onnx", labels=hostile,
              weights={"path": "<i onmouseover=window.pwned=3>x<\u202e.pth", "sha256": "1" * 64})
    tiny_onnx(served / "esc.onnx", labels=["ok", "\x1b[31mred\x1b[0m\x07", "fine"])
    tiny_onnx(served / "bidi.onnx", labels=["ok", "fine", "\u202eevil\u202c"])
    with DemoServer(models=served, samples=SAMPLES) as server:
        browser.open(server.url)
        options = browser.evaluate("[...document.getElementById('model-list').options].map(o => o.textContent)")
        assert options[1].startswith("bidi.onnx — sidecar bidi.json: field 'labels.names[2]' must be class names")
        assert options[2].startswith("esc.onnx — sidecar esc.json: field 'labels.names[1]' must be class names")
        assert "\x1b" not in options[2] and "\x07" not in options[2]
        # the server's list drops control and bidi characters (emo.contract.text.printable), the page shows U+FFFD
        assert options[3] == "h.onnx — emo_1m, fp32, 32x32, weights <i onmouseover=window.pwned=3>x<.pth@11111111"
        with pytest.raises(PageError) as caught:
            browser.call("load", "models/esc.onnx")
        assert "field 'labels.names[1]' must be class names of 1..256 characters" in str(caught.value)
        assert "\x1b" not in _error(browser) and "\\u001b[31mred" in _error(browser)
        with pytest.raises(PageError, match=r"field 'labels.names\[2\]' must be class names"):
            browser.call("load", "models/bidi.onnx")
        assert "\u202e" not in _error(browser)
        browser.call("load", "models/h.onnx")
        result = browser.call("classify", "samples/cat.jpg", {"runs": 1})
    assert sorted(t["label"] for t in result["top5"]) == sorted(hostile)  # the hook returns the data as it is
    shown = browser.evaluate("[...document.querySelectorAll('#top5 tbody td:nth-child(2)')].map(c => c.textContent)")
    assert sorted(shown) == sorted(hostile)  # as text
    assert browser.evaluate("document.querySelectorAll('#top5 img, #top5 b, #model-info i, #model-info img').length") \
        == 0
    assert browser.evaluate("window.pwned === undefined")
    assert "<i onmouseover=window.pwned=3>x<\ufffd.pth (sha256 11111111…)" in browser.text("#model-info")
    # and nothing in the page's code can turn text into markup
    for source in WEB_DEMO.glob("*.js"):
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function",
                             source.read_text()), source.name


def test_page_lists_artifacts_told_apart_and_loads_escaped_names(page, tmp_path):
    """The list shows variant / precision / input / weights; the CLI's printed URL loads a name with % # and space."""
    browser, _, _ = page
    served = tmp_path / "list"
    served.mkdir()
    for name, run in (("emo_onnx_fp32.onnx", "1"), ("p%41 #1.onnx", "2")):
        tiny_onnx(served / name, weights={"path": f"/runs/{run}/best.pth", "sha256": run * 64})
    tiny_onnx(served / ".emo_onnx_fp32.tmp-7.onnx")
    with DemoServer(models=served) as server:
        browser.open(server.url)
        options = browser.evaluate("[...document.getElementById('model-list').options].map(o => [o.value, o.text])")
        assert options == [["", "(none)"],
                           ["models/emo_onnx_fp32.onnx",
                            "emo_onnx_fp32.onnx — emo_1m, fp32, 32x32, weights best.pth@11111111"],
                           ["models/p%2541%20%231.onnx",
                            "p%41 #1.onnx — emo_1m, fp32, 32x32, weights best.pth@22222222"]], options
        browser.open(f"{server.url}?model=models/p%252541%2520%25231.onnx")  # as emo-web-demo serve prints it
        assert _error(browser) is None
        card = browser.text("#model-info")
        assert "p%41 #1.onnx" in card and "best.pth (sha256 22222222…)" in card, card
        assert browser.evaluate("document.getElementById('model-list').value") == "models/p%2541%20%231.onnx"
    gone = tmp_path / "gone"  # a folder deleted while serving: the page says so in one line
    gone.mkdir()
    with DemoServer(models=gone) as server:
        shutil.rmtree(gone)
        browser.open(server.url)
        assert f"the served model folder {gone} cannot be read (No such file or directory)" in _error(browser)


# ------------------------------------------------------------------------------------------- 5. browser runner
def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat_file.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_bench_browser_escapes_names_and_times_out_a_model_that_never_finishes(tmp_path, monkeypatch):
    """emo-bench --device browser: hostile names measure their own file; a 2^50-step Loop fails its row after the
    timeout, its Chromium is gone, and the next artifact is measured by a fresh one."""
    need_browser_tools()
    from emo.runtime_bench import browser as browser_module
    from emo.runtime_bench.cli import main

    names = ["p%41.onnx", "a#b?c=d.onnx", "sp ace 'q\"uote.onnx", "ünï©ødé.onnx"]
    for name in names:
        tiny_onnx(tmp_path / name)
    tiny_onnx(tmp_path / "pA.onnx", size=64, variant="emo_2m")  # other bytes: what p%41 must not become
    tiny_onnx(tmp_path / "loop.onnx", loop_steps=2**50)
    tiny_onnx(tmp_path / "after.onnx")
    timeout = 15
    monkeypatch.setattr(browser_module, "CALL_TIMEOUT_S", timeout)
    stopped: list[set[int]] = []
    original_stop = browser_module.Browser._stop

    def recording_stop(self):  # the driver's processes (node, Chromium and its helpers) just before the stop
        if self.proc is not None:
            stopped.append({self.proc.pid} | _descendants(self.proc.pid))
        original_stop(self)

    monkeypatch.setattr(browser_module.Browser, "_stop", recording_stop)
    out = tmp_path / "rows.jsonl"
    artifacts = [*names, "loop.onnx", "after.onnx"]
    started = time.monotonic()
    code = main([*(str(tmp_path / n) for n in artifacts), "--device", "browser", "--threads", "1", "--warmup", "1",
                 "--iters", "2", "--out", str(out)])
    elapsed = time.monotonic() - started
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 1 and [Path(r["artifact"]).name for r in rows] == artifacts
    for row in rows[:-2] + rows[-1:]:
        assert row["status"] == "ok", (row["artifact"], row["status"])
        assert row["variant"] == "emo_1m" and row["summary"]["count"] == 2
    assert rows[-2]["status"].startswith(f"failed: timed out after {timeout:g} s (benchmark): the page did not "
                                         "answer"), rows[-2]["status"]
    assert elapsed < 8 * 60, elapsed
    print("stopped process groups:", [len(g) for g in stopped], "; rows:", [r["status"][:60] for r in rows])
    assert len(stopped) >= 2 and len(stopped[0]) > 2, stopped  # the timed-out driver with its Chromium, then the last
    time.sleep(1)
    leftover = [pid for group in stopped for pid in group if _alive(pid)]
    assert not leftover, leftover


def test_a_driver_that_dies_fails_the_call_and_the_next_open_starts_afresh(page):
    """A crashed driver is a one-line error for that call, not a hang; Chromium follows it out; open restarts."""
    from emo.runtime_bench.browser import DriverExitedError

    browser, url, _ = page
    browser.open(url)
    processes = {browser.pid} | _descendants(browser.pid)
    os.kill(browser.pid, signal.SIGKILL)  # no exit handler runs: Chromium must notice its pipe closed
    with pytest.raises(DriverExitedError, match="the browser driver exited"):
        browser.call("load", "models/tiny.onnx")
    assert browser.open(url)["isolated"] and browser.call("load", "models/tiny.onnx")["name"] == "tiny.onnx"
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in processes if _alive(pid)]
