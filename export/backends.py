"""The table of export backends: the single source of truth for names, suffixes, precisions and extras.

Each backend module exposes the same two functions:
``export(model, example, path, options) -> dict`` writes the artifact (returns facts for the sidecar, e.g. the
operator list), and ``load(path, threads=None) -> Callable[[np.ndarray], np.ndarray]`` runs it on this host.
Converter packages are imported inside the backend module; a missing one becomes an error naming the extra.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from emo.errors import EMOError


@dataclass(frozen=True)
class Backend:
    name: str                     # --format name
    tag: str                      # the {backend} part of the artifact name
    suffix: str                   # file extension, with the dot
    precisions: tuple[str, ...]   # first is the default
    extra: str                    # pip extra that brings the converter and runtime
    module: str                   # module under emo.export holding export() and load()
    runtime: str                  # what checks parity on this host ("checked_with")
    requires: tuple[str, ...]     # top-level packages the module imports

    @property
    def default_precision(self) -> str:
        return self.precisions[0]

    def filename(self, variant: str, precision: str) -> str:
        return f"{variant}_{self.tag}_{precision}{self.suffix}"

    def load_module(self) -> ModuleType:
        """The backend module, or an EMOError naming the extra to install."""
        for package in self.requires:
            try:
                importlib.import_module(package)
            except ImportError as e:
                raise EMOError(f"the {self.name} backend needs '{package}' ({e.name or package} is not importable); "
                               f"install it with: pip install 'emo-mobile[{self.extra}]'") from None
        return importlib.import_module(f"emo.export.{self.module}")


BACKENDS: dict[str, Backend] = {
    "onnx": Backend("onnx", "onnx", ".onnx", ("fp32",), "onnx", "onnx", "onnxruntime (CPU EP)",
                    ("onnx", "onnxruntime", "onnxsim", "onnxscript")),
    "ort": Backend("ort", "ort", ".ort", ("fp32",), "onnx", "ort", "onnxruntime (CPU EP, ORT format)",
                   ("onnx", "onnxruntime", "onnxsim", "onnxscript")),
}


def parse_formats(text: str) -> list[Backend]:
    """``onnx,ort`` -> backends, in the order given; unknown names list the known ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise EMOError("--format is empty; choose from: " + ", ".join(BACKENDS))
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise EMOError(f"unknown format {unknown[0]!r}; choose from: {', '.join(BACKENDS)}")
    return [BACKENDS[n] for n in dict.fromkeys(names)]


def backend_for_artifact(path_name: str) -> Backend:
    for backend in BACKENDS.values():
        if path_name.endswith(backend.suffix):
            return backend
    raise EMOError(f"{path_name}: unknown artifact type; expected one of "
                   + ", ".join(b.suffix for b in BACKENDS.values()))
