"""A NumPy interpreter for the Core ML ML programs (MIL) that EMO exports contain.

Core ML only runs on macOS and iOS, yet most exports are made on Linux. This interpreter reads a saved
``.mlpackage`` (the ``Model`` protobuf and the weight blob file), executes the main function op by op and returns
its outputs, so an export can be checked where it is made.

- Every op is computed in float32 (float64 for reductions where it matters) and its result is rounded to the
  dtype the program declares for that output: an fp16 program is thus executed with fp16 rounding at op
  boundaries, approximately what the GPU and the Neural Engine do (they may keep wider accumulators inside an op).
- An op, or a parameter value, it does not implement raises ``MILUnsupportedError`` (a ``MILInterpreterError``)
  naming it; nothing is skipped or approximated. The ops' semantics are checked against coremltools' own per-op
  tests (``tests/test_mil_coremltools_ops.py``).
- Only the protobuf classes of coremltools are used (plain protobuf, no Core ML runtime); the weight file is
  parsed here (``_BlobFile``), its format checked against coremltools' own reader in the tests.
"""

from __future__ import annotations

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
    """A loaded ML program: ``run({"image": array}) -> {output name: value}``."""

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
        unknown = [t for t in self.op_types if t not in self.ops]
        if unknown:
            raise MILUnsupportedError(f"MIL op(s) the interpreter does not implement: {', '.join(unknown)}")

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
        return {op.outputs[0].name: self._value(op.attributes["val"])
                for op in self.block.operations if op.type == "const"}

    # --------------------------------------------------------------------------------------------- run
    def run(self, feeds: dict[str, np.ndarray], observe: Callable[[str, object], None] | None = None
            ) -> dict[str, object]:
        """Execute the program. ``observe(name, value)``, when given, sees every intermediate value (the outputs of
        every op but constants), e.g. to collect activation ranges for quantization."""
        env: dict[str, object] = {}
        for name, dtype in self.inputs.items():
            if name not in feeds:
                raise MILInterpreterError(f"missing input {name!r}")
            env[name] = np.asarray(feeds[name]).astype(dtype, copy=False)
        for op in self.block.operations:
            args: dict[str, object] = {}
            for key, argument in op.inputs.items():
                bindings = argument.arguments
                values = [env[b.name] if b.WhichOneof("binding") == "name" else self._value(b.value) for b in bindings]
                args[key] = values if key in _TUPLE_INPUTS.get(op.type, ()) or len(values) != 1 else values[0]
            attributes = {k: v for k, v in op.attributes.items() if k != "name"}
            if op.type == "const":
                results = (self._value(attributes["val"]),)
            else:
                # iOS16 constexpr ops keep their constant parameters as attributes, not inputs
                args.update({key: self._value(value) for key, value in attributes.items()})
                results = self.ops[op.type](**args)
                if not isinstance(results, tuple):
                    results = (results,)
            for output, result in zip(op.outputs, results, strict=True):
                _check_declared_shape(op, output, result)
                env[output.name] = _round_to_declared(result, output.type)
                if observe is not None and op.type != "const" and not op.type.startswith("constexpr_"):
                    observe(output.name, env[output.name])
        return {name: env[name] for name in self.block.outputs}


def _check_declared_shape(op, output, result) -> None:
    """The program declares every output's shape; a mismatch means a bug here or a corrupt program."""
    if output.type.WhichOneof("type") != "tensorType" or not isinstance(result, np.ndarray):
        return
    dims = output.type.tensorType.dimensions
    declared = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in dims)
    if len(declared) != result.ndim or any(d is not None and d != r
                                           for d, r in zip(declared, result.shape, strict=True)):
        raise MILInterpreterError(f"{op.type} -> {output.name}: computed shape {result.shape}, "
                                  f"program declares {declared}")


def _round_to_declared(result, value_type):
    """Round an op's result to the dtype the program declares (fp16 programs: fp16 at every op boundary)."""
    if value_type.WhichOneof("type") != "tensorType" or not isinstance(result, np.ndarray):
        return result
    dtype = _DTYPES.get(value_type.tensorType.dataType)
    return result.astype(dtype) if dtype is not None and result.dtype != dtype else result


