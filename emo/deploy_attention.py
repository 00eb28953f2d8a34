"""The deploy forms of EMO's window attention: the one place where the model is written for converters.

Every form computes the authors' attention (``iRMB._attend`` in emo/model.py, checked against their outputs): a
window of 7x7 is a *strided grid* (window (i, j) holds rows ``a * n1 + i`` and columns ``b * n2 + j``), padded tokens
take part, values are the normed input. The forms differ only in how the partition and the heads are laid out, for
the converter that will read the graph. ``emo.deploy(model, target=...)`` picks one; each export backend names its
target (its module's ``DEPLOY_TARGET``). Functions here take the ``iRMB`` block as their first argument ("self").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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



# "legacy": the previous deploy form (kept for bench_deploy): rank <= 4, Python-int shapes, no no-op slices
def attend_rank4(self, x: torch.Tensor) -> torch.Tensor:
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

# "portable" and "native": one 7x7 map per window, no transpose per head
def attend_windows(self, x: torch.Tensor) -> torch.Tensor:
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

# "channels_last" and "channels_last_qkv": tokens are rows of an NHWC tensor, as a converter that runs convs NHWC
# lays them out, so no reshape meets a layout change; only the groups (window, head) move, once in, once out.
def attend_channels_last(self, x: torch.Tensor) -> torch.Tensor:
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



# the attention of a fused block, by deploy target
ATTENTION_BY_TARGET = {"portable": attend_windows, "native": attend_windows, "channels_last": attend_channels_last,
                       "channels_last_qkv": attend_channels_last, "legacy": attend_rank4}
