"""EMO: Efficient MOdel built from inverted Residual Mobile Blocks (iRMB).

Paper: "Rethinking Mobile Block for Efficient Attention-based Models", Zhang et al., ICCV 2023
(arXiv 2301.01146). Authors' code: https://github.com/zhangzjn/EMO (Apache-2.0).

Module names follow the authors' code so that their checkpoints load with ``strict=True``.
What each layer computes is written down in ``shared/EMO_SPEC.md``; ``emo.deploy`` turns a model into
the export-friendly form (BatchNorm folded, rank <= 4 everywhere, static int shapes) that every
exporter uses.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from emo.deploy_attention import (
    ATTENTION_BY_TARGET,
    DEPLOY_TARGETS,
    WINDOW,
    depth_to_space_nhwc_reference,
    depth_to_space_reference,
    space_to_depth_nhwc_reference,
    space_to_depth_reference,
)

# the deploy forms of the attention (one per converter family) and the window ops live in emo/deploy_attention.py
__all__ = ["DEPLOY_TARGETS", "EMO", "EMOConfig", "VARIANTS", "iRMB", "create_model", "deploy", "list_models",
           "depth_to_space_nhwc_reference", "depth_to_space_reference", "space_to_depth_nhwc_reference",
           "space_to_depth_reference"]

NORM_EPS = 1e-6


# ----------------------------------------------------------------------------------------------- building blocks
class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW map (LayerNorm of each pixel's C-vector).

    The authors wrap ``nn.LayerNorm`` as ``.norm``; keeping the wrapper keeps their state-dict keys.
    """

    def __init__(self, channels: int, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            # Deploy form: the channel mean as a 1x1 conv with weights 1/C. No NCHW<->NHWC transposes, and every
            # delegate takes a conv (XNNPACK's mean only reduces H, W; NNAPI, the ANE and Hexagon likewise).
            mean_weight = self.mean_weight.to(x.dtype)
            centred = x - F.conv2d(x, mean_weight)
            var = F.conv2d(centred * centred, mean_weight)
            x = centred * torch.rsqrt(var + self.norm.eps)
            return x * self.norm.weight.view(1, -1, 1, 1) + self.norm.bias.view(1, -1, 1, 1)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def fuse(self) -> None:
        channels = self.norm.normalized_shape[0]
        self.register_buffer("mean_weight", torch.full((1, channels, 1, 1), 1.0 / channels), persistent=False)
        self.fused = True


def _make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels, eps=NORM_EPS)
    if kind == "ln":
        return LayerNorm2d(channels)
    raise ValueError(f"unknown norm {kind!r}")


def _make_act(kind: str) -> nn.Module:
    return {"silu": nn.SiLU(), "gelu": nn.GELU(), "none": nn.Identity()}[kind]


