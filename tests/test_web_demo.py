"""The web demo in headless Chromium: the same logits as the Python runtimes on the same artifacts, the page shows
them, bad artifacts get a clear message; the local server; emo-bench --device browser. In Node: the page's reader of
the artifact contract (web_demo/contract.js) against every conformance vector, and its preprocessing against Pillow.

The artifacts are the session's `emo-export --format all` folder (conftest `all_formats`): exported once, shared
with test_export_all.py. Chromium and the npm packages come from `make test` (Debian chromium, `npm ci`). The app
side of the page (offline, camera, WebGPU, phone layout) is tests/test_web_app.py.
"""

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emo.contract import vocabulary
from emo.data import load_image, sample_images, to_unit_array
from emo.runtime_bench.webserver import WEB_DEMO, DemoServer, contract_document
from emo_testutil import assert_one_line_error, need_browser_tools

CONFORMANCE = Path(vocabulary.__file__).with_name("conformance")

TOL = 1e-4  # fp32 parity policy (README): the browser runs the same fp32 graph in WebAssembly
FORMATS = ["emo_1m_onnx_fp32.onnx", "emo_1m_ort_fp32.ort", "emo_1m_tflite_fp32.tflite"]


@pytest.fixture(scope="module")
def demo(all_formats, tmp_path_factory):
    """(browser, server url, artifact folder): one headless Chromium for the module, one server."""
    need_browser_tools()
    from emo.runtime_bench.browser import Browser

    code, out = all_formats
    assert code == 0
    samples = sample_images()[0].parent
    with DemoServer(models=out, samples=samples) as server, Browser() as browser:
        yield browser, server.url, out


def reference_logits(artifact, x: np.ndarray) -> np.ndarray:
    """The Python runtime's logits: onnxruntime for .onnx/.ort, the ai-edge-litert interpreter for .tflite."""
    if artifact.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(artifact), num_threads=2)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    import onnxruntime as ort

    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0][0]


# ------------------------------------------------------------------------------ preprocessing (Node, no browser)
def _unit_array(image: Image.Image, size: int, crop_pct: float) -> np.ndarray:
    """emo.data.to_unit_array with another crop fraction (emo.data always uses 0.875; a sidecar may say otherwise)."""
    image = image.convert("RGB")
    short = int(size / crop_pct)
    iw, ih = image.size
    nw, nh = (short, int(short * ih / iw)) if iw <= ih else (int(short * iw / ih), short)
    image = image.resize((nw, nh), Image.BICUBIC)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return np.asarray(image.crop((left, top, left + size, top + size)), np.float32).transpose(2, 0, 1) / 255.0


