"""EMO Mobile: the reference PyTorch EMO and its export-friendly deploy form."""

from emo.errors import EMOError
from emo.model import EMO, VARIANTS, EMOConfig, create_model, deploy, list_models

__version__ = "0.1.0"

__all__ = ["EMO", "EMOConfig", "EMOError", "VARIANTS", "create_model", "deploy", "list_models", "preprocess",
           "imagenet_labels"]


def __getattr__(name: str):
    # preprocessing needs Pillow; keep `import emo` torch-only
    if name in ("preprocess", "imagenet_labels"):
        from emo import data
        return getattr(data, name)
    raise AttributeError(f"module 'emo' has no attribute {name!r}")
