"""The artifact contract (emo.contract): the conformance vectors, the schemas against the vocabulary, bounded JSON.

The conformance folder is read the same way by the Kotlin (tests/test_android_core.py), Swift (tests/test_ios_core.py)
and JavaScript (tests/test_web_demo.py) tests: a case is added once and checked in four languages.
"""

import json
from pathlib import Path

import pytest

from emo.contract import app_result, examples, jsonio, schema, sidecar, vocabulary
from emo.contract.jsonio import ContractError

CONFORMANCE = Path(examples.__file__).with_name("conformance")
READERS = {"sidecar": sidecar.loads, "examples": examples.loads, "app-bench": app_result.loads}


def _cases(kind):
    manifest = json.loads((CONFORMANCE / kind / "cases.json").read_text(encoding="utf-8"))
    return [pytest.param(kind, case, id=f"{kind}/{case['file']}") for case in manifest["cases"]]


ALL_CASES = [p for kind in READERS for p in _cases(kind)]


def test_the_folder_has_the_cases_the_issue_asks_for():
    assert len(ALL_CASES) >= 40
    assert {case["reason"] for _, case in (p.values for p in ALL_CASES) if not case["valid"]} <= set(jsonio.REASONS)
    listed = {f"{kind}/{case['file']}" for kind, case in (p.values for p in ALL_CASES)}
    on_disk = {str(p.relative_to(CONFORMANCE)) for p in CONFORMANCE.glob("*/*/*.json")}
    assert listed == on_disk, "every case file is in its cases.json, and every listed file exists"


@pytest.mark.parametrize("kind, case", ALL_CASES)
def test_conformance(kind, case):
    text = (CONFORMANCE / kind / case["file"]).read_bytes()
    if case["valid"]:
        READERS[kind](text, case["file"])
        return
    with pytest.raises(ContractError) as caught:
        READERS[kind](text, case["file"])
    error = caught.value
    assert (error.field, error.reason) == (case["field"], case["reason"]), str(error)
    lines = str(error).splitlines()
    assert len(lines) == 1 and (case["field"] == "" or f"'{case['field']}'" in lines[0]), str(error)


def test_schemas_name_the_vocabulary():
    """The schema files and vocabulary.py are one table: the enums agree, and vocabulary.json is up to date."""
    side = schema.schema("sidecar")["properties"]
    assert side["backend"]["enum"] == list(vocabulary.FORMATS)
    assert side["precision"]["enum"] == list(vocabulary.PRECISIONS)
    assert side["variant"]["enum"] == list(vocabulary.VARIANTS)
    assert side["input"]["properties"]["layout"]["enum"] == list(vocabulary.LAYOUTS)
    assert side["output"]["properties"]["kind"]["enum"] == list(vocabulary.OUTPUT_KINDS)
    assert side["input"]["properties"]["preprocessing"]["properties"]["interpolation"]["enum"] == list(
        vocabulary.INTERPOLATIONS)
    ex = schema.schema("examples")["properties"]
    assert ex["precision"]["enum"] == list(vocabulary.PRECISIONS)
    assert set(ex["tolerance"]["properties"]) == {n for t in examples.TOLERANCES.values() for n in t} | {
        "top5_agreement"}
    assert json.loads(vocabulary.VOCABULARY_JSON.read_text()) == vocabulary.as_json(), \
        "vocabulary.json is stale: python -m emo.contract.vocabulary"


def test_the_model_table_is_the_contracts():
    from emo.model import VARIANTS

    assert tuple(VARIANTS) == vocabulary.VARIANTS


def test_every_schema_is_a_valid_json_schema():
    from jsonschema import Draft202012Validator

    for kind in schema.SCHEMA_FILES:
        if (Path(schema.__file__).with_name("schemas") / schema.SCHEMA_FILES[kind]).exists():
            Draft202012Validator.check_schema(schema.schema(kind))