def test_preprocess_matches_pillow_bit_for_bit(tmp_path):
    """core.js `preprocess` == emo.data.to_unit_array (+ normalisation, NHWC) on the samples and resized photos, with
    the crop fraction the sidecar's input.preprocessing names (absent: the contract's default 0.875)."""
    need_browser_tools()
    rng = np.random.default_rng(0)
    images = {p.stem: load_image(p) for p in sample_images()}
    for w, h in [(1008, 756), (756, 1008), (640, 480), (97, 45)]:  # phone photo shapes (scaled), a tiny upscale
        yy, xx = np.mgrid[0:h, 0:w]
        pixels = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], 2) + rng.integers(-40, 40, (h, w, 3))
        images[f"{w}x{h}"] = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    cases = []
    for name, image in images.items():
        rgba = np.asarray(image.convert("RGBA"))
        rgba.tofile(tmp_path / f"{name}.rgba")
        cases.append({"name": name, "w": image.width, "h": image.height})
    (tmp_path / "contract.json").write_text(json.dumps(contract_document()))
    script = tmp_path / "run.mjs"
    script.write_text(f"""
import {{ preprocess }} from {json.dumps((WEB_DEMO / 'core.js').as_uri())};
import fs from 'node:fs';
const dir = {json.dumps(str(tmp_path))};
const contract = JSON.parse(fs.readFileSync(dir + '/contract.json', 'utf8'));
const mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225];
for (const c of {json.dumps(cases)}) {{
  const rgba = new Uint8Array(fs.readFileSync(dir + '/' + c.name + '.rgba'));
  for (const [tag, layout, inGraph, crop] of [['nchw', 'NCHW', true, null], ['nhwc_norm', 'NHWC', false, null],
                                              ['crop1', 'NCHW', true, 1.0]]) {{
    const pre = crop ? {{ preprocessing: {{ crop_pct: crop, interpolation: 'bicubic' }} }} : {{}};
    const side = {{ input: {{ shape: layout === 'NHWC' ? [1, 224, 224, 3] : [1, 3, 224, 224], layout,
                             normalization: {{ in_graph: inGraph, mean, std }}, ...pre }} }};
    fs.writeFileSync(dir + '/' + c.name + '.' + tag, preprocess(rgba, c.w, c.h, side, contract));
  }}
}}
""")
    subprocess.run(["node", str(script)], check=True, timeout=120)
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
    for name, image in images.items():
        expected = to_unit_array(image)
        got = np.fromfile(tmp_path / f"{name}.nchw", np.float32).reshape(3, 224, 224)
        np.testing.assert_array_equal(got, expected, err_msg=name)
        got = np.fromfile(tmp_path / f"{name}.nhwc_norm", np.float32).reshape(224, 224, 3).transpose(2, 0, 1)
        np.testing.assert_allclose(got, (expected - mean) / std, rtol=0, atol=1e-6, err_msg=name)
        got = np.fromfile(tmp_path / f"{name}.crop1", np.float32).reshape(3, 224, 224)
        np.testing.assert_array_equal(got, _unit_array(image, 224, 1.0), err_msg=f"{name} crop_pct 1.0")


# ------------------------------------------------------------------------------- the contract in JavaScript (Node)
def test_javascript_reader_agrees_with_every_conformance_case(tmp_path):
    """web_demo/contract.js reads every case of emo/contract/conformance (sidecar, examples) as the Python validator
    does: valid ones parse, bad ones give exactly the case's field and reason with a one-line message. The contract
    document is the one the server gives the page (a new case is picked up from cases.json without a change here)."""
    need_browser_tools()
    (tmp_path / "contract.json").write_text(json.dumps(contract_document()))
    script = tmp_path / "conformance.mjs"
    script.write_text(f"""
import fs from 'node:fs';
import {{ readSidecar, readExamples }} from {json.dumps((WEB_DEMO / 'contract.js').as_uri())};
const contract = JSON.parse(fs.readFileSync({json.dumps(str(tmp_path / 'contract.json'))}, 'utf8'));
const root = {json.dumps(str(CONFORMANCE))};
const readers = {{ sidecar: readSidecar, examples: readExamples }};
const results = [];
for (const kind of Object.keys(readers)) {{
  for (const c of JSON.parse(fs.readFileSync(`${{root}}/${{kind}}/cases.json`, 'utf8')).cases) {{
    const raw = fs.readFileSync(`${{root}}/${{kind}}/${{c.file}}`);
    try {{
      readers[kind](raw, c.file, contract);
      results.push({{ kind, file: c.file, valid: true }});
    }} catch (e) {{
      results.push({{ kind, file: c.file, valid: false, field: e.field, reason: e.reason, message: e.message,
                      demo: e.constructor.name }});
    }}
  }}
}}
process.stdout.write(JSON.stringify(results));
""")
    proc = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = {(r["kind"], r["file"]): r for r in json.loads(proc.stdout)}
    expected = {(kind, case["file"]): case for kind in ("sidecar", "examples")
                for case in json.loads((CONFORMANCE / kind / "cases.json").read_text())["cases"]}
    assert got.keys() == expected.keys()
    wrong = []
    for key, case in expected.items():
        result = got[key]
        if case["valid"] != result["valid"] or (not case["valid"] and (
                (result["field"], result["reason"]) != (case["field"], case["reason"]) or result["demo"] != "DemoError"
                or "\n" in result["message"] or (case["field"] and f"'{case['field']}'" not in result["message"]))):
            wrong.append((key, case.get("field"), case.get("reason"), result))
    assert not wrong, wrong
    print(f"{len(expected)} conformance cases agree in JavaScript "
          f"({sum(c['valid'] for c in expected.values())} valid, {sum(not c['valid'] for c in expected.values())} bad)")


