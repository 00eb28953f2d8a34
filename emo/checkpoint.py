"""Reading the authors' checkpoints: ``{'net': sd}``, ``{'net_E': sd}``, a bare state dict, ``module.`` prefixes.

Files are read with ``torch.load(weights_only=True)``: a checkpoint is data, and a pickle that carries code is
refused. Every failure becomes an ``EMOError`` whose one line says what to do.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from emo.errors import EMOError, first_line

# Keys the authors' training loop stores next to the weights; a dict holding one of them is a training checkpoint.
_WRAPPER_KEYS = ("net", "net_E", "state_dict", "model")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> object:
    """``torch.load(weights_only=True)`` with the file's format checked first, so errors say what the file is."""
    path = Path(path)
    if not path.exists():
        raise EMOError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise EMOError(f"checkpoint is not a file: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise EMOError(f"{path} is empty, not a PyTorch checkpoint")
    is_zip = head.startswith(b"PK\x03\x04")          # torch.save's format since 1.6
    is_pickle = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")  # legacy or raw pickle
    if not (is_zip or is_pickle):
        raise EMOError(f"{path} is not a PyTorch checkpoint (neither torch.save's zip format nor a pickle)")
    if is_zip:  # torch.load does not check the zip's CRCs: a flipped byte inside a tensor would load silently
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise _corrupt(path, e) from None
        if bad is not None:
            raise EMOError(f"{path} is corrupt: the CRC of {bad.split('/')[-1]!r} does not match (damaged in copy "
                           "or download?); get the checkpoint again")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4" on raw pickles: the error below says more
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower() or not is_zip:
            raise EMOError(f"{path} is not a plain checkpoint: it holds Python objects or code that weights_only "
                           "loading refuses; re-save it as a state dict with torch.save(model.state_dict())") from None
        raise _corrupt(path, e) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, UnicodeDecodeError) as e:
        raise _corrupt(path, e) from None


def _corrupt(path: Path, error: BaseException) -> EMOError:
    return EMOError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {first_line(error)}")


def load_state_dict(path: str | Path, *, ema: bool = False) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint in any of the authors' forms, without ``module.`` prefixes.

    ``ema=True`` picks ``net_E`` (the EMA weights) when the checkpoint holds them.
    """
    obj = read_checkpoint(path)
    if not isinstance(obj, Mapping):
        raise EMOError(f"{path} holds a {type(obj).__name__}, not a state dict or a checkpoint dict")
    state = obj
    if ema:
        if obj.get("net_E") is None:
            raise EMOError(f"{path} has no EMA weights ('net_E'); drop --ema to load 'net'")
        state = obj["net_E"]
    else:
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                state = obj[key]
                break
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise EMOError(f"{path} holds no weight tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def _expected_shapes(name: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    from emo.model import EMO, VARIANTS

    with torch.device("meta"):
        model = EMO(VARIANTS[name], num_classes=num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _mismatches(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    bad = [k for k in expected if k not in state or tuple(state[k].shape) != expected[k]]
    return bad + [k for k in state if k not in expected]


def check_variant(state: Mapping[str, torch.Tensor], name: str, path: str | Path) -> int:
    """Check that ``state`` is a checkpoint of variant ``name``; return its number of classes.

    On a mismatch the message names the variant whose shapes the checkpoint does match, if any.
    """
    from emo.model import VARIANTS

    head = state.get("head.weight")
    num_classes = int(head.shape[0]) if head is not None and head.dim() == 2 else 1000
    bad = _mismatches(state, _expected_shapes(name, num_classes))
    if not bad:
        return num_classes
    others = [other for other in VARIANTS
              if other != name and not _mismatches(state, _expected_shapes(other, num_classes))]
    if others:
        raise EMOError(f"{path} is a checkpoint of {others[0]}, not {name}; use --model {others[0]}")
    shown = ", ".join(bad[:3]) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else "")
    raise EMOError(f"{path} does not match {name} or any EMO variant: mismatched keys {shown}")


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], name: str, path: str | Path) -> None:
    """Strict load; ``check_variant`` has already compared every key and shape."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # dtype or anything check_variant did not foresee
        raise EMOError(f"{path} does not load into {name}: {str(e).splitlines()[0]}") from None


def trained_metadata(obj: Mapping, path: str | Path) -> tuple[list[str] | None, tuple[int, int] | None]:
    """``classes`` and ``input.size`` of a checkpoint dict, each None when absent; a malformed one is refused with
    the field named (a list of 1e8 names, a non-string, a size of 10**6 pixels), never ignored or trusted."""
    from emo.data import check_class_names

    classes = obj.get("classes")
    if classes is not None:
        classes = list(check_class_names(classes, f"{path}: field 'classes'"))
    contract = obj.get("input")
    if contract is None:
        return classes, None
    size = contract.get("size") if isinstance(contract, Mapping) else None
    if not (isinstance(size, list | tuple) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 32 <= v <= 4096 for v in size)):
        raise EMOError(f"{path}: field 'input.size' must be [height, width], integers 32..4096, not {str(size)[:60]}")
    return classes, (int(size[0]), int(size[1]))
