"""ios_demo/EMOCore (Swift package) built and tested with `swift test` (Swift 6 from Debian 13's swiftlang, in the
chroot that ios_demo/ci/swift_chroot.sh sets up once per machine) against real exported artifacts and their bundled
examples: preprocessing, top-5, agreement (EMOCoreTests); the launch arguments, the catalog, the run loop and its
result file, the Core ML classifier's keys, the accelerator report (AppCoreTests); the sidecar and examples readers
against the contract's conformance vectors, Python's readings and mutants judged by Python, the vocabulary and the
parity policy (ContractTests). Foundation and XCTest only: Core ML, Vision and SwiftUI do not exist on Linux (the app
target is Xcode's). Also static checks of the app's sources and project that need no Apple SDK."""

import json
import os
import plistlib
import re
import shutil
import subprocess

import conformance_data
import pytest
from mobile_artifacts import sidecars

from emo.contract import app_result as app_result_contract
from emo_testutil import REPO

SCRIPT = REPO / "ios_demo" / "ci" / "swift_chroot.sh"
PACKAGE = REPO / "ios_demo" / "EMOCore"


@pytest.fixture(scope="module")
def swift_test(mobile_artifacts, sample_pixels, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the Swift chroot needs root (CI runs as root; run 'sudo make swift-chroot' then the tests)")
    setup = subprocess.run([str(SCRIPT), "setup"], capture_output=True, text=True, timeout=1800)
    assert setup.returncode == 0, setup.stderr[-3000:]
    data = tmp_path_factory.mktemp("swift-data")
    shutil.copytree(mobile_artifacts, data / "artifacts")
    shutil.copytree(sample_pixels, data / "pixels")
    # the contract's own files (the chroot sees nothing of the host), and what Python reads of them
    shutil.copytree(conformance_data.CONFORMANCE, data / "contract" / "conformance")
    shutil.copy(conformance_data.CONTRACT / "vocabulary.json", data / "contract" / "vocabulary.json")
    conformance_data.write(data / "conformance")
    from emo.export.coreml import classifier_labels  # the keys the exporter gives Core ML's ClassifierConfig

    labels = json.loads(sidecars(mobile_artifacts)[0].read_text())["labels"]["names"]
    (data / "classifier-keys.json").write_text(json.dumps(classifier_labels(tuple(labels))))
    (data / "orientations.json").write_text(json.dumps(_orientations()))
    proc = subprocess.run(["nice", "-n", "10", str(SCRIPT), "test", str(PACKAGE), str(data)], capture_output=True,
                          text=True, timeout=1200)
    return proc, data


def _orientations() -> dict:
    """A small photo and what Pillow's ImageOps.exif_transpose (emo.data.load_image) makes of it for each EXIF
    orientation: EMOCore's Orientation must give the same pixels."""
    import numpy as np
    from PIL import Image, ImageOps

    rgb = np.random.default_rng(7).integers(0, 256, (3, 5, 3), dtype=np.uint8)  # 5 wide, 3 high
    expected = {}
    for orientation in range(1, 10):  # 9: not an orientation, left as it is
        image = Image.fromarray(rgb, "RGB")
        image.getexif()[0x0112] = orientation
        upright = np.asarray(ImageOps.exif_transpose(image))
        expected[str(orientation)] = {"width": upright.shape[1], "height": upright.shape[0],
                                      "rgb": upright.reshape(-1).tolist()}
    return {"width": 5, "height": 3, "rgb": rgb.reshape(-1).tolist(), "expected": expected}


def test_swift_test_passes(swift_test):
    proc, _ = swift_test
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    ran = [int(n) for n in re.findall(r"Executed (\d+) tests?, with 0 failures", output)]
    assert ran and max(ran) >= 24, output[-3000:]  # the last line counts every suite


def test_swift_checked_every_conformance_case(swift_test):
    """The Swift readers went through every case of both cases.json files and every mutant, and agreed (a case
    added to a cases.json is picked up without code)."""
    proc, data = swift_test
    conformance_data.assert_every_case_checked(proc.stdout + proc.stderr, data / "conformance")


@pytest.mark.parametrize("name", ["app-bench-ios-ok.json", "app-bench-ios-failed.json",
                                  "app-bench-ios-failed-bounds.json"])
def test_swift_results_are_the_schema_and_map_to_rows(swift_test, name):
    """What EMOCore writes is a valid app-bench/1 document, and emo-bench's one mapper reads it (as Android's), also
    for a hand-made request whose values are outside the schema's bounds."""
    from emo.runtime_bench.apple import map_ios_result
    from emo.runtime_bench.results import Artifact

    _, data = swift_test
    result = json.loads((data / "out" / name).read_text())
    app_result_contract.validate(result, name, "ios")  # the JSON Schema the reader uses
    row = map_ios_result(result, Artifact(data / "artifacts" / "x.mlpackage", None), {"iters": 5}, "UDID")
    assert row.device == {"target": "ios", "udid": "UDID", "model": "iPhone15,2", "manufacturer": "Apple",
                          "soc": "A16", "os": "iOS 18.1", "abi": "arm64"}
    if name.endswith("ok.json"):
        assert row.ok and row.latencies_ms == [2.0] * 5 and row.parity["status"] == "passed"
        assert row.settings["accelerator_used"] == ["ane", "cpu"] and row.settings["accelerator_nodes"] == {
            "ane": 310, "cpu": 4}
    elif name.endswith("bounds.json"):
        assert row.status == "failed: -emoBenchmark must be a file name inside Documents/emo-bench, not ''"
    else:
        assert row.status == "failed: model.mlpackage: no sidecar model.json next to it; copy emo-export's whole output"


# ------------------------------------------------------------------- the app's sources and project, without Xcode
APP = REPO / "ios_demo" / "App"


def _deployment_target() -> tuple[int, int]:
    pbxproj = (APP / "EMODemo.xcodeproj" / "project.pbxproj").read_text()
    targets = set(re.findall(r"IPHONEOS_DEPLOYMENT_TARGET = ([0-9.]+);", pbxproj))
    assert len(targets) == 1, targets
    spec = re.search(r'deploymentTarget: \{ iOS: "([0-9.]+)" \}', (APP / "project.yml").read_text()).group(1)
    assert targets == {spec}, (targets, spec)  # the committed project and the XcodeGen spec agree
    major, minor = targets.pop().split(".")[:2]
    return int(major), int(minor)


# APIs newer than the deployment target must sit inside `if #available(iOS N, *)` (Apple's availability annotations)
IOS_API_LEVELS = {"videoRotationAngle": (17, 0), "MLComputePlan": (17, 4), "isVideoRotationAngleSupported": (17, 0)}


def test_app_sources_guard_apis_newer_than_the_deployment_target():
    target = _deployment_target()
    problems = []
    for source in sorted((APP / "Sources").glob("*.swift")):
        lines = source.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            for name, level in IOS_API_LEVELS.items():
                if level > target and re.search(rf"\b{name}\b", line) and not line.lstrip().startswith("//"):
                    context = "\n".join(lines[max(0, number - 12):number])
                    guards = [tuple(map(int, g)) for g in re.findall(r"#available\(iOS (\d+)\.(\d+)", context)]
                    guards += [(int(g), 0) for g in re.findall(r"@available\(iOS (\d+), \*\)", context)]
                    if not any(g >= level for g in guards):
                        problems.append(f"{source.name}:{number}: {name} (iOS {level[0]}.{level[1]}) unguarded")
    assert not problems, problems


def test_camera_screen_is_reachable_and_pixels_are_drawn_safely():
    """A NavigationLink only navigates inside a NavigationStack; CGContext(data:) must get a pointer that outlives
    the drawing (withUnsafeMutableBytes), never `&array`, which is valid only for the call that creates the context."""
    app = (APP / "Sources" / "EMODemoApp.swift").read_text()
    assert "NavigationStack" in app and app.index("NavigationStack") < app.index("NavigationLink")
    for source in (APP / "Sources").glob("*.swift"):
        assert not re.search(r"CGContext\(\s*data:\s*&", source.read_text()), source.name


def test_info_plist_has_a_launch_screen_and_the_camera_reason():
    info = plistlib.loads((APP / "Info.plist").read_bytes())
    assert isinstance(info["UILaunchScreen"], dict)  # without it iOS letterboxes the app to a legacy screen size
    assert info["NSCameraUsageDescription"] and info["UIFileSharingEnabled"] is True
    assert info["CFBundleIdentifier"] == "$(PRODUCT_BUNDLE_IDENTIFIER)"


def test_xcode_project_lists_every_source_and_links_emocore():
    pbxproj = (APP / "EMODemo.xcodeproj" / "project.pbxproj").read_text()
    assert pbxproj.count("{") == pbxproj.count("}") and pbxproj.startswith("// !$*UTF8*$!")
    for source in (APP / "Sources").glob("*.swift"):
        assert f"path = {source.name};" in pbxproj and f"{source.name} in Sources" in pbxproj, source.name
    assert "XCLocalSwiftPackageReference" in pbxproj and 'relativePath = ../EMOCore;' in pbxproj
    assert "productName = EMOCore;" in pbxproj and "PRODUCT_BUNDLE_IDENTIFIER = org.emomobile.demo;" in pbxproj
    ids = re.findall(r"^\t\t([0-9A-F]{24}) (?:/\*.*?\*/ )?= \{", pbxproj, re.M)  # every object's definition
    assert len(ids) == len(set(ids)), "an object id is defined twice"
    for ref in set(re.findall(r"\b([0-9A-F]{24})\b", pbxproj)):
        assert ref in ids, f"{ref} is referenced but not defined"


def test_committed_xcode_project_is_current():
    """ios_demo/ci/make_xcodeproj.py writes the committed project.pbxproj; a source added without re-running it
    would be missing from the app target."""
    proc = subprocess.run(["python3", str(REPO / "ios_demo" / "ci" / "make_xcodeproj.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, "run python3 ios_demo/ci/make_xcodeproj.py and commit the project"
