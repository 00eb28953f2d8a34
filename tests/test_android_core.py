"""android_demo/core (pure Kotlin) compiled with Debian's kotlinc 1.3 and its JUnit suites run on the JVM against real
exported artifacts and their bundled examples: preprocessing bit-exact with emo.preprocess, top-5, agreement
(CoreTest); the benchmark request, the model catalog, the run loop and its result file, int8 I/O against what LiteRT
computed on the host, and the accelerator report from a real ONNX Runtime profile (AppCoreTest); the sidecar and
examples readers against the contract's conformance vectors, Python's readings and mutants judged by Python, the
vocabulary and the parity policy (ContractTest). Also static checks of the Android app's sources that need no SDK:
API levels against minSdk, the benchmark activity's theme."""

import base64
import json
import re

import conformance_data
import jvm
import numpy as np
import pytest
from mobile_artifacts import sidecars

from emo.contract import app_result as app_result_contract
from emo.runtime_bench import android
from emo.runtime_bench.results import Artifact
from emo_testutil import REF_CKPT, REPO

APP = REPO / "android_demo" / "app"


@pytest.fixture(scope="module")
def int8_tflite(tmp_path_factory):
    """An int8 NHWC .tflite (int8 graph input and output) and what LiteRT's interpreter computes on the host for its
    bundled examples: the input bytes (quantized as emo.export.tflite.load does), the output bytes, and the
    dequantized outputs with their agreement with PyTorch."""
    from ai_edge_litert.interpreter import Interpreter

    from emo.contract import examples as examples_format
    from emo.export import cli

    out = tmp_path_factory.mktemp("int8")
    assert cli.export_main(["--model", "emo_1m", "--weights", str(REF_CKPT), "--format", "tflite", "--precision",
                            "int8", "--nhwc", "--input-size", "64", "--calibration-count", "4", "--out", str(out)]) == 0
    artifact = next(out.glob("*.tflite"))
    side = json.loads(artifact.with_suffix(".json").read_text())
    io = side["quantization"]["io"]
    examples = examples_format.read(examples_format.examples_path(artifact))
    interpreter = Interpreter(model_path=str(artifact))
    interpreter.allocate_tensors()
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert np.dtype(inp["dtype"]).name == io["input"]["dtype"] == "int8"
    records, outputs = [], []
    for example in examples["examples"]:
        x = example["input"]  # (1, H, W, 3) float32 in [0, 1], as emo.export.tflite.load quantizes it
        q = np.clip(np.round(x / io["input"]["scale"]) + io["input"]["zero_point"], -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q)
        interpreter.invoke()
        y = interpreter.get_tensor(outp["index"]).copy()
        real = (y.astype(np.float32) - io["output"]["zero_point"]) * io["output"]["scale"]
        outputs.append(real[0])
        records.append({"input_int8": base64.b64encode(q.tobytes()).decode(),
                        "output_int8": base64.b64encode(y.tobytes()).decode(),
                        "output_dequantized": examples_format.encode_tensor(real)})
    agreement = examples_format.agreement(examples, outputs)
    (out / "int8-reference.json").write_text(json.dumps({"examples": records, **agreement}))
    return out, agreement


@pytest.fixture(scope="module")
def ort_profile(mobile_artifacts, tmp_path_factory):
    """ONNX Runtime's own profile of one run of the float ONNX export, and its node count (from the optimized
    graph ONNX Runtime saved, counted independently of the profile)."""
    import onnx
    import onnxruntime as ort

    out = tmp_path_factory.mktemp("ortprofile")
    model = next(s.with_suffix(".onnx") for s in sidecars(mobile_artifacts) if s.with_suffix(".onnx").exists())
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(out / "run")
    options.optimized_model_filepath = str(out / "optimized.onnx")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    shape = [1 if isinstance(d, str) else d for d in session.get_inputs()[0].shape]
    session.run(None, {session.get_inputs()[0].name: np.zeros(shape, np.float32)})
    (out / "profile.json").write_bytes(open(session.end_profiling(), "rb").read())
    nodes = len(onnx.load(str(out / "optimized.onnx")).graph.node)
    (out / "expected.json").write_text(json.dumps({"nodes": nodes}))
    return out


@pytest.fixture(scope="module")
def junit(mobile_artifacts, sample_pixels, int8_tflite, ort_profile, tmp_path_factory):
    why = jvm.missing_tools()
    if why:
        pytest.fail(why)  # CI installs them (make sysdeps): a missing toolchain is a failure, not a skip
    out = tmp_path_factory.mktemp("junit-out")
    conformance = conformance_data.write(tmp_path_factory.mktemp("conformance"))
    classes = jvm.compiled_core()
    properties = {"emo.artifacts": mobile_artifacts, "emo.pixels": sample_pixels, "emo.out": out,
                  "emo.int8": int8_tflite[0], "emo.ortprofile": ort_profile, "emo.contract": conformance_data.CONTRACT,
                  "emo.conformance": conformance}
    runs = [jvm.run_junit(classes, f"org.emomobile.core.{name}", properties)
            for name in ("CoreTest", "AppCoreTest", "ContractTest")]
    return runs, out, conformance


