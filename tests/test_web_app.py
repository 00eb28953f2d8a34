"""The web demo as an app on a phone (issue 23), in Debian's headless Chromium: installable (manifest, icons, service
worker), offline after one visit, the live camera (a fake capture device playing a .y4m file the test writes), WebGPU
beside WebAssembly with the bundled examples' parity, the phone layout, and `make demo`'s trained model first.

The model is the trained Fashion-MNIST fixture exported once for the module (ONNX and TFLite, 112x112, ~90 s), laid
out as `make demo` serves it: DIR/fashion_mnist/ with the Makefile's FIXTURE_SAMPLES beside it, and a random-init
artifact at the top of DIR (the page must still open the trained one first).
"""

import io
import json
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emo.runtime_bench.webserver import PAGE_FILES, SHELL, WEB_DEMO, DemoServer
from emo_testutil import REPO, need_browser_tools, tiny_onnx

FIXTURE = REPO / "tests" / "fixtures" / "emo_1m_fashion_mnist.pth"
ARTIFACTS = REPO / "tests" / "artifacts"  # screenshots for people to look at (not committed)
ONNX, TFLITE = "fashion_mnist/emo_1m_onnx_fp32.onnx", "fashion_mnist/emo_1m_tflite_fp32.tflite"
PHONE = {"viewport": {"width": 412, "height": 915}, "deviceScaleFactor": 2.625, "isMobile": True, "hasTouch": True}
DESKTOP = {"viewport": {"width": 1100, "height": 900}}
# what the camera's colour conversion may change (measured here: see test_camera_frames_classify_as_the_photo)
MAX_MEAN_PIXEL_DIFF = 1.5      # of 255, over all RGB values of the frame
MAX_LOGIT_DIFF = 0.1


def makefile_samples() -> list[str]:
    """The Makefile's FIXTURE_SAMPLES (class/number of test images `make demo` serves beside the fixture's export)."""
    match = re.search(r"^FIXTURE_SAMPLES := (.+)$", (REPO / "Makefile").read_text(), flags=re.MULTILINE)
    return match.group(1).split()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """`make demo`'s served folder: the fixture's ONNX + TFLite export with its test images in fashion_mnist/, and a
    random-init artifact at the top (it sorts first, as the ImageNet export of `make demo` does)."""
    need_browser_tools()
    from emo.export import cli

    out = tmp_path_factory.mktemp("demo")
    code = cli.export_main(["--model", "emo_1m", "--weights", str(FIXTURE), "--format", "onnx,tflite", "--out",
                            str(out / "fashion_mnist")])
    assert code == 0
    for sample in makefile_samples():  # as the Makefile's demo recipe copies them
        shutil.copy(REPO / "tests" / "fixtures" / "fashion_mnist" / "test" / f"{sample}.png",
                    out / "fashion_mnist" / f"{sample.replace('/', '_')}.png")
    tiny_onnx(out / "emo_1m_onnx_fp32.onnx", size=112)
    return out


def write_y4m(image: Image.Image, path: Path) -> None:
    """One frame of ``image`` as a YUV4MPEG2 file (4:2:0, BT.601 limited range: what Chromium's fake capture device
    reads), the way a camera delivers it: luma per pixel, chroma averaged over 2x2 pixels."""
    rgb = np.asarray(image.convert("RGB"), np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    planes = [16 + y * 219 / 255, 128 + (b - y) / 1.772 * 224 / 255, 128 + (r - y) / 1.402 * 224 / 255]
    h, w = y.shape
    planes[1:] = [p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) for p in planes[1:]]
    data = b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in planes)
    path.write_bytes(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode() + b"FRAME\n" + data)


@pytest.fixture(scope="module")
def camera(demo_dir, tmp_path_factory):
    """(browser, server url, photo name): Chromium whose camera plays the cat photo at 640x480, the same picture
    served as a PNG sample."""
    from emo.runtime_bench.browser import Browser

    samples = tmp_path_factory.mktemp("camera")
    photo = Image.open(REPO / "emo" / "assets" / "samples" / "cat.jpg").convert("RGB").resize((640, 480),
                                                                                               Image.BICUBIC)
    photo.save(samples / "cat_640x480.png")
    write_y4m(photo, samples / "cat_640x480.y4m")
    with DemoServer(models=demo_dir, samples=samples) as server, \
            Browser(fake_camera=samples / "cat_640x480.y4m") as browser:
        yield browser, server.url, "cat_640x480.png"


