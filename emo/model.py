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

__all__ = ["DEPLOY_TARGETS", "EMO", "EMOConfig", "VARIANTS", "iRMB", "create_model", "deploy", "list_models"]

NORM_EPS = 1e-6
WINDOW = 7
# Deploy targets (emo.deploy(model, target=...)); each backend picks one (its module's DEPLOY_TARGET):
#   "portable": window partition in plain torch ops (two rank-4 transposes each way), attention without a per-head
#               transpose of q, v or the output; what ExecuTorch/XNNPACK, LiteRT and the .pt2 program get.
#   "native":   the same, but the strided-grid partition is one emo::space_to_depth op (and its inverse one
#               emo::depth_to_space), which ONNX (SpaceToDepth/DepthToSpace) and Core ML (space_to_depth) lower to
#               their own op when n1 == n2; only a converter that registers these ops can take this form.
#   "channels_last": the attention written on channel-last (NHWC) tensors, partitioned by emo::space_to_depth_nhwc:
#               for converters that run convolutions NHWC (LiteRT), where every reshape of an NCHW tensor costs a
#               layout transpose on each side; two transposes per attention block remain (groups in and out).
#   "channels_last_qkv": the same, but the values come out of the qk conv (identity rows) instead of being
#               concatenated to q and k: a quantizer then observes q, k and the values as one tensor (litert-torch's
#               PT2E quantizer gave a concatenation the range of its first input and clipped the values). 1-2% slower
#               in fp32 XNNPACK (C x C more MACs per pixel); what int8 TFLite takes.
#   "legacy":   the previous deploy form (transposes per window and per head), kept for bench_deploy's comparison.
DEPLOY_TARGETS = ("portable", "native", "channels_last", "channels_last_qkv", "legacy")


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


def _pad_to_windows(x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, int, int, int, int]:
    """Deploy paths: pad bottom/right to whole 7x7 windows (no op when already whole); returns the padded map, the
    padding and the window grid (n1, n2)."""
    pad_b, pad_r = (WINDOW - h % WINDOW) % WINDOW, (WINDOW - w % WINDOW) % WINDOW
    if pad_b or pad_r:
        x = F.pad(x, (0, pad_r, 0, pad_b))
    return x, pad_b, pad_r, (h + pad_b) // WINDOW, (w + pad_r) // WINDOW