@pytest.mark.parametrize(("index", "minimum"), [(0, 9), (1, 15), (2, 8)],
                         ids=["CoreTest", "AppCoreTest", "ContractTest"])
def test_junit_suite_passes(junit, index, minimum):
    proc = junit[0][index]
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    ran = re.search(r"OK \((\d+) tests\)", proc.stdout)
    assert ran and int(ran.group(1)) >= minimum, proc.stdout[-2000:]


def test_kotlin_checked_every_conformance_case(junit):
    """The Kotlin readers went through every case of both cases.json files and every mutant, and agreed (a case
    added to a cases.json is picked up without code)."""
    conformance_data.assert_every_case_checked(junit[0][2].stdout, junit[2])


@pytest.mark.parametrize("name", ["app-bench-android-ok.json", "app-bench-android-int8.json",
                                  "app-bench-android-failed.json", "app-bench-android-failed-bounds.json"])
def test_kotlin_results_are_the_schema_and_map_to_rows(junit, tmp_path, name):
    """What the Kotlin core writes is a valid app-bench/1 document, and emo-bench's one mapper reads it (also for a
    hand-made request whose values are outside the schema's bounds: the result still says why it failed)."""
    out = junit[1]
    data = json.loads((out / name).read_text())
    app_result_contract.validate(data, name, "android")  # the JSON Schema the reader uses
    row = android.map_app_result(data, Artifact(tmp_path / "m.tflite", None), {"target": "adb"}, {"threads": 4})
    assert row.device["os"] == "Android 15 (API 35)" and row.device["soc"] == "Tensor G3"
    if name.endswith("failed-bounds.json"):
        assert row.status == "failed: the extra 'model' must be a file name inside the benchmark folder, not ''"
    elif name.endswith("failed.json"):
        assert row.status == "failed: the extra 'iters' must be an integer in [1, 100000], not 'x'"
    else:
        assert row.ok and row.parity["status"] == "passed" and len(row.latencies_ms) >= 2


def test_int8_self_test_on_the_phone_equals_the_hosts(junit, int8_tflite):
    """The int8 run's parity written by the Kotlin core is the one computed here with LiteRT on the same bytes."""
    out = junit[1]
    data = json.loads((out / "app-bench-android-int8.json").read_text())
    host = int8_tflite[1]
    assert data["io"] == {"input": "int8", "output": "int8"}
    assert data["parity"]["status"] == host["status"]
    assert data["parity"]["max_abs_diff"] == host["max_abs_diff"]


def test_core_compiles_with_the_gradle_builds_kotlin():
    """CI's kotlinc is Debian's 1.3; Android Studio compiles the core with the catalog's Kotlin (2.1), where
    String.toLowerCase(Locale) is an error. Both must accept the same sources: this compiles them with JetBrains'
    compiler of the catalog's version, at its language and API level, warnings as errors."""
    version = jvm.gradle_kotlin_version()
    why = jvm.missing_gradle_kotlinc(version)
    if why:
        pytest.fail(why)  # make test installs it (make kotlinc-gradle): a missing compiler is a failure, not a skip
    proc = jvm.compile_with_gradle_kotlin(version)
    assert proc is None or proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


# ----------------------------------------------------------------------------- the app's sources, without an SDK
# classes and members the app may use only from the API level given (developer.android.com's "Added in API level")
API_LEVELS = {"ImageDecoder": 28, "Build.SOC_MODEL": 31, "Build.SOC_MANUFACTURER": 31, "ExifInterface": 24}


def _min_sdk() -> int:
    return int(re.search(r"minSdk\s*=\s*(\d+)", (APP / "build.gradle.kts").read_text()).group(1))


def test_app_sources_use_no_api_above_min_sdk_unguarded():
    """Each use of an API newer than minSdk sits behind a `Build.VERSION.SDK_INT >= N` check (lint's NewApi)."""
    min_sdk = _min_sdk()
    problems = []
    for source in sorted((APP / "src" / "main" / "java").rglob("*.kt")):
        for number, line in enumerate(source.read_text().splitlines(), 1):
            for name, level in API_LEVELS.items():
                if level > min_sdk and re.search(rf"\b{re.escape(name)}\b", line) and not line.lstrip().startswith(
                        ("import ", "//", "*")):
                    guard = re.search(r"SDK_INT\s*>=\s*(\d+)", line)
                    if not guard or int(guard.group(1)) < level:
                        problems.append(f"{source.name}:{number}: {name} (API {level}) with minSdk {min_sdk}")
    assert not problems, problems


def test_benchmark_activity_is_not_no_display():
    """Theme.NoDisplay activities must finish() before onResume returns (AOSP Activity.performResume throws
    otherwise, API 23+); the benchmark runs on a worker thread, so it must have a (translucent) window. Exported for
    `am start`, it is protected by a permission the shell user holds and ordinary apps cannot (DUMP)."""
    manifest = (APP / "src" / "main" / "AndroidManifest.xml").read_text()
    activity = re.search(r'<activity[^>]*android:name="\.BenchmarkActivity"[^>]*>', manifest, re.S).group(0)
    assert "NoDisplay" not in activity and "Translucent" in activity
    assert 'android:exported="true"' in activity and 'android:permission="android.permission.DUMP"' in activity


