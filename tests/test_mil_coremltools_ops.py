"""coremltools' own per-op tests, run against our MIL interpreter instead of the Core ML runtime.

The coremltools authors ship per-op tests with hand-computed expected outputs inside the installed package
(``coremltools/converters/mil/mil/ops/tests/iOS14 ... iOS18``). Each builds a MIL program and hands it to their
harness ``run_compare_builder``, which converts it and, on macOS only, runs it in Core ML and compares. Here the
cases are enumerated from their own ``parametrize`` marks (nothing is copied into this repository) and the harness
is replaced: their code builds and converts the program exactly as on a Mac (mlprogram, the case's deployment
target, fp16 and fp32 compute precision), the ``.mlpackage`` is saved, executed by ``emo.export.mil_interpreter``,
and every output is compared with the case's ``expected_outputs`` at the tolerance their ``compare_backend``
applies on the CPU (the case's atol/rtol in fp32; ``max(100 atol, 0.5)`` and ``max(100 rtol, 0.05)`` in fp16).

Outcomes: pass; fail (a wrong value, shape or dtype, or an interpreter crash); skipped "unsupported: ..." when the
interpreter refuses an op or a parameter by name (``MILUnsupportedError``), never a silent pass. Selected are the
classes of the ops the interpreter implements (``SELECTED``); a case whose program never reaches the harness
(a builder error the test expects) is skipped as "no program".
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import itertools
import random
import sys
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")

from coremltools.converters import _converters_entry  # noqa: E402
from coremltools.converters.mil.mil.ops.tests import testing_utils as their_harness  # noqa: E402
from coremltools.converters.mil.testing_reqs import BackendConfig  # noqa: E402

from emo.export.mil_interpreter import MILProgram, MILUnsupportedError  # noqa: E402

pytestmark = pytest.mark.slow

_TESTS = "coremltools.converters.mil.mil.ops.tests"

# (module under _TESTS, class, the op it tests). A class that tests several ops through a ``mode`` or
# ``op_name`` parameter names a dict {mode: op} (key None: its methods without that parameter); modes not in it
# are left out (ops the interpreter does not implement).
_UNARY = {m: m for m in ("cast", "erf", "exp", "rsqrt", "sqrt", "square")}
_BINARY = {m: m for m in ("add", "sub", "mul", "real_div", "maximum", "minimum", "pow")}
_REDUCE = {m: f"reduce_{m}" for m in ("mean", "sum", "max")}
SELECTED: list[tuple[str, str, str | dict[str, str]]] = [
    ("iOS14.test_activation", "TestGeLU", "gelu"),
    ("iOS14.test_activation", "TestReLU", "relu"),
    ("iOS14.test_activation", "TestSigmoid", "sigmoid"),
    ("iOS14.test_activation", "TestSiLU", "silu"),
    ("iOS14.test_activation", "TestSoftmax", "softmax"),
    ("iOS14.test_conv", "TestConv", "conv"),
    ("iOS14.test_elementwise_binary", "TestElementwiseBinary", _BINARY),
    ("iOS14.test_elementwise_unary", "TestElementwiseUnary", _UNARY),
    ("iOS14.test_linear", "TestLinear", "linear"),
    ("iOS14.test_linear", "TestMatMul", "matmul"),
    ("iOS14.test_normalization", "TestNormalizationBatchNorm", "batch_norm"),
    ("iOS14.test_normalization", "TestNormalizationLayerNorm", "layer_norm"),
    ("iOS14.test_pool", "TestAvgPool", "avg_pool"),
    ("iOS14.test_reduction", "TestReduction", _REDUCE),
    ("iOS14.test_tensor_operation", "TestPad", "pad"),
    ("iOS14.test_tensor_operation", "TestIdentity", "identity"),
    ("iOS14.test_tensor_operation", "TestConcat", "concat"),
    ("iOS14.test_tensor_transformation", "TestConcat", "concat"),
    ("iOS14.test_tensor_transformation", "TestDepthToSpace", "depth_to_space"),
    ("iOS14.test_tensor_transformation", "TestSpaceToDepth", "space_to_depth"),
    ("iOS14.test_tensor_transformation", "TestPixelShuffle", "pixel_shuffle"),
    ("iOS14.test_tensor_transformation", "TestExpandDims", "expand_dims"),
    ("iOS14.test_tensor_transformation", "TestReshape", "reshape"),
    ("iOS14.test_tensor_transformation", "TestSliceByIndex", "slice_by_index"),
    ("iOS14.test_tensor_transformation", "TestSqueeze", "squeeze"),
    ("iOS14.test_tensor_transformation", "TestTranspose", "transpose"),
    ("iOS15.test_tensor_transformation", "TestReshape", "reshape"),
    ("iOS16.test_constexpr_ops", "TestConstexprAffineDequantize", "constexpr_affine_dequantize"),
    ("iOS16.test_tensor_transformation", "TestPixelUnshuffle", "pixel_unshuffle"),
    ("iOS17.test_conv", "TestConv", "conv"),
    ("iOS17.test_elementwise_unary", "TestElementwiseUnary", {**_UNARY, None: "cast"}),
    ("iOS17.test_linear", "TestLinear", "linear"),
    ("iOS17.test_linear", "TestMatMul", "matmul"),
    ("iOS17.test_normalization", "TestNormalizationBatchNorm", "batch_norm"),
    ("iOS17.test_normalization", "TestNormalizationLayerNorm", "layer_norm"),
    ("iOS17.test_quantization", "TestQuantize", "quantize"),
    ("iOS17.test_quantization", "TestDequantize", "dequantize"),
    ("iOS17.test_tensor_transformation", "TestReshape", "reshape"),
    ("iOS17.test_tensor_transformation", "TestExpandDims", "expand_dims"),
    ("iOS17.test_tensor_transformation", "TestSqueeze", "squeeze"),
    ("iOS17.test_tensor_transformation", "TestTranspose", "transpose"),
    ("iOS17.test_tensor_transformation", "TestSliceByIndex", "slice_by_index"),
    ("iOS18.test_compression", "TestConstexprBlockwiseDequantize", "constexpr_blockwise_shift_scale"),
]


@dataclass(frozen=True)
class Case:
    op: str
    module: object
    cls: type
    method: str
    kwargs: dict
    skip: str | None = None

    @property
    def id(self) -> str:
        parts = [f"{k}={_short(v)}" for k, v in self.kwargs.items() if k != "compute_unit"]
        where = self.module.__name__[len(_TESTS) + 1:]
        return f"{self.op}:{where}.{self.cls.__name__}.{self.method}[{','.join(parts)}]"


def _short(value) -> str:
    if isinstance(value, BackendConfig):
        return f"{value.precision}-{value.opset_version.name}"
    text = (getattr(value, "__name__", None) or str(value)).replace(" ", "")
    return text if len(text) <= 40 else f"{text[:32]}~{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def _parameter_sets(function) -> tuple[list[dict], str | None]:
    """Every combination of the function's ``parametrize`` marks (their cartesian product), and a skip reason."""
    grids, skip = [], None
    for mark in getattr(function, "pytestmark", []):
        if mark.name == "skip":
            skip = mark.kwargs.get("reason", "skipped by coremltools")
        if mark.name == "skipif" and mark.args and mark.args[0] is True:
            skip = mark.kwargs.get("reason", "skipped by coremltools")
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], mark.args[1]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        rows = []
        for value in values:
            value = value.values if hasattr(value, "values") and hasattr(value, "marks") else value
            value = value if len(names) > 1 else (value,)
            rows.append(dict(zip(names, value, strict=True)))
        grids.append(rows)
    combos = [dict(kw for part in combo for kw in part.items()) for combo in itertools.product(*grids)]
    return combos, skip


