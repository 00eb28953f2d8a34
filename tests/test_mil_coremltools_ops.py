"""coremltools' own per-op tests, run against our MIL interpreter instead of the Core ML runtime.

The coremltools authors ship per-op tests with hand-computed expected outputs inside the installed package
(``coremltools/converters/mil/mil/ops/tests/iOS14 ... iOS18``). Each builds a MIL program and hands it to their
harness ``run_compare_builder``, which converts it and, on macOS only, runs it in Core ML and compares. Here the
cases are enumerated from their own ``parametrize`` marks (nothing is copied into this repository) and the harness
is replaced: their code builds and converts the program exactly as on a Mac (mlprogram, the case's deployment
target, fp16 and fp32 compute precision), the ``.mlpackage`` is saved, executed by ``emo.export.mil_interpreter``,
and every output is compared with the case's ``expected_outputs`` at the tolerance their ``compare_backend``
applies on the CPU (``coremltools/converters/mil/testing_utils.py`` lines 440-442 in coremltools 9.0: the case's
atol/rtol when converted at fp32, whatever dtypes the program holds; ``max(100 atol, 0.5)`` and
``max(100 rtol, 0.05)`` when converted at fp16).

One kind of case cannot meet that tolerance in any runtime: an fp32 conversion whose test rounds its data to fp16
*after* computing the expected output from the fp32 data (their conv stress tests, ``iOS14/test_conv.py`` lines
539-550: the weight and the input are cast to fp16, the expected output is the fp32 module's). The program holds
the rounded values, so the exact result of the program misses the fp32 expectation by a few fp16 ulps, Core ML's
or ours. Such a case is xfailed only when an independent float64 computation (``_exact``: torch/NumPy in float64
on the values the program holds, rounded once to the op's declared dtype) proves both that this exact result misses
their tolerance too and that the interpreter equals it within float32 accumulation and one rounding; otherwise it
fails. Their CI does not meet this either: it converts at fp16 only (fp32 needs ``INCLUDE_MIL_FP32_UNIT_TESTS=1``,
``coremltools/converters/mil/testing_reqs.py`` line 83, set nowhere in their repository).

Outcomes: pass; fail (a wrong value, shape or dtype, or an interpreter crash); xfail as above, or where coremltools
marks the case xfail itself; skipped "unsupported: ..." when the interpreter refuses an op or a parameter by name
(``MILUnsupportedError``), never a silent pass. Selected are the classes of the ops the interpreter implements
(``SELECTED``); a case whose program never reaches the harness (a builder error the test expects) is skipped as
"no program".
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import itertools
import math
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

from emo.contract.runtimes.mil_interpreter import MILProgram, MILUnsupportedError  # noqa: E402

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


def _compare(outputs: list, expected: list, precision: str, atol: float, rtol: float, shapes: bool = True) -> None:
    """Their ``compare_backend`` on the CPU (testing_utils.py:440-442): a conversion at fp16 widens the tolerance
    to max(100 atol, 0.5), max(100 rtol, 0.05); at fp32 the case's own atol and rtol apply."""
    if precision == "fp16":
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


_FP16, _FP32 = 10, 11  # MIL DataType FLOAT16, FLOAT32


def _holds_fp16(program: MILProgram) -> bool:
    values = [v for op in program.block.operations for v in op.outputs]
    return any(v.type.WhichOneof("type") == "tensorType" and v.type.tensorType.dataType == _FP16 for v in values)