@pytest.mark.parametrize("text, reason", [
    ("[" * 100_000 + "]" * 100_000, "depth"),      # deeper than Python's own recursion limit: no RecursionError
    ('{"a": ' * 40 + "1" + "}" * 40, "depth"),
    ('{"n": ' + "9" * 40 + "}", None),             # a 40-digit integer is read as a float, as JavaScript reads it
    ('{"n": ' + "9" * 5000 + "}", "json"),         # 5000 digits overflow to infinity (no int() ValueError)
    ('{"n": NaN}', "json"), ('{"n": -Infinity}', "json"), ('{"n": 1e400}', "json"), (b'{"n": "\xff"}', "json"),
])
def test_bounded_json(text, reason):
    if reason is None:
        assert jsonio.loads(text, "x")["n"] == float("9" * 40)
        return
    with pytest.raises(ContractError) as caught:
        jsonio.loads(text, "x")
    assert caught.value.reason == reason


def test_writer_refuses_what_its_readers_refuse(tmp_path):
    """The writer validates with the readers' validator, and never writes a file larger than they accept."""
    good = json.loads((CONFORMANCE / "sidecar" / "good" / "fixture_onnx_fp32.json").read_text())
    path = tmp_path / "emo_1m_onnx_fp32.json"
    sidecar.write(path, good)
    assert sidecar.read(tmp_path / "emo_1m_onnx_fp32.onnx").labels[0] == "0_t-shirt_top"
    with pytest.raises(sidecar.SidecarError, match="labels.names"):
        sidecar.write(path, {**good, "labels": {"names": ["x\ny"] * 10}})
    huge = {**good, "num_classes": 100_000, "output": {**good["output"], "shape": [1, 100_000]},
            "labels": {"names": ["é" * 256] * 100_000}}
    with pytest.raises(sidecar.SidecarError, match="MiB, more than its readers accept"):
        sidecar.write(path, huge)
    assert json.loads(path.read_text()) == good and not list(tmp_path.glob(".*"))


def test_label_fallback_and_weights_id():
    good = json.loads((CONFORMANCE / "sidecar" / "good" / "minimal_random_init.json").read_text())
    side = sidecar.validate(good, "m.json")
    assert side.label(7) == "class 7" and side.weights_id == "random-init (seed 0)"
    assert side.input.preprocessing.crop_pct == 0.875 and side.input.shape == [1, 3, 112, 112]


# ------------------------------------------------------------------------------------------------------ fuzzing
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats()
                    | st.text(max_size=12), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
GOOD = {"sidecar": "sidecar/good/int8_tflite_quantized_io.json", "examples": "examples/good/fp32_u8_inputs.json"}


def _paths(value, prefix=()):
    """Every path into a JSON document (so the fuzz can replace any value, at any depth)."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _replaced(document, path, value):
    if not path:
        return value
    node = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return document


@FUZZ
@given(kind=st.sampled_from(sorted(GOOD)), data=st.data(), value=JSON)
def test_fuzz_any_field_any_value(kind, data, value):
    """Any value at any place of a valid sidecar or examples file: a valid result or one ContractError line (no
    other exception), and an accepted examples file still gives a verdict."""
    document = json.loads((CONFORMANCE / GOOD[kind]).read_text())
    path = data.draw(st.sampled_from(list(_paths(document))))
    text = json.dumps(_replaced(document, path, value))  # NaN and Infinity are written as such: readers refuse them
    try:
        result = READERS[kind](text, "fuzz.json")
    except ContractError as e:
        assert len(str(e).splitlines()) == 1 and e.reason in jsonio.REASONS
        return
    if kind == "examples":
        outputs = [e["output"] for e in result["examples"]]
        assert examples.agreement(result, outputs)["status"] == "passed"


@FUZZ
@given(kind=st.sampled_from(sorted(GOOD)), cuts=st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=3)),
                                                         min_size=1, max_size=4))
def test_fuzz_bytes(kind, cuts):
    """Random byte edits of a valid file (truncations, stray bytes, broken UTF-8): valid or one ContractError."""
    raw = bytearray((CONFORMANCE / GOOD[kind]).read_bytes())
    for position, replacement in cuts:
        position %= len(raw) + 1
        raw[position:position + len(replacement)] = replacement
    try:
        READERS[kind](bytes(raw), "fuzz.json")
    except ContractError as e:
        assert len(str(e).splitlines()) == 1