def _ml_program_backends(backend) -> list[BackendConfig]:
    """Their backend value as ML program configs at its deployment target, fp16 and fp32 (no neuralnetwork)."""
    if not isinstance(backend, BackendConfig) or backend.backend != "mlprogram":
        return []
    return [BackendConfig(backend="mlprogram", precision=p, opset_version=backend.opset_version)
            for p in ("fp16", "fp32")]


def _cases() -> list[Case]:
    cases: dict[str, Case] = {}
    for module_name, class_name, ops in SELECTED:
        module = importlib.import_module(f"{_TESTS}.{module_name}")
        cls = getattr(module, class_name)
        for method in sorted(m for m in dir(cls) if m.startswith("test")):
            function = getattr(cls, method)
            parameters = set(inspect.signature(inspect.unwrap(function)).parameters) - {"self"}
            if "backend" not in parameters:
                continue  # builder or type-inference tests: no program reaches a runtime
            combos, skip = _parameter_sets(function)
            for kwargs in combos:
                if set(kwargs) != parameters:
                    continue  # a fixture we do not provide
                if kwargs.get("compute_unit", ct.ComputeUnit.CPU_ONLY) != ct.ComputeUnit.CPU_ONLY:
                    continue  # the interpreter stands for the CPU; other units only widen the tolerance
                op = ops if isinstance(ops, str) else ops.get(kwargs.get("mode", kwargs.get("op_name")))
                if op is None:
                    continue
                for backend in _ml_program_backends(kwargs["backend"]):
                    case = Case(op, module, cls, method, {**kwargs, "backend": backend}, skip)
                    cases.setdefault(case.id, case)
    return list(cases.values())