@pytest.fixture(scope="module")
def browser():
    need_browser_tools()
    from emo.runtime_bench.browser import Browser

    with Browser() as b:
        yield b


def _get(url: str) -> tuple[int, dict, bytes]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, dict(r.headers), r.read()


def _hidden(browser, element_id: str) -> bool:
    return browser.evaluate(f"document.getElementById('{element_id}').hidden")


def _card(browser) -> dict[str, str]:
    """The model card's rows: {term: text}."""
    return dict(browser.evaluate("[...document.querySelectorAll('#model-info dt')].map(dt => [dt.textContent, "
                                 "dt.nextElementSibling.textContent])"))


# ------------------------------------------------------------------------------------------ installable
def test_manifest_is_valid_linked_and_the_app_installable(demo_dir):
    """The manifest (served as application/manifest+json, linked from the page) has what browsers ask for; every icon
    it lists is served and has its declared size; Chromium parses it without errors and reports no installability
    error once the service worker runs (in a normal profile: Chromium judges installability only outside incognito)."""
    from emo.runtime_bench.browser import Browser

    html = (WEB_DEMO / "index.html").read_text()
    assert '<link rel="manifest" href="manifest.webmanifest">' in html
    with DemoServer(models=demo_dir) as server:
        status, headers, body = _get(server.url + "manifest.webmanifest")
        assert status == 200 and headers["Content-Type"] == "application/manifest+json"
        assert headers["X-Content-Type-Options"] == "nosniff"
        manifest = json.loads(body)
        assert manifest["display"] == "standalone" and manifest["start_url"] == "./" and manifest["scope"] == "./"
        assert manifest["name"] and len(manifest["short_name"]) <= 12
        assert re.fullmatch(r"#[0-9a-f]{6}", manifest["theme_color"])
        assert f'<meta name="theme-color" content="{manifest["theme_color"]}">' in html
        sizes = {(icon["sizes"], icon["purpose"]) for icon in manifest["icons"]}
        assert {("192x192", "any"), ("512x512", "any"), ("192x192", "maskable"), ("512x512", "maskable")} <= sizes
        for icon in manifest["icons"] + [{"src": "icons/apple-touch-icon.png", "sizes": "180x180"}]:
            status, headers, body = _get(server.url + icon["src"])
            assert status == 200 and headers["Content-Type"] == "image/png", icon
            size = Image.open(io.BytesIO(body)).size
            assert f"{size[0]}x{size[1]}" == icon["sizes"], icon
        # the page's policy lets in exactly what the app adds: its manifest, its workers
        csp = _get(server.url)[1]["Content-Security-Policy"]
        assert "manifest-src 'self'" in csp and "worker-src 'self' blob:" in csp
        status, headers, _ = _get(server.url + "sw.js")
        assert headers["Content-Type"] == "text/javascript" and "Service-Worker-Allowed" not in headers  # at the root
        with Browser(persistent=True) as b:
            b.open(server.url)
            assert b.evaluate("window.emoDemo.offline.ready()")["controlled"]
            parsed = b.cdp("Page.getAppManifest")
            assert parsed["url"] == server.url + "manifest.webmanifest" and parsed["errors"] == [], parsed["errors"]
            assert b.cdp("Page.getInstallabilityErrors")["installabilityErrors"] == []


def test_the_app_shell_is_served_and_its_version_follows_its_files(tmp_path):
    """Every file the service worker caches up front is served with its type; /version.json's version is a hash of
    them (and of the runtimes' versions), so editing one gives a new version, i.e. a new worker and a new cache."""
    with DemoServer() as server:
        version = json.loads(_get(server.url + "version.json")[2])
        assert version["shell"] == list(SHELL) and re.fullmatch(r"[0-9a-f]{16}", version["version"])
        for path in SHELL:
            status, headers, _ = _get(urllib.parse.urljoin(server.url, path))  # as the worker resolves it
            assert status == 200, path
            expected = PAGE_FILES.get(path, "application/json" if path == "contract.json" else "text/html")
            assert headers["Content-Type"].startswith(expected.split(";")[0]), path
    root = tmp_path / "root"  # a copy of the page whose files the test may edit
    for name in PAGE_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(WEB_DEMO / name, root / name)
    for package in ("onnxruntime-web", "@litertjs/core", "@litertjs/wasm-utils", "playwright-core"):
        (root / "node_modules" / package).mkdir(parents=True)
        shutil.copy(WEB_DEMO / "node_modules" / package / "package.json", root / "node_modules" / package)
    with DemoServer(root=root) as server:
        before = json.loads(_get(server.url + "version.json")[2])["version"]
        assert before == version["version"]  # the same files: the same version
        (root / "app.js").write_text((root / "app.js").read_text() + "\n// edited\n")
        assert json.loads(_get(server.url + "version.json")[2])["version"] != before
        (root / "node_modules" / "onnxruntime-web" / "package.json").write_text('{"version": "9.9.9"}')
        assert json.loads(_get(server.url + "version.json")[2])["version"] != before


