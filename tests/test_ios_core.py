"""ios_demo/EMOCore (Swift package) built and tested with `swift test` (Swift 6 from Debian 13's swiftlang, in the
chroot that ios_demo/ci/swift_chroot.sh sets up once per machine) against real exported artifacts and their bundled
examples. Foundation and XCTest only: Core ML, Vision and SwiftUI do not exist on Linux (the app target is Xcode's)."""

import json
import os
import re
import shutil
import subprocess

import pytest

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
    proc = subprocess.run(["nice", "-n", "10", str(SCRIPT), "test", str(PACKAGE), str(data)], capture_output=True,
                          text=True, timeout=1200)
    return proc, data


def test_swift_test_passes(swift_test):
    proc, _ = swift_test
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    ran = re.search(r"Executed (\d+) tests?, with 0 failures", output)
    assert ran and int(ran.group(1)) >= 6, output[-3000:]


def test_swift_bench_result_maps_to_a_bench_row(swift_test):
    from emo.runtime_bench.apple import map_ios_result
    from emo.runtime_bench.results import Artifact

    _, data = swift_test
    result = json.loads((data / "out" / "ios-bench-result.json").read_text())
    assert result["parity"]["status"] == "passed" and result["parity"]["max_abs_diff"] == 0
    row = map_ios_result(result, Artifact(data / "artifacts" / "x.mlpackage", None), {"iters": 3}, "UDID")
    assert row.status == "ok" and row.latencies_ms == [1.25, 1.5, 1.75] and row.summary["median"] == 1.5
