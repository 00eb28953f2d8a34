"""EMO Mobile: the reference PyTorch EMO and its export-friendly deploy form.

Attributes load lazily so that ``emo.runtime_bench`` (which lives in this namespace) imports neither torch nor
the model: it must run on a machine that has only a runtime installed.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "EMO": "emo.model", "EMOConfig": "emo.model", "VARIANTS": "emo.model", "create_model": "emo.model",
    "deploy": "emo.model", "list_models": "emo.model", "EMOError": "emo.errors",
    "preprocess": "emo.data", "imagenet_labels": "emo.data",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emo' has no attribute {name!r}")
