"""The MIL interpreter's own details: packed weights, opset-dependent semantics, classifier labels, refusals.

Op semantics are proven against coremltools' own per-op tests in ``test_mil_coremltools_ops.py``; these tests
cover what that suite does not reach.
"""

import numpy as np
import pytest

from emo.contract.runtimes.mil_interpreter import (
    OPS,
    OPS_IOS17,
    MILInterpreterError,
    MILProgram,
    MILUnsupportedError,
    _BlobFile,
    _unpack_bits,
)

ct = pytest.importorskip("coremltools")


@pytest.mark.parametrize(("kind", "bits", "signed", "low", "high"), [
    ("int4", 4, True, -8, 8), ("uint4", 4, False, 0, 16), ("uint1", 1, False, 0, 2), ("uint2", 2, False, 0, 4),
    ("uint3", 3, False, 0, 8), ("uint6", 6, False, 0, 64),
])
def test_packed_weights_match_coremltools_writer(tmp_path, kind, bits, signed, low, high):
    """Sub-byte weights (iOS18 compression) written by coremltools' own blob writer read back exactly."""
    from coremltools import libmilstoragepython

    values = np.random.default_rng(bits).integers(low, high, size=37).astype(np.int8 if signed else np.uint8)
    path = tmp_path / "weight.bin"
    writer = libmilstoragepython._BlobStorageWriter(str(path))
    offset = getattr(writer, f"write_{kind}_data")(np.ascontiguousarray(values))
    del writer  # flushes the file
    np.testing.assert_array_equal(_BlobFile(path).read_packed(offset, bits, signed, (37,)), values)


def test_unpack_bits_refuses_short_data():
    with pytest.raises(Exception, match="2 bytes for 5 elements"):
        _unpack_bits(np.zeros(2, np.uint8), 4, False, (5,))


def test_reshape_zero_follows_the_opset():
    """iOS15/16 copy the dimension at the same index; iOS17 matches from the right, 1 where there is none."""
    x = np.zeros((2, 50))
    assert OPS["reshape"](x, np.array([0, -1])).shape == (2, 50)
    assert OPS_IOS17["reshape"](x, np.array([1, 0, -1, 0])).shape == (1, 1, 2, 50)


def _convert(prog, tmp_path, **kwargs):
    model = ct.convert(prog, source="milinternal", convert_to="mlprogram",
                       minimum_deployment_target=ct.target.iOS17, **kwargs)
    path = tmp_path / "m.mlpackage"
    model.save(str(path))
    return MILProgram(path)


def test_classifier_with_integer_labels(tmp_path):
    """Core ML classifiers may have int64 labels: the top label and the dictionary keys stay integers."""
    from coremltools.converters.mil import Builder as mb  # noqa: N813 (their name)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3))], opset_version=ct.target.iOS17)
    def prog(x):
        return mb.softmax(x=x, axis=-1)

    program = _convert(prog, tmp_path, classifier_config=ct.ClassifierConfig([3, 1, 7]),
                       compute_precision=ct.precision.FLOAT32)
    x = np.array([[0.1, 2.0, -1.0]], np.float32)
    out = program.run({"x": x})
    assert out["classLabel"] == 1 and isinstance(out["classLabel"], int)
    probs = out["classLabel_probs"]
    assert list(probs) == [3, 1, 7]
    np.testing.assert_allclose(list(probs.values()), (np.exp(x) / np.exp(x).sum())[0], atol=1e-6)


def test_unknown_op_is_refused_by_name(tmp_path):
    """An op the interpreter lacks is a ``MILUnsupportedError`` naming it when the program is loaded."""
    from coremltools.converters.mil import Builder as mb  # noqa: N813 (their name)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))], opset_version=ct.target.iOS17)
    def prog(x):
        return mb.cumsum(x=x, axis=1)

    with pytest.raises(MILUnsupportedError, match="does not implement: cumsum"):
        _convert(prog, tmp_path)