# ------------------------------------------------------------------------------------------ strided-grid windows
# The authors' strided grid puts pixel (a*n1 + i, b*n2 + j) into window (i, j) as token (a, b): that is a
# space-to-depth with block (n1, n2). We need the window index outside the channel index ("DCR" order, as ONNX
# SpaceToDepth, TFLite SPACE_TO_DEPTH and MIL space_to_depth define it; PyTorch's pixel_unshuffle is the other
# order), so that (B, n*C, 7, 7) reshapes for free to (B*n, C, 7, 7): one 7x7 map per window.
def space_to_depth_reference(x: torch.Tensor, block_h: int, block_w: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, bh*bw*C, H/bh, W/bw) with out[:, (i*bw + j)*C + c, a, b] = x[:, c, a*bh + i, b*bw + j].

    Written with rank <= 4 tensors (Core ML caps rank at 5; NNAPI, the ANE and Hexagon want 4)."""
    C, H, W = (int(d) for d in x.shape[1:])
    h, w = H // block_h, W // block_w
    x = x.reshape(-1, C * h, block_h, W).permute(0, 2, 1, 3)                  # (B, i, (c a), (b j))
    x = x.reshape(-1, C * h * w, block_w).permute(0, 2, 1)                    # ((B i), j, (c a b))
    return x.reshape(-1, block_h * block_w * C, h, w)


def depth_to_space_reference(x: torch.Tensor, block_h: int, block_w: int) -> torch.Tensor:
    """The inverse of ``space_to_depth_reference`` (ONNX DepthToSpace mode DCR, MIL depth_to_space)."""
    CB, h, w = (int(d) for d in x.shape[1:])
    C = CB // (block_h * block_w)
    x = x.reshape(-1, block_w, C * h * w).permute(0, 2, 1)                    # ((B i), (c a b), j)
    x = x.reshape(-1, block_h, C * h, w * block_w).permute(0, 2, 1, 3)        # (B, (c a), i, (b j))
    return x.reshape(-1, C, h * block_h, w * block_w)


def space_to_depth_nhwc_reference(x: torch.Tensor, block_h: int, block_w: int) -> torch.Tensor:
    """Channel-last twin: (B, H, W, C) -> (B, H/bh, W/bw, bh*bw*C) with out[:, a, b, (i*bw + j)*C + c] =
    x[:, a*bh + i, b*bw + j, c] (TFLite SPACE_TO_DEPTH when bh == bw); one rank-4 transpose."""
    H, W, C = (int(d) for d in x.shape[1:])
    h, w = H // block_h, W // block_w
    x = x.reshape(-1, block_h, w, block_w * C).permute(0, 2, 1, 3)            # ((B a), b, i, (j c))
    return x.reshape(-1, h, w, block_h * block_w * C)


def depth_to_space_nhwc_reference(x: torch.Tensor, block_h: int, block_w: int) -> torch.Tensor:
    """The inverse of ``space_to_depth_nhwc_reference`` (TFLite DEPTH_TO_SPACE when bh == bw)."""
    h, w, CB = (int(d) for d in x.shape[1:])
    C = CB // (block_h * block_w)
    x = x.reshape(-1, w, block_h, block_w * C).permute(0, 2, 1, 3)            # ((B a), i, b, (j c))
    return x.reshape(-1, h * block_h, w * block_w, C)


def _graph_op(name: str, reference, to_depth: bool, channels_last: bool, doc: str):
    """``emo::<name>``: one graph op that computes ``reference`` (converters that know it emit their own op; the
    ONNX and Core ML backends register the NCHW pair, the TFLite backend the NHWC one), with its shape for tracing."""
    @torch.library.custom_op(f"emo::{name}", mutates_args=())
    def op(x: torch.Tensor, block_h: int, block_w: int) -> torch.Tensor:
        return reference(x, block_h, block_w).clone()  # a custom op may not return a view of its input

    @op.register_fake
    def _(x, block_h, block_w):
        batch, *rest = x.shape
        (h, w, c) = rest if channels_last else (rest[1], rest[2], rest[0])
        if to_depth:
            h, w, c = h // block_h, w // block_w, c * block_h * block_w
        else:
            h, w, c = h * block_h, w * block_w, c // (block_h * block_w)
        return x.new_empty((batch, h, w, c) if channels_last else (batch, c, h, w))

    op.__doc__ = doc
    return op


space_to_depth = _graph_op("space_to_depth", space_to_depth_reference, True, False,
                           'The window partition of the "native" target, as one op.')
depth_to_space = _graph_op("depth_to_space", depth_to_space_reference, False, False,
                           "The inverse of ``space_to_depth`` (DCR), as one op.")
space_to_depth_nhwc = _graph_op("space_to_depth_nhwc", space_to_depth_nhwc_reference, True, True,
                                'The window partition of the "channels_last" target, as one op.')
depth_to_space_nhwc = _graph_op("depth_to_space_nhwc", depth_to_space_nhwc_reference, False, True,
                                "The inverse of ``space_to_depth_nhwc``, as one op.")


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

    # deploy path: same function, rank <= 4, Python-int shapes, no no-op slices
    def _attend_rank4(self, x: torch.Tensor) -> torch.Tensor:
        C, H, W = (int(d) for d in x.shape[1:])  # batch left symbolic so that --dynamic-batch can work
        x, pad_b, pad_r, n1, n2 = _pad_to_windows(x, H, W)
        n, t, _heads, dh = n1 * n2, WINDOW * WINDOW, self.num_heads, self.head_dim
        # Partition to (B, C, n windows, 49 tokens) in two rank-4 transposes (Core ML caps rank at 5; ANE, NNAPI and
        # Hexagon want 4). -1 is the batch so that a dynamic batch stays possible.
        if n > 1:
            x = x.reshape(-1, WINDOW, n1, W + pad_r).permute(0, 2, 1, 3)           # (BC, i, a, W)
            x = x.reshape(-1, WINDOW, WINDOW, n2).permute(0, 3, 1, 2)              # (BCi, j, a, b)
        x = x.reshape(-1, C, n, t)
        qk = self.qk(x)                                                             # 1x1 conv: pointwise, any layout
        # heads as a 3-D batch (B*heads*n, t, dh): bmm, because a 4-D matmul lowers to expand + bmm and XNNPACK
        # does not take the expand. The q scale is already folded into qk by fuse().
        q = qk[:, :C].reshape(-1, dh, n, t).permute(0, 2, 3, 1).reshape(-1, t, dh)
        k = qk[:, C:].reshape(-1, dh, n, t).permute(0, 2, 1, 3).reshape(-1, dh, t)
        values = x.reshape(-1, dh, n, t).permute(0, 2, 3, 1).reshape(-1, t, dh)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)                              # plain softmax, not SDPA
        out = torch.bmm(attn, values).reshape(-1, n, t, dh).permute(0, 3, 1, 2).reshape(-1, C, n, t)
        out = self.v(out)
        M = self.v.conv.out_channels
        if n > 1:
            out = out.reshape(-1, n2, WINDOW, WINDOW).permute(0, 2, 3, 1)           # (BMi, a, b, j)
            out = out.reshape(-1, n1, WINDOW, W + pad_r).permute(0, 2, 1, 3)        # (BM, a, i, W)
        out = out.reshape(-1, M, H + pad_b, W + pad_r)
        if pad_b or pad_r:
            out = out[:, :, :H, :W]
        return out

    # deploy path ("portable" and "native" targets): one 7x7 map per window, no transpose per head
    def _attend_windows(self, x: torch.Tensor) -> torch.Tensor:
        C, H, W = (int(d) for d in x.shape[1:])  # batch left symbolic so that --dynamic-batch can work
        x, pad_b, pad_r, n1, n2 = _pad_to_windows(x, H, W)
        n, t, dh = n1 * n2, WINDOW * WINDOW, self.head_dim
        native = self.target == "native" and n1 == n2  # SpaceToDepth's block is square in ONNX, TFLite and MIL
        if n > 1:
            x = space_to_depth(x, n1, n2) if native else space_to_depth_reference(x, n1, n2)
        x = x.reshape(-1, C, WINDOW, WINDOW)                                       # (B*n, C, 7, 7): free
        qk = self.qk(x)                                                             # scale folded into q
        q = qk[:, :C].reshape(-1, dh, t)                                            # (B*n*heads, dh, t)
        k = qk[:, C:].reshape(-1, dh, t)
        values = x.reshape(-1, dh, t)
        # Everything stays channel-major (dh, t), so values @ attn^T is already the output layout.
        if self.target == "native":
            # scores^T = k^T q (keys on rows), softmax over the keys: one transposed operand per block, which ORT
            # (FusedMatMul) and Core ML (matmul transpose_x) fold into the matmul.
            attn_t = torch.softmax(torch.bmm(k.transpose(1, 2), q), dim=-2)       # (B*n*heads, keys, queries)
        else:
            # LiteRT's SOFTMAX only reduces the last axis (another axis becomes six ops): softmax(q^T k) over the
            # last axis, transposed as an operand of the next bmm (BATCH_MATMUL adj_x/adj_y, XNNPACK transpose_b).
            attn_t = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1).transpose(1, 2)
        out = torch.bmm(values, attn_t)                                             # (B*n*heads, dh, t)
        # Windows go back before v: v (1x1 conv + activation) is per pixel, so it commutes with the rearrangement;
        # depth-to-space then moves C channels instead of mid = 3-4x C, and v skips the cropped padding.
        if n > 1:
            out = out.reshape(-1, n * C, WINDOW, WINDOW)
            out = depth_to_space(out, n1, n2) if native else depth_to_space_reference(out, n1, n2)
        else:
            out = out.reshape(-1, C, WINDOW, WINDOW)
        if pad_b or pad_r:
            out = out[:, :, :H, :W]
        return self.v(out)

    # deploy path ("channels_last" target): tokens are rows of an NHWC tensor, as a converter that runs convs NHWC
    # lays them out, so no reshape meets a layout change; only the groups (window, head) move, once in, once out.
    def _attend_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        C, H, W = (int(d) for d in x.shape[1:])  # batch left symbolic
        x, pad_b, pad_r, n1, n2 = _pad_to_windows(x, H, W)  # before qk: padded tokens are keys with k = bias
        n, t, dh, heads = n1 * n2, WINDOW * WINDOW, self.head_dim, self.num_heads
        # qk is a 1x1 conv (per pixel), so it runs before the partition, and q, k and the values move together
        a = self.qkv(x) if self.target == "channels_last_qkv" else torch.cat([self.qk(x), x], dim=1)
        a = a.permute(0, 2, 3, 1)                                                   # (B, H', W', 3C) channel-last
        if n > 1:
            a = (space_to_depth_nhwc(a, n1, n2) if n1 == n2 else space_to_depth_nhwc_reference(a, n1, n2))
        # channels are (window, q/k/v, head, dh): one transpose puts the groups outside the 49 tokens
        a = a.reshape(-1, t, n * 3 * heads, dh).permute(0, 2, 1, 3).reshape(-1, 3, heads * t * dh)
        q, k, values = (a[:, i].reshape(-1, t, dh) for i in range(3))             # (B*n*heads, t, dh) each
        attn = torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)             # BATCH_MATMUL adj_y; last axis
        out = torch.bmm(attn, values).reshape(-1, n * heads, t, dh).permute(0, 2, 1, 3)
        out = out.reshape(-1, WINDOW, WINDOW, n * C)                                # (B, 7, 7, n*C) channel-last
        if n > 1:
            out = (depth_to_space_nhwc(out, n1, n2) if n1 == n2 else depth_to_space_nhwc_reference(out, n1, n2))
        if pad_b or pad_r:
            out = out[:, :H, :W]
        return self.v(out.permute(0, 3, 1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(x)
        if self.attention:
            if not self.fused:
                x = self._attend(x)
            else:
                x = {"legacy": self._attend_rank4, "channels_last": self._attend_channels_last,
                     "channels_last_qkv": self._attend_channels_last}.get(self.target, self._attend_windows)(x)
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
