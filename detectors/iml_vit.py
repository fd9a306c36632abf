"""IML-ViT: a plain ViT with windowed + global attention, a simple feature pyramid and an edge-weighted loss.

A lightweight reimplementation (own code) of Ma et al., "IML-ViT: Benchmarking Image Manipulation
Localization by Vision Transformer" (arXiv:2307.14863, 2023). What it keeps from the paper:

- every image is zero-padded (never resized) to a fixed square, 1024 px in the paper, so artifacts keep
  their native resolution; :attr:`DetectorInfo.fixed_size` makes ``predict()`` do that;
- a plain ViT-B/16 in the ViTDet layout (Li et al., 2022): windowed attention (window 14) in most blocks,
  global attention in blocks 2, 5, 8 and 11, decomposed relative position bias in every block, and the
  absolute position embedding of the pretrained ViT interpolated to the padded grid; MAE-pretrained
  weights in the paper (here: any timm-format ViT state dict via ``pretrained_path``);
- a simple feature pyramid (SFP) from the last ViT map only: deconvolutions / pooling to strides
  4, 8, 16, 32 (plus ViTDet's extra max-pooled stride-64 level), 256 channels in the paper;
- a SegFormer-style all-MLP decoder (per-level 1x1 projection, upsampling to stride 4, concatenation,
  1x1 fusion with a norm, 1x1 prediction), upsampled to the input size;
- the loss ``BCE(mask) + lambda * edge-weighted BCE(mask)`` with lambda = 20 and an edge band of width 7
  (dilation minus erosion of the ground truth), the values in the authors' IMDL-BenCo training script
  (``--edge_lambda 20 --edge_mask_width 7``). Pixel-only: no image-level score (``score_logits`` None).

The ``tiny`` variant keeps the layout at ViT-Ti width (192, 3 heads), 6 blocks with global attention in
blocks 2 and 5, window 4, and a 256 px fixed square (the cpu-quick geometry). ``forward`` accepts any size
(it pads to a multiple of the patch size internally and interpolates the position embedding and relative
position tables), so the fixed square is what ``predict()`` uses, not a hard requirement of the network.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, Mlp, trunc_normal_
from torch import nn

from detectors.base import Detector, DetectorInfo, check_options, register_detector, variant_spec, weights_note
from detectors.losses import add_dice, bce, edge_map, target_at
from detectors.train_state import load_file

PAPER = ("Ma et al., 'IML-ViT: Benchmarking Image Manipulation Localization by Vision Transformer', "
         "arXiv:2307.14863 (2023)")

VARIANTS: dict[str, dict[str, Any]] = {
    # ViT-Ti width, half depth; the cpu-quick geometry (256 px) as the fixed square
    "tiny": dict(embed_dim=192, depth=6, num_heads=3, window_size=4, global_blocks=(2, 5), fixed_size=256,
                 fpn_channels=128, head_dim=128, drop_path=0.0),
    # ViT-B/16, window 14, global attention in blocks 2/5/8/11, 1024 px, SFP and decoder at 256 channels
    "paper": dict(embed_dim=768, depth=12, num_heads=12, window_size=14, global_blocks=(2, 5, 8, 11),
                  fixed_size=1024, fpn_channels=256, head_dim=256, drop_path=0.1),
}
# what ``pretrained=True`` (online, timm's own weights) loads: same width, the first `depth` blocks
TIMM_PRETRAINED = {"tiny": "vit_tiny_patch16_224", "paper": "vit_base_patch16_224.mae"}
PATCH = 16


# ---------------------------------------------------------------------------------------------------- ViT

def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B,H,W,C) -> (B*nW, window, window, C) non-overlapping windows; the grid is zero-padded to a
    multiple of `window` first (ViTDet). Returns the windows and the padded (Hp, Wp)."""
    b, h, w, c = x.shape
    ph, pw = (-h) % window, (-w) % window
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, padded_hw: tuple[int, int],
                       hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: back to (B,H,W,C), padding removed."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, :h, :w].contiguous()


