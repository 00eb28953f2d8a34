"""Core ML backend: an ML program (``.mlpackage``) converted from the deploy form through ``torch.export``.

Recipe (Apple's export_model.py):
1. Optionally end the graph with a softmax (``--classifier``: Core ML classifiers take probabilities).
2. ``torch.export`` of the deploy form (static int shapes, rank <= 4, no no-op slices: the naive model fails
   in coremltools 9 through both jit.trace and torch.export).
3. ``ct.convert`` to an ML program: ``image`` as a tensor, or as an ``ImageType`` (RGB, scale 1/255, so an app
   hands a CVPixelBuffer straight in; the per-channel normalisation stays in the graph, because ImageType's
   scale is one scalar); fp16 (default, what the GPU and ANE run) or fp32; minimum deployment target.
   int8 (W8A8, iOS17+): the fp16 program, then coremltools' ``linear_quantize_activations`` (quantize/dequantize
   pairs, int8 per tensor, affine; residual adds and the LayerNorm statistics stay fp16) and
   ``linear_quantize_weights`` (int8 per output channel, constexpr_affine_dequantize); the per-layer error against
   the fp16 program is kept in the sidecar and printed by emo-export.
   coremltools calibrates activations by running the model with ``MLModel.predict``, which exists on macOS only;
   here the same statistics (min/max of every op output over the calibration images) come from the MIL
   interpreter (``_activation_ranges``), handed to coremltools' own passes, so the program is the one macOS makes.
4. Fill the model description (author, licence, version, input/output descriptions, user-defined metadata).

Parity on Linux: ``mil_interpreter`` executes the saved program with NumPy. On macOS the real Core ML runtime
(``MLModel.predict``) is run as well and both are recorded.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emo.errors import EMOError

TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18", "macOS12", "macOS13", "macOS14", "macOS15")
TOO_OLD = {"iOS13": "iOS15", "iOS14": "iOS15", "macOS10.15": "macOS12", "macOS11": "macOS12"}
DEFAULT_TARGET = "iOS17"
INT8_TARGETS = ("iOS17", "iOS18", "macOS14", "macOS15")  # MIL quantize/dequantize of activations: opset iOS17
WEIGHT_THRESHOLD = 2048  # coremltools' default: smaller weights (depthwise kernels, norms) stay fp16
FLOAT_ACTIVATION_OPS = ("add",)  # int8 mixed precision: these ops' activations stay fp16 (see _to_int8)
from emo.contract.runtimes import PIXEL_SCALE  # noqa: E402 - the ImageType's scale, as the loader table feeds it


def check_target(target: str, precision: str | None = None) -> str:
    """A deployment target that can hold an ML program (iOS 15 / macOS 12 or later), and int8 activations."""
    if target in TOO_OLD:
        raise EMOError(f"--min-target {target} cannot hold an ML program (Core ML needs {TOO_OLD[target]} or later "
                       f"for one); use --min-target {DEFAULT_TARGET}")
    if target not in TARGETS:
        raise EMOError(f"unknown --min-target {target!r}; choose from: {', '.join(TARGETS)}")
    if precision == "int8" and target not in INT8_TARGETS:
        raise EMOError(f"Core ML int8 quantizes activations, which needs iOS17/macOS14 or later; use --min-target "
                       f"iOS17 (not {target}) or --precision fp16")
    return target


def classifier_labels(labels: tuple[str, ...]) -> list[str]:
    """Core ML's probability dictionary needs unique keys; a repeated name gets its class index appended
    (ImageNet's clean names repeat "missile" and "sunglasses")."""
    seen: set[str] = set()
    unique = []
    for index, name in enumerate(labels):
        unique.append(name if name not in seen else f"{name} ({index})")
        seen.add(name)
    return unique


class _Probabilities(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(image), dim=-1)


DEPLOY_TARGET = "native"  # the window partition as MIL space_to_depth / depth_to_space (registered below)


def _register_window_ops() -> None:
    """``emo::space_to_depth`` / ``emo::depth_to_space`` (window-major "DCR" order, square block in the native
    form) are MIL's own ``space_to_depth`` / ``depth_to_space``, which follow TensorFlow's channel order."""
    from coremltools.converters.mil import Builder as mb  # noqa: N813 - coremltools' own spelling
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op

    if "emo::space_to_depth" in _TORCH_OPS_REGISTRY:
        return

    def convert(op_name: str):
        def lower(context, node):
            x, block_h, block_w = _get_inputs(context, node, expected=3)
            if block_h.val != block_w.val:
                raise ValueError(f"{node.kind}: MIL needs a square block, got {block_h.val}x{block_w.val}")
            context.add(getattr(mb, op_name)(x=x, block_size=int(block_h.val), name=node.name))
        lower.__name__ = f"emo_{op_name}"  # the registry also keys on the function's name
        return lower

    for op_name in ("space_to_depth", "depth_to_space"):
        register_torch_op(convert(op_name), torch_alias=[f"emo::{op_name}"])


def export(model: nn.Module, example: torch.Tensor, path: Path, ctx) -> dict:
    import coremltools as ct

    _register_window_ops()

    opts = ctx.options.backend_options
    target = check_target(opts.get("min_target") or DEFAULT_TARGET, ctx.precision)
    classifier, image_input = bool(opts.get("classifier")), bool(opts.get("image_input"))
    module = _Probabilities(model).eval() if classifier else model
    program = torch.export.export(module, (example,)).run_decompositions({})
    if image_input:
        inputs = [ct.ImageType(name="image", shape=tuple(example.shape), scale=PIXEL_SCALE, bias=[0.0, 0.0, 0.0],
                               color_layout=ct.colorlayout.RGB)]
    else:
        inputs = [ct.TensorType(name="image", shape=tuple(example.shape), dtype=np.float32)]
    mlmodel = ct.convert(
        program, convert_to="mlprogram", inputs=inputs,
        outputs=None if classifier else [ct.TensorType(name="logits")],
        classifier_config=ct.ClassifierConfig(classifier_labels(ctx.options.labels)) if classifier else None,
        minimum_deployment_target=getattr(ct.target, target),
        compute_precision=ct.precision.FLOAT32 if ctx.precision == "fp32" else ct.precision.FLOAT16,
    )
    quantization = None
    if ctx.precision == "int8":
        mlmodel, quantization = _to_int8(mlmodel, path.parent, ctx, image_input)
    meta = ctx.metadata
    mlmodel.short_description = (f"EMO {meta['emo.variant']} image classifier (Zhang et al., ICCV 2023), "
                                 f"{ctx.precision}, exported by emo-mobile")
    mlmodel.author = "EMO: Zhang et al. (github.com/zhangzjn/EMO); export: emo-mobile"
    mlmodel.license = "Apache-2.0 (EMO code); check the licence of your weights"
    mlmodel.version = meta["emo.version"]
    h, w = ctx.options.input_size
    mlmodel.input_description["image"] = (
        f"RGB image {w}x{h} (resized shorter side to {int(max(h, w) / 0.875)}, centre-cropped)" if image_input else
        f"float32 RGB in [0, 1], NCHW {list(example.shape)}; ImageNet normalisation is inside the model")
    if classifier:
        mlmodel.output_description["classLabel"] = "most likely class"
        mlmodel.output_description["classLabel_probs"] = "probability of every class (softmax of the logits)"
    else:
        mlmodel.output_description["logits"] = "class logits (apply softmax for probabilities)"
    mlmodel.user_defined_metadata.update({**meta, "emo.image_input": str(image_input),
                                          "emo.classifier": str(classifier), "emo.min_target": target})
    if classifier:  # Xcode's model preview: drop an image, see the classes (its key is read from the metadata)
        mlmodel.user_defined_metadata["com.apple.coreml.model.preview.type"] = "imageClassifier"
    mlmodel.save(str(path))
    spec = mlmodel.get_spec()
    block = spec.mlProgram.functions["main"].block_specializations[spec.mlProgram.functions["main"].opset]
    ops = Counter(op.type for op in block.operations if op.type != "const")
    info = {"min_target": target, "opset": spec.mlProgram.functions["main"].opset,
            "specification_version": spec.specificationVersion, "image_input": image_input,
            "classifier": classifier, "mil_ops": dict(sorted(ops.items()))}
    if quantization:
        info["quantization"] = {**quantization, "quantize_ops": ops.get("quantize", 0),
                                "dequantize_ops": ops.get("dequantize", 0),
                                "int8_weights": ops.get("constexpr_affine_dequantize", 0)}
    return info


def _activation_ranges(program, samples: list[dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """coremltools' activation statistics ({tensor: {"rmin", "rmax"}} over every sample, the inputs included),
    computed by the MIL interpreter (``program``, a ``MILProgram``) instead of ``MLModel.predict``."""
    stats: dict[str, dict[str, float]] = {}

    def observe(name: str, value) -> None:
        value = np.asarray(value)
        if value.dtype.kind != "f" or value.size == 0:
            return
        lo, hi = float(value.min()), float(value.max())
        seen = stats.setdefault(name, {"rmin": lo, "rmax": hi})
        seen["rmin"], seen["rmax"] = min(seen["rmin"], lo), max(seen["rmax"], hi)

    for sample in samples:
        for name, value in sample.items():
            observe(name, value)
        program.run(sample, observe=observe)
    # as coremltools' own calibration: no statistics for the program's outputs (they stay float), and the inputs
    # and output of a concat share one range (one scale around a quantized concat)
    for name in program.block.outputs:
        stats.pop(name, None)
    concats = [[b.name for b in op.inputs["values"].arguments if b.WhichOneof("binding") == "name"]
               + [op.outputs[0].name] for op in program.block.operations if op.type == "concat"]
    from coremltools.optimize.coreml.experimental._post_training_quantization import (
        _adjust_concat_surrounding_activation_stats,
    )

    _adjust_concat_surrounding_activation_stats(concats or None, stats)
    return stats


def _op_name(op) -> str:
    """A MIL op's name (what coremltools' ``op_name_configs`` keys on)."""
    name = op.attributes.get("name")
    return name.immediateValue.tensor.strings.values[0] if name is not None else op.outputs[0].name


def _layernorm_statistics(program) -> list[str]:
    """The deploy form's LayerNorm statistics: convs whose fp16 weights are a channel mean
    (``quantize.is_channel_mean``), i.e. the mean and the variance. Names of the ops."""
    from emo.export.quantize import is_channel_mean

    constants = program.constants()
    found = []
    for op in program.block.operations:
        if op.type != "conv":
            continue
        weight = [b.name for b in op.inputs["weight"].arguments if b.WhichOneof("binding") == "name"]
        if weight and is_channel_mean(constants.get(weight[0]), rtol=1e-3):
            found.append(_op_name(op))
    return found


def _angle_error(reference: np.ndarray, value) -> float:
    """sin of the angle between two tensors: the relative error left after the best rescaling. coremltools folds
    quantization scales into neighbouring ops (an add may compute 23x its float value, undone by the next
    dequantize), so a plain relative error would blame an exact rewrite."""
    f, v = reference.reshape(-1).astype(np.float64), np.asarray(value, np.float64).reshape(-1)
    norms = np.linalg.norm(f) * np.linalg.norm(v)
    if norms == 0:
        return 0.0 if not f.any() and not v.any() else 1.0
    cos = float(np.dot(f, v) / norms)
    return float(np.sqrt(max(0.0, 1.0 - min(1.0, cos) ** 2)))


def layer_errors(reference, quantized: Path, samples: list[dict[str, np.ndarray]]) -> dict:
    """Per-op error of a quantized program against its float one (``reference``, a ``MILProgram``), on
    ``samples``: the error of every op's output (``_angle_error``), and what each op added to the largest error of
    its inputs. Ops are paired in program order
    (coremltools renumbers op outputs when it re-runs its pipeline, so names do not pair); only a note when the two
    programs do not have the same ops in the same order."""
    from emo.contract.runtimes.mil_interpreter import MILProgram

    fp, q = reference, MILProgram(quantized)
    skip = ("const", "quantize", "dequantize")
    fops = [op for op in fp.block.operations if op.type not in skip]
    qops = [op for op in q.block.operations if op.type not in skip and not op.type.startswith("constexpr_")]
    if [op.type for op in fops] != [op.type for op in qops]:
        return {"metric": "not computed: the quantized program's ops do not pair with the fp16 program's"}
    pairs = {b.outputs[0].name: a.outputs[0].name for a, b in zip(fops, qops, strict=True)}
    errors: dict[str, list[float]] = {}
    values: dict[str, np.ndarray] = {}  # the fp16 program's values for the current sample

    def keep(name: str, value) -> None:
        values[name] = np.asarray(value, np.float32)

    def compare(name: str, value) -> None:
        if name in pairs and pairs[name] in values:
            errors.setdefault(pairs[name], []).append(_angle_error(values[pairs[name]], value))

    for sample in samples:
        values.clear()
        fp.run(sample, observe=keep)
        q.run(sample, observe=compare)
    mean = {name: float(np.mean(v)) for name, v in errors.items()}
    rows = []
    for op in fops:
        name = op.outputs[0].name
        if name not in mean:
            continue
        inputs = [b.name for arg in op.inputs.values() for b in arg.arguments if b.WhichOneof("binding") == "name"]
        before = max((mean[i] for i in inputs if i in mean), default=0.0)
        rows.append({"op": _op_name(op), "type": op.type, "error": round(mean[name], 5),
                     "added": round(mean[name] - before, 5)})
    outputs = [mean[name] for name in fp.block.outputs if name in mean]
    return {"metric": "relative error after the best rescaling (sin of the angle) against the fp16 program "
                      "(MIL interpreter), mean over "
                      f"{len(samples)} calibration batch(es)",
            "output": round(max(outputs), 5) if outputs else None,
            "largest_additions": sorted(rows, key=lambda r: -r["added"])[:8]}


def _to_int8(mlmodel, folder: Path, ctx, image_input: bool):
    """W8A8: activations quantized with ranges calibrated on ``ctx.calibration`` (through the MIL interpreter),
    then weights; the per-layer error against the fp16 program goes into the record (emo-export prints it).
    Returns the quantized model and its record for the sidecar."""
    import tempfile
    from unittest import mock

    import coremltools.optimize as cto
    from coremltools.optimize.coreml import _post_training_quantization as ptq

    from emo.contract.runtimes.mil_interpreter import MILProgram
    from emo.export.quantize import LAYER_ERROR_IMAGES

    images = ctx.calibration.images * (1.0 / PIXEL_SCALE if image_input else 1.0)
    batch = 1 if image_input else ctx.batch
    samples = [{"image": images[i:i + batch].astype(np.float32)} for i in range(0, len(images) - batch + 1, batch)]
    with tempfile.TemporaryDirectory(dir=folder, prefix=".calibrate-") as work:
        package = Path(work) / "fp16.mlpackage"
        mlmodel.save(str(package))
        fp16 = MILProgram(package)  # parsed once: calibration ranges, LayerNorm finder, per-layer error
        ranges = _activation_ranges(fp16, samples)
        statistics = _layernorm_statistics(fp16)

        def calibrated(_model, _samples, *_args, **_kwargs):  # the statistics computed above, not MLModel.predict
            return ranges

        # Affine ("linear"): with coremltools' symmetric default the trained fixture's logits fell to cosine 0.898
        # against fp16 (calibrated on 256 training images; post-GELU/SiLU ranges are lopsided); affine gave 0.991.
        # Mixed precision, found by the per-layer error below: (1) the inputs of the LayerNorm statistics convs stay
        # fp16. The squared deviations span 0..527 in stage 4, so 8-bit steps of ~2 set most of them to 0 and
        # 1/sigma blew up (and the fp16 zero-point arithmetic in coremltools overflowed); with them in fp16 the
        # fixture's first 1,000 test images went from 91.5 to 92.7 % (fp16 93.5), cosine 0.994 -> 0.999. (2) The
        # residual adds stay fp16: they carry the widest activations (-15..17 in stage 4); quantizing them as well
        # cost 0.6 points (92.1 %). mul/sub/matmul are not quantized by coremltools' passes anyway.
        activations = cto.coreml.OptimizationConfig(
            global_config=cto.coreml.OpLinearQuantizerConfig(mode="linear"),
            op_type_configs={op: None for op in FLOAT_ACTIVATION_OPS},
            op_name_configs={name: None for name in statistics})
        with mock.patch.object(ptq, "_get_activation_calibration_stats", calibrated):
            mlmodel = cto.coreml.linear_quantize_activations(mlmodel, activations, samples)
        weights = cto.coreml.OptimizationConfig(global_config=cto.coreml.OpLinearQuantizerConfig(
            mode="linear_symmetric", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD))
        mlmodel = cto.coreml.linear_quantize_weights(mlmodel, weights)
        quantized = Path(work) / "int8.mlpackage"
        mlmodel.save(str(quantized))
        errors = layer_errors(fp16, quantized, samples[:max(1, -(-LAYER_ERROR_IMAGES // batch))])  # >= 1 batch
    return mlmodel, {
        "weights": f"int8 per output channel, symmetric (constexpr_affine_dequantize); weights under "
                   f"{WEIGHT_THRESHOLD} elements stay fp16",
        "activations": "int8 per tensor, affine (quantize/dequantize pairs with a zero point); compute in fp16",
        "float_activation_ops": list(FLOAT_ACTIVATION_OPS),
        "float_activation_layers": {"layernorm_statistics": len(statistics)},
        "calibration_statistics": f"min/max of every op output over {len(samples)} calibration batches, computed "
                                  "by the MIL interpreter (coremltools' own statistics need MLModel.predict, macOS "
                                  "only)",
        "coremltools_passes": ["linear_quantize_activations", "linear_quantize_weights"],
        "layer_errors": errors}

