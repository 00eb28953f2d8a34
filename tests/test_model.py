"""The model: parameter counts, state-dict interface, the authors' reference outputs, deploy form."""

import re

import numpy as np
import pytest
import torch

import emo
from emo.model import (
    DEPLOY_TARGETS,
    VARIANTS,
    depth_to_space_nhwc_reference,
    depth_to_space_reference,
    space_to_depth_nhwc_reference,
    space_to_depth_reference,
)
from emo_testutil import REF_IO, REFERENCE, need_reference

VARIANT_NAMES = list(VARIANTS)


def test_list_models():
    assert emo.list_models() == ["emo_1m", "emo_2m", "emo_5m", "emo_6m"]


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_parameter_count_matches_spec(name):
    model = emo.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == VARIANTS[name].params
    assert not model.training


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_state_dict_keys_and_shapes_are_the_authors(name):
    need_reference()
    lines = (REFERENCE / f"{name}_state_dict_keys.txt").read_text().splitlines()
    expected = {}
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        expected[key] = tuple(int(d) for d in re.findall(r"\d+", shape))
    actual = {k: tuple(v.shape) for k, v in emo.create_model(name).state_dict().items()}
    assert actual == expected


def test_reproduces_authors_reference_outputs(ref_ckpt):
    ref = np.load(REF_IO)
    model = emo.create_model("emo_1m", str(ref_ckpt))
    with torch.no_grad():
        for i in (0, 1):  # 224x224 batch 2, and 200x264 which pads windows
            out = model(torch.from_numpy(ref[f"input_{i}"])).numpy()
            assert out.shape == ref[f"logits_{i}"].shape
            assert np.abs(out - ref[f"logits_{i}"]).max() <= 1e-4


@pytest.mark.parametrize("target", DEPLOY_TARGETS)
def test_deploy_matches_reference_data(ref_ckpt, target):
    ref = np.load(REF_IO)
    model = emo.create_model("emo_1m", str(ref_ckpt))
    deployed = emo.deploy(model, target=target)
    with torch.no_grad():
        for i in (0, 1):
            x = torch.from_numpy(ref[f"input_{i}"])
            assert (deployed(x) - model(x)).abs().max().item() <= 1e-5
            assert np.abs(deployed(x).numpy() - ref[f"logits_{i}"]).max() <= 1e-4


def _randomize_norms(model):
    """Non-trivial BatchNorm statistics and LayerNorm affines, so folding is really exercised."""
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
        elif isinstance(m, torch.nn.LayerNorm):
            m.weight.data.copy_(torch.rand(m.normalized_shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.normalized_shape, generator=gen) * 0.1)
    return model


@pytest.mark.parametrize("name", VARIANT_NAMES)
@pytest.mark.parametrize("size", [(224, 224), (200, 264), (32, 32), (97, 45)])
def test_deploy_same_function_any_size(name, size):
    torch.manual_seed(0)
    model = _randomize_norms(emo.create_model(name))
    deployed = emo.deploy(model)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected, actual = model(x), deployed(x)
    assert expected.shape == (2, 1000)
    assert (expected - actual).abs().max().item() <= 1e-5
    # the original is untouched by deploy (a deep copy)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("target", ["native", "channels_last", "channels_last_qkv", "legacy"])
@pytest.mark.parametrize("size", [(224, 224), (448, 448), (200, 264), (97, 45), (32, 32)])
def test_deploy_targets_same_function_any_size(target, size):
    """Every target at square sizes (native space-to-depth), n1 != n2 (200x264: stage 3 is 13x17 -> 2x3 windows,
    the reference fallback) and padding (97x45)."""
    torch.manual_seed(0)
    model = _randomize_norms(emo.create_model("emo_1m"))
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        assert (emo.deploy(model, target=target)(x) - model(x)).abs().max().item() <= 1e-5


def test_strided_grid_is_a_window_major_space_to_depth():
    """EMO_SPEC: window (i, j) holds pixel (a*n1 + i, b*n2 + j) as token (a, b). The deploy form's partition puts
    window (i, j) at channels (i*n2 + j)*C .. +C-1 (ONNX/TFLite/MIL order) and is undone by depth_to_space."""
    x = torch.randn(2, 5, 7 * 3, 7 * 2)
    n1, n2 = 3, 2
    windows = space_to_depth_reference(x, n1, n2).reshape(2, n1, n2, 5, 7, 7)
    for i, j, a, b in [(0, 0, 0, 0), (2, 1, 6, 6), (1, 0, 3, 5), (2, 0, 1, 2)]:
        assert torch.equal(windows[:, i, j, :, a, b], x[:, :, a * n1 + i, b * n2 + j])
    assert torch.equal(depth_to_space_reference(space_to_depth_reference(x, n1, n2), n1, n2), x)
    # square blocks: PyTorch's pixel_unshuffle with its channel order (c, i, j) turned into (i, j, c)
    y = torch.randn(1, 4, 14, 14)
    reordered = torch.nn.functional.pixel_unshuffle(y, 2).reshape(1, 4, 4, 49).transpose(1, 2).reshape(1, 16, 7, 7)
    assert torch.equal(torch.ops.emo.space_to_depth(y, 2, 2), reordered)
    assert torch.equal(torch.ops.emo.depth_to_space(reordered, 2, 2), y)