def rel_pos_lookup(size: int, table: torch.Tensor) -> torch.Tensor:
    """(2*size-1, C) table -> (size, size, C) embeddings of every query-key offset along one axis; a table
    built for another size is linearly interpolated (ViTDet does the same when the grid changes)."""
    length = 2 * size - 1
    if table.shape[0] != length:
        table = F.interpolate(table.t().unsqueeze(0), size=length, mode="linear", align_corners=False)[0].t()
    coords = torch.arange(size, device=table.device)
    return table[coords[:, None] - coords[None, :] + size - 1]


class Attention(nn.Module):
    """Multi-head self-attention over a (B,H,W,C) grid with decomposed relative position bias (MViTv2 /
    ViTDet): bias[q, k] = <q, R_h[q_h - k_h]> + <q, R_w[q_w - k_w]>. Parameter names follow timm's ViT
    (``qkv``, ``proj``) so a timm / MAE checkpoint loads by name; the tables start at zero as in ViTDet."""

    def __init__(self, dim: int, num_heads: int, rel_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_size - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                                    # (B, heads, N, head_dim)
        rq = q.reshape(b, self.num_heads, h, w, -1)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", rq, rel_pos_lookup(h, self.rel_pos_h).to(q.dtype))
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", rq, rel_pos_lookup(w, self.rel_pos_w).to(q.dtype))
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, self.num_heads, h * w, h * w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # softmax(q k^T / sqrt(d) + bias) v
        return self.proj(out.transpose(1, 2).reshape(b, h, w, c))


class Block(nn.Module):
    """Pre-norm ViT block; ``window > 0`` restricts attention to non-overlapping windows (ViTDet)."""

    def __init__(self, dim: int, num_heads: int, window: int, grid: int, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, rel_size=window if window else grid)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # (B,H,W,C)
        y = self.norm1(x)
        if self.window:
            hw = y.shape[1:3]
            y, padded = window_partition(y, self.window)
            y = window_unpartition(self.attn(y), self.window, padded, hw)
        else:
            y = self.attn(y)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int = PATCH) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)   # timm's name: patch_embed.proj


class WindowViT(nn.Module):
    """Plain, non-hierarchical ViT returning the last map (B, C, H/16, W/16), ViTDet style (no class token,
    no final norm). The absolute position embedding is stored for the fixed square's grid and bicubically
    interpolated to any other grid."""

    def __init__(self, img_size: int, embed_dim: int, depth: int, num_heads: int, window_size: int,
                 global_blocks: tuple[int, ...], drop_path: float = 0.0) -> None:
        super().__init__()
        self.grid = img_size // PATCH
        self.patch_embed = PatchEmbed(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, embed_dim))
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, 0 if i in global_blocks else window_size, self.grid, drop_path=rates[i])
            for i in range(depth))
        trunc_normal_(self.pos_embed, std=0.02)

    def pos_at(self, h: int, w: int) -> torch.Tensor:
        pos = self.pos_embed.reshape(1, self.grid, self.grid, -1)
        if (h, w) != (self.grid, self.grid):
            pos = F.interpolate(pos.permute(0, 3, 1, 2), size=(h, w), mode="bicubic",
                                align_corners=False).permute(0, 2, 3, 1)
        return pos

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1)        # (B, h, w, C)
        x = x + self.pos_at(x.shape[1], x.shape[2]).to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return x.permute(0, 3, 1, 2)