# ------------------------------------------------------------------------------------------ offline
def test_works_offline_after_one_visit(demo_dir, browser):
    """One visit (page, a model loaded, a sample classified); then the server is stopped and the context is offline:
    a reload still loads the page (cross-origin isolated: the cached responses keep their headers), lists the served
    models, loads the model from the cache, passes its bundled examples and gives the same logits."""
    server = DemoServer(models=demo_dir)
    with server:
        browser.open(server.url)
        status = browser.evaluate("window.emoDemo.offline.ready()")
        assert status["controlled"] and status["script"] == f"{server.url}sw.js?v={status['version']}"
        assert set(status["caches"]) == {f"emo-web-demo-shell-{status['version']}", "emo-web-demo-data-1"}
        online = browser.call("load", f"models/{ONNX}", {"threads": 2})
        assert not online["cached"] and online["parity"]["status"] == "passed"
        assert browser.call("load", f"models/{ONNX}", {"threads": 2})["cached"]  # the second time: from the cache
        expected = browser.call("classify", "models/fashion_mnist/9_ankle_boot_06359.png", {"runs": 0})
        kept = browser.evaluate("window.emoDemo.offline.status()")["models"]
        assert {f"/models/{ONNX}", f"/models/{ONNX[:-5]}.json", f"/models/{ONNX[:-5]}.examples.json"} <= set(kept)
    browser.set_offline(True)
    try:
        with pytest.raises(OSError):  # nothing answers there any more
            urllib.request.urlopen(server.url, timeout=5)
        assert browser.reload()  # cross-origin isolated from the cache
        assert browser.evaluate("window.emoDemo.error()") is None
        assert browser.text("#offline-status").startswith("Offline")
        listed = browser.evaluate("[...document.getElementById('model-list').options].map(o => o.value)")
        assert f"models/{ONNX}" in listed  # the model list, kept
        loaded = browser.call("load", f"models/{ONNX}", {"threads": 2})
        assert loaded["cached"] and loaded["parity"]["status"] == "passed" and loaded["info"]["threads"] == 2
        result = browser.call("classify", "models/fashion_mnist/9_ankle_boot_06359.png", {"runs": 0})
        assert result["logits"] == expected["logits"] and result["top5"][0]["label"] == "9_ankle_boot"
        # what was never loaded says so in one line
        from emo.runtime_bench.browser import PageError

        with pytest.raises(PageError, match="offline and the sidecar emo_1m_tflite_fp32.json was not kept here"):
            browser.call("load", f"models/{TFLITE}")
    finally:
        browser.set_offline(False)