def test_channel_last_partition_is_the_same_grid():
    """The channels_last target's partition is the NCHW one read channel-last (TFLite SPACE_TO_DEPTH order), for
    square blocks as one op and for rectangular ones in plain ops, and depth_to_space undoes it."""
    x = torch.randn(2, 5, 7 * 3, 7 * 2)
    nhwc = x.permute(0, 2, 3, 1)
    for n1, n2 in [(3, 2), (1, 2)]:
        y = x[:, :, :7 * n1, :7 * n2]
        expected = space_to_depth_reference(y, n1, n2).permute(0, 2, 3, 1)
        got = space_to_depth_nhwc_reference(y.permute(0, 2, 3, 1), n1, n2)
        assert torch.equal(got, expected)
        assert torch.equal(depth_to_space_nhwc_reference(got, n1, n2), y.permute(0, 2, 3, 1))
    square = nhwc[:, :14, :14]
    blocks = torch.ops.emo.space_to_depth_nhwc(square, 2, 2)
    assert torch.equal(blocks, space_to_depth_reference(x[:, :, :14, :14], 2, 2).permute(0, 2, 3, 1))
    assert torch.equal(torch.ops.emo.depth_to_space_nhwc(blocks, 2, 2), square)


def test_native_form_has_no_partition_transposes():
    """At 224 the 7 multi-window blocks of stage 3 partition with one space_to_depth each; the only transposes
    left in the program are the 9 k^T operands (one per attention block), which converters fold into matmuls."""
    def count(target):
        program = torch.export.export(emo.deploy(emo.create_model("emo_1m"), target=target),
                                      (torch.randn(1, 3, 224, 224),))
        names = [n.target.__name__.split(".")[0] for n in program.graph.nodes if n.op == "call_function"]
        return {name: names.count(name) for name in ("space_to_depth", "depth_to_space", "transpose", "permute")}
    assert count("native") == {"space_to_depth": 7, "depth_to_space": 7, "transpose": 9, "permute": 0}
    legacy = count("legacy")
    assert legacy["permute"] + legacy["transpose"] == 64 and legacy["space_to_depth"] == 0


def test_unknown_deploy_target():
    with pytest.raises(emo.EMOError, match="unknown deploy target 'coreml'; choose one of: portable, native"):
        emo.deploy(emo.create_model("emo_1m"), target="coreml")


def test_deploy_twice_is_the_same_function():
    torch.manual_seed(0)
    model = _randomize_norms(emo.create_model("emo_1m"))
    once = emo.deploy(model)
    twice = emo.deploy(once)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert (twice(x) - model(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("target", DEPLOY_TARGETS)
def test_deploy_folds_batchnorm_and_keeps_rank_4(target):
    model = emo.deploy(emo.create_model("emo_1m"), target=target)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    program = torch.export.export(model, (torch.randn(1, 3, 200, 264),))
    ranks = {node.name: len(node.meta["val"].shape) for node in program.graph.nodes
             if isinstance(node.meta.get("val"), torch.Tensor)}
    assert max(ranks.values()) <= 4, {k: r for k, r in ranks.items() if r > 4}
    # no no-op slices (they become `alias` nodes that coremltools rejects)
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert not any("alias" in t for t in targets)


def test_reference_form_needs_rank_6():
    """The faithful path really partitions through rank 6: the deploy test above is not vacuous."""
    program = torch.export.export(emo.create_model("emo_1m"), (torch.randn(1, 3, 224, 224),))
    ranks = [len(n.meta["val"].shape) for n in program.graph.nodes if isinstance(n.meta.get("val"), torch.Tensor)]
    assert max(ranks) == 6


def test_forward_intermediates_and_feature_info():
    model = emo.create_model("emo_2m")
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        feats = model.forward_intermediates(x)
        logits = model.forward_head(model.forward_features(x))
        assert torch.allclose(logits, model(x))
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]
    for f, info in zip(feats, model.feature_info, strict=False):
        assert f.shape == (1, info["num_chs"], 256 // info["reduction"], 192 // info["reduction"])
    assert pre.shape == (1, 200)


def test_num_classes_without_weights():
    assert emo.create_model("emo_1m", num_classes=10).head.out_features == 10