@pytest.mark.parametrize(("op", "args", "message"), [
    ("pad", dict(x=np.zeros((2, 2)), pad=np.array([1, 1]), mode="symmetric"), "pad: mode 'symmetric'"),
    ("gelu", dict(x=np.zeros(2), mode="CUBIC"), "gelu: mode 'CUBIC'"),
    ("conv", dict(x=np.zeros((1, 1, 2, 2, 2, 2)), weight=np.zeros((1, 1, 1, 1, 1, 1))), "conv: input rank 6"),
    ("avg_pool", dict(x=np.zeros((1, 1, 4)), kernel_sizes=[2], pad_type="full"), "avg_pool: pad_type 'full'"),
])
def test_unsupported_parameter_is_refused(op, args, message):
    """A parameter value outside what the interpreter implements is refused by name, never approximated."""
    with pytest.raises(MILUnsupportedError, match=message):
        OPS[op](**args)


def test_depth_to_space_is_tensorflow_order_pixel_shuffle_is_pytorch_order():
    """coremltools' own cases use one output channel, where the two orders agree; with 3 they differ.
    depth_to_space follows tf.nn.depth_to_space (NHWC: out[h*b+i, w*b+j, c] = in[h, w, (i*b+j)*C + c]),
    pixel_shuffle follows torch.nn.PixelShuffle (in[(c*b+i)*b+j, h, w])."""
    import torch

    b, c, h, w = 2, 3, 2, 3
    x = np.arange(c * b * b * h * w, dtype=np.float32).reshape(1, c * b * b, h, w)
    nhwc = x[0].transpose(1, 2, 0)
    tf_order = np.empty((h * b, w * b, c), np.float32)
    for i in range(b):
        for j in range(b):
            tf_order[i::b, j::b, :] = nhwc[:, :, (i * b + j) * c:(i * b + j + 1) * c]
    np.testing.assert_array_equal(OPS["depth_to_space"](x, b)[0], tf_order.transpose(2, 0, 1))
    np.testing.assert_array_equal(OPS["space_to_depth"](OPS["depth_to_space"](x, b), b), x)
    torch_order = torch.nn.functional.pixel_shuffle(torch.from_numpy(x), b).numpy()
    np.testing.assert_array_equal(OPS["pixel_shuffle"](x, b), torch_order)
    np.testing.assert_array_equal(OPS["pixel_unshuffle"](torch_order, b), x)
    assert not np.array_equal(OPS["depth_to_space"](x, b), torch_order)


# ------------------------------------------------------------------------------------------ the rounding model
def _program(tmp_path, build, shape, dtype, precision, name="m"):
    """``build(mb, x)`` (MIL builder calls on the input ``x``) converted by coremltools at ``precision``."""
    from coremltools.converters.mil import Builder as mb  # noqa: N813 (their name)

    target = ct.target.iOS17

    @mb.program(input_specs=[mb.TensorSpec(shape=shape, dtype=dtype)], opset_version=target)
    def prog(x):
        return build(mb, x)

    model = ct.convert(prog, source="milinternal", convert_to="mlprogram", minimum_deployment_target=target,
                       compute_precision=precision)
    path = tmp_path / f"{name}.mlpackage"
    model.save(str(path))
    return MILProgram(path)


@pytest.mark.parametrize("op", ["linear", "matmul", "conv"])
def test_fp16_tensors_in_an_fp32_program_accumulate_in_fp32_and_round_once(tmp_path, op):
    """Core ML's CPU path: an op of fp16 tensors accumulates wider and rounds its result once to fp16. Here
    1 + 4 * 2^-11 (four products 2^-11 after a 1): rounded to fp16 after every addition the sum stays 1 (each
    1 + 2^-11 is a tie, rounded to even), accumulated in fp32 it is 1 + 2^-9, which fp16 holds exactly."""
    from coremltools.converters.mil.mil import types

    x = np.array([[1.0] + [2.0 ** -11] * 4], np.float16)                  # (1, 5)
    w = np.ones((3, 5), np.float16)

    def build(mb, inp):
        if op == "linear":
            return mb.linear(x=inp, weight=w)
        if op == "matmul":
            return mb.matmul(x=inp, y=w.T.copy())
        return mb.conv(x=mb.expand_dims(x=inp, axes=[-1]), weight=w[:, :, None])

    program = _program(tmp_path, build, (1, 5), types.fp16, ct.precision.FLOAT32)
    out = np.asarray(next(iter(program.run({"x": x}).values())))
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out.reshape(-1), np.full(3, 1 + 2.0 ** -9, np.float16))