# ------------------------------------------------------------------------------------------------------ the ops
def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _conv(x, weight, strides=None, pad_type="valid", pad=None, dilations=None, groups=1, bias=None):
    """1-D, 2-D or 3-D convolution (input rank 3, 4 or 5), grouped and dilated, as a sum over strided windows."""
    x, weight = _f32(x), _f32(weight)
    dims = x.ndim - 2
    if dims not in (1, 2, 3):
        raise MILUnsupportedError(f"conv: input rank {x.ndim} not implemented (1-D, 2-D and 3-D convolution are)")
    groups = int(groups)
    strides = [1] * dims if strides is None else [int(s) for s in np.asarray(strides).reshape(-1)]
    dilations = [1] * dims if dilations is None else [int(d) for d in np.asarray(dilations).reshape(-1)]
    cout, cin_g = weight.shape[:2]
    spans = [(k - 1) * d + 1 for k, d in zip(weight.shape[2:], dilations, strict=True)]  # dilated kernel extent
    widths = []
    for i, (size, span, stride) in enumerate(zip(x.shape[2:], spans, strides, strict=True)):
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
    x = np.pad(x, [(0, 0), (0, 0), *widths])
    windows = np.lib.stride_tricks.sliding_window_view(x, spans, axis=tuple(range(2, x.ndim)))
    windows = windows[(slice(None), slice(None), *(slice(None, None, s) for s in strides),
                       *(slice(None, None, d) for d in dilations))]             # (N, C, *out, *kernel)
    c = windows.shape[1]
    out_ix, k_ix = "hwd"[:dims], "ijk"[:dims]
    if groups == 1:
        out = np.einsum(f"nc{out_ix}{k_ix},oc{k_ix}->no{out_ix}", windows, weight, optimize=True)
    elif groups == c and cin_g == 1 and cout == c:                               # depth-wise
        out = np.einsum(f"nc{out_ix}{k_ix},c{k_ix}->nc{out_ix}", windows, weight[:, 0], optimize=True)
    else:
        per, out_per = c // groups, cout // groups
        out = np.concatenate([
            np.einsum(f"nc{out_ix}{k_ix},oc{k_ix}->no{out_ix}", windows[:, g * per:(g + 1) * per],
                      weight[g * out_per:(g + 1) * out_per], optimize=True) for g in range(groups)], axis=1)
    if bias is not None:
        out = out + _f32(bias).reshape((1, -1) + (1,) * dims)
    return out.astype(np.float32)


def _reshape(x, shape):
    """iOS15/16: a 0 in ``shape`` copies the input's dimension at the same index (``len(shape) == rank``)."""
    x = np.asarray(x)
    shape = [int(s) for s in np.asarray(shape).reshape(-1)]
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return np.reshape(x, shape)


def _reshape_ios17(x, shape):
    """iOS17: a 0 matches the input's dimension counted from the right; a 0 with no such dimension is 1."""
    x = np.asarray(x)
    shape = [int(s) for s in np.asarray(shape).reshape(-1)]
    offset = len(shape) - x.ndim
    shape = [(x.shape[i - offset] if i - offset >= 0 else 1) if s == 0 else s for i, s in enumerate(shape)]
    return np.reshape(x, shape)


def _squeeze(x, axes=None):
    """Axes whose size is not 1 are ignored (PyTorch's rule, as the MIL documentation says), not an error."""
    x = np.asarray(x)
    if axes is None:
        return np.squeeze(x)
    axes = tuple(int(a) % x.ndim for a in np.asarray(axes).reshape(-1) if x.shape[int(a)] == 1)
    return np.squeeze(x, axis=axes)


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


def _slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    rank = x.ndim
    stride = [1] * rank if stride is None else [int(s) for s in stride]
    slices, squeeze = [], []
    for i in range(rank):
        b = None if (begin_mask is not None and begin_mask[i]) else int(begin[i])
        e = None if (end_mask is not None and end_mask[i]) else int(end[i])
        if squeeze_mask is not None and squeeze_mask[i]:
            slices.append(b if b is not None else 0)
            squeeze.append(i)
        else:
            slices.append(slice(b, e, stride[i]))
    return x[tuple(slices)]