def test_a_new_version_replaces_the_old_cache_and_a_changed_model_is_refetched(browser, tmp_path):
    """A worker of another version (what the page registers when /version.json changes) installs its own shell cache
    and deletes the old one; an artifact whose sidecar names another sha256 is fetched again and replaces the kept one
    (and the kept one is used while the sidecar matches)."""
    served = tmp_path / "served"
    served.mkdir()
    tiny_onnx(served / "tiny.onnx")
    with DemoServer(models=served, samples=REPO / "emo" / "assets" / "samples") as server:
        browser.open(server.url)
        first = browser.evaluate("window.emoDemo.offline.ready()")
        one = browser.call("load", "models/tiny.onnx")
        assert not one["cached"] and browser.call("load", "models/tiny.onnx")["cached"]
        before = browser.call("classify", "samples/cat.jpg", {"runs": 0})["logits"]
        # a new export under the same name: other bytes (a 64x64 input), a sidecar with their sha256
        tiny_onnx(served / "tiny.onnx", size=64)
        two = browser.call("load", "models/tiny.onnx")
        assert not two["cached"] and two["sha256"] != one["sha256"]
        assert browser.call("classify", "samples/cat.jpg", {"runs": 0})["logits"] != before  # the new model ran
        assert browser.call("load", "models/tiny.onnx")["cached"]  # the new one is what is kept now
        # a new version of the app shell
        browser.evaluate("navigator.serviceWorker.register('sw.js?v=0123456789abcdef', {updateViaCache: 'none'})")
        browser.wait_for("navigator.serviceWorker.controller?.scriptURL.endsWith('v=0123456789abcdef')")
        browser.wait_for("caches.keys().then(k => !k.includes('emo-web-demo-shell-' + "
                         f"{json.dumps(first['version'])}))")
        caches = browser.evaluate("caches.keys()")
    assert "emo-web-demo-shell-0123456789abcdef" in caches and f"emo-web-demo-shell-{first['version']}" not in caches
    assert "emo-web-demo-models-1" in caches  # the models the user loaded survive a new page version


# ------------------------------------------------------------------------------------------ the camera
_FRAME_VS_PHOTO = """(async (photoUrl) => {
  const video = document.getElementById('video');
  const grab = async (source) => {
    const bitmap = await createImageBitmap(source, { colorSpaceConversion: 'none' });
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    canvas.getContext('2d').drawImage(bitmap, 0, 0);
    return canvas.getContext('2d').getImageData(0, 0, bitmap.width, bitmap.height).data;
  };
  const frame = await grab(video);
  const photo = await grab(await (await fetch(photoUrl)).blob());
  let sum = 0, max = 0, over3 = 0, n = 0;
  for (let i = 0; i < frame.length; i++) {
    if (i % 4 === 3) continue;
    const d = Math.abs(frame[i] - photo[i]);
    sum += d; max = Math.max(max, d); over3 += d > 3; n++;
  }
  return { mean: sum / n, max, over3: over3 / n, size: [video.videoWidth, video.videoHeight] };
})"""


def test_camera_frames_classify_as_the_photo(camera):
    """getUserMedia with Chromium's fake device playing the photo: `classifyCamera` gives the top-1 `classify` gives
    for the same picture (onnxruntime-web in the Web Worker; LiteRT.js, which cannot run in a worker, on the main
    thread after the worker preprocessed the frame); the live loop classifies frames one at a time (dropped, never
    queued), shows the top-5, the latency and the plot; `camera.stop()` releases the camera."""
    browser, url, photo = camera
    browser.new_context(**DESKTOP)
    browser.open(url)
    measured = {}
    for artifact, scope in ((ONNX, "DedicatedWorkerGlobalScope"), (TFLITE, "Window")):
        browser.call("load", f"models/{artifact}", {"threads": 2})
        still = browser.call("classify", f"samples/{photo}", {"runs": 0})
        started = browser.evaluate("window.emoDemo.camera.start()")
        assert started["width"] == 640 and started["height"] == 480 and started["label"].endswith(".y4m")
        frame = browser.evaluate("window.emoDemo.classifyCamera()")
        assert frame.keys() >= {"logits", "top5", "ms", "input"} and frame["input"] == {"width": 640, "height": 480}
        assert frame["scope"] == {"preprocess": "DedicatedWorkerGlobalScope", "inference": scope}, frame["scope"]
        diff = float(np.abs(np.asarray(frame["logits"]) - np.asarray(still["logits"])).max())
        assert frame["top5"][0]["index"] == still["top5"][0]["index"], (artifact, frame["top5"], still["top5"])
        assert diff <= MAX_LOGIT_DIFF, (artifact, diff)
        pixels = browser.evaluate(f"{_FRAME_VS_PHOTO}({json.dumps('samples/' + photo)})")
        assert pixels["size"] == [640, 480] and pixels["mean"] <= MAX_MEAN_PIXEL_DIFF, pixels
        measured[artifact] = (diff, pixels, frame["top5"][0]["label"], frame["ms"])
        # the live loop: frames are classified one at a time, the others dropped
        browser.wait_for("window.emoDemo.camera.stats().classified >= 3")
        stats = browser.evaluate("window.emoDemo.camera.stats()")
        assert stats["maxInFlight"] == 1 and stats["classified"] + stats["dropped"] <= stats["frames"], stats
        assert "ms per frame" in browser.text("#live-timing") and browser.evaluate(
            "document.querySelectorAll('#live-top5 tbody tr').length") == 5
        painted = browser.evaluate("(() => { const c = document.getElementById('latency-plot'); const d = c.getContext("
                                   "'2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < "
                                   "d.length; i += 4) n += d[i] > 0; return n; })()")
        assert painted > 100, painted  # the plot has its line
        browser.evaluate("window.emoDemo.camera.stop()")
        assert not browser.evaluate("window.emoDemo.camera.stats().running") and _hidden(browser, "live")
    for artifact, (diff, pixels, label, ms) in measured.items():
        print(f"camera vs photo, {artifact}: top-1 {label} both; max |logit diff| {diff:.4f}; pixels: mean |diff| "
              f"{pixels['mean']:.2f}, max {pixels['max']}, {100 * pixels['over3']:.3f} % over 3 (of 255); "
              f"{ms['total']:.0f} ms per frame")
    # why LiteRT.js stays on the main thread: its package cannot be imported in a worker (no import map there)
    error = browser.evaluate("""new Promise((resolve) => {
      const code = `import(${JSON.stringify(location.origin + '/node_modules/@litertjs/core/dist/index.js')})
        .then(() => postMessage('imported'), (e) => postMessage(String(e.message)))`;
      const worker = new Worker(URL.createObjectURL(new Blob([code], { type: 'text/javascript' })), { type: 'module' });
      worker.onmessage = (e) => resolve(e.data);
    })""")
    assert "Failed to resolve module specifier" in error and "@litertjs/wasm-utils" in error, error