@pytest.mark.parametrize("op", ["add", "sub", "mul", "real_div"])
def test_elementwise_ops_of_fp16_tensors_round_the_exact_result_once(tmp_path, op):
    """x op y of fp16 tensors in an fp32 program is the exact result (float64 holds it) rounded once to fp16, for
    every one of 4,096 random pairs over fp16's whole range."""
    from coremltools.converters.mil.mil import types

    rng = np.random.default_rng(3)
    bits = rng.integers(0, 1 << 16, size=(2, 64, 64), dtype=np.uint16)
    x, y = (b.view(np.float16) for b in bits)
    finite = np.isfinite(x) & np.isfinite(y) & (y != 0)
    x, y = np.where(finite, x, np.float16(1)), np.where(finite, y, np.float16(3))
    ys = np.ascontiguousarray(y)
    program = _program(tmp_path, lambda mb, inp: getattr(mb, op)(x=inp, y=ys), (64, 64), types.fp16,
                       ct.precision.FLOAT32)
    with np.errstate(over="ignore"):
        exact = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.divide}[op](
            x.astype(np.float64), y.astype(np.float64)).astype(np.float16)
    out = np.asarray(next(iter(program.run({"x": x}).values())))
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, exact)


def test_an_fp16_program_rounds_at_every_op_boundary(tmp_path):
    """The GPU/ANE model (and what our Core ML fp16 parity relies on): (x + 2048) - 2048 with x = 0.5 is 0 in an
    fp16 program (2048.5 is not an fp16 value; the add's result rounds to 2048 before the sub), 0.5 in fp32."""
    from coremltools.converters.mil.mil import types

    def build(mb, inp):
        big = np.float32(2048.0)
        return mb.sub(x=mb.add(x=inp, y=big), y=big)

    x = np.full((1, 4), 0.5, np.float32)
    fp16 = _program(tmp_path, build, (1, 4), types.fp32, ct.precision.FLOAT16, name="fp16")
    fp32 = _program(tmp_path, build, (1, 4), types.fp32, ct.precision.FLOAT32, name="fp32")
    assert "add" in fp16.op_types and "sub" in fp16.op_types  # not folded away by coremltools
    np.testing.assert_array_equal(np.asarray(next(iter(fp16.run({"x": x}).values())), np.float32), 0.0)
    np.testing.assert_array_equal(np.asarray(next(iter(fp32.run({"x": x}).values())), np.float32), 0.5)