def test_no_vocabulary_is_restated_in_the_page():
    """The page's words of the contract (format suffixes, precisions, which formats run in a browser) come from the
    contract document the server builds from emo.contract (/contract.json), never from a list in the page's code. The
    contract's reader may name what a cross-field rule of a schema names (x-rules: "... only with backend coreml")."""
    from emo.contract import schema

    words = {f.suffix for f in vocabulary.FORMATS.values()} | set(vocabulary.PRECISIONS) | set(vocabulary.FORMATS)
    rules = " ".join(rule for kind in ("sidecar", "examples") for rule in schema.schema(kind)["x-rules"])
    for source in WEB_DEMO.glob("*.js"):
        code = re.sub(r"//[^\n]*|/\*.*?\*/", "", source.read_text(), flags=re.DOTALL)  # comments may name them
        literals = set(re.findall(r"'([^'\n]*)'|\"([^\"\n]*)\"", code))
        restated = sorted(w for pair in literals for w in pair if w in words and not (
            source.name == "contract.js" and re.search(rf"\b{re.escape(w)}\b", rules)))
        assert not restated, (source.name, restated)


def test_page_names_where_other_formats_run(tmp_path):
    """Every format of the vocabulary the browser does not run gets its own line (from its runtime family), a QNN
    artifact included although its suffix is .onnx (its sidecar says so)."""
    need_browser_tools()
    (tmp_path / "contract.json").write_text(json.dumps(contract_document()))
    side = json.loads((CONFORMANCE / "sidecar" / "good" / "fixture_onnx_fp32.json").read_text())
    others = {f.name: f for f in vocabulary.FORMATS.values() if not f.browser}
    script = tmp_path / "where.mjs"
    script.write_text(f"""
import fs from 'node:fs';
import {{ runtimeFor, checkArtifactMatches }} from {json.dumps((WEB_DEMO / 'core.js').as_uri())};
const contract = JSON.parse(fs.readFileSync({json.dumps(str(tmp_path / 'contract.json'))}, 'utf8'));
const out = {{}};
for (const [name, suffix] of {json.dumps([[n, f.suffix] for n, f in others.items()])}) {{
  try {{
    const side = {{ ...{json.dumps(side)}, backend: name }};
    if (runtimeFor('m' + suffix, contract)) checkArtifactMatches(side, 'm' + suffix, new ArrayBuffer(1), '', contract);
    out[name] = null;
  }} catch (e) {{ out[name] = e.message; }}
}}
process.stdout.write(JSON.stringify(out));
""")
    proc = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    where = json.loads(proc.stdout)
    assert where.keys() == others.keys()
    for name, message in where.items():
        assert message and message.endswith("The browser runs .onnx, .ort and .tflite artifacts."), (name, message)
        assert " does not run in a browser" not in message, (name, message)  # each family has its own line
    assert "a QNN artifact runs on a Snapdragon NPU" in where["qnn"]


def test_the_server_gives_the_page_the_contract():
    """/contract.json: emo.contract's vocabulary.json, schemas, parity policy and limits; inert JSON."""
    from emo.contract import examples, schema

    with DemoServer() as server, urllib.request.urlopen(server.url + "contract.json", timeout=30) as r:
        assert r.headers["Content-Type"] == "application/json" and r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'; sandbox")
        document = json.loads(r.read())
    assert document["vocabulary"] == json.loads(vocabulary.VOCABULARY_JSON.read_text())
    assert document["schemas"] == {"sidecar": schema.schema("sidecar"), "examples": schema.schema("examples")}
    assert document["parity"]["tolerances"] == examples.TOLERANCES