# ------------------------------------------------------------------------------------------ WebGPU
def test_webgpu_parity_and_latency_next_to_wasm(demo_dir):
    """Both runtimes on both backends in one page: the bundled examples agree with PyTorch within the sidecar's
    tolerance on WebGPU as on WebAssembly (shown on the model card), and the latencies are measured side by side.
    Chromium runs WebGPU on SwiftShader here (no GPU): a software adapter, so its latency says nothing about a phone's
    GPU; where Chromium offers no adapter the test is skipped with the reason (the fallback has its own test)."""
    from emo.runtime_bench.browser import Browser

    with DemoServer(models=demo_dir) as server, Browser(webgpu=True) as browser:
        browser.open(server.url)
        gpu = browser.call("gpu")
        if not gpu["adapter"]:
            pytest.skip(f"no WebGPU adapter in this Chromium: {gpu['reason']}")
        rows = []
        for artifact in (TFLITE, ONNX):
            for backend in ("wasm", "webgpu"):
                loaded = browser.call("load", f"models/{artifact}", {"threads": 2, "backend": backend})
                info, parity = loaded["info"], loaded["parity"]
                assert info["backend"] == backend and "fallback" not in info, info
                assert parity["status"] == "passed" and parity["max_abs_diff"] <= parity["tolerance"]["max_abs_diff"]
                card = _card(browser)
                assert card["parity here"].startswith("passed: max |diff|") and card["backend"].startswith(backend)
                bench = browser.call("benchmark", {"warmup": 1, "iters": 3})
                rows.append((artifact, backend, parity["max_abs_diff"], float(np.median(bench["latenciesMs"])),
                             info.get("adapter")))
    adapter = rows[-1][4]
    print(f"\nWebGPU adapter: {adapter['vendor']} {adapter['architecture']} (software: {adapter['fallback']})")
    for artifact, backend, diff, median, _ in rows:
        print(f"{artifact:42s} {backend:7s} max |diff| vs PyTorch {diff:.1e}  median {median:8.1f} ms")


def test_webgpu_without_an_adapter_falls_back_to_wasm_and_says_so(demo_dir, browser):
    with DemoServer(models=demo_dir) as server:
        browser.open(f"{server.url}?backend=webgpu")
        gpu = browser.call("gpu")
        if gpu["adapter"]:
            pytest.skip("this Chromium offers a WebGPU adapter even with --disable-gpu")
        assert browser.text("#gpu-note").startswith("No WebGPU: ")
        loaded = browser.call("load", f"models/{TFLITE}", {"threads": 2})
    info = loaded["info"]
    assert info["backend"] == "wasm" and info["requested"] == "webgpu", info
    assert info["fallback"].startswith("WebGPU was asked for, but this browser offers no WebGPU")
    assert info["fallback"] in _card(browser)["backend"] and loaded["parity"]["status"] == "passed"