# ---------------------------------------------------------------------------------------------- run_batch
def _every_plan(mb, x):
    """A program through every op ``run_batch`` computes as one stack (and classify, which loops)."""
    rng = np.random.default_rng(0)
    c = 8
    h = mb.conv(x=x, weight=rng.normal(size=(c, 3, 3, 3)).astype(np.float32), pad_type="same", strides=[2, 2],
                bias=rng.normal(size=c).astype(np.float32))                                    # im2col
    h = mb.silu(x=h)
    h = mb.conv(x=h, weight=rng.normal(size=(c, 1, 5, 5)).astype(np.float32), pad_type="custom",
                pad=[2, 2, 2, 2], groups=c)                                                     # depth-wise
    h = mb.gelu(x=h, mode="EXACT")
    h = mb.conv(x=h, weight=rng.normal(size=(2 * c, c // 2, 1, 1)).astype(np.float32), groups=2)  # point-wise
    h = mb.avg_pool(x=h, kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid")                # (1, 16, 4, 4)
    h = mb.batch_norm(x=h, mean=rng.normal(size=2 * c).astype(np.float32),
                      variance=rng.random(2 * c).astype(np.float32) + 0.5,
                      gamma=rng.normal(size=2 * c).astype(np.float32), beta=rng.normal(size=2 * c).astype(np.float32))
    q = mb.reshape(x=h, shape=[-1, 4, 16])                                                    # (4, 4, 16)
    a = mb.softmax(x=mb.matmul(x=q, y=q, transpose_x=True), axis=-2)                          # (4, 16, 16)
    v = mb.matmul(x=q, y=a)                                                                   # (4, 4, 16)
    h = mb.add(x=h, y=mb.reshape(x=v, shape=[1, 16, 4, 4]))
    h = mb.layer_norm(x=h, axes=[1], epsilon=1e-5)
    h = mb.mul(x=mb.sigmoid(x=h), y=mb.rsqrt(x=mb.add(x=mb.square(x=h), y=1.0)))
    h = mb.concat(values=[h, mb.pixel_unshuffle(x=mb.pixel_shuffle(x=h, upscale_factor=2),
                                                          downscale_factor=np.uint32(2))],
                  axis=1)
    h = mb.pad(x=mb.slice_by_index(x=h, begin=[0, 0, 1, 0], end=[1, 32, 4, 4]), pad=[0, 1, 0, 0], mode="reflect")
    h = mb.transpose(x=h, perm=[0, 2, 3, 1])                                                  # (1, 4, 4, 32)
    h = mb.reduce_mean(x=h, axes=[1, 2], keep_dims=False)                                     # (1, 32)
    h = mb.linear(x=h, weight=rng.normal(size=(10, 32)).astype(np.float32))
    return mb.softmax(x=mb.squeeze(x=mb.expand_dims(x=h, axes=[0]), axes=[0]), axis=-1)


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_run_batch_equals_run_item_by_item_exactly(tmp_path, precision):
    """Every op of ``run_batch`` computes each item of the stack with the calls ``run`` makes for it alone, so
    the stacked path is bit-identical to the per-image one (emo-eval and parity use the stacked path)."""
    from coremltools.converters.mil.mil import types

    program = _program(tmp_path, _every_plan, (1, 3, 16, 16), types.fp32,
                       ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32)
    xs = np.random.default_rng(1).normal(size=(5, 1, 3, 16, 16)).astype(np.float32)
    stacked = next(iter(program.run_batch({"x": xs}).values()))
    single = np.stack([next(iter(program.run({"x": x}).values())) for x in xs])
    planned = {"conv", "silu", "gelu", "avg_pool", "batch_norm", "reshape", "matmul", "softmax", "add", "layer_norm",
               "mul", "sigmoid", "rsqrt", "square", "concat", "pixel_shuffle", "pixel_unshuffle", "slice_by_index",
               "pad", "transpose", "reduce_mean", "linear", "squeeze", "expand_dims"}
    assert planned <= set(program.op_types), planned - set(program.op_types)  # not fused away by coremltools
    assert ("cast" in program.op_types) == (precision == "fp16")
    np.testing.assert_array_equal(stacked, single)
    assert np.isfinite(single).all() and np.ptp(single) > 0  # a real computation, not a constant


def test_a_value_used_twice_by_its_last_op_is_freed_once(tmp_path):
    """x * x where that mul is x's last use (freeing x after it must not trip over the second binding)."""
    from coremltools.converters.mil.mil import types

    program = _program(tmp_path, lambda mb, x: mb.mul(x=mb.relu(x=x), y=mb.relu(x=x)), (1, 3), types.fp32,
                       ct.precision.FLOAT32)
    assert [op.type for op in program.block.operations if op.type != "const"].count("relu") == 1  # one value, twice
    x = np.array([[-1.0, 2.0, 3.0]], np.float32)
    np.testing.assert_array_equal(next(iter(program.run({"x": x}).values())), [[0.0, 4.0, 9.0]])


def test_run_batch_observes_stacked_values_and_refuses_ragged_stacks(tmp_path):
    from coremltools.converters.mil.mil import types

    program = _program(tmp_path, lambda mb, x: mb.relu(x=mb.add(x=x, y=1.0)), (1, 3), types.fp32,
                       ct.precision.FLOAT32)
    seen = {}
    program.run_batch({"x": np.zeros((4, 1, 3), np.float32)}, observe=lambda name, value: seen.update({name: value}))
    assert {np.shape(v) for v in seen.values()} == {(4, 1, 3)}
    with pytest.raises(MILInterpreterError, match="leading axis"):
        program.run_batch({"x": np.float32(1.0)})
