"""A NumPy interpreter for the Core ML ML programs (MIL) that EMO exports contain.

Core ML only runs on macOS and iOS, yet most exports are made on Linux. This interpreter reads a saved
``.mlpackage`` (the ``Model`` protobuf and the weight blob file), executes the main function op by op and returns
its outputs, so an export can be checked where it is made.

- Every op is computed in float32 (float64 for reductions where it matters) and its result is rounded to the
  dtype the program declares for that output: an fp16 program is thus executed with fp16 rounding at op
  boundaries, approximately what the GPU and the Neural Engine do (they may keep wider accumulators inside an op).
- An op it does not know raises ``MILInterpreterError`` naming the op; nothing is skipped.
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


# MIL DataType enum values (coremltools/mlmodel/format/MIL.proto) -> NumPy
_DTYPES = {1: np.bool_, 10: np.float16, 11: np.float32, 12: np.float64, 21: np.int8, 22: np.int16, 23: np.int32,
           24: np.int64, 31: np.uint8, 32: np.uint16, 33: np.uint32, 34: np.uint64}
_STRING = 2
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
        self.inputs = [value.name for value in function.inputs]
        self.weights_dir = (self.package / "Data" / root).parent / "weights"
        self._blobs: dict[str, _BlobFile] = {}
        self.op_types = sorted({op.type for op in self.block.operations})
        unknown = [t for t in self.op_types if t not in OPS]
        if unknown:
            raise MILInterpreterError(f"MIL op(s) the interpreter does not implement: {', '.join(unknown)}")

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
        if which == "blobFileValue":
            dtype = _DTYPES[tensor_type.dataType]
            return self._blob(value.blobFileValue.fileName).read(value.blobFileValue.offset, dtype, shape).copy()
        tensor = value.immediateValue.tensor
        field = tensor.WhichOneof("value")
        if tensor_type.dataType == _STRING:
            strings = list(tensor.strings.values)
            return strings[0] if not shape else np.array(strings, dtype=object).reshape(shape)
        if field is None:
            raise MILInterpreterError("immediate value without data")
        if field == "bytes":
            data = np.frombuffer(tensor.bytes.values, dtype=_DTYPES[tensor_type.dataType])
        else:
            data = np.array(list(getattr(tensor, field).values), dtype=_DTYPES.get(tensor_type.dataType, np.float32))
        return data.reshape(shape)

    # --------------------------------------------------------------------------------------------- run
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, object]:
        env: dict[str, object] = {}
        for name in self.inputs:
            if name not in feeds:
                raise MILInterpreterError(f"missing input {name!r}")
            env[name] = np.asarray(feeds[name], dtype=np.float32)
        for op in self.block.operations:
            args: dict[str, object] = {}
            for key, argument in op.inputs.items():
                bindings = argument.arguments
                values = [env[b.name] if b.WhichOneof("binding") == "name" else self._value(b.value) for b in bindings]
                args[key] = values[0] if len(values) == 1 else values
            attributes = {k: v for k, v in op.attributes.items() if k != "name"}
            if op.type == "const":
                results = (self._value(attributes["val"]),)
            else:
                results = OPS[op.type](**args)
                if not isinstance(results, tuple):
                    results = (results,)
            for output, result in zip(op.outputs, results, strict=True):
                _check_declared_shape(op, output, result)
                env[output.name] = _round_to_declared(result, output.type)
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
    x, weight = _f32(x), _f32(weight)
    if x.ndim != 4:
        raise MILInterpreterError(f"conv: only 2-D convolution is implemented (input rank {x.ndim})")
    groups = int(groups)
    sh, sw = (int(s) for s in (strides if strides is not None else (1, 1)))
    dh, dw = (int(d) for d in (dilations if dilations is not None else (1, 1)))
    cout, cin_g, kh, kw = weight.shape
    if pad_type == "custom":
        top, bottom, left, right = (int(p) for p in pad)
    elif pad_type == "valid":
        top = bottom = left = right = 0
    elif pad_type in ("same", "same_lower"):
        eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
        out_h, out_w = math.ceil(x.shape[2] / sh), math.ceil(x.shape[3] / sw)
        ph = max((out_h - 1) * sh + eh - x.shape[2], 0)
        pw = max((out_w - 1) * sw + ew - x.shape[3], 0)
        small_first = pad_type == "same"
        top, left = (ph // 2, pw // 2) if small_first else (ph - ph // 2, pw - pw // 2)
        bottom, right = ph - top, pw - left
    else:
        raise MILInterpreterError(f"conv: pad_type {pad_type!r} not implemented")
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    windows = np.lib.stride_tricks.sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]                             # (N, C, OH, OW, kh, kw)
    n, c, oh, ow = windows.shape[:4]
    if groups == 1:
        out = np.einsum("nchwij,ocij->nohw", windows, weight, optimize=True)
    elif groups == c and cin_g == 1 and cout == c:                               # depth-wise
        out = np.einsum("nchwij,cij->nchw", windows, weight[:, 0], optimize=True)
    else:
        per = c // groups
        out_per = cout // groups
        out = np.concatenate([
            np.einsum("nchwij,ocij->nohw", windows[:, g * per:(g + 1) * per],
                      weight[g * out_per:(g + 1) * out_per], optimize=True) for g in range(groups)], axis=1)
    if bias is not None:
        out = out + _f32(bias).reshape(1, -1, 1, 1)
    return out.astype(np.float32)


def _reshape(x, shape):
    shape = [int(s) for s in np.asarray(shape).reshape(-1)]
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]  # 0 copies the input's dimension
    return np.reshape(x, shape)


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
        raise MILInterpreterError(f"gelu: mode {mode!r} not implemented")
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
    if mode != "constant":
        raise MILInterpreterError(f"pad: mode {mode!r} not implemented")
    return np.pad(x, pairs, constant_values=float(constant_val))


def _classify(probabilities, classes):
    probabilities = np.asarray(probabilities, dtype=np.float32).reshape(-1)
    labels = [str(c) if not isinstance(c, np.ndarray) else str(c.reshape(-1)[0]) for c in classes]
    if len(labels) != probabilities.size:
        raise MILInterpreterError(f"classify: {len(labels)} classes for {probabilities.size} probabilities")
    return labels[int(probabilities.argmax())], dict(zip(labels, probabilities.tolist(), strict=True))


def _binary(fn: Callable) -> Callable:
    return lambda x, y: fn(_f32(x), _f32(y))


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
    "reshape": _reshape,
    "transpose": lambda x, perm: np.transpose(x, [int(p) for p in perm]),
    "slice_by_index": _slice_by_index,
    "squeeze": lambda x, axes=None: np.squeeze(x, axis=None if axes is None else tuple(int(a) for a in axes)),
    "expand_dims": lambda x, axes: np.expand_dims(x, tuple(int(a) for a in axes)),
    "concat": lambda values, axis, interleave=False: np.concatenate(values, axis=int(axis)),
    "pad": _pad,
    "reduce_mean": _reduce(np.mean),
    "reduce_sum": _reduce(np.sum),
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
}


# Space <-> depth (issue 12's window partition). MIL's space_to_depth / depth_to_space follow TensorFlow's channel
# order ("DCR": block position outside the channel, out[:, (i*b + j)*C + c, y, x] = in[:, c, y*b + i, x*b + j]);
# pixel_shuffle / pixel_unshuffle follow PyTorch's ("CRD": out[:, c*b*b + i*b + j, y, x]). coremltools' TensorFlow
# frontend maps SpaceToDepth straight to space_to_depth, its torch frontend pixel_unshuffle to pixel_unshuffle.
def _to_depth(x, block: int, dcr: bool) -> np.ndarray:
    n, c, h, w = x.shape
    b = int(block)
    blocks = np.asarray(x).reshape(n, c, h // b, b, w // b, b)                 # (n, c, y, i, x, j)
    order = (0, 3, 5, 1, 2, 4) if dcr else (0, 1, 3, 5, 2, 4)
    return blocks.transpose(order).reshape(n, c * b * b, h // b, w // b)


def _to_space(x, block: int, dcr: bool) -> np.ndarray:
    n, cb, h, w = x.shape
    b = int(block)
    c = cb // (b * b)
    if dcr:
        blocks = np.asarray(x).reshape(n, b, b, c, h, w).transpose(0, 3, 4, 1, 5, 2)  # (n, c, y, i, x, j)
    else:
        blocks = np.asarray(x).reshape(n, c, b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return blocks.reshape(n, c, h * b, w * b)


OPS.update({
    "space_to_depth": lambda x, block_size: _to_depth(x, block_size, dcr=True),
    "depth_to_space": lambda x, block_size: _to_space(x, block_size, dcr=True),
    "pixel_unshuffle": lambda x, downscale_factor: _to_depth(x, downscale_factor, dcr=False),
    "pixel_shuffle": lambda x, upscale_factor: _to_space(x, upscale_factor, dcr=False),
})