# ------------------------------------------------------------------------------------------- in the browser
@pytest.mark.parametrize("artifact", FORMATS)
def test_browser_logits_equal_python_runtime(demo, artifact):
    """Photo -> page (decode, preprocess, WASM runtime) == photo -> emo.data -> the Python runtime, to 1e-4."""
    browser, url, out = demo
    assert browser.open(url)["isolated"]  # COOP/COEP: threads are available
    loaded = browser.call("load", f"models/{artifact}", {"threads": 2})
    assert loaded["info"]["threads"] == 2 and loaded["variant"] == "emo_1m"
    worst = 0.0
    for photo in sample_images():
        result = browser.call("classify", f"samples/{photo.name}", {"runs": 1})
        expected = reference_logits(out / artifact, to_unit_array(load_image(photo))[None])
        logits = np.asarray(result["logits"], np.float32)
        assert logits.shape == expected.shape == (1000,)
        diff = float(np.abs(logits - expected).max())
        worst = max(worst, diff)
        assert diff <= TOL, (artifact, photo.name, diff)
        top5 = [t["index"] for t in result["top5"]]
        assert top5 == list(np.argsort(-expected, kind="stable")[:5]), (artifact, photo.name)
        assert result["ms"]["first"] > 0 and result["ms"]["median"] > 0
    print(f"{artifact}: max |browser - python| over {len(sample_images())} photos = {worst:.2e}")
    # the runtimes work under the page's Content-Security-Policy: nothing was refused on the way
    refused = [line for line in browser.console() if "Content Security Policy" in line or "Refused to" in line]
    assert not refused, refused


def test_screenshot_shows_top1_label(demo, tmp_path):
    browser, url, _ = demo
    browser.open(url)
    browser.call("load", "models/emo_1m_onnx_fp32.onnx")
    result = browser.call("classify", "samples/cat.jpg", {"runs": 1})
    label = result["top5"][0]["label"]
    row = "document.querySelector('#top5 tbody tr:first-child')"
    assert browser.evaluate(f"{row}.cells[1].textContent") == label
    box = browser.evaluate(f"(() => {{ const r = {row}.cells[1].getBoundingClientRect(); "
                           "return [r.left, r.top + window.scrollY, r.right, r.bottom + window.scrollY]; })()")
    shot = tmp_path / "page.png"
    browser.screenshot(shot)
    # the label's own pixels: the cell drawn with its text, then with the text made transparent, must differ
    browser.evaluate(f"{row}.cells[1].style.color = 'transparent'")
    bare = tmp_path / "bare.png"
    browser.screenshot(bare)
    crop = tuple(round(v) for v in box)
    with_text = np.asarray(Image.open(shot).convert("L").crop(crop), np.int16)
    without = np.asarray(Image.open(bare).convert("L").crop(crop), np.int16)
    assert with_text.size and (np.abs(with_text - without) > 64).sum() >= 20 * len(label) // 2, label
    assert browser.evaluate("document.getElementById('error').hidden")


def test_file_pickers_load_and_classify(demo):
    """The user's path: pick the artifact + sidecar, then a photo; the page shows the runtime's top-1."""
    browser, url, out = demo
    browser.open(url)
    browser.set_files("#model-files", [out / "emo_1m_tflite_fp32.tflite", out / "emo_1m_tflite_fp32.json"])
    browser.wait_for("!document.getElementById('model-info').hidden || !document.getElementById('error').hidden")
    assert browser.evaluate("document.getElementById('error').hidden"), browser.text("#error")
    assert "LiteRT.js" in browser.text("#model-info") and "passed" in browser.text("#model-info")
    photo = sample_images()[0]
    browser.set_files("#image-file", [photo])
    browser.wait_for("!document.getElementById('result').hidden || !document.getElementById('error').hidden")
    expected = reference_logits(out / "emo_1m_tflite_fp32.tflite", to_unit_array(load_image(photo))[None])
    labels = json.loads((out / "emo_1m_tflite_fp32.json").read_text())["labels"]["names"]
    top1 = browser.evaluate("document.querySelector('#top5 tbody tr:first-child').cells[1].textContent")
    assert top1 == labels[int(np.argmax(expected))]


