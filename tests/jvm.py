"""Compile android_demo/core with Debian's kotlinc (1.3) once per source change, and run its JUnit tests on the JVM.

Compiled classes are cached under ``android_demo/core/build/`` (ignored by git), keyed by the sources' hash:
kotlinc 1.3 takes 10-60 s to start, so a repeat run of the tests reuses the classes.
"""

import hashlib
import shutil
import subprocess
from pathlib import Path

from emo_testutil import REPO

CORE = REPO / "android_demo" / "core"
JARS = Path("/usr/share/java")
# org.json from libandroid-json-java: the same API Android ships (the core uses nothing else outside Kotlin's stdlib)
CLASSPATH = ["kotlin-stdlib.jar", "com.android.json.jar", "junit4.jar", "hamcrest-core.jar"]


def missing_tools() -> str | None:
    if shutil.which("kotlinc") is None or shutil.which("java") is None:
        return "kotlinc/java not found; install Debian's kotlin with 'make sysdeps'"
    absent = [jar for jar in CLASSPATH if not (JARS / jar).exists()]
    if absent:
        return f"{', '.join(absent)} not in {JARS}; install junit4 and libandroid-json-java with 'make sysdeps'"
    return None


def compiled_core() -> Path:
    """The folder of compiled main + test classes for the current sources (compiled now if not cached)."""
    sources = sorted((CORE / "src").rglob("*.kt"))
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(CORE)).encode() + b"\0" + path.read_bytes())
    classes = CORE / "build" / f"classes-{digest.hexdigest()[:16]}"
    if (classes / ".complete").exists():
        return classes
    tmp = classes.with_name(classes.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cp = ":".join(str(JARS / jar) for jar in CLASSPATH)
    proc = subprocess.run(["nice", "-n", "10", "kotlinc", "-nowarn", "-jvm-target", "1.8", "-cp", cp, "-d", str(tmp),
                           *map(str, sources)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError("kotlinc failed:\n" + proc.stdout[-4000:] + proc.stderr[-4000:])
    (tmp / ".complete").write_text("ok\n")
    tmp.rename(classes)
    for old in (CORE / "build").glob("classes-*"):  # classes of older sources
        if old != classes:
            shutil.rmtree(old, ignore_errors=True)
    return classes


def run_junit(classes: Path, test_class: str, properties: dict[str, str]) -> subprocess.CompletedProcess:
    cp = ":".join([str(classes), *(str(JARS / jar) for jar in CLASSPATH)])
    return subprocess.run(["java", *(f"-D{k}={v}" for k, v in properties.items()), "-cp", cp,
                           "org.junit.runner.JUnitCore", test_class], capture_output=True, text=True, timeout=600)