def _kotlin_source(name: str) -> str:
    return (APP / "src" / "main" / "java" / "org" / "emomobile" / "demo" / name).read_text()


def test_benchmark_activity_never_lingers_nor_leaves_emo_bench_waiting():
    """A recreated benchmark activity finishes at once (its first instance writes the result); without a folder to
    write into, the process ends, so that emo-bench's `pidof` check fails the row instead of waiting its timeout."""
    source = _kotlin_source("BenchmarkActivity.kt")
    recreated = re.search(r"if \(savedInstanceState != null\) \{(.*?)\n        \}", source, re.S).group(1)
    assert "finish()" in recreated and "return" in recreated
    no_folder = re.search(r"if \(folder == null\) \{(.*?)\n        \}", source, re.S).group(1)
    assert "Process.killProcess(Process.myPid())" in no_folder


def test_main_activity_survives_large_photos_and_keeps_their_colours():
    """OutOfMemoryError is an Error: the screen catches Throwable (the core words it). Pixels are read with
    copyPixelsToBuffer (as decoded), never getPixels (converted to sRGB), and photos are decoded within the core's
    bound (ImageDecoder.setTargetSize from Preprocessor.decodeSize)."""
    source = _kotlin_source("MainActivity.kt")
    assert "catch (e: Exception)" not in source and "catch (e: Throwable)" in source
    assert "getPixels(" not in source and "copyPixelsToBuffer(" in source
    assert "Preprocessor.decodeSize(" in source and "setTargetSize(" in source


def test_litert_dependencies_exist_for_the_catalogs_version():
    """LiteRT 2.1.x's `litert` AAR holds the GPU accelerator; its `litert-gpu` is the old TFLite GPU delegate whose
    `litert-api` dependency duplicates classes of `litert` (LiteRT's ci/build_android_package.sh @v2.1.0): the GPU
    accelerator is an artifact of its own only from 2.3. The APK also records the LiteRT it was built with."""
    catalog = (REPO / "android_demo" / "gradle" / "libs.versions.toml").read_text()
    litert = tuple(map(int, re.search(r'^litert = "(\d+)\.(\d+)', catalog, re.M).groups()))
    build = (APP / "build.gradle.kts").read_text()
    if litert < (2, 3):
        assert not re.search(r"^litert-gpu\s*=", catalog, re.M) and "libs.litert.gpu" not in build
    assert 'buildConfigField("String", "LITERT_VERSION", "\\"${libs.versions.litert.get()}\\"")' in build


def test_gradle_wrapper_names_the_version_agp_needs():
    """gradle-wrapper.properties pins a Gradle that the catalog's Android Gradle Plugin accepts (AGP 8.7: 8.9+)."""
    root = REPO / "android_demo"
    props = (root / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text()
    gradle = tuple(map(int, re.search(r"gradle-(\d+)\.(\d+)(?:\.\d+)?-bin\.zip", props).groups()))
    catalog = (root / "gradle" / "libs.versions.toml").read_text()
    agp = tuple(map(int, re.search(r'agp = "(\d+)\.(\d+)', catalog).groups()))
    assert agp == (8, 7) and gradle >= (8, 9), (agp, gradle)
    for script in ("gradlew", "gradlew.bat"):
        assert "gradle-wrapper.jar" in (root / script).read_text()


def test_gradlew_without_its_jar_says_how_to_get_it(tmp_path):
    """The wrapper jar is a binary the repository does not carry: ./gradlew then fails with the two ways out."""
    import shutil
    import subprocess

    root = REPO / "android_demo"
    shutil.copy(root / "gradlew", tmp_path / "gradlew")
    shutil.copytree(root / "gradle" / "wrapper", tmp_path / "gradle" / "wrapper")
    (tmp_path / "gradle" / "wrapper" / "gradle-wrapper.jar").unlink(missing_ok=True)
    proc = subprocess.run(["sh", str(tmp_path / "gradlew"), "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "gradle-wrapper.jar is missing" in proc.stderr
    assert "Android Studio" in proc.stderr and "gradle wrapper --gradle-version 8.9" in proc.stderr


def test_main_activity_launches_nothing_during_composition_and_analyses_off_the_ui_thread():
    """activity-compose registers a launcher in an effect, after composition: launching it from an AndroidView
    factory throws "Launcher has not been initialized". CameraX runs the analyzer on the executor it is given:
    the main executor would run preprocessing and inference on the UI thread."""
    source = (APP / "src" / "main" / "java" / "org" / "emomobile" / "demo" / "MainActivity.kt").read_text()
    for start in (m.end() for m in re.finditer(r"AndroidView\(", source)):
        depth, end = 1, start
        while depth:
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            end += 1
        assert ".launch(" not in source[start:end], "a launcher is launched inside an AndroidView factory"
    analyzers = re.findall(r"setImageAnalysisAnalyzer\(\s*([^,]+),", source)
    assert analyzers and all("MainExecutor" not in a for a in analyzers), analyzers
