"""The demo apps' benchmark result (``emo-mobile/app-bench/1``): one file per run, written by the Android core
(``org.emomobile.core.AppBenchResult``) and the iOS core (EMOCore's ``AppBenchResult``) alike, read by emo-bench
(``--device adb --runner app`` and ``--device ios``). Its JSON Schema is ``schemas/app-bench.schema.json``; this is its
one validator (the cores' tests validate what they write with the same schema).
"""

from __future__ import annotations

from pathlib import Path

from emo.contract import jsonio, schema
from emo.contract.jsonio import ContractError

SCHEMA = "emo-mobile/app-bench/1"
MAX_RESULT_BYTES = 64 << 20     # a million latencies
# what the apps of earlier versions wrote: refused with the fix (install the app of this version)
OLD_SCHEMAS = {"emo-mobile/android-bench/1": "android_demo/", "emo-mobile/ios-bench/1": "ios_demo/"}
FIX = "install the demo app of this emo-mobile version"


class ResultError(ContractError):
    """An app result emo-bench cannot use; the message names the field."""


def validate(data, where: str, platform: str | None = None) -> dict:
    """``data`` if it is an app result (of ``platform``'s app when given), else ``ResultError`` naming the field."""
    name = data.get("schema") if isinstance(data, dict) else None
    if name in OLD_SCHEMAS:
        raise ResultError(f"app result {where}: field 'schema' says the installed demo app writes {name} (an older "
                          f"app); emo-bench reads {SCHEMA}: build and install the app from this version's "
                          f"{OLD_SCHEMAS[name]}", "schema", "schema")
    with jsonio.reported_as(ResultError):
        schema.check("app-bench", data, f"app result {where}", FIX)
    if data["status"] == "ok" and not data["latencies_ms"]:
        raise ResultError(f"app result {where}: field 'latencies_ms' must be non-empty when status is 'ok'; {FIX}",
                          "latencies_ms", "length")
    if platform is not None and data["app"]["platform"] != platform:
        raise ResultError(f"app result {where}: field 'app.platform' must be '{platform}' (the {platform} target), "
                          f"not {data['app']['platform']!r}; {FIX}", "app.platform", "mismatch")
    return data


def loads(text: str | bytes, where: str, platform: str | None = None) -> dict:
    with jsonio.reported_as(ResultError):
        data = jsonio.loads(text, f"app result {where}")
    return validate(data, where, platform)


def read(path: Path, platform: str | None = None) -> dict:
    """An app's result file (pulled from the phone): bounded JSON, then ``validate``."""
    with jsonio.reported_as(ResultError):
        data = jsonio.read_json(Path(path), "app result", MAX_RESULT_BYTES)
    return validate(data, Path(path).name, platform)