class ConvNormAct(nn.Module):
    """Conv (padding ``ceil((k - s) / 2)``) -> optional BatchNorm -> activation, named as the authors do."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 bias: bool = False, norm: bool = False, act: str = "none") -> None:
        super().__init__()
        padding = math.ceil((kernel_size - stride) / 2)
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(cout, eps=NORM_EPS) if norm else nn.Identity()
        self.act = _make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))

    def fuse(self) -> None:
        """Fold the BatchNorm into the conv (exact up to float rounding)."""
        if isinstance(self.norm, nn.BatchNorm2d):
            self.conv = _fold_bn_into_conv(self.conv, self.norm)
            self.norm = nn.Identity()


class SqueezeExcite(nn.Module):
    """Squeeze-excite of ``stage0.1`` (timm naming: ``conv_reduce`` / ``conv_expand``)."""

    def __init__(self, channels: int, act: str) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, channels, 1)
        self.act = _make_act(act)
        self.conv_expand = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = self.conv_expand(self.act(self.conv_reduce(s)))
        return x * torch.sigmoid(s)


class Stem(nn.Module):
    """``stage0.0``: 3x3 stride-2 conv with bias, then BatchNorm (authors' ``MSPatchEmb`` with one scale)."""

    def __init__(self, cout: int) -> None:
        super().__init__()
        conv = nn.Conv2d(3, cout, 3, 2, 1, bias=True)
        self.convs = nn.ModuleList([nn.Sequential(conv, nn.BatchNorm2d(cout, eps=NORM_EPS))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs[0](x)

    def fuse(self) -> None:
        if len(self.convs[0]) == 2:  # idempotent: an already fused stem has no BatchNorm left
            conv, bn = self.convs[0]
            self.convs[0] = nn.Sequential(_fold_bn_into_conv(conv, bn))


def _fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv -> BN becomes one conv: W' = W * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      groups=conv.groups, bias=True)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def _fold_bn_into_pointwise(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """BN -> 1x1 conv becomes one 1x1 conv. Exact because a 1x1 conv has no padding that sees the BN offset."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True)
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    with torch.no_grad():
        weight = conv.weight[:, :, 0, 0]
        fused.weight.copy_((weight * scale.view(1, -1))[:, :, None, None])
        fused.bias.copy_(bias + weight @ shift)
    return fused


# ------------------------------------------------------------------------------------------------------ the block
class iRMB(nn.Module):  # noqa: N801 - the paper's name
    """inverted Residual Mobile Block: norm -> (window attention ->) v -> depth-wise conv (-> SE) -> proj.

    Attention (stages 3, 4) uses windows of 7x7 that are *strided grids*: window (i, j) holds rows
    ``a * n1 + i`` and columns ``b * n2 + j``. Values are the normed input itself; ``v`` follows.
    """

    def __init__(self, cin: int, cout: int, *, norm: str | None, act: str, expansion: float, stride: int = 1,
                 kernel_size: int = 3, skip: bool = True, attention: bool = False, head_dim: int = 0,
                 v_proj: bool = True, se: bool = False) -> None:
        super().__init__()
        mid = int(cin * expansion)
        self.has_skip = skip and cin == cout and stride == 1
        self.norm = _make_norm(norm, cin) if norm else nn.Identity()
        self.attention = attention
        if attention:
            self.num_heads = cin // head_dim
            self.head_dim = head_dim
            self.scale = head_dim ** -0.5
            self.qk = ConvNormAct(cin, cin * 2, bias=True)
        self.v = ConvNormAct(cin, mid, bias=True, act=act) if v_proj else nn.Identity()
        self.conv_local = ConvNormAct(mid, mid, kernel_size, stride, groups=mid, norm=True, act="silu")
        self.se = SqueezeExcite(mid, act) if se else nn.Identity()
        self.proj = ConvNormAct(mid, cout)
        self.fused = False
        self.target = "portable"

    # reference path: the authors' window partition, written as reshapes (rank 6)
    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        pad_b, pad_r = (WINDOW - H % WINDOW) % WINDOW, (WINDOW - W % WINDOW) % WINDOW
        x = F.pad(x, (0, pad_r, 0, pad_b))
        n1, n2 = (H + pad_b) // WINDOW, (W + pad_r) // WINDOW
        # 'b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1'
        x = x.reshape(B, C, WINDOW, n1, WINDOW, n2).permute(0, 3, 5, 1, 2, 4).reshape(-1, C, WINDOW, WINDOW)
        b = x.shape[0]
        qk = self.qk(x).reshape(b, 2, self.num_heads, self.head_dim, WINDOW * WINDOW).permute(1, 0, 2, 4, 3)
        q, k = qk[0], qk[1]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        values = x.reshape(b, self.num_heads, self.head_dim, WINDOW * WINDOW).transpose(-2, -1)
        out = (attn @ values).transpose(-2, -1).reshape(b, C, WINDOW, WINDOW)
        out = self.v(out)
        M = out.shape[1]
        # '(b n1 n2) c h1 w1 -> b c (h1 n1) (w1 n2)'
        out = out.reshape(B, n1, n2, M, WINDOW, WINDOW).permute(0, 3, 4, 1, 5, 2).reshape(B, M, H + pad_b, W + pad_r)
        return out[:, :, :H, :W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(x)
        if self.attention:
            if not self.fused:
                x = self._attend(x)
            else:  # the deploy form of the target a converter needs (emo/deploy_attention.py)
                x = ATTENTION_BY_TARGET[self.target](self, x)
        else:
            x = self.v(x)
        y = self.se(self.conv_local(x))
        x = x + y if self.has_skip else y
        x = self.proj(x)
        return shortcut + x if self.has_skip else x

    def fuse(self, target: str = "portable") -> None:
        """Switch to the deploy form in place: fold BatchNorms, fold the attention scale into q, rank-4 attention.
        Idempotent: fusing twice must not fold the scale twice (a second fuse only changes the target, and adds the
        qkv conv the "channels_last_qkv" target reads)."""
        self.target = target
        if not self.fused:
            self._fold()
        if target == "channels_last_qkv" and self.attention and not hasattr(self, "qkv"):
            # one 1x1 conv for q, k and the values: the qk rows, then identity rows (x itself; 1.0 is exact in int8
            # with a per-channel scale of 1/127)
            C = self.qk.conv.in_channels
            self.qkv = nn.Conv2d(C, 3 * C, 1).to(self.qk.conv.weight)
            with torch.no_grad():
                identity = torch.eye(C, dtype=self.qk.conv.weight.dtype)[:, :, None, None]
                self.qkv.weight.copy_(torch.cat([self.qk.conv.weight, identity]))
                self.qkv.bias.copy_(torch.cat([self.qk.conv.bias, torch.zeros(C, dtype=self.qk.conv.bias.dtype)]))

    def _fold(self) -> None:
        self.conv_local.fuse()
        if isinstance(self.norm, nn.BatchNorm2d) and not self.attention and isinstance(self.v, ConvNormAct):
            self.v.conv = _fold_bn_into_pointwise(self.norm, self.v.conv)
            self.norm = nn.Identity()
        if isinstance(self.norm, LayerNorm2d):
            self.norm.fuse()
        if self.attention:
            with torch.no_grad():
                C = self.qk.conv.in_channels
                self.qk.conv.weight[:C] *= self.scale
                self.qk.conv.bias[:C] *= self.scale
        self.fused = True


# ------------------------------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class EMOConfig:
    """One EMO variant (EMO_SPEC.md, "Variants")."""

    depths: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]
    expansions: tuple[float, float, float, float]
    head_dims: tuple[int, int]  # stages 3 and 4
    params: int  # parameter count with 1000 classes, from the authors' model
    top1: float  # ImageNet-1k top-1 reported in the paper
    stem_width: int = 24
    norms: tuple[str, str, str, str] = ("bn", "bn", "ln", "ln")
    acts: tuple[str, str, str, str] = ("silu", "silu", "gelu", "gelu")
    kernels: tuple[int, int, int, int] = (3, 3, 5, 5)


class EMO(nn.Module):
    """EMO classifier. ``forward`` returns logits; ``forward_intermediates`` returns the four stage maps."""

    def __init__(self, config: EMOConfig, num_classes: int = 1000) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        stem = config.stem_width
        self.stage0 = nn.Sequential(
            Stem(stem),
            # stage0.1 has no skip in the authors' model (has_skip=False); the reference data confirms it.
            iRMB(stem, stem, norm=None, act="silu", expansion=1.0, kernel_size=3, skip=False, v_proj=False, se=True),
        )
        cin = stem
        self.feature_info: list[dict] = []
        for i in range(4):
            blocks = []
            for j in range(config.depths[i]):
                first = j == 0
                blocks.append(iRMB(
                    cin, config.widths[i], norm=config.norms[i], act=config.acts[i],
                    expansion=config.expansions[i] * (2 if first else 1), stride=2 if first else 1,
                    kernel_size=config.kernels[i], skip=not first, attention=(i >= 2 and not first),
                    head_dim=config.head_dims[i - 2] if i >= 2 else 0,
                ))
                cin = config.widths[i]
            setattr(self, f"stage{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append({"num_chs": cin, "reduction": 2 ** (i + 2), "module": f"stage{i + 1}"})
        self.norm = _make_norm(config.norms[-1], cin)
        self.head = nn.Linear(cin, num_classes)
        self.num_features = cin

    @property
    def stages(self) -> list[nn.Module]:
        return [self.stage1, self.stage2, self.stage3, self.stage4]

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stage maps at strides 4, 8, 16 and 32 (channels in ``feature_info``), for detection/segmentation."""
        x = self.stage0(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage map, before the final norm."""
        return self.forward_intermediates(x)[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(x).mean(dim=(2, 3), keepdim=True).flatten(1)  # keepdim: the pooling XNNPACK delegates
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------------- the variants
VARIANTS: dict[str, EMOConfig] = {
    "emo_1m": EMOConfig((2, 2, 8, 3), (32, 48, 80, 168), (2.0, 2.5, 3.0, 3.5), (20, 21), 1_361_168, 71.5),
    "emo_2m": EMOConfig((3, 3, 9, 3), (32, 48, 120, 200), (2.0, 2.5, 3.0, 3.5), (20, 20), 2_377_472, 75.1),
    "emo_5m": EMOConfig((3, 3, 9, 3), (48, 72, 160, 288), (2.0, 3.0, 4.0, 4.0), (32, 32), 5_108_848, 78.4),
    "emo_6m": EMOConfig((3, 3, 9, 3), (48, 72, 160, 320), (2.0, 3.0, 4.0, 5.0), (20, 32), 6_168_496, 79.0),
}


def list_models() -> list[str]:
    """Names of the EMO variants, smallest first."""
    return list(VARIANTS)


def create_model(name: str, weights: str | None = None, *, num_classes: int | None = None,
                 ema: bool = False) -> EMO:
    """Build an EMO variant in eval mode, optionally loading an authors'-format checkpoint (strictly).

    ``num_classes`` defaults to the checkpoint's head size (fine-tunes load without flags), else 1000.
    """
    from emo.checkpoint import check_variant, load_state_dict  # checkpoint handling lives apart
    from emo.errors import EMOError

    if name not in VARIANTS:
        raise EMOError(f"unknown model {name!r}; choose one of: {', '.join(VARIANTS)}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise EMOError(f"num_classes must be a positive integer, not {num_classes!r}")
    state = None
    if weights is not None:
        state = load_state_dict(weights, ema=ema)
        head_classes = check_variant(state, name, weights)
        num_classes = num_classes or head_classes
    model = EMO(VARIANTS[name], num_classes=num_classes or 1000)
    if state is not None:
        from emo.checkpoint import load_into
        load_into(model, state, name, weights)
    return model.eval()


def deploy(model: EMO, target: str = "portable") -> EMO:
    """A fused deep copy in the export-friendly form; computes the same function (EMO_SPEC.md).

    ``target`` (``DEPLOY_TARGETS``) only changes how the window partition is written: "portable" in plain torch
    ops, "native" as one ``emo::space_to_depth`` op for converters that map it to theirs, "channels_last" the
    attention on NHWC tensors (for converters that run convolutions NHWC; "channels_last_qkv" with q, k and the
    values from one conv, for quantizers), "legacy" the earlier form with transposes
    per head (for comparisons)."""
    if target not in DEPLOY_TARGETS:
        from emo.errors import EMOError

        raise EMOError(f"unknown deploy target {target!r}; choose one of: {', '.join(DEPLOY_TARGETS)}")
    model = copy.deepcopy(model).eval()
    model.stage0[0].fuse()
    for module in model.modules():
        if isinstance(module, iRMB):
            module.fuse(target)
    if isinstance(model.norm, LayerNorm2d):
        model.norm.fuse()
    return model