def _sample(cases: list[Case], limit: int) -> list[Case]:
    """At most ``limit`` cases of each test method, drawn at random (seeded by the method's name, so the
    draw is the same on every run) from its full parameter grid: the grids multiply to thousands of cases."""
    by_method: dict[tuple, list[Case]] = {}
    for case in cases:
        by_method.setdefault((case.module.__name__, case.cls.__name__, case.method), []).append(case)
    kept = set()
    for key, group in by_method.items():
        chosen = group if len(group) <= limit else random.Random(".".join(key)).sample(group, limit)
        kept.update(c.id for c in chosen)
    return [c for c in cases if c.id in kept]


ALL_CASES = _cases()
CASES_PER_METHOD = 24  # `pytest --coremltools-full-grid` runs every case (about 2,800; 5 minutes here)


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        full = metafunc.config.getoption("--coremltools-full-grid")
        cases = ALL_CASES if full else _sample(ALL_CASES, CASES_PER_METHOD)
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


def _compare(outputs: list, expected: list, tolerance: str, atol: float, rtol: float, shapes: bool = True) -> None:
    """Their ``compare_backend`` on the CPU: fp16 widens the tolerance to max(100 atol, 0.5), max(100 rtol, 0.05)."""
    if tolerance == "fp16":
        atol, rtol = max(atol * 100.0, 5e-1), max(rtol * 100.0, 5e-2)
    assert len(outputs) == len(expected), f"{len(outputs)} outputs, {len(expected)} expected"
    for got, want in zip(outputs, expected, strict=True):
        if isinstance(got, dict):
            assert got == want
            continue
        got, want = np.asarray(got), np.asarray(want)
        if shapes and not (want.shape == () and got.shape == (1,)):  # Core ML has no scalar outputs (theirs)
            assert got.shape == want.shape, f"shape {got.shape}, expected {want.shape}"
        np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)


def _holds_fp16(program: MILProgram) -> bool:
    fp16 = 10  # MIL DataType FLOAT16
    values = [v for op in program.block.operations for v in op.outputs]
    return any(v.type.WhichOneof("type") == "tensorType" and v.type.tensorType.dataType == fp16 for v in values)


