"""The model: parameter counts, state-dict interface, the authors' reference outputs, deploy form."""

import re

import numpy as np
import pytest
import torch

import emo
from emo.model import VARIANTS
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


def test_deploy_matches_reference_data(ref_ckpt):
    ref = np.load(REF_IO)
    model = emo.create_model("emo_1m", str(ref_ckpt))
    deployed = emo.deploy(model)
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


def test_deploy_twice_is_the_same_function():
    torch.manual_seed(0)
    model = _randomize_norms(emo.create_model("emo_1m"))
    once = emo.deploy(model)
    twice = emo.deploy(once)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert (twice(x) - model(x)).abs().max().item() <= 1e-5


def test_deploy_folds_batchnorm_and_keeps_rank_4():
    model = emo.deploy(emo.create_model("emo_1m"))
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
