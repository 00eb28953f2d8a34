"""The MIL interpreter's own details: packed weights, opset-dependent semantics, classifier labels, refusals.

Op semantics are proven against coremltools' own per-op tests in ``test_mil_coremltools_ops.py``; these tests
cover what that suite does not reach.
"""

import numpy as np
import pytest

from emo.export.mil_interpreter import (
    OPS,
    OPS_IOS17,
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
