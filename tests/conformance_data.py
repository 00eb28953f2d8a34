"""What the Kotlin and Swift cores' conformance tests compare themselves with (tests/test_android_core.py and
tests/test_ios_core.py write it next to the data they pass in): Python's reading of every valid conformance case
(``readings.json``: the typed values ``emo.contract`` gives, so "parses" means "parses to the same values"), and the
parity policy and limits of ``emo.contract`` (``policy.json``). The cases themselves are read by the cores from
``emo/contract/conformance`` directly, so a new case needs no change here.
"""

import copy
import json
import random
from pathlib import Path

import numpy as np

from emo.contract import examples, jsonio, schema, sidecar, vocabulary
from emo.contract.jsonio import ContractError

CONTRACT = Path(examples.__file__).parent
CONFORMANCE = CONTRACT / "conformance"
KINDS = ("sidecar", "examples")


def cases(kind: str, conformance: Path = CONFORMANCE) -> list[dict]:
    return json.loads((conformance / kind / "cases.json").read_text(encoding="utf-8"))["cases"]


def _sidecar_reading(side: sidecar.Sidecar) -> dict:
    n = side.num_classes
    return {
        "variant": side.variant, "backend": side.backend, "precision": side.precision, "file": side.file,
        "sha256": side.sha256, "size_bytes": side.size_bytes, "input_name": side.input.name,
        "layout": side.input.layout, "batch": side.input.batch or 0, "height": side.input.height,
        "width": side.input.width, "mean": list(side.input.normalization.mean),
        "std": list(side.input.normalization.std), "in_graph": side.input.normalization.in_graph,
        "crop_pct": side.input.preprocessing.crop_pct, "interpolation": side.input.preprocessing.interpolation,
        "output_name": side.output_name, "output_kind": side.output_kind, "num_classes": n,
        "labels": list(side.labels or ()), "examples": side.examples,
        "io": {k: {"dtype": v.dtype, "scale": v.scale, "zero_point": v.zero_point}
               for k, v in side.quantized_io.items()} if side.quantized_io else None,
        "label_of": [side.label(i) for i in (0, n - 1, n, -1)],
    }


def _examples_reading(data: dict) -> dict:
    def tensor(key: str, array: np.ndarray) -> dict:
        flat = np.asarray(array, dtype=np.float32).ravel()
        # summed in index order in float64, as the cores sum (numpy's sum is pairwise; cumsum is sequential); as
        # text, so that a JSON reader of the test's own (Foundation's rounds some digits off) cannot blur a difference
        return {f"{key}_size": int(flat.size), f"{key}_sum": repr(float(np.cumsum(flat.astype(np.float64))[-1])),
                f"{key}_last": repr(float(flat[-1]))}

    return {
        "artifact": data.get("artifact", ""), "precision": data.get("precision", ""),
        "tolerance": [[name, bound] for name, bound in data["tolerance"].items()],  # pairs: the order is checked
        "examples": [{"source": e.get("source", ""), "input_shape": list(e["input"].shape),
                      "top5": [t["index"] for t in e["top5"]], **tensor("input", e["input"]),
                      **tensor("output", e["output"])} for e in data["examples"]],
    }


def readings(conformance: Path = CONFORMANCE) -> dict:
    """Python's reading of every valid case, by kind and file."""
    read = {"sidecar": lambda text, name: _sidecar_reading(sidecar.loads(text, name)),
            "examples": lambda text, name: _examples_reading(examples.loads(text, name))}
    return {kind: {case["file"]: read[kind]((conformance / kind / case["file"]).read_bytes(), case["file"])
                   for case in cases(kind, conformance) if case["valid"]} for kind in KINDS}


def policy() -> dict:
    """The parity policy and the limits every reader applies."""
    side = schema.schema("sidecar")
    return {
        "tolerances": [[precision, [[name, bound] for name, bound in policy.items()]]  # pairs: the order is checked
                       for precision, policy in examples.TOLERANCES.items()],
        "upper_bounds": list(examples.UPPER_BOUNDS),
        "tolerance_names": list(schema.schema("examples")["properties"]["tolerance"]["properties"]),
        "quantized_dtypes": side["$defs"]["quantized_io"]["properties"]["dtype"]["enum"],
        "sidecar_schema": sidecar.SCHEMA, "examples_schema": examples.SCHEMA,
        "max_sidecar_bytes": sidecar.MAX_SIDECAR_BYTES, "max_examples_bytes": examples.MAX_EXAMPLES_BYTES,
        "max_input_elements": sidecar.MAX_INPUT_ELEMENTS, "max_tensor_elements": examples.MAX_TENSOR_ELEMENTS,
        "crop_pct": sidecar.CROP_PCT, "max_depth": jsonio.MAX_DEPTH, "reasons": list(jsonio.REASONS),
        "vocabulary": vocabulary.as_json(),
    }


