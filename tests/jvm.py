"""Compile android_demo/core with Debian's kotlinc (1.3) once per source change, and run its JUnit tests on the JVM;
check that the same sources compile with the Kotlin of the Gradle build (2.x, JetBrains' compiler from npm).

Compiled classes are cached under ``android_demo/core/build/`` (ignored by git), keyed by the sources' hash:
kotlinc 1.3 takes 10-60 s to start, so a repeat run of the tests reuses the classes.
"""

import hashlib
import re
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


def _sources() -> tuple[list[Path], str]:
    """The core's Kotlin sources (main and test) and their hash."""
    sources = sorted((CORE / "src").rglob("*.kt"))
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(CORE)).encode() + b"\0" + path.read_bytes())
    return sources, digest.hexdigest()[:16]


def compiled_core() -> Path:
    """The folder of compiled main + test classes for the current sources (compiled now if not cached)."""
    sources, digest = _sources()
    classes = CORE / "build" / f"classes-{digest}"
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


# JetBrains' kotlinc distribution, as npm's kotlin-compiler package ships it (make kotlinc-gradle installs it from
# android_demo/ci/kotlinc/package-lock.json); it brings its own stdlib and runs on Debian's Java 17
GRADLE_KOTLINC = REPO / "android_demo" / "ci" / "kotlinc" / "node_modules" / "kotlin-compiler"


def gradle_kotlin_version() -> str:
    """The Kotlin version of android_demo's Gradle build (its version catalog)."""
    catalog = (REPO / "android_demo" / "gradle" / "libs.versions.toml").read_text()
    return re.search(r'^kotlin = "([^"]+)"', catalog, re.M).group(1)


def missing_gradle_kotlinc(version: str) -> str | None:
    build = GRADLE_KOTLINC / "build.txt"
    if not build.is_file():
        return f"no Kotlin {version} compiler in {GRADLE_KOTLINC.parent.parent}; install it with 'make kotlinc-gradle'"
    found = build.read_text().strip()
    if not found.startswith(version + "-"):
        return (f"the Kotlin compiler in {GRADLE_KOTLINC} is {found}, the Gradle build uses {version}: set that "
                f"version in android_demo/ci/kotlinc/package.json, then 'npm install --package-lock-only' there")
    return None


def compile_with_gradle_kotlin(version: str) -> subprocess.CompletedProcess | None:
    """Compile the core's main and test sources as the Gradle build would (its language and API version), with
    warnings as errors (a stdlib call deprecated now is removed later); None when these sources already passed."""
    sources, digest = _sources()
    stamp = CORE / "build" / f"kotlin-{version}-{digest}.ok"
    if stamp.exists():
        return None
    level = ".".join(version.split(".")[:2])
    cp = ":".join(str(JARS / jar) for jar in CLASSPATH if jar != "kotlin-stdlib.jar")
    out = CORE / "build" / f"kotlin-{version}-classes"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run(["nice", "-n", "10", "bash", str(GRADLE_KOTLINC / "bin" / "kotlinc"), "-Werror",
                           "-language-version", level, "-api-version", level, "-jvm-target", "17", "-cp", cp,
                           "-d", str(out), *map(str, sources)], capture_output=True, text=True, timeout=900)
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode == 0:
        for old in (CORE / "build").glob(f"kotlin-{version}-*.ok"):
            old.unlink()
        stamp.write_text("ok\n")
    return proc
