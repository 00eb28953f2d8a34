"""Loading the authors' checkpoint forms, and a one-line error for every bad checkpoint."""

import pickle

import pytest
import torch

import emo
from emo import EMOError


def _save(tmp_path, obj, name="ckpt.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def _same_weights(model, state):
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items())


@pytest.mark.parametrize("form", ["net", "bare", "module_prefix", "training"])
def test_checkpoint_forms(tmp_path, ref_state, form):
    if form == "net":
        obj = {"net": ref_state, "net_E": None}
    elif form == "bare":
        obj = ref_state
    elif form == "module_prefix":
        obj = {"net": {f"module.{k}": v for k, v in ref_state.items()}}
    else:
        obj = {"net": ref_state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
               "scheduler": {"last_epoch": 3}, "epoch": 300, "topk_recorder": {"net_top1": [71.5]}}
    model = emo.create_model("emo_1m", _save(tmp_path, obj))
    assert _same_weights(model, ref_state)


def test_legacy_non_zip_format(tmp_path, ref_state):
    path = tmp_path / "legacy.pth"
    torch.save({"net": ref_state}, path, _use_new_zipfile_serialization=False)
    assert _same_weights(emo.create_model("emo_1m", str(path)), ref_state)


def test_ema_picks_net_e(tmp_path, ref_state):
    ema_state = {k: (v + 1 if v.is_floating_point() else v) for k, v in ref_state.items()}
    path = _save(tmp_path, {"net": ref_state, "net_E": ema_state})
    assert _same_weights(emo.create_model("emo_1m", path, ema=True), ema_state)
    assert _same_weights(emo.create_model("emo_1m", path), ref_state)


def test_ema_missing_is_a_clear_error(tmp_path, ref_state):
    with pytest.raises(EMOError, match="no EMA weights"):
        emo.create_model("emo_1m", _save(tmp_path, {"net": ref_state, "net_E": None}), ema=True)


@pytest.mark.parametrize("classes", [10, 37])
def test_finetuned_head_loads_without_flags(tmp_path, ref_state, classes):
    state = dict(ref_state)
    state["head.weight"] = torch.randn(classes, 168)
    state["head.bias"] = torch.randn(classes)
    model = emo.create_model("emo_1m", _save(tmp_path, {"net": state}))
    assert model.head.out_features == classes
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, classes)


def test_missing_file():
    with pytest.raises(EMOError, match="not found"):
        emo.create_model("emo_1m", "/nonexistent/emo.pth")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(EMOError, match="not a PyTorch checkpoint"):
        emo.create_model("emo_1m", str(path))


def test_truncated(tmp_path, ref_ckpt):
    path = tmp_path / "truncated.pth"
    path.write_bytes(ref_ckpt.read_bytes()[:100_000])
    with pytest.raises(EMOError, match="truncated or corrupt"):
        emo.create_model("emo_1m", str(path))


class _Evil:
    def __reduce__(self):
        return (print, ("this code ran",))


def test_pickle_with_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"net": _Evil()}, path)
    with pytest.raises(EMOError, match="weights_only"):
        emo.create_model("emo_1m", str(path))
    assert "this code ran" not in capsys.readouterr().out
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(EMOError):
        emo.create_model("emo_1m", str(raw))
    assert "this code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("actual", ["emo_2m", "emo_5m", "emo_6m"])
def test_other_variant_is_named(tmp_path, actual):
    path = _save(tmp_path, {"net": emo.create_model(actual).state_dict()})
    with pytest.raises(EMOError, match=f"checkpoint of {actual}, not emo_1m; use --model {actual}"):
        emo.create_model("emo_1m", path)


def test_unrelated_state_dict(tmp_path):
    path = _save(tmp_path, torch.nn.Linear(3, 4).state_dict())
    with pytest.raises(EMOError, match="does not match emo_1m or any EMO variant"):
        emo.create_model("emo_1m", path)


def test_not_a_dict(tmp_path):
    with pytest.raises(EMOError, match="not a state dict"):
        emo.create_model("emo_1m", _save(tmp_path, [torch.zeros(3)]))


def test_unknown_model_lists_names():
    with pytest.raises(EMOError, match="emo_1m, emo_2m, emo_5m, emo_6m"):
        emo.create_model("emo_3m")


def test_strict_loading_rejects_extra_model_keys(tmp_path, ref_state):
    state = dict(ref_state)
    state["stage9.0.weight"] = torch.zeros(1)
    with pytest.raises(EMOError):
        emo.create_model("emo_1m", _save(tmp_path, state))


@pytest.mark.parametrize("num_classes", [-5, 0, 2.5, True, "10"])
def test_num_classes_must_be_a_positive_integer(num_classes):
    with pytest.raises(emo.EMOError, match="num_classes must be a positive integer"):
        emo.create_model("emo_1m", num_classes=num_classes)
