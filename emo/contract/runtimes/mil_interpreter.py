"""A NumPy interpreter for the Core ML ML programs (MIL) that EMO exports contain.

Core ML only runs on macOS and iOS, yet most exports are made on Linux. This interpreter reads a saved
``.mlpackage`` (the ``Model`` protobuf and the weight blob file), executes the main function op by op and returns
its outputs, so an export can be checked where it is made.

- Rounding model: every op computes from its inputs in float32 or wider and rounds its result once, to the dtype
  the program declares for that output; nothing is rounded inside an op. conv, linear and matmul accumulate in
  float32; elementwise +, -, *, / of fp16 values are computed in float32 (which rounds to the fp16 value the exact
  result rounds to: 24 bits >= 2 x 11 + 2); activations, softmax, normalisations, reductions and pooling in
  float64. So an fp16 program (compute precision fp16) is rounded to fp16 at every op boundary, as on the GPU and
  the Neural Engine, and an op of fp16 tensors in an fp32 program accumulates in float32 and rounds once, as Core
  ML's CPU path does.
- Loading compiles the program once (constants read, ``constexpr_*`` folded, conv weights prepared as float32
  matrices); ``run_batch`` runs a stack of inputs at once, each item bit-identical to ``run`` on it alone.
- An op, or a parameter value, it does not implement raises ``MILUnsupportedError`` (a ``MILInterpreterError``)
  naming it; nothing is skipped or approximated. The ops' semantics are checked against coremltools' own per-op
  tests (``tests/test_mil_coremltools_ops.py``).
- Only the protobuf classes of coremltools are used (plain protobuf, no Core ML runtime); the weight file is
  parsed here (``_BlobFile``), its format checked against coremltools' own reader in the tests.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np


class MILInterpreterError(RuntimeError):
    """The program uses something the interpreter does not implement, or is malformed."""


class MILUnsupportedError(MILInterpreterError):
    """An op, or a parameter of an op, the interpreter does not implement: refused by name, never guessed."""


# MIL DataType enum values (coremltools/mlmodel/format/MIL.proto) -> NumPy
_DTYPES = {1: np.bool_, 10: np.float16, 11: np.float32, 12: np.float64, 21: np.int8, 22: np.int16, 23: np.int32,
           24: np.int64, 31: np.uint8, 32: np.uint16, 33: np.uint32, 34: np.uint64}
_STRING = 2
# sub-byte types (iOS18 compression): stored packed, least significant bit first; (bits, signed)
_SUB_BYTE = {25: (4, True), 35: (4, False), 36: (2, False), 37: (1, False), 38: (6, False), 39: (3, False)}
_CAST_NAMES = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "bool": np.bool_, "int8": np.int8,
               "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "fp64": np.float64, "int64": np.int64}


class _BlobFile:
    """The ML program weight file: a 64-byte file header, then per blob a 64-byte metadata record
    (sentinel 0xDEADBEEF, storage dtype, size in bytes, data offset) at the offset the program names."""

    SENTINEL = 0xDEADBEEF

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()

    def read(self, offset: int, dtype, shape: tuple[int, ...]) -> np.ndarray:
        sentinel, _storage_type, size, data_offset = struct.unpack_from("<IIQQ", self.data, offset)
        if sentinel != self.SENTINEL:
            raise MILInterpreterError(f"weight blob at offset {offset}: bad sentinel {sentinel:#x}")
        array = np.frombuffer(self.data, dtype=dtype, count=size // np.dtype(dtype).itemsize, offset=data_offset)
        return array.reshape(shape)

    def read_packed(self, offset: int, bits: int, signed: bool, shape: tuple[int, ...]) -> np.ndarray:
        sentinel, _storage_type, size, data_offset = struct.unpack_from("<IIQQ", self.data, offset)
        if sentinel != self.SENTINEL:
            raise MILInterpreterError(f"weight blob at offset {offset}: bad sentinel {sentinel:#x}")
        raw = np.frombuffer(self.data, dtype=np.uint8, count=size, offset=data_offset)
        return _unpack_bits(raw, bits, signed, shape)


def _unpack_bits(raw: np.ndarray, bits: int, signed: bool, shape: tuple[int, ...]) -> np.ndarray:
    """Sub-byte integers packed least significant bit first (coremltools' ``pack_elements_into_bits``)."""
    count = math.prod(shape)
    if raw.size * 8 < count * bits:
        raise MILInterpreterError(f"packed {bits}-bit data: {raw.size} bytes for {count} elements")
    groups = np.unpackbits(raw, bitorder="little")[:count * bits].reshape(count, bits).astype(np.int16)
    values = (groups << np.arange(bits, dtype=np.int16)).sum(axis=1)
    if signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    return values.astype(np.int8 if signed else np.uint8).reshape(shape)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf with absolute error <= 1.5e-7 (Abramowitz & Stegun 7.1.26), because NumPy has none and the MIL
    ``gelu`` EXACT mode needs it; 1.5e-7 is far inside the 1e-4 fp32 tolerance."""
    x64 = np.asarray(x, dtype=np.float64)
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x64))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x64) * (1.0 - poly * np.exp(-x64 * x64))


class MILProgram:
    """A loaded ML program: ``run({"image": array}) -> {output name: value}``; ``run_batch`` runs a stack of inputs.

    Loading compiles the program once: every ``const`` (weights included) is read from the blob file, the
    ``constexpr_*`` decompressions and any op computed from constants alone are folded, every op is bound to its
    implementation with its constant arguments (a conv's weight is reshaped into a float32 matrix once), and each
    value is freed after its last use. ``run`` is ``run_batch`` on a stack of one, so the two agree exactly.
    """

    def __init__(self, package: str | Path) -> None:
        from coremltools.proto import Model_pb2  # protobuf classes only

        self.package = Path(package)
        manifest = json.loads((self.package / "Manifest.json").read_text())
        root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]["path"]
        self.spec = Model_pb2.Model()
        self.spec.ParseFromString((self.package / "Data" / root).read_bytes())
        if self.spec.WhichOneof("Type") != "mlProgram":
            raise MILInterpreterError(f"{self.package} is not an ML program ({self.spec.WhichOneof('Type')})")
        function = self.spec.mlProgram.functions["main"]
        self.opset = function.opset
        self.block = function.block_specializations[function.opset]
        self.inputs = {value.name: _DTYPES.get(value.type.tensorType.dataType, np.float32)
                       for value in function.inputs}
        self.weights_dir = (self.package / "Data" / root).parent / "weights"
        self._blobs: dict[str, _BlobFile] = {}
        self.op_types = sorted({op.type for op in self.block.operations})
        # ops whose semantics changed in an opset (CoreML7 = iOS17) take that version from there on
        version = int(self.opset[len("CoreML"):]) if self.opset.startswith("CoreML") else 0
        self.ops = {**OPS, **(OPS_IOS17 if version >= 7 else {})}
        self.plans = {**PLANS, **(PLANS_IOS17 if version >= 7 else {})}
        unknown = [t for t in self.op_types if t not in self.ops]
        if unknown:
            raise MILUnsupportedError(f"MIL op(s) the interpreter does not implement: {', '.join(unknown)}")
        self._constants: dict[str, object] = {}
        self._steps: list[_Step] = []
        self._static_steps: list[tuple[str, object]] = []  # (name, value) of folded non-constexpr ops, in order
        self._compile()

    # ------------------------------------------------------------------------------------------ values
    def _blob(self, file_name: str) -> _BlobFile:
        name = file_name.replace("@model_path/weights/", "")
        if name not in self._blobs:
            self._blobs[name] = _BlobFile(self.weights_dir / name)
        return self._blobs[name]

    def _value(self, value) -> object:
        """A MIL ``Value`` (immediate or in the blob file) as a NumPy array, string, or list."""
        vtype = value.type
        kind = vtype.WhichOneof("type")
        if kind == "listType":
            return [self._value(v) for v in value.immediateValue.list.values]
        tensor_type = vtype.tensorType
        shape = tuple(d.constant.size for d in tensor_type.dimensions)
        which = value.WhichOneof("value")
        data_type = tensor_type.dataType
        if data_type not in _DTYPES and data_type not in _SUB_BYTE and data_type != _STRING:
            raise MILUnsupportedError(f"MIL data type {data_type} is not implemented")
        if which == "blobFileValue":
            blob = self._blob(value.blobFileValue.fileName)
            if data_type in _SUB_BYTE:
                return blob.read_packed(value.blobFileValue.offset, *_SUB_BYTE[data_type], shape)
            return blob.read(value.blobFileValue.offset, _DTYPES[data_type], shape).copy()
        tensor = value.immediateValue.tensor
        field = tensor.WhichOneof("value")
        if data_type == _STRING:
            strings = list(tensor.strings.values)
            return strings[0] if not shape else np.array(strings, dtype=object).reshape(shape)
        if field is None:
            if math.prod(shape) == 0:
                return np.zeros(shape, dtype=_DTYPES.get(data_type, np.float32))
            raise MILInterpreterError("immediate value without data")
        if field == "bytes" and data_type in _SUB_BYTE:
            return _unpack_bits(np.frombuffer(tensor.bytes.values, dtype=np.uint8), *_SUB_BYTE[data_type], shape)
        if field == "bytes":
            data = np.frombuffer(tensor.bytes.values, dtype=_DTYPES[data_type])
        else:
            data = np.array(list(getattr(tensor, field).values)).astype(_DTYPES.get(data_type, np.float32))
        return data.reshape(shape)

    def constants(self) -> dict[str, object]:
        """The value of every ``const`` op's output, by name (weights included: read from the blob file)."""
        return {op.outputs[0].name: self._constants[op.outputs[0].name]
                for op in self.block.operations if op.type == "const"}

    def largest_value_elements(self) -> int:
        """Elements of the largest tensor an op of the program declares (a symbolic dimension counts 1): what
        one item of a ``run_batch`` stack needs at the most, to size stacks by memory."""
        return max((math.prod(d or 1 for d in output.shape) for step in self._steps for output in step.outputs
                    if output.shape is not None), default=1)

    # ----------------------------------------------------------------------------------------- compile
    def _compile(self) -> None:
        """Bind every op to its implementation once. A value is *static* when it is known at load time (a const,
        an immediate value, a folded op) and *stacked* otherwise (it carries the leading stack axis of
        ``run_batch``)."""
        stacked_names = set(self.inputs)
        dtypes = {name: np.dtype(dtype).type for name, dtype in self.inputs.items()}  # declared, by value name
        for op in self.block.operations:
            attributes = {k: v for k, v in op.attributes.items() if k != "name"}
            if op.type == "const":
                value = self._value(attributes["val"])
                for declared in map(_Declared, op.outputs):
                    self._constants[declared.name] = declared.check(op.type, value)
                    dtypes[declared.name] = declared.dtype
                continue
            static: dict[str, object] = {}
            dynamic: dict[str, list[tuple[bool, object]]] = {}  # key -> [(stacked, name or value)]
            for key, argument in op.inputs.items():
                bindings = []
                for b in argument.arguments:
                    if b.WhichOneof("binding") != "name":
                        bindings.append((False, self._value(b.value)))
                    elif b.name in stacked_names:
                        bindings.append((True, b.name))
                    elif b.name in self._constants:
                        bindings.append((False, self._constants[b.name]))
                    else:
                        raise MILInterpreterError(f"{op.type}: input {b.name!r} is used before it is defined")
                tuple_input = key in _TUPLE_INPUTS.get(op.type, ()) or len(bindings) != 1
                if any(is_stacked for is_stacked, _ in bindings):
                    dynamic[key] = bindings if tuple_input else bindings[0]
                else:
                    values = [v for _, v in bindings]
                    static[key] = values if tuple_input else values[0]
            # iOS16 constexpr ops keep their constant parameters as attributes, not inputs
            static.update({key: self._value(value) for key, value in attributes.items()})
            outputs = [_Declared(output) for output in op.outputs]
            dtypes.update((output.name, output.dtype) for output in outputs)
            if not dynamic:  # computed from constants alone: folded here, once
                results = _as_tuple(self.ops[op.type](**static))
                for output, result in zip(outputs, results, strict=True):
                    self._constants[output.name] = output.check(op.type, result)
                    if not op.type.startswith("constexpr_"):
                        self._static_steps.append((output.name, self._constants[output.name]))
                continue
            mask = {key: ([s for s, _ in b] if isinstance(b, list) else True) for key, b in dynamic.items()}
            fn = None
            if (op.type in _FP16_TABLE_OPS and _only_x(mask) and dtypes.get(dynamic["x"][1]) == np.float16
                    and [o.dtype for o in outputs] == [np.float16]):
                fn = _fp16_table(op.type, self.ops[op.type], static)
            plan = self.plans.get(op.type)
            if fn is None and plan is not None:
                fn = plan(static, mask)
            if fn is None:
                fn = _per_item(self.ops[op.type], static, mask)
            self._steps.append(_Step(op.type, fn, dynamic, outputs))
            stacked_names.update(output.name for output in outputs)
        # free every stacked value after its last use (block outputs are kept)
        last_use: dict[str, int] = {}
        for index, step in enumerate(self._steps):
            for name in step.input_names():
                last_use[name] = index
        keep = set(self.block.outputs)
        for index, step in enumerate(self._steps):
            step.frees = [n for n in dict.fromkeys(step.input_names()) if last_use[n] == index and n not in keep]

    # --------------------------------------------------------------------------------------------- run
    def run(self, feeds: dict[str, np.ndarray], observe: Callable[[str, object], None] | None = None
            ) -> dict[str, object]:
        """Execute the program. ``observe(name, value)``, when given, sees every intermediate value (the outputs of
        every op but constants), e.g. to collect activation ranges for quantization."""
        for name in self.inputs:
            if name not in feeds:
                raise MILInterpreterError(f"missing input {name!r}")
        stacked = {name: np.asarray(feeds[name])[None] for name in self.inputs}
        first = None if observe is None else (lambda name, value: observe(name, _item(value, 0)))
        return {name: _item(value, 0) for name, value in self.run_batch(stacked, first).items()}

    def run_batch(self, feeds: dict[str, np.ndarray], observe: Callable[[str, object], None] | None = None
                  ) -> dict[str, object]:
        """Execute the program on a stack of inputs at once: ``feeds[name]`` has a leading axis of S inputs, each
        one what ``run`` takes (e.g. S images of a batch-1 program: (S, 1, 3, H, W)); every output gets the same
        leading axis. Item s equals ``run`` on item s exactly: each op computes the items independently, with
        the same calls, and an op that cannot (e.g. a conv whose weight is computed) loops over them."""
        env: dict[str, object] = {}
        sizes = set()
        for name, dtype in self.inputs.items():
            if name not in feeds:
                raise MILInterpreterError(f"missing input {name!r}")
            env[name] = np.asarray(feeds[name]).astype(dtype, copy=False)
            sizes.add(env[name].shape[0] if env[name].ndim else None)
        if None in sizes or len(sizes) > 1:
            raise MILInterpreterError(f"run_batch takes every input as a stack along a leading axis of the same "
                                      f"length; got shapes {[np.shape(env[n]) for n in self.inputs]}")
        size = sizes.pop() if sizes else 0
        with _one_blas_thread():
            return self._execute(env, size, observe)

    def _execute(self, env: dict, size: int, observe) -> dict[str, object]:
        if observe is not None:  # ops folded at load time are observed too, as the same value for every item
            for name, value in self._static_steps:
                observe(name, np.broadcast_to(value, (size, *np.shape(value))) if isinstance(value, np.ndarray)
                        else [value] * size)
        for step in self._steps:
            args = {key: ([env[v] if s else v for s, v in binding] if isinstance(binding, list)
                          else env[binding[1]]) for key, binding in step.dynamic.items()}
            results = _as_tuple(step.fn(**args))
            for output, result in zip(step.outputs, results, strict=True):
                env[output.name] = value = output.check(step.op_type, result, stacked=True)
                if observe is not None:
                    observe(output.name, value)
            for name in step.frees:
                del env[name]
        return {name: env[name] if name in env else _stack_static(self._constants[name], size)
                for name in self.block.outputs}


class _Step:
    """One op bound to its implementation: ``fn(**stacked arguments)``; the static ones are bound already."""

    __slots__ = ("op_type", "fn", "dynamic", "outputs", "frees")

    def __init__(self, op_type: str, fn: Callable, dynamic: dict, outputs: list[_Declared]) -> None:
        self.op_type, self.fn, self.dynamic, self.outputs, self.frees = op_type, fn, dynamic, outputs, []

    def input_names(self) -> list[str]:
        names = []
        for binding in self.dynamic.values():
            pairs = binding if isinstance(binding, list) else [binding]
            names += [v for s, v in pairs if s]
        return names


def _one_blas_thread():
    """NumPy's BLAS on one thread while a program runs (restored after). Its matrix products are small (at most
    a few tens of MFLOP per image), and OpenBLAS's spinning worker threads on a shared 2-core host made the whole
    run 3-4x slower in wall time. Without threadpoolctl (the coreml extra installs it) the default is kept."""
    controller = _blas_controller()
    return controller.limit(limits=1, user_api="blas") if controller else contextlib.nullcontext()


@functools.cache
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def _as_tuple(results) -> tuple:
    return results if isinstance(results, tuple) else (results,)


def _item(value, index: int):
    """Item ``index`` of a stacked value (an array with the stack axis first, or a list)."""
    return value[index]


def _stack_static(value, size: int):
    """A static value repeated for every item of the stack (a program output computed from constants alone)."""
    if isinstance(value, np.ndarray):
        return np.broadcast_to(value, (size, *value.shape)).copy()
    return [value] * size


def _per_item(fn: Callable, static: dict, mask: dict) -> Callable:
    """An op that is not vectorised over the stack: called item by item, exactly as ``run`` calls it."""
    def run(**stacked):
        size = _stack_size(stacked, mask)
        items = []
        for i in range(size):
            args = dict(static)
            for key, value in stacked.items():
                args[key] = value[i] if mask[key] is True else [x[i] if s else x
                                                                for x, s in zip(value, mask[key], strict=True)]
            items.append(_as_tuple(fn(**args)))
        columns = list(zip(*items, strict=True))
        return tuple(np.stack(c) if all(isinstance(x, np.ndarray) for x in c) else list(c) for c in columns)
    return run


def _stack_size(stacked: dict, mask: dict) -> int:
    for key, value in stacked.items():
        if mask[key] is True:
            return len(value)
        for element, is_stacked in zip(value, mask[key], strict=True):
            if is_stacked:
                return len(element)
    raise MILInterpreterError("an op without stacked arguments was not folded")


class _Declared:
    """What the program declares for one op output: its name, shape (None for a symbolic dimension) and dtype
    (None when it is not a tensor of a NumPy dtype)."""

    __slots__ = ("name", "shape", "dtype")

    def __init__(self, output) -> None:
        self.name = output.name
        self.shape, self.dtype = None, None
        if output.type.WhichOneof("type") == "tensorType":
            tensor = output.type.tensorType
            self.shape = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else None
                               for d in tensor.dimensions)
            self.dtype = _DTYPES.get(tensor.dataType)

    def check(self, op_type: str, result, stacked: bool = False):
        """The result rounded once to the declared dtype (fp16 programs: fp16 at every op boundary, nowhere inside
        an op), after checking its shape: a mismatch means a bug here or a corrupt program."""
        if self.shape is None or not isinstance(result, np.ndarray):
            return result
        shape = result.shape[1:] if stacked else result.shape
        if len(self.shape) != len(shape) or any(d is not None and d != r
                                                for d, r in zip(self.shape, shape, strict=True)):
            raise MILInterpreterError(f"{op_type} -> {self.name}: computed shape {shape}, "
                                      f"program declares {self.shape}")
        return result.astype(self.dtype) if self.dtype is not None and result.dtype != self.dtype else result


# ------------------------------------------------------------------------------------------------------ the ops
def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _conv_padding(spatial, spans, strides, pad_type, pad) -> list[tuple[int, int]]:
    widths = []
    for i, (size, span, stride) in enumerate(zip(spatial, spans, strides, strict=True)):
        if pad_type == "custom":
            widths.append((int(pad[2 * i]), int(pad[2 * i + 1])))
        elif pad_type == "valid":
            widths.append((0, 0))
        elif pad_type in ("same", "same_lower"):  # same: the smaller half first; same_lower: the larger
            total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
            first = total // 2 if pad_type == "same" else total - total // 2
            widths.append((first, total - first))
        else:
            raise MILUnsupportedError(f"conv: pad_type {pad_type!r} not implemented")
    return widths


class _Conv:
    """1-D, 2-D or 3-D convolution (input rank 3, 4 or 5), grouped and dilated, accumulated in float32.

    The weight is prepared once: a (groups, out/groups, in/groups * kernel) float32 matrix. A point-wise conv is
    one matrix product per image, a depth-wise one a sum of kernel-offset slices times per-channel weights, any
    other an im2col matrix product per image and group. Every image of the batch is computed on its own with the
    same calls, so a batch gives each image exactly what a batch of one gives it."""

    def __init__(self, weight, strides=None, pad_type="valid", pad=None, dilations=None, groups=1, bias=None):
        self.weight = _f32(weight)
        self.dims = self.weight.ndim - 2
        if self.dims not in (1, 2, 3):
            raise MILUnsupportedError(f"conv: input rank {self.weight.ndim} not implemented (1-D, 2-D and 3-D "
                                      "convolution are)")
        dims = self.dims
        self.groups = int(groups)
        self.strides = [1] * dims if strides is None else [int(s) for s in np.asarray(strides).reshape(-1)]
        self.dilations = [1] * dims if dilations is None else [int(d) for d in np.asarray(dilations).reshape(-1)]
        self.pad_type, self.pad = str(pad_type), None if pad is None else np.asarray(pad).reshape(-1)
        if self.pad_type not in ("custom", "valid", "same", "same_lower"):
            raise MILUnsupportedError(f"conv: pad_type {pad_type!r} not implemented")
        self.cout, self.cin_g = self.weight.shape[:2]
        self.kernel = self.weight.shape[2:]
        self.spans = [(k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations, strict=True)]
        self.bias = None if bias is None else _f32(bias).reshape((1, -1) + (1,) * dims)
        # (groups, out per group, in per group * kernel): the im2col rows are (channel, kernel offsets)
        self.matrix = np.ascontiguousarray(self.weight.reshape(self.groups, self.cout // self.groups, -1))

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x)
        dims = self.dims
        if x.ndim != dims + 2:
            raise MILUnsupportedError(f"conv: input rank {x.ndim} not implemented (1-D, 2-D and 3-D convolution are)")
        n, c = x.shape[:2]
        widths = _conv_padding(x.shape[2:], self.spans, self.strides, self.pad_type, self.pad)
        padded = [s + a + b for s, (a, b) in zip(x.shape[2:], widths, strict=True)]
        out_shape = [(s - span) // stride + 1 for s, span, stride in zip(padded, self.spans, self.strides,
                                                                          strict=True)]
        interior = tuple(slice(a, a + s) for s, (a, _) in zip(x.shape[2:], widths, strict=True))
        if self.groups == c and self.cin_g == 1 and self.cout == c and c > 1:
            # depth-wise, channel-last: the float32 copy is made while padding and moving the channels
            buffer = np.zeros((n, *padded, c), np.float32)
            buffer[(slice(None), *interior, slice(None))] = np.moveaxis(x, 1, -1)
            out = self._depthwise(buffer, out_shape)
        else:
            if any(w for pair in widths for w in pair):  # the float32 copy is made while padding
                buffer = np.zeros((n, c, *padded), np.float32)
                buffer[(slice(None), slice(None), *interior)] = x
                x = buffer
            else:
                x = _f32(x)
            if all(k == 1 for k in self.kernel):
                strided = x[(slice(None), slice(None), *(slice(0, (o - 1) * s + 1, s) for o, s in zip(
                    out_shape, self.strides, strict=True)))]
                cols = np.ascontiguousarray(strided).reshape(n, self.groups, c // self.groups, -1)
            else:
                windows = np.lib.stride_tricks.sliding_window_view(x, self.spans, axis=tuple(range(2, x.ndim)))
                windows = windows[(slice(None), slice(None), *(slice(None, None, s) for s in self.strides),
                                   *(slice(None, None, d) for d in self.dilations))]      # (N, C, *out, *kernel)
                windows = windows.reshape(n, self.groups, c // self.groups, *windows.shape[2:])
                order = (0, 1, 2, *range(3 + dims, 3 + 2 * dims), *range(3, 3 + dims))   # (N, G, C/G, *k, *out)
                cols = np.ascontiguousarray(windows.transpose(order)).reshape(n, self.groups, -1,
                                                                              math.prod(out_shape))
            out = np.matmul(self.matrix, cols).reshape(n, self.cout, *out_shape)
        if self.bias is not None:
            out += self.bias
        return out

    def _depthwise(self, x, out_shape) -> np.ndarray:
        """One channel per group, ``x`` channel-last (N, *spatial, C): the kernel offsets are summed in order,
        each a strided slice times its per-channel weight. Channel-last makes every slice long runs of contiguous
        channels (a 7x7 map in NCHW would be rows of 7); each output element is the same float32 sum in the same
        order either way."""
        out, term = None, None
        for offset in np.ndindex(*self.kernel):
            window = x[(slice(None), *(slice(k * d, k * d + (o - 1) * s + 1, s) for k, d, o, s in zip(
                offset, self.dilations, out_shape, self.strides, strict=True)), slice(None))]
            weight = self.weight[(slice(None), 0, *offset)]
            if out is None:
                out = window * weight
                term = np.empty_like(out)
            else:
                np.multiply(window, weight, out=term)
                out += term
        return np.ascontiguousarray(np.moveaxis(out, -1, 1))


def _conv(x, weight, strides=None, pad_type="valid", pad=None, dilations=None, groups=1, bias=None):
    if np.ndim(x) not in (3, 4, 5):
        raise MILUnsupportedError(f"conv: input rank {np.ndim(x)} not implemented (1-D, 2-D and 3-D convolution are)")
    return _Conv(weight, strides, pad_type, pad, dilations, groups, bias)(x)


def _reshape_target(shape_in, shape, ios17: bool) -> list[int]:
    """iOS15/16: a 0 in ``shape`` copies the input's dimension at the same index (``len(shape) == rank``).
    iOS17: a 0 matches the input's dimension counted from the right; a 0 with no such dimension is 1."""
    shape = [int(s) for s in np.asarray(shape).reshape(-1)]
    if not ios17:
        return [shape_in[i] if s == 0 else s for i, s in enumerate(shape)]
    offset = len(shape) - len(shape_in)
    return [(shape_in[i - offset] if i - offset >= 0 else 1) if s == 0 else s for i, s in enumerate(shape)]


def _reshape(x, shape):
    x = np.asarray(x)
    return np.reshape(x, _reshape_target(x.shape, shape, ios17=False))


def _reshape_ios17(x, shape):
    x = np.asarray(x)
    return np.reshape(x, _reshape_target(x.shape, shape, ios17=True))


def _squeeze_axes(shape, axes) -> tuple[int, ...]:
    """Axes whose size is not 1 are ignored (PyTorch's rule, as the MIL documentation says), not an error."""
    if axes is None:
        return tuple(i for i, s in enumerate(shape) if s == 1)
    rank = len(shape)
    return tuple(int(a) % rank for a in np.asarray(axes).reshape(-1) if shape[int(a)] == 1)


def _squeeze(x, axes=None):
    x = np.asarray(x)
    return np.squeeze(x, axis=_squeeze_axes(x.shape, axes))


def _concat(values, axis, interleave=False):
    """``interleave``: the output takes one slice along ``axis`` from each input in turn (all inputs the same
    shape), e.g. [a0, b0, a1, b1, ...]."""
    values = [np.asarray(v) for v in values]
    axis = int(axis) % values[0].ndim
    if not bool(interleave):
        return np.concatenate(values, axis=axis)
    stacked = np.stack(values, axis=axis + 1)                       # (..., n_axis, len(values), ...)
    shape = list(values[0].shape)
    shape[axis] *= len(values)
    return stacked.reshape(shape)


def _depth_to_space(x, block_size):
    """(n, C*b*b, H, W) -> (n, C, H*b, W*b), depth taken as (b, b, C): TensorFlow's DCR order (coremltools
    maps ``tf.nn.depth_to_space`` to this op between layout transposes; ``pixel_shuffle`` is the CRD order)."""
    n, c, h, w = np.shape(x)
    b = int(block_size)
    out = np.reshape(x, (n, b, b, c // (b * b), h, w)).transpose(0, 3, 4, 1, 5, 2)
    return out.reshape(n, c // (b * b), h * b, w * b)


def _space_to_depth(x, block_size):
    """(n, C, H, W) -> (n, C*b*b, H/b, W/b), the inverse of ``depth_to_space``."""
    n, c, h, w = np.shape(x)
    b = int(block_size)
    out = np.reshape(x, (n, c, h // b, b, w // b, b)).transpose(0, 3, 5, 1, 2, 4)
    return out.reshape(n, c * b * b, h // b, w // b)


def _pixel_shuffle(x, upscale_factor):
    """(n, C*f*f, H, W) -> (n, C, H*f, W*f), depth taken as (C, f, f): PyTorch's ``PixelShuffle``."""
    n, c, h, w = np.shape(x)
    f = int(upscale_factor)
    out = np.reshape(x, (n, c // (f * f), f, f, h, w)).transpose(0, 1, 4, 2, 5, 3)
    return out.reshape(n, c // (f * f), h * f, w * f)


def _pixel_unshuffle(x, downscale_factor):
    """(n, C, H, W) -> (n, C*f*f, H/f, W/f): PyTorch's ``PixelUnshuffle``, the inverse of ``pixel_shuffle``."""
    n, c, h, w = np.shape(x)
    f = int(downscale_factor)
    out = np.reshape(x, (n, c, h // f, f, w // f, f)).transpose(0, 1, 3, 5, 2, 4)
    return out.reshape(n, c * f * f, h // f, w // f)


def _slice_index(rank, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None) -> list:
    stride = [1] * rank if stride is None else [int(s) for s in stride]
    index = []
    for i in range(rank):
        b = None if (begin_mask is not None and begin_mask[i]) else int(begin[i])
        e = None if (end_mask is not None and end_mask[i]) else int(end[i])
        if squeeze_mask is not None and squeeze_mask[i]:
            index.append(b if b is not None else 0)
        else:
            index.append(slice(b, e, stride[i]))
    return index


def _slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    return x[tuple(_slice_index(x.ndim, begin, end, stride, begin_mask, end_mask, squeeze_mask))]


def _axes(axes, rank: int) -> tuple[int, ...] | None:
    return None if axes is None else tuple(int(a) % rank for a in np.asarray(axes).reshape(-1))


def _reduce(fn: Callable) -> Callable:
    """A reduction in float64 (the result is rounded once, to the declared dtype)."""
    def op(x, axes=None, keep_dims=False):
        axis = None if axes is None else tuple(int(a) for a in np.asarray(axes).reshape(-1))
        return fn(_f64(x), axis=axis, keepdims=bool(keep_dims))
    return op


def _softmax(x, axis=-1):
    x = _f64(x)
    e = np.exp(x - x.max(axis=int(axis), keepdims=True))
    return e / e.sum(axis=int(axis), keepdims=True)


def _gelu(x, mode="EXACT"):
    x64 = _f64(x)
    if mode == "EXACT":
        return 0.5 * x64 * (1.0 + _erf(x64 / math.sqrt(2.0)))
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x64 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x64 + 0.044715 * x64 ** 3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x64 / (1.0 + np.exp(-1.702 * x64))
    raise MILUnsupportedError(f"gelu: mode {mode!r} not implemented")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-_f64(x)))


def _silu(x):
    x64 = _f64(x)
    return x64 / (1.0 + np.exp(-x64))


def _matmul(x, y, transpose_x=False, transpose_y=False):
    x, y = _f32(x), _f32(y)
    if transpose_x:
        x = np.swapaxes(x, -1, -2)
    if transpose_y:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _linear(x, weight, bias=None):
    return _Linear(weight, bias)(x)


class _Linear:
    """x @ weight.T + bias, accumulated in float32; the transposed weight is prepared once. The rows of x are
    multiplied as one (rows, in) matrix per item of the leading axes, so a stack of inputs gives each item what
    it alone gives."""

    def __init__(self, weight, bias=None) -> None:
        self.matrix = np.ascontiguousarray(_f32(weight).T)
        self.bias = None if bias is None else _f32(bias)

    def __call__(self, x, lead: int = 0) -> np.ndarray:
        x = _f32(x)
        shape = x.shape
        rows = x.reshape(*shape[:lead], -1 if x.ndim > lead + 1 else 1, shape[-1])  # (*lead, rows, in)
        out = np.matmul(rows, self.matrix)
        if self.bias is not None:
            out += self.bias
        return out.reshape(*shape[:-1], self.matrix.shape[1])


def _batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    shape = (1, -1) + (1,) * (np.ndim(x) - 2)
    out = (_f32(x) - _f32(mean).reshape(shape)) / np.sqrt(_f32(variance).reshape(shape) + np.float32(epsilon))
    if gamma is not None:
        out = out * _f32(gamma).reshape(shape)
    if beta is not None:
        out = out + _f32(beta).reshape(shape)
    return out


def _pad(x, pad, mode="constant", constant_val=0.0):
    """``pad`` covers the last len(pad) / 2 dimensions (so a leading stack axis is left alone)."""
    pad = [int(p) for p in np.asarray(pad).reshape(-1)]
    pairs = [(0, 0)] * (np.ndim(x) - len(pad) // 2) + [(pad[i], pad[i + 1]) for i in range(0, len(pad), 2)]
    if mode == "constant":
        return np.pad(x, pairs, constant_values=float(constant_val))
    if mode in ("reflect", "replicate"):  # reflect excludes the edge value; replicate repeats it
        return np.pad(x, pairs, mode="reflect" if mode == "reflect" else "edge")
    raise MILUnsupportedError(f"pad: mode {mode!r} not implemented")


def _classify(probabilities, classes):
    """(top label, {label: probability}); labels are strings or, as Core ML allows, int64."""
    probabilities = np.asarray(probabilities, dtype=np.float32).reshape(-1)
    items = [c.reshape(-1)[0] if isinstance(c, np.ndarray) else c for c in classes]
    labels = [int(c) if isinstance(c, (int, np.integer)) else str(c) for c in items]
    if len(labels) != probabilities.size:
        raise MILInterpreterError(f"classify: {len(labels)} classes for {probabilities.size} probabilities")
    return labels[int(probabilities.argmax())], dict(zip(labels, probabilities.tolist(), strict=True))


def _binary(fn: Callable) -> Callable:
    """An elementwise op of two tensors in float32. For +, -, *, / of fp16 values that is one rounding: float32
    has more than twice fp16's precision (24 >= 2 x 11 + 2 bits), so its result rounds to the fp16 value the exact
    result rounds to."""
    return lambda x, y: fn(_f32(x), _f32(y))


def _layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over ``axes`` (all when absent); gamma and beta have the
    shape of x at ``axes``."""
    x64 = _f64(x)
    rank = x64.ndim
    axes = tuple(range(rank)) if axes is None else tuple(sorted(int(a) % rank for a in np.asarray(axes).reshape(-1)))
    mean = x64.mean(axis=axes, keepdims=True)
    var = np.square(x64 - mean).mean(axis=axes, keepdims=True)
    out = (x64 - mean) / np.sqrt(var + float(epsilon))
    param_shape = [x64.shape[i] if i in axes else 1 for i in range(rank)]
    if gamma is not None:
        out = out * _f64(gamma).reshape(param_shape)
    if beta is not None:
        out = out + _f64(beta).reshape(param_shape)
    return out


def _pool_padding(pad_type, pad, spatial, kernel, strides, ceil_mode):
    """Per spatial dimension (before, after, extra): the padding of ``pad_type`` and, in ceil mode, the
    extra cells past the end that only complete the last window (they never count in an average)."""
    result = []
    for i, (size, k, s) in enumerate(zip(spatial, kernel, strides, strict=True)):
        if pad_type == "valid":
            before = after = 0
        elif pad_type == "custom":
            before, after = int(pad[2 * i]), int(pad[2 * i + 1])
        elif pad_type in ("same", "same_lower"):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            small = total // 2
            before, after = (small, total - small) if pad_type == "same" else (total - small, small)
        else:
            raise MILUnsupportedError(f"avg_pool: pad_type {pad_type!r} not implemented")
        extra = 0
        if ceil_mode and pad_type in ("valid", "custom"):
            out = math.ceil((size + before + after - k) / s) + 1
            if (out - 1) * s >= size + before:  # PyTorch: the last window must start inside input or left pad
                out -= 1
            extra = max((out - 1) * s + k - (size + before + after), 0)
        result.append((before, after, extra))
    return result


def _avg_pool(x, kernel_sizes, pad_type="valid", strides=None, pad=None, exclude_padding_from_average=False,
              ceil_mode=False):
    """Average over windows of 1, 2 or 3 spatial dimensions; padding counts in the divisor unless excluded."""
    x = _f64(x)
    dims = x.ndim - 2
    kernel = [int(k) for k in np.asarray(kernel_sizes).reshape(-1)]
    strides = [1] * dims if strides is None else [int(s) for s in np.asarray(strides).reshape(-1)]
    padding = _pool_padding(str(pad_type), None if pad is None else np.asarray(pad).reshape(-1), x.shape[2:],
                            kernel, strides, bool(ceil_mode))
    widths = [(0, 0), (0, 0)] + [(b, a + e) for b, a, e in padding]
    padded = np.pad(x, widths)
    inside = np.pad(np.ones(x.shape[2:]), widths[2:])                          # 1 on the input
    in_pad = np.pad(np.ones([s + b + a for s, (b, a, _) in zip(x.shape[2:], padding, strict=True)]),
                    [(0, e) for _, _, e in padding])                         # 1 on input and padding
    axes = tuple(range(2, x.ndim))
    step = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
    sums = np.lib.stride_tricks.sliding_window_view(padded, kernel, axis=axes)[step].sum(axis=tuple(
        range(-dims, 0)))
    counts_from = inside if bool(exclude_padding_from_average) else in_pad
    counts = np.lib.stride_tricks.sliding_window_view(counts_from, kernel)[step[2:]].sum(axis=tuple(
        range(-dims, 0)))
    return sums / counts


def _per_axis(param, rank: int, axis) -> np.ndarray:
    """A scalar or a vector along ``axis`` (quantization scale / zero point), broadcastable to rank ``rank``."""
    param = np.asarray(param)
    if param.ndim == 0 or axis is None:
        return param
    shape = [1] * rank
    shape[int(axis) % rank] = param.size
    return param.reshape(shape)


def _quantize(input, scale, output_dtype, zero_point=None, axis=None):
    """clip(round(input / scale) + zero_point) to int8 or uint8; rounding half to even."""
    x = np.asarray(input, dtype=np.float32)
    q = np.rint(x / _per_axis(scale, x.ndim, axis).astype(np.float32))
    if zero_point is not None:
        q = q + _per_axis(zero_point, x.ndim, axis).astype(np.float32)
    dtype = _CAST_NAMES[str(output_dtype)]
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(input, scale, zero_point=None, axis=None):
    """scale * (input - zero_point), in the dtype of ``scale``."""
    q = np.asarray(input).astype(np.float32)
    if zero_point is not None:
        q = q - _per_axis(zero_point, q.ndim, axis).astype(np.float32)
    return (q * _per_axis(scale, q.ndim, axis).astype(np.float32)).astype(np.asarray(scale).dtype)


def _constexpr_affine_dequantize(quantized_data, zero_point, scale, axis):
    """iOS16 weight decompression: scale * (quantized_data - zero_point), scale and zero point per ``axis``."""
    return _dequantize(quantized_data, scale, zero_point, axis)


def _constexpr_blockwise_shift_scale(data, scale, offset=None):
    """iOS18 block-wise decompression: scale * (data - offset), each scale covering a block of
    data.shape / scale.shape elements."""
    scale = np.asarray(scale)
    data = np.asarray(data).astype(np.float32)
    for size, blocks in zip(data.shape, scale.shape, strict=True):
        if size % blocks:
            raise MILInterpreterError(f"constexpr_blockwise_shift_scale: {blocks} scales for {size} elements")
    repeat = [size // blocks for size, blocks in zip(data.shape, scale.shape, strict=True)]

    def expand(param):
        param = np.asarray(param).astype(np.float32)
        for axis, r in enumerate(repeat):
            param = np.repeat(param, r, axis=axis)
        return param

    if offset is not None:
        data = data - expand(offset)
    return (expand(scale) * data).astype(scale.dtype)


OPS: dict[str, Callable] = {
    "const": lambda **_: None,  # read when the program is loaded
    "conv": _conv,
    "linear": _linear,
    "matmul": _matmul,
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "real_div": _binary(np.divide),
    "maximum": _binary(np.maximum),
    "minimum": _binary(np.minimum),
    "pow": lambda x, y: np.power(_f64(x), _f64(y)),
    "reshape": _reshape,
    "transpose": lambda x, perm: np.transpose(x, [int(p) for p in np.asarray(perm).reshape(-1)]),
    "slice_by_index": _slice_by_index,
    "squeeze": _squeeze,
    "expand_dims": lambda x, axes: np.expand_dims(x, tuple(int(a) for a in np.asarray(axes).reshape(-1))),
    "concat": _concat,
    "identity": lambda x: np.asarray(x).copy(),
    "depth_to_space": _depth_to_space,
    "space_to_depth": _space_to_depth,
    "pixel_shuffle": _pixel_shuffle,
    "pixel_unshuffle": _pixel_unshuffle,
    "pad": _pad,
    "avg_pool": _avg_pool,
    "layer_norm": _layer_norm,
    "reduce_mean": _reduce(np.mean),
    "reduce_sum": _reduce(np.sum),
    "reduce_max": _reduce(np.max),
    "softmax": _softmax,
    "sigmoid": _sigmoid,
    "silu": _silu,
    "gelu": _gelu,
    "relu": lambda x: np.maximum(_f32(x), 0),
    "erf": lambda x: _erf(x),
    "exp": lambda x: np.exp(_f64(x)),
    "sqrt": lambda x: np.sqrt(_f32(x)),
    "rsqrt": lambda x, epsilon=1e-12: 1.0 / np.sqrt(_f64(x) + float(epsilon)),
    "square": lambda x: np.square(_f32(x)),
    "batch_norm": _batch_norm,
    "cast": lambda x, dtype: np.asarray(x).astype(_CAST_NAMES[str(dtype)]),
    "classify": _classify,
    "quantize": _quantize,
    "dequantize": _dequantize,
    "constexpr_affine_dequantize": _constexpr_affine_dequantize,
    "constexpr_blockwise_shift_scale": _constexpr_blockwise_shift_scale,
}

# iOS17 (opset CoreML7) changed these ops' semantics; a program of that opset or later uses this version
OPS_IOS17: dict[str, Callable] = {"reshape": _reshape_ios17}

# inputs that are a tuple of values even when the tuple has one element
_TUPLE_INPUTS = {"concat": ("values",)}


# ------------------------------------------------------------------------------------- ops over a stack of inputs
# A plan takes an op's static arguments and which of the others are stacked (True, or a list for a tuple input)
# and returns ``fn(**stacked arguments)`` computing the whole stack at once, or None when it cannot (the op then
# runs item by item: ``_per_item``). Every plan computes item s with the calls ``run`` makes for it alone.
def _only_x(mask: dict) -> bool:
    return set(mask) == {"x"} and mask["x"] is True


def _elementwise(op: str) -> Callable:
    """Ops applied to each element: the stack axis is one more axis."""
    def plan(static, mask):
        return (lambda x: OPS[op](x=x, **static)) if _only_x(mask) else None
    return plan


def _folded(fn: Callable) -> Callable:
    """Ops on (n, C, ...) inputs that treat each of the n images alike: the stack (S, n, C, ...) is folded into
    one batch of S * n images and unfolded after."""
    def run(x):
        out = fn(x.reshape(-1, *x.shape[2:]))
        return out.reshape(x.shape[0], -1, *out.shape[1:])
    return run


def _plan_folded(op: str) -> Callable:
    def plan(static, mask):
        if not _only_x(mask):
            return None
        return _folded(lambda x: OPS[op](x=x, **static))
    return plan


def _plan_conv(static, mask):
    if not _only_x(mask):
        return None  # a computed weight or bias: per item
    conv = _Conv(**static)

    def run(x):
        if x.ndim != conv.dims + 3:
            raise MILUnsupportedError(f"conv: input rank {x.ndim - 1} not implemented (1-D, 2-D and 3-D "
                                      "convolution are)")
        return _folded(conv)(x)
    return run


def _plan_linear(static, mask):
    if not _only_x(mask):
        return None
    linear = _Linear(static["weight"], static.get("bias"))
    return lambda x: linear(x, lead=1)


def _lift(value, stacked: bool, rank: int):
    """A stacked value (S, *shape) with ones inserted after the stack axis to inner rank ``rank``, so that NumPy's
    right-aligned broadcasting pairs inner axes with inner axes; a static value broadcasts as it is."""
    if not stacked:
        return np.asarray(value)
    return value.reshape(value.shape[:1] + (1,) * (rank - (value.ndim - 1)) + value.shape[1:])


def _inner_rank(value, stacked: bool) -> int:
    return np.ndim(value) - (1 if stacked else 0)


def _plan_binary(op: str) -> Callable:
    def plan(static, mask):
        stacked = {"x": mask.get("x") is True, "y": mask.get("y") is True}

        def run(**dynamic):
            values = {**static, **dynamic}
            rank = max(_inner_rank(values[k], stacked[k]) for k in ("x", "y"))
            return OPS[op](*(_lift(values[k], stacked[k], rank) for k in ("x", "y")))
        return run
    return plan


def _plan_matmul(static, mask):
    stacked = {"x": mask.get("x") is True, "y": mask.get("y") is True}
    for key in ("x", "y"):
        if key in static and np.ndim(static[key]) < 2:
            return None  # a vector operand: per item

    def run(**dynamic):
        values = {**static, **dynamic}
        if min(_inner_rank(values[k], stacked[k]) for k in ("x", "y")) < 2:
            return _per_item(_matmul, static, mask)(**dynamic)[0]
        rank = max(_inner_rank(values[k], stacked[k]) for k in ("x", "y"))
        x, y = (_lift(values[k], stacked[k], rank) for k in ("x", "y"))
        return _matmul(x, y, values.get("transpose_x", False), values.get("transpose_y", False))
    return run


def _plan_reshape(ios17: bool) -> Callable:
    def plan(static, mask):
        if not _only_x(mask):
            return None
        return lambda x: x.reshape(x.shape[0], *_reshape_target(x.shape[1:], static["shape"], ios17))
    return plan


def _plan_transpose(static, mask):
    if not _only_x(mask):
        return None
    perm = [int(p) for p in np.asarray(static["perm"]).reshape(-1)]
    return lambda x: np.transpose(x, [0] + [p % (x.ndim - 1) + 1 for p in perm])


def _plan_slice_by_index(static, mask):
    if not _only_x(mask):
        return None
    return lambda x: x[(slice(None), *_slice_index(x.ndim - 1, **static))]


def _plan_squeeze(static, mask):
    if not _only_x(mask):
        return None
    return lambda x: np.squeeze(x, axis=tuple(a + 1 for a in _squeeze_axes(x.shape[1:], static.get("axes"))))


def _plan_expand_dims(static, mask):
    if not _only_x(mask):
        return None
    axes = [int(a) for a in np.asarray(static["axes"]).reshape(-1)]
    return lambda x: np.expand_dims(x, tuple(a % (x.ndim - 1 + len(axes)) + 1 for a in axes))


def _plan_concat(static, mask):
    if set(mask) != {"values"}:
        return None
    flags = mask["values"]

    def run(values):
        size = len(next(v for v, s in zip(values, flags, strict=True) if s))
        lifted = [v if s else np.broadcast_to(v, (size, *np.shape(v))) for v, s in zip(values, flags, strict=True)]
        rank = lifted[0].ndim - 1
        return _concat(lifted, int(static["axis"]) % rank + 1, static.get("interleave", False))
    return run


def _plan_axes(op: str, key: str, all_when_absent: bool) -> Callable:
    """Ops whose ``axes`` / ``axis`` name inner axes: shifted past the stack axis."""
    def plan(static, mask):
        if not _only_x(mask):
            return None

        def run(x):
            rank = x.ndim - 1
            args = dict(static)
            if key in static:
                shifted = tuple(a + 1 for a in _axes(static[key], rank))
                args[key] = shifted[0] if key == "axis" else shifted
            elif all_when_absent:
                args[key] = tuple(range(1, rank + 1))
            return OPS[op](x=x, **args)
        return run
    return plan


def _plan_quantization(op: str) -> Callable:
    def plan(static, mask):
        if set(mask) != {"input"} or mask["input"] is not True:
            return None

        def run(input):
            args = dict(static)
            if args.get("axis") is not None:
                args["axis"] = int(args["axis"]) % (input.ndim - 1) + 1
            return OPS[op](input=input, **args)
        return run
    return plan


# Transcendental ops of one fp16 tensor with an fp16 result: an fp16 input has 65,536 possible values, so the op
# is computed once for all of them (in float64, rounded once to fp16, as ``run`` would round it) and applied as a
# table look-up: the same values as computing each element, at the cost of a gather.
_FP16_TABLE_OPS = ("sigmoid", "silu", "gelu", "erf", "exp", "rsqrt")
_ALL_FP16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
_fp16_tables: dict[tuple, np.ndarray] = {}


def _fp16_table(op_type: str, fn: Callable, static: dict) -> Callable:
    key = (op_type, *sorted((k, np.asarray(v).tobytes() if isinstance(v, np.ndarray) else repr(v))
                            for k, v in static.items()))
    if key not in _fp16_tables:
        with np.errstate(all="ignore"):  # inf and NaN inputs give what the op gives them
            _fp16_tables[key] = np.asarray(fn(x=_ALL_FP16, **static)).astype(np.float16)
    table = _fp16_tables[key]
    return lambda x: table[x.view(np.uint16)]


PLANS: dict[str, Callable] = {
    **{op: _elementwise(op) for op in ("relu", "sigmoid", "silu", "gelu", "erf", "exp", "sqrt", "rsqrt", "square",
                                       "identity", "cast", "pad")},
    **{op: _plan_binary(op) for op in ("add", "sub", "mul", "real_div", "maximum", "minimum", "pow")},
    **{op: _plan_folded(op) for op in ("batch_norm", "avg_pool", "depth_to_space", "space_to_depth",
                                       "pixel_shuffle", "pixel_unshuffle")},
    "conv": _plan_conv,
    "linear": _plan_linear,
    "matmul": _plan_matmul,
    "reshape": _plan_reshape(ios17=False),
    "transpose": _plan_transpose,
    "slice_by_index": _plan_slice_by_index,
    "squeeze": _plan_squeeze,
    "expand_dims": _plan_expand_dims,
    "concat": _plan_concat,
    "softmax": _plan_axes("softmax", "axis", all_when_absent=False),
    "layer_norm": _plan_axes("layer_norm", "axes", all_when_absent=True),
    **{op: _plan_axes(op, "axes", all_when_absent=True) for op in ("reduce_mean", "reduce_sum", "reduce_max")},
    "quantize": _plan_quantization("quantize"),
    "dequantize": _plan_quantization("dequantize"),
}
PLANS_IOS17: dict[str, Callable] = {"reshape": _plan_reshape(ios17=True)}