def test_bench_browser_backend_webgpu(demo_dir, tmp_path):
    """emo-bench --device browser --backend webgpu: the row says which backend ran (and its adapter), its parity."""
    from emo.runtime_bench.cli import main
    from emo_testutil import run_tool

    rows_file = tmp_path / "rows.jsonl"
    code = main([str(demo_dir / TFLITE), "--device", "browser", "--backend", "webgpu", "--threads", "2", "--warmup",
                 "1", "--iters", "2", "--out", str(rows_file)])
    row = json.loads(rows_file.read_text())
    assert row["settings"]["backend"] == "webgpu"
    if row["device"].get("runtime", {}).get("adapter"):
        assert code == 0 and row["status"] == "ok" and row["device"]["runtime"]["backend"] == "webgpu"
        assert row["parity"]["status"] == "passed" and row["summary"]["count"] == 2
    else:  # no adapter: the page ran wasm, and the row says so instead of passing as WebGPU
        assert code == 1 and row["status"].startswith("failed: the page ran wasm, not webgpu"), row["status"]
    proc = run_tool("emo-bench", demo_dir / TFLITE, "--device", "host", "--backend", "webgpu", "--out",
                    tmp_path / "x.jsonl")
    assert proc.returncode == 2 and "--backend is for --device browser" in proc.stderr


# ------------------------------------------------------------------------------------------ phone, make demo
def test_make_demo_opens_the_trained_model_and_the_phone_layout_fits(demo_dir, camera):
    """`emo-web-demo serve DIR` (as `make demo` runs it) prints a URL that opens the trained Fashion-MNIST model,
    not the random-init one listed first; on a phone (412x915 CSS pixels, DPR 2.625, touch) the first sample button
    is one of its test images, a tap classifies it right and confidently, the camera runs, and nothing is wider than
    the screen. The screenshot is tests/artifacts/web_phone.png."""
    browser, _, _ = camera
    proc = subprocess.Popen([sys.executable, "-m", "emo.web_demo", "serve", str(demo_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip().split(": ", 1)[1]
        example = proc.stdout.readline().strip().split("e.g. ", 1)[1]
        assert example == f"{url}?model=" + urllib.parse.quote(f"models/{ONNX}", safe="/")
        browser.new_context(**PHONE)
        assert browser.open(example)["isolated"]
        browser.wait_for("!document.getElementById('model-info').hidden || !document.getElementById('error').hidden")
        assert browser.evaluate("window.emoDemo.error()") is None
        assert browser.evaluate("[innerWidth, devicePixelRatio, navigator.maxTouchPoints > 0]") == [412, 2.625, True]
        first = browser.evaluate("document.querySelector('#samples button').textContent")
        assert first == f"fashion_mnist/{makefile_samples()[0].replace('/', '_')}.png", first
        browser.tap("#samples button")
        browser.wait_for("!document.getElementById('result').hidden || !document.getElementById('error').hidden")
        top1 = browser.evaluate("[...document.querySelector('#top5 tbody tr').cells].map(c => c.textContent)")
        assert top1[1] == makefile_samples()[0].split("/")[0] and float(top1[2].split()[0]) > 80, top1
        browser.evaluate("window.emoDemo.camera.start()")
        browser.wait_for("window.emoDemo.camera.stats().classified >= 2")
        overflow = browser.evaluate("""(() => {
          const wide = [...document.querySelectorAll('body *')].filter((e) => e.getClientRects().length &&
            e.getBoundingClientRect().right > innerWidth + 0.5).map((e) => e.id || e.tagName);
          return { scroll: document.documentElement.scrollWidth, wide };
        })()""")
        assert overflow == {"scroll": 412, "wide": []}, overflow
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "web_phone.png"
        browser.screenshot(shot)
        width, height = Image.open(shot).size
        assert width == round(412 * 2.625) and height > 915 * 2.625, (width, height)
        browser.evaluate("window.emoDemo.camera.stop()")
        browser.new_context(**DESKTOP)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