def _reduce(fn: Callable) -> Callable:
    def op(x, axes=None, keep_dims=False):
        axis = None if axes is None else tuple(int(a) for a in np.asarray(axes).reshape(-1))
        return fn(np.asarray(x, dtype=np.float64), axis=axis, keepdims=bool(keep_dims)).astype(np.float32)
    return op


def _softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=int(axis), keepdims=True))
    return (e / e.sum(axis=int(axis), keepdims=True)).astype(np.float32)


def _gelu(x, mode="EXACT"):
    x64 = np.asarray(x, dtype=np.float64)
    if mode == "EXACT":
        out = 0.5 * x64 * (1.0 + _erf(x64 / math.sqrt(2.0)))
    elif mode == "TANH_APPROXIMATION":
        out = 0.5 * x64 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x64 + 0.044715 * x64 ** 3)))
    elif mode == "SIGMOID_APPROXIMATION":
        out = x64 / (1.0 + np.exp(-1.702 * x64))
    else:
        raise MILUnsupportedError(f"gelu: mode {mode!r} not implemented")
    return out.astype(np.float32)


def _sigmoid(x):
    return (1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))).astype(np.float32)


def _matmul(x, y, transpose_x=False, transpose_y=False):
    x, y = _f32(x), _f32(y)
    if transpose_x:
        x = np.swapaxes(x, -1, -2)
    if transpose_y:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    shape = (1, -1) + (1,) * (np.ndim(x) - 2)
    out = (_f32(x) - _f32(mean).reshape(shape)) / np.sqrt(_f32(variance).reshape(shape) + np.float32(epsilon))
    if gamma is not None:
        out = out * _f32(gamma).reshape(shape)
    if beta is not None:
        out = out + _f32(beta).reshape(shape)
    return out


def _pad(x, pad, mode="constant", constant_val=0.0):
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
    return lambda x, y: fn(_f32(x), _f32(y))


def _layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over ``axes`` (all when absent); gamma and beta have the
    shape of x at ``axes``."""
    x64 = np.asarray(x, dtype=np.float64)
    rank = x64.ndim
    axes = tuple(range(rank)) if axes is None else tuple(sorted(int(a) % rank for a in np.asarray(axes).reshape(-1)))
    mean = x64.mean(axis=axes, keepdims=True)
    var = np.square(x64 - mean).mean(axis=axes, keepdims=True)
    out = (x64 - mean) / np.sqrt(var + float(epsilon))
    param_shape = [x64.shape[i] if i in axes else 1 for i in range(rank)]
    if gamma is not None:
        out = out * np.asarray(gamma, dtype=np.float64).reshape(param_shape)
    if beta is not None:
        out = out + np.asarray(beta, dtype=np.float64).reshape(param_shape)
    return out.astype(np.float32)


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
    x = np.asarray(x, dtype=np.float64)
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
    return (sums / counts).astype(np.float32)


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
    "const": lambda **_: None,  # handled in run()
    "conv": _conv,
    "linear": lambda x, weight, bias=None: _f32(x) @ _f32(weight).T + (0 if bias is None else _f32(bias)),
    "matmul": _matmul,
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "real_div": _binary(np.divide),
    "maximum": _binary(np.maximum),
    "minimum": _binary(np.minimum),
    "pow": _binary(np.power),
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
    "silu": lambda x: (_f32(x) * _sigmoid(x)).astype(np.float32),
    "gelu": _gelu,
    "relu": lambda x: np.maximum(_f32(x), 0),
    "erf": lambda x: _erf(x).astype(np.float32),
    "exp": lambda x: np.exp(_f32(x)),
    "sqrt": lambda x: np.sqrt(_f32(x)),
    "rsqrt": lambda x, epsilon=1e-12: (1.0 / np.sqrt(np.asarray(x, np.float64) + float(epsilon))).astype(np.float32),
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