def _interpreter_harness(tmp_path, compared: list):
    """Their ``run_compare_builder`` with our prediction; ``compared`` collects the tolerance of each
    comparison made (a case with none is not counted as a pass)."""
    original = their_harness.run_compare_builder

    def run_compare_builder(build, input_placeholders, input_values=None, expected_output_types=None,
                            expected_outputs=None, compute_unit=ct.ComputeUnit.CPU_ONLY, frontend_only=False,
                            backend=None, atol=1e-04, rtol=1e-05, inputs=None, also_compare_shapes=True,
                            converter=ct.convert, pass_pipeline=None, pred_iters=None):
        # Their own code builds, type-checks and converts the program (ct.convert, mlprogram, the backend's
        # precision and deployment target); only the prediction is ours.
        mlmodel = original(build, input_placeholders, input_values, expected_output_types, expected_outputs,
                           compute_unit=compute_unit, frontend_only=True, backend=backend, atol=atol, rtol=rtol,
                           inputs=inputs, also_compare_shapes=also_compare_shapes, converter=converter,
                           pass_pipeline=pass_pipeline)
        if frontend_only:  # the case inspects the converted model itself; no prediction asked for
            return mlmodel
        if pred_iters is not None or any(isinstance(i, ct.ImageType) for i in inputs or ()):
            pytest.skip("unsupported: stateful and image-input programs are not run by this harness")
        path = tmp_path / f"program{len(compared)}.mlpackage"
        mlmodel.save(str(path))
        try:
            program = MILProgram(path)
            result = program.run(dict(input_values or {}))
        except MILUnsupportedError as error:
            pytest.skip(f"unsupported: {error}")
        # A case that feeds fp16 data (an fp16 input or weight) makes an fp16 program even when converted at
        # fp32; it is compared at their fp16 tolerance. Their harness keys the tolerance on the conversion
        # precision alone, and their CI converts at fp16 only (fp32 cases need INCLUDE_MIL_FP32_UNIT_TESTS=1).
        tolerance = "fp16" if backend.precision == "fp16" or _holds_fp16(program) else "fp32"
        if expected_outputs is None:
            pytest.skip("no expected outputs: the program ran, there is nothing to compare")
        expected = expected_outputs if isinstance(expected_outputs, list) else [expected_outputs]
        _compare(list(result.values()), expected, tolerance, atol, rtol, also_compare_shapes)
        compared.append(tolerance)
        return mlmodel

    return run_compare_builder


def test_coremltools_op_case(case: Case, tmp_path, monkeypatch, record_property):
    if case.skip:
        pytest.skip(case.skip)
    seen: list[str] = []
    # the test modules imported the harness by name (a subclass's methods may live in an older iOS module):
    # replace it wherever they look it up
    harness = _interpreter_harness(tmp_path, seen)
    # ct.convert ends with gc.collect(), 0.7 s in this test process (torch and the converters loaded): a no-op here
    monkeypatch.setattr(_converters_entry, "gc", SimpleNamespace(collect=lambda *_: 0))
    for name, module in list(sys.modules.items()):
        if name.startswith(_TESTS) and module is not their_harness and hasattr(module, "run_compare_builder"):
            monkeypatch.setattr(module, "run_compare_builder", harness)
    getattr(case.cls(), case.method)(**case.kwargs)
    if not seen:
        pytest.skip("no program: the case checks a builder error or the converted model, no prediction")
    record_property("tolerance", ",".join(seen))


def test_the_selection_is_not_empty():
    """Every selected class contributes cases in both precisions (a renamed class would silently vanish)."""
    by_class = {(c.module.__name__, c.cls.__name__) for c in _sample(ALL_CASES, CASES_PER_METHOD)}
    assert len(by_class) == len(SELECTED)
    assert {c.kwargs["backend"].precision for c in ALL_CASES} == {"fp16", "fp32"}