def _exact(op_type: str, args: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """The op in float64 on the values the program holds, independently of the interpreter (torch for conv), with
    the same op on |values| and the number of products summed per output: the float32 accumulation bound."""
    import torch

    def compute(a: dict) -> np.ndarray:
        if op_type == "conv":
            x, w = torch.from_numpy(a["x"]), torch.from_numpy(a["weight"])
            pads = [int(p) for p in np.asarray(a.get("pad", [0] * 2 * (x.dim() - 2))).reshape(-1)]
            # F.pad takes (last dim first); MIL's custom pad is (first dim first)
            x = torch.nn.functional.pad(x, [p for i in reversed(range(len(pads) // 2)) for p in pads[2 * i:2 * i + 2]])
            conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)[x.dim() - 3]
            out = conv(x, w, None if a.get("bias") is None else torch.from_numpy(a["bias"]),
                       stride=[int(s) for s in a["strides"]], dilation=[int(d) for d in a["dilations"]],
                       groups=int(a["groups"]))
            return out.numpy()
        if op_type == "linear":
            return a["x"] @ a["weight"].T + (0 if a.get("bias") is None else a["bias"])
        x = np.swapaxes(a["x"], -1, -2) if a.get("transpose_x") else a["x"]
        y = np.swapaxes(a["y"], -1, -2) if a.get("transpose_y") else a["y"]
        return x @ y

    tensors = {k: np.asarray(v, np.float64) for k, v in args.items() if k in ("x", "y", "weight", "bias")}
    params = {k: v for k, v in args.items() if k not in tensors}
    terms = {"conv": lambda: math.prod(args["weight"].shape[1:]), "linear": lambda: args["weight"].shape[1],
             "matmul": lambda: np.shape(tensors["x"])[-2 if args.get("transpose_x") else -1]}[op_type]()
    return (compute({**params, **tensors}), compute({**params, **{k: np.abs(v) for k, v in tensors.items()}}),
            terms + ("bias" in tensors))


def _unreachable(program: MILProgram, feeds: dict, expected: list, atol: float, rtol: float) -> str | None:
    """Why a failed fp32 comparison is the expected output's doing, not the interpreter's, or None when it is not
    proven: the program is one conv/linear/matmul (and casts) holding fp16 values, the exact result of the program
    on its own values misses their tolerance as well, and the interpreter's result is that exact result within
    float32 accumulation (n products: n * 2^-24 * sum |products|) and one rounding to the declared dtype."""
    ops = [op for op in program.block.operations if op.type not in ("const", "cast")]
    if len(ops) != 1 or ops[0].type not in ("conv", "linear", "matmul") or not _holds_fp16(program):
        return None
    op = ops[0]
    if op.type == "conv" and str(program.constants().get(op.inputs["pad_type"].arguments[0].name)) not in (
            "custom", "valid"):
        return None
    values = {name: np.asarray(feeds[name]).astype(dtype) for name, dtype in program.inputs.items()}
    values.update(program.constants())
    outputs = program.run(feeds, observe=values.__setitem__)
    args = {}
    for key, argument in op.inputs.items():
        if any(b.WhichOneof("binding") != "name" for b in argument.arguments):
            return None
        args[key] = values[argument.arguments[0].name]
    declared = {_FP16: np.float16, _FP32: np.float32}.get(op.outputs[0].type.tensorType.dataType)
    if declared is None or len(outputs) != 1 or len(expected) != 1:
        return None
    exact, magnitude, terms = _exact(op.type, args)
    interpreted = np.asarray(values[op.outputs[0].name], np.float64)
    bound = terms * 2.0 ** -24 * magnitude + np.spacing(np.abs(exact).astype(declared)).astype(np.float64)
    if interpreted.shape != exact.shape or not (np.abs(interpreted - exact) <= bound).all():
        return None
    program_exact = exact.astype(declared).astype(np.float64)  # what follows the op are casts: exact
    want = np.asarray(expected[0], np.float64).reshape(program_exact.shape)
    if np.allclose(program_exact, want, atol=atol, rtol=rtol):
        return None  # the exact result meets their tolerance: the interpreter had to as well
    miss = float(np.max(np.abs(program_exact - want) - rtol * np.abs(want)))
    return (f"unreachable at their atol {atol:g}: the expected output is computed from fp32 data the program holds in "
            f"fp16; the exact {op.type} of the program's values, rounded once to {np.dtype(declared).name}, misses "
            f"it by {miss:.2e} beyond rtol too, and the interpreter matches that exact result (float32 "
            f"accumulation, one rounding)")


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
        feeds = dict(input_values or {})
        try:
            program = MILProgram(path)
            result = program.run(feeds)
        except MILUnsupportedError as error:
            pytest.skip(f"unsupported: {error}")
        if expected_outputs is None:
            pytest.skip("no expected outputs: the program ran, there is nothing to compare")
        expected = expected_outputs if isinstance(expected_outputs, list) else [expected_outputs]
        # their rule: the conversion precision alone picks the tolerance (testing_utils.py:440-442)
        tolerance = backend.precision + (" (holds fp16)" if backend.precision == "fp32" and _holds_fp16(program)
                                         else "")
        try:
            _compare(list(result.values()), expected, backend.precision, atol, rtol, also_compare_shapes)
        except AssertionError:
            reason = _unreachable(program, feeds, expected, atol, rtol) if backend.precision == "fp32" else None
            if reason is None:
                raise
            compared.append(f"{tolerance}: unreachable")
            pytest.xfail(reason)
        compared.append(tolerance)
        return mlmodel

    return run_compare_builder


def test_coremltools_op_case(case: Case, tmp_path, monkeypatch, record_property):
    if case.skip:
        pytest.skip(case.skip)
    # their tests draw their data unseeded; seeded from the case's id, every run draws the same data, so a failure
    # (or a proven-unreachable xfail) reproduces
    seed = int(hashlib.sha1(case.id.encode()).hexdigest()[:8], 16)
    np.random.seed(seed)
    random.seed(seed)
    import torch

    torch.manual_seed(seed)
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


def _fp16_weight_conv(tmp_path) -> tuple[MILProgram, dict, np.ndarray]:
    """Their stress-test situation in small: expected from the fp32 weight, the program holds it in fp16."""
    from coremltools.converters.mil import Builder as mb  # noqa: N813 (their name)

    rng = np.random.default_rng(0)
    weight = rng.uniform(-0.5, 0.5, (4, 3, 3, 3)).astype(np.float32)
    x = rng.uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS17)
    def prog(x):
        return mb.conv(x=x, weight=weight.astype(np.float16), pad_type="custom", pad=[1, 1, 1, 1])

    model = ct.convert(prog, source="milinternal", convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                       compute_precision=ct.precision.FLOAT32)
    model.save(str(tmp_path / "p.mlpackage"))
    import torch

    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight), padding=1).numpy()
    return MILProgram(tmp_path / "p.mlpackage"), {"x": x}, expected


def test_unreachable_needs_the_exact_result_to_miss_and_the_interpreter_to_match_it(tmp_path, monkeypatch):
    """The xfail is granted only with both proofs: with the fp32 expectation it is (the fp16 weight is off by
    up to 2^-12 relative), with the exact result as the expectation it is not, and an interpreter 2e-3 off is not
    excused either."""
    from emo.contract.runtimes import mil_interpreter

    program, feeds, expected = _fp16_weight_conv(tmp_path)
    out = next(iter(program.run(feeds).values()))
    assert not np.allclose(out, expected, atol=1e-4, rtol=1e-5)
    assert "unreachable at their atol 0.0001" in _unreachable(program, feeds, [expected], 1e-4, 1e-5)
    assert _unreachable(program, feeds, [out], 1e-4, 1e-5) is None  # the exact result meets it: no excuse
    call = mil_interpreter._Conv.__call__
    monkeypatch.setattr(mil_interpreter._Conv, "__call__", lambda self, x: call(self, x) + np.float32(2e-3))
    assert _unreachable(MILProgram(tmp_path / "p.mlpackage"), feeds, [expected], 1e-4, 1e-5) is None