def _copy(out, stem, dest, new_stem=None):
    for suffix in (".json", {"onnx": ".onnx", "ort": ".ort", "tflite": ".tflite"}[stem.split("_")[2]]):
        shutil.copy(out / f"{stem}{suffix}", dest / f"{new_stem or stem}{suffix}")


def test_bad_artifacts_show_a_clear_message(demo, tmp_path):
    browser, _, out = demo
    bad = tmp_path / "bad"
    bad.mkdir()
    # truncated: the sidecar's size no longer matches
    _copy(out, "emo_1m_onnx_fp32", bad, "truncated_onnx_fp32")
    data = (bad / "truncated_onnx_fp32.onnx").read_bytes()
    (bad / "truncated_onnx_fp32.onnx").write_bytes(data[: len(data) // 2])
    # damaged with a sidecar that matches the damaged bytes: the runtime itself refuses it
    _copy(out, "emo_1m_tflite_fp32", bad, "damaged_tflite_fp32")
    damaged = bytearray((bad / "damaged_tflite_fp32.tflite").read_bytes())
    damaged[:64] = b"\0" * 64
    (bad / "damaged_tflite_fp32.tflite").write_bytes(damaged)
    import hashlib

    side = json.loads((bad / "damaged_tflite_fp32.json").read_text())
    side["sha256"] = hashlib.sha256(damaged).hexdigest()
    (bad / "damaged_tflite_fp32.json").write_text(json.dumps(side))
    # the sidecar of another artifact
    shutil.copy(out / "emo_1m_tflite_fp32.tflite", bad / "swapped_tflite_fp32.tflite")
    shutil.copy(out / "emo_1m_onnx_fp32.json", bad / "swapped_tflite_fp32.json")
    # no sidecar; a Core ML package; an ExecuTorch program
    shutil.copy(out / "emo_1m_ort_fp32.ort", bad / "lonely_ort_fp32.ort")
    shutil.copytree(out / "emo_1m_coreml_fp16.mlpackage", bad / "emo_1m_coreml_fp16.mlpackage")
    _ = (bad / "emo_1m_coreml_fp16.json").write_text((out / "emo_1m_coreml_fp16.json").read_text())
    shutil.copy(out / "emo_1m_xnnpack_fp32.pte", bad / "emo_1m_xnnpack_fp32.pte")
    cases = {
        "truncated_onnx_fp32.onnx": "the file is truncated or is not the exported artifact",
        "damaged_tflite_fp32.tflite": "LiteRT.js (wasm) could not load it",
        "swapped_tflite_fp32.tflite": "the sidecar describes a 'onnx' artifact, not a .tflite file",
        "lonely_ort_fp32.ort": "every artifact needs the .json sidecar",
        "emo_1m_coreml_fp16.mlpackage": "a Core ML package runs on Apple devices only",
        "emo_1m_xnnpack_fp32.pte": "an ExecuTorch program runs in the ExecuTorch runtime",
    }
    from emo.runtime_bench.browser import PageError

    with DemoServer(models=bad) as server:
        for name, message in cases.items():
            browser.open(server.url)
            with pytest.raises(PageError) as caught:
                browser.call("load", f"models/{name}")
            assert message in str(caught.value), (name, str(caught.value))
            shown = browser.text("#error")  # the page shows the same line: not a blank page
            assert shown == str(caught.value) and "\n" not in shown, (name, shown)
            assert browser.evaluate("document.getElementById('model-info').hidden"), name


# -------------------------------------------------------------------------------------------- the server
def test_serve_cli_prints_url_and_isolates(all_formats):
    need_browser_tools()
    _, out = all_formats
    proc = subprocess.Popen([sys.executable, "-m", "emo.web_demo", "serve", str(out), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        assert first.startswith("web demo: http://127.0.0.1:"), first
        url = first.split(": ", 1)[1]
        with urllib.request.urlopen(url + "models/index.json", timeout=30) as r:
            assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            listing = json.loads(r.read())
        assert {"emo_1m_onnx_fp32.onnx", "emo_1m_ort_fp32.ort", "emo_1m_tflite_fp32.tflite"} <= {
            a["name"] for a in listing["artifacts"]} and "cat.jpg" in listing["samples"]
        assert all(a["variant"] == "emo_1m" and a["input"] == "224x224" for a in listing["artifacts"])
        wasm = "node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm"
        with urllib.request.urlopen(url + wasm, timeout=30) as r:  # the runtimes' wasm from node_modules
            assert r.headers["Content-Type"] == "application/wasm" and r.read(4) == b"\0asm"
            assert r.headers["X-Content-Type-Options"] == "nosniff" and "'wasm-unsafe-eval'" in r.headers[
                "Content-Security-Policy"]
        for path in ("models/../../../etc/passwd", "models/%2e%2e/%2e%2e/etc/passwd", "node_modules/../../Makefile",
                     "models/emo_1m_coreml_fp16.mlpackage/Manifest.json"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(url + path, timeout=30)
            assert e.value.code == 404, path
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()


def test_serve_cli_bad_folder(tmp_path):
    from emo_testutil import run_tool

    assert_one_line_error(run_tool("emo-web-demo", "serve", tmp_path / "missing"), 2, "is not a folder")


# -------------------------------------------------------------------------------------- emo-bench --device browser
def test_bench_browser_rows(all_formats, tmp_path):
    need_browser_tools()
    from emo.runtime_bench.cli import main

    _, out = all_formats
    results = tmp_path / "rows.jsonl"
    code = main([str(out / "emo_1m_ort_fp32.ort"), str(out / "emo_1m_tflite_fp32.tflite"),
                 str(out / "emo_1m_pytorch_fp32.pt2"), "--device", "browser", "--threads", "2", "--warmup", "1",
                 "--iters", "3", "--out", str(results)])
    assert code == 1  # the .pt2 row fails with its reason; the others are measured
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["backend"] for r in rows] == ["ort", "tflite", "pt2"]
    for row in rows[:2]:
        assert row["status"] == "ok", row["status"]
        assert row["device"]["target"] == "browser" and row["device"]["browser"].startswith("Chromium")
        assert row["device"]["runtime"]["threads"] == 2 and row["device"]["runtime"]["crossOriginIsolated"]
        assert row["settings"]["backend"] == "wasm" and row["device"]["runtime"]["backend"] == "wasm"
        # the page ran the artifact's bundled examples against PyTorch's outputs (fp32: max |diff| <= 1e-4)
        assert row["parity"]["status"] == "passed" and row["parity"]["max_abs_diff"] <= 1e-4, row["parity"]
        assert len(row["latencies_ms"]) == 3 and row["summary"]["count"] == 3 and row["summary"]["median"] > 0
        assert row["settings"]["threads"] == 2 and row["load_ms"] > 0 and row["first_inference_ms"] > 0
    assert "onnxruntime-web" in rows[0]["versions"] and "@litertjs/core" in rows[1]["versions"]
    assert rows[2]["status"].startswith("failed: the browser runs .onnx, .ort and .tflite")


def test_browser_target_imports_neither_torch_nor_the_model():
    code = ("import sys, emo.runtime_bench.browser, emo.runtime_bench.webserver, emo.runtime_bench.cli; "
            "bad = [m for m in ('torch', 'emo.model', 'emo.data', 'emo.export') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