def load_vit_weights(encoder: WindowViT, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a timm-format ViT state dict (timm's ``vit_*_patch16_*`` or an MAE checkpoint, which has the
    same names, optionally under ``model``). The class token is dropped, the position embedding is
    resized to the grid, blocks past the encoder's depth are ignored; relative position tables, which
    plain ViTs lack, keep their zero init. Anything else the encoder has must be in the file."""
    for key in ("model", "state_dict"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
    own = encoder.state_dict()
    loaded, missing, bad = {}, [], []
    for name, ref in own.items():
        if name not in state:
            if not name.endswith(("rel_pos_h", "rel_pos_w")):
                missing.append(name)
            continue
        tensor = state[name]
        if name == "pos_embed":
            tensor = _fit_pos_embed(tensor, encoder.grid)
        elif name.endswith(("rel_pos_h", "rel_pos_w")) and tensor.shape[0] != ref.shape[0]:
            tensor = F.interpolate(tensor.t()[None].float(), size=ref.shape[0], mode="linear",
                                   align_corners=False)[0].t()
        if tuple(tensor.shape) != tuple(ref.shape):
            bad.append(f"{name} {tuple(tensor.shape)} vs {tuple(ref.shape)}")
        loaded[name] = tensor
    if missing:
        raise ValueError(f"{source}: checkpoint lacks {len(missing)} ViT tensors (first: {missing[:3]}); "
                         "expected a timm-format ViT state dict (patch_embed.proj, pos_embed, blocks.N.attn.qkv ...)")
    if bad:
        raise ValueError(f"{source}: shape mismatch for {bad[:3]}; is it a ViT of the same width "
                         f"({encoder.pos_embed.shape[-1]}) with 16 px patches?")
    encoder.load_state_dict(loaded, strict=False)


def _fit_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    n = pos.shape[1]
    side = math.isqrt(n)
    if side * side != n:  # a leading class token
        pos, side = pos[:, 1:], math.isqrt(n - 1)
    if side != grid:
        pos = pos.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
        pos = F.interpolate(pos, size=(grid, grid), mode="bicubic", align_corners=False)
        pos = pos.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    return pos


# --------------------------------------------------------------------------------------- SFP and decoder

class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid: from one stride-16 map to strides 4, 8, 16, 32 (scale factors
    4, 2, 1, 0.5) by transposed convolutions / max pooling, each followed by 1x1 and 3x3 convs with
    LayerNorm to `out_channels`."""

    def __init__(self, in_dim: int, out_channels: int, scale_factors: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)) -> None:
        super().__init__()
        self.levels = nn.ModuleList()
        for scale in scale_factors:
            if scale == 4.0:
                layers: list[nn.Module] = [nn.ConvTranspose2d(in_dim, in_dim // 2, 2, stride=2), LayerNorm2d(in_dim // 2),
                                           nn.GELU(), nn.ConvTranspose2d(in_dim // 2, in_dim // 4, 2, stride=2)]
                dim = in_dim // 4
            elif scale == 2.0:
                layers, dim = [nn.ConvTranspose2d(in_dim, in_dim // 2, 2, stride=2)], in_dim // 2
            elif scale == 1.0:
                layers, dim = [], in_dim
            elif scale == 0.5:
                layers, dim = [nn.MaxPool2d(2, stride=2)], in_dim
            else:
                raise ValueError(f"SFP scale factor {scale} is not one of 4, 2, 1, 0.5")
            layers += [nn.Conv2d(dim, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                       nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), LayerNorm2d(out_channels)]
            self.levels.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [level(x) for level in self.levels]


def _norm(kind: str, channels: int) -> nn.Module:
    # IML-ViT exposes BN (default), IN (affine, running stats) and LN for its decoder head
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "in":
        return nn.InstanceNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "ln":
        return LayerNorm2d(channels)
    raise ValueError(f"head_norm {kind!r} is unknown; use 'bn', 'in' or 'ln'")


class MLPHead(nn.Module):
    """SegFormer-style all-MLP decoder: each level projected to `embed_dim`, upsampled to the first
    (finest) level, concatenated, fused by a 1x1 conv + norm + ReLU, and mapped to one logit channel."""

    def __init__(self, in_channels: int, levels: int, embed_dim: int, norm: str = "bn") -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(in_channels, embed_dim, 1) for _ in range(levels))
        self.fuse = nn.Sequential(nn.Conv2d(levels * embed_dim, embed_dim, 1, bias=False), _norm(norm, embed_dim),
                                  nn.ReLU(inplace=True))
        self.pred = nn.Conv2d(embed_dim, 1, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        ups = [F.interpolate(p(f), size=size, mode="bilinear", align_corners=False) if f.shape[-2:] != size else p(f)
               for p, f in zip(self.proj, feats)]
        return self.pred(self.fuse(torch.cat(ups, dim=1)))


# ---------------------------------------------------------------------------------------------- detector

class IMLViT(Detector):
    def __init__(self, info: DetectorInfo, *, embed_dim: int, depth: int, num_heads: int, window_size: int,
                 global_blocks: tuple[int, ...], fixed_size: int, fpn_channels: int, head_dim: int,
                 drop_path: float = 0.0, head_norm: str = "bn", edge_lambda: float = 20.0,
                 edge_width: int = 7, dice_weight: float = 0.0, pos_weight: float = 1.0) -> None:
        super().__init__()
        self.info = info
        self.edge_lambda = float(edge_lambda)
        self.dice_weight = float(dice_weight)
        self.pos_weight = float(pos_weight)
        self.edge_width = int(edge_width)
        self.encoder = WindowViT(fixed_size, embed_dim, depth, num_heads, window_size, tuple(global_blocks), drop_path)
        self.sfp = SimpleFeaturePyramid(embed_dim, fpn_channels)
        self.head = MLPHead(fpn_channels, levels=5, embed_dim=head_dim, norm=head_norm)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % PATCH, 0, (-h) % PATCH))
        pyramid = self.sfp(self.encoder(x))
        pyramid.append(F.max_pool2d(pyramid[-1], kernel_size=1, stride=2))  # ViTDet's LastLevelMaxPool (p6)
        logits = self.head(pyramid)                                          # stride 4
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]
        return {"mask_logits": logits, "score_logits": None}

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """BCE over valid pixels + lambda * BCE weighted by the ground-truth edge band (the mean still runs
        over all valid pixels, so lambda=20 balances the band's small area, as in IML-ViT); plus an optional
        class weight on forged pixels in both BCE terms (``pos_weight``) and an optional Dice term
        (``dice_weight``), neither in the paper's objective."""
        logits = out["mask_logits"]
        edge = edge_map(target_at(batch, logits), self.edge_width)
        pw = self.pos_weight if self.pos_weight != 1.0 else None
        seg = bce(logits, batch, pos_weight=pw)
        edge_term = self.edge_lambda * bce(logits, batch, pos_weight=pw, weight=edge)
        parts = {"bce": float(seg.detach()), "edge_bce": float(edge_term.detach())}
        return add_dice(seg + edge_term, parts, logits, batch, self.dice_weight), parts


def _init_weights(m: nn.Module) -> None:
    # xavier for linear layers, following IML-ViT / the JAX ViT; LayerNorm to identity
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


@register_detector("iml_vit")
def iml_vit(variant: str = "tiny", pretrained_path: str | None = None, pretrained: bool = False,
            **kwargs: Any) -> IMLViT:
    """IML-ViT. ``pretrained_path``: a local timm-format ViT state dict of the variant's width (MAE
    ViT-B/16 for ``paper``, ViT-Ti/16 for ``tiny``); ``pretrained``: timm's own weights (needs a network).
    Overrides: any key of :data:`VARIANTS` (e.g. ``fixed_size``) and ``head_norm``, ``edge_lambda``,
    ``edge_width``, ``dice_weight``, ``pos_weight``."""
    cfg = dict(variant_spec("iml_vit", variant, VARIANTS), head_norm="bn", edge_lambda=20.0, edge_width=7,
               dice_weight=0.0, pos_weight=1.0)
    check_options("iml_vit", kwargs, cfg)
    cfg.update({k: v for k, v in kwargs.items() if v is not None})
    if cfg["fixed_size"] % PATCH:
        raise ValueError(f"iml_vit: fixed_size {cfg['fixed_size']} must be a multiple of the patch size {PATCH}")
    weights = weights_note("ViT encoder", pretrained_path, pretrained, f"timm {TIMM_PRETRAINED[variant]} (online)")
    info = DetectorInfo(name="iml_vit", family="plain ViT (windowed + global attention) + simple feature pyramid, "
                        "edge-weighted loss", paper=PAPER, variant=variant, input_size=cfg["fixed_size"],
                        stride=PATCH, fixed_size=cfg["fixed_size"], weights=weights)
    model = IMLViT(info, **cfg)
    if pretrained_path:
        load_vit_weights(model.encoder, load_file(pretrained_path), str(pretrained_path))
    elif pretrained:
        import timm

        load_vit_weights(model.encoder, timm.create_model(TIMM_PRETRAINED[variant], pretrained=True).state_dict(),
                         TIMM_PRETRAINED[variant])
    return model


__all__ = ["IMLViT", "SimpleFeaturePyramid", "WindowViT", "iml_vit", "load_vit_weights", "window_partition",
           "window_unpartition"]