# ------------------------------------------------------------------------------------- differential fuzzing
# Values a mutation puts anywhere in a valid document: every JSON type, the edges of the schema's ranges and lengths,
# words of the vocabulary, blank and control-character text, base64 of every padding. No string ends with "\n":
# Python's `re` lets "$" match before a final newline, so its schema patterns accept "cat\n" as a label (reported
# upstream); the Kotlin and Swift readers refuse it, as the rule means. No lone surrogate ("\ud800"): a Swift String
# cannot hold one, so the Swift core reads it as U+FFFD (the same verdict under every rule, another reading).
POOL = [None, True, False, 0, -1, 1, 2, 3, 0.5, 1.0, 112.0, 112.5, 1e12, -0.0, 4096, 4097, 1024, 1025, 100000, 100001,
        "", " ", "\u00a0", "\ufeff", "\u2003x", "batch", "x", "fp32", "int8", "w8a16", "coreml", "NHWC", "image",
        "a" * 300, "a" * 256, "\u00e9" * 256, "\U0001f600" * 200, "tab\there", "x\u0085y", "x\u2028y", "\x1b[31m",
        "cafe\u0301", "\u212a", "M.ONNX.examples.json",
        "../x.onnx", "m.onnx", "m.ONNX", ".", "..", "x.examples.json", "a/x.examples.json", "A" * 64, "a" * 64,
        "ABC=", "AAAA", "AB==", "AAA", "!!", "u8", "f32le", "float32", "int16", "uint8", [], {}, [1, 2, 3],
        [1, 3, 112, 112], [1, 112, 112, 3], ["batch", 3, 8, 8], [1, 10], [0.1, 0.2, 0.3], {"names": []},
        {"names": ["a"] * 10}, {"io": {}}, {"random_init": True}, {"random_init": True, "seed": -1},
        {"max_abs_diff": 1e-4}, {"cosine": 0.5}, 1e-5, 0.999, 255, 255.0, 7, 99999, 268435456, 268435457]


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list) and len(value) <= 12:
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _mutate(document, rng: random.Random):
    """``document`` with one value replaced by one of POOL, or one key removed."""
    document = copy.deepcopy(document)
    path = rng.choice([p for p in _paths(document) if p])
    node = document
    for part in path[:-1]:
        node = node[part]
    if isinstance(node, dict) and rng.random() < 0.25:
        del node[path[-1]]
    else:
        node[path[-1]] = copy.deepcopy(rng.choice(POOL))
    return document


def write_fuzz(folder: Path, count: int, seed: int = 21) -> dict[str, int]:
    """``count`` mutants per kind of the valid conformance files (one to three mutations each, so several defects
    meet and the first one must be the same), as a conformance folder ``folder/conformance`` whose cases are what
    the Python validator says, with ``folder/readings.json``. Deterministic for a seed."""
    rng = random.Random(seed)
    loads = {"sidecar": sidecar.loads, "examples": examples.loads}
    python_failures = []
    for kind in KINDS:
        goods = [json.loads((CONFORMANCE / kind / c["file"]).read_text(encoding="utf-8"))
                 for c in cases(kind) if c["valid"]]
        target = folder / "conformance" / kind
        (target / "bad").mkdir(parents=True, exist_ok=True)
        manifest = []
        for i in range(count):
            document = rng.choice(goods)
            for _ in range(rng.choice((1, 1, 2, 3))):
                document = _mutate(document, rng)
            text = json.dumps(document, ensure_ascii=rng.random() < 0.5)
            name = f"bad/mutant_{i:04d}.json"
            (target / name).write_text(text, encoding="utf-8")
            try:
                loads[kind](text.encode("utf-8"), name)
                manifest.append({"file": name, "valid": True})
            except ContractError as e:
                manifest.append({"file": name, "valid": False, "field": e.field, "reason": e.reason})
            except Exception as e:  # noqa: BLE001 - Python has no verdict to compare with: left out, and listed
                (target / name).unlink()
                python_failures.append(f"{kind}/{name}: {type(e).__name__}: {e}")
        (target / "cases.json").write_text(json.dumps({"kind": kind, "cases": manifest}), encoding="utf-8")
    # a tensor shape of integral floats ([1, 3.0, 2, 2]) passes the schema, then numpy's reshape raises TypeError in
    # emo.contract.examples (reported); the cores read it as [1, 3, 2, 2]
    (folder / "python_failures.json").write_text(json.dumps(python_failures, indent=1), encoding="utf-8")
    (folder / "readings.json").write_text(json.dumps(readings(folder / "conformance")), encoding="utf-8")
    return {kind: len(cases(kind, folder / "conformance")) for kind in KINDS}


def write(folder: Path, fuzz: int = 400) -> Path:
    """``readings.json``, ``policy.json`` and ``fuzz/`` (``fuzz`` mutants per kind) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "readings.json").write_text(json.dumps(readings()), encoding="utf-8")
    (folder / "policy.json").write_text(json.dumps(policy()), encoding="utf-8")
    write_fuzz(folder / "fuzz", fuzz)
    return folder


def assert_every_case_checked(output: str, folder: Path) -> dict[str, int]:
    """A core's test output says "conformance: KIND N cases of DIR agree" for each kind of the contract's folder and
    of the mutants in ``folder`` (what ``write`` made); N must be every case of that cases.json."""
    import re

    seen = {(kind, Path(where).parent.name): int(n)
            for kind, n, where in re.findall(r"conformance: (\w+) (\d+) cases of (\S+) agree", output)}
    want = {}
    for kind in KINDS:
        want[(kind, "contract")] = len(cases(kind))
        want[(kind, "fuzz")] = len(cases(kind, folder / "fuzz" / "conformance"))
    assert seen == want, (seen, want, output[-3000:])
    return {f"{kind}/{where}": n for (kind, where), n in seen.items()}
