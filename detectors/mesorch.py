"""Mesorch: parallel CNN + Transformer branches on DCT-split inputs, per-scale masks fused by a learned gate.

A lightweight reimplementation (own code) of Zhu et al., "Mesoscopic Insights: Orchestrating Multi-scale &
Hybrid Architecture for Image Manipulation Localization" (AAAI 2025, arXiv:2412.13753). Facts followed
(paper and the authors' IMDL-BenCo model, ``IMDLBenCo/model_zoo/mesorch``):

- **DCT module**: a global 2-D DCT-II of each (normalized) input channel; an ideal frequency mask splits it
  into a low-frequency part (the top-left ``alpha`` fraction of coefficients per axis, alpha = 0.05 in the
  authors' extractor) and a high-frequency part (the rest); each part goes back through the inverse DCT and
  is min-max normalized per image. The DCT is a pair of matrix products, so it runs on any device.
- **Local (micro) branch**: a CNN (ConvNeXt-Tiny in the paper) on RGB + high frequency (6 channels).
- **Global (macro) branch**: a SegFormer MiT (MiT-B3 in the paper) on RGB + low frequency (6 channels).
- **Multi-scale heads**: each of the 4 scales of both branches (8 maps, strides 4..32) is brought to stride 4
  by a chain of 2x transposed convolutions and reduced to one logit map by a 1x1 conv.
- **Adaptive weighting module**: a small conv net on RGB + high + low (9 channels) predicts a per-pixel
  softmax over the 8 scales at stride 4; the mask is the gate-weighted sum of the 8 per-scale logits,
  upsampled to the input size. (Scale pruning, the paper's inference-time speed-up, is not implemented.)
- **Loss**: pixel BCE on the final mask only; the paper's models are pixel-level (the authors' optional
  label head is disabled), so ``score_logits`` is None.

Deviation (documented): the authors' low-pass extractor keeps an L-shaped band that overlaps their high
pass; here the two masks are exact complements, so ``low + high`` reconstructs the input (see
:func:`dct_split`). The MiT branch is timm's PVTv2 built with MiT's geometry (overlapping patch embeddings,
spatial-reduction attention, Mix-FFN with a depthwise conv: the same block design as SegFormer's MiT).

Variants: ``paper`` = timm ``convnext_tiny`` + PVTv2 at MiT-B3 geometry (64/128/320/512, depths 3/4/18/3,
heads 1/2/5/8, SR 8/4/2/1, MLP ratio 4), heads halving widths along the branch as the authors do, a
192-wide gate, 512 px. ``tiny`` = timm ``tf_efficientnet_lite0`` features (24/40/112/320 at strides 4..32),
so the harness's offline ImageNet EfficientNet-Lite0 file initializes its RGB part, + a one-block-per-stage
MiT (32/64/128/192), 16-wide scale heads, a 32-wide gate, 256 px.

Extra input channels: the CNN stem is widened from 3 to 6 input channels *after* loading RGB weights; the
3 extra (high-frequency) channels start at zero, so the pretrained network computes exactly what it did on
RGB at step 0 and learns to use the frequency input (the authors use Kaiming-random extra channels). Without
pretrained weights the stem is built with 6 channels and timm's own initialization.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

from detectors.base import Detector, DetectorInfo, check_options, register_detector, variant_spec, weights_note
from detectors.encoders import timm_encoder
from detectors.losses import add_dice, bce
from detectors.train_state import load_state_dict_file

PAPER = ("Zhu et al., 'Mesoscopic Insights: Orchestrating Multi-scale & Hybrid Architecture for Image "
         "Manipulation Localization', AAAI 2025 (arXiv:2412.13753)")

VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        cnn="tf_efficientnet_lite0", cnn_indices=(1, 2, 3, 4),
        mit=dict(embed_dims=(32, 64, 128, 192), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 6)),
        head_width=16, gate_width=32, input_size=256, drop_path=0.0,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),           # what the TF-Lite EfficientNet weights expect
    "paper": dict(
        cnn="convnext_tiny", cnn_indices=(0, 1, 2, 3),
        mit=dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 18, 3), num_heads=(1, 2, 5, 8)),   # MiT-B3
        head_width=None, gate_width=192, input_size=512, drop_path=0.1,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
}
N_SCALES = 8  # 4 CNN scales + 4 transformer scales


# --------------------------------------------------------------------------------------------------- DCT

def dct_matrix(n: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n x n): coefficients = D @ signal, signal = D.T @ coefficients."""
    return _dct_matrix_cpu(n).to(device=device, dtype=dtype)


@lru_cache(maxsize=16)
def _dct_matrix_cpu(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


def dct2(x: torch.Tensor) -> torch.Tensor:
    """2-D orthonormal DCT-II over the last two axes, as matrix products (runs on any device)."""
    return dct_matrix(x.shape[-2], x.device, x.dtype) @ x @ dct_matrix(x.shape[-1], x.device, x.dtype).t()


def idct2(c: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dct2` (the DCT matrices are orthonormal: the inverse is the transpose)."""
    return dct_matrix(c.shape[-2], c.device, c.dtype).t() @ c @ dct_matrix(c.shape[-1], c.device, c.dtype)


def low_frequency_mask(h: int, w: int, alpha: float, device: torch.device | None = None) -> torch.Tensor:
    """1 on the top-left ``alpha`` fraction of DCT coefficients along each axis (at least one), else 0."""
    mask = torch.zeros(h, w, device=device)
    mask[: max(1, int(alpha * h)), : max(1, int(alpha * w))] = 1
    return mask


def dct_split(x: torch.Tensor, alpha: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) frequency components of (B,C,H,W) images: ``low = idct2(dct2(x) * mask)`` with the
    :func:`low_frequency_mask`, ``high = idct2(dct2(x) * (1 - mask))``, so ``low + high == x``.

    Since the mask keeps only a top-left a x b block, ``low`` is computed with the first a (b) DCT rows
    alone (two thin matrix products instead of four full ones) and ``high`` as ``x - low``, which is the
    same by linearity. Float32 with autocast off."""
    h, w = x.shape[-2:]
    a, b = max(1, int(alpha * h)), max(1, int(alpha * w))
    with torch.autocast(device_type=x.device.type, enabled=False):
        xf = x.float()
        dh, dw = dct_matrix(h, x.device)[:a], dct_matrix(w, x.device)[:b]    # (a, H), (b, W)
        low = dh.t() @ (dh @ xf @ dw.t()) @ dw
        high = xf - low
    return low, high


def minmax_per_image(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Scale each image of a batch to [0,1] over all its channels and pixels (as the authors' extractors)."""
    flat = x.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1, 1)
    hi = flat.max(1).values.view(-1, 1, 1, 1)
    return (x - lo) / (hi - lo).clamp_min(eps)


# ---------------------------------------------------------------------------------------------- branches

def _timm_name(feature_key: str) -> str:
    # timm's FeatureListNet flattens "stem.0" -> "stem_0", "stages.2" -> "stages_2"; EfficientNet's own
    # features class keeps the full model's names
    top, _, rest = feature_key.partition(".")
    m = re.fullmatch(r"(.+)_(\d+)", top)
    return f"{m.group(1)}.{m.group(2)}.{rest}" if m else feature_key


def load_cnn_weights(body: nn.Module, path: str, arch: str) -> None:
    """Strictly load a timm-format state dict of the full `arch` model into a features-only timm encoder."""
    state = load_state_dict_file(path)
    own = body.state_dict()
    loaded, missing, bad = {}, [], []
    for key, ref in own.items():
        src = key if key in state else _timm_name(key)
        if src not in state:
            missing.append(key)
        elif tuple(state[src].shape) != tuple(ref.shape):
            bad.append(key)
        else:
            loaded[key] = state[src]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {len(missing)} tensors of the CNN branch (first: {missing[:3]}); "
                         f"this Mesorch variant expects a timm '{arch}' state dict")
    if bad:
        raise ValueError(f"{path}: shape mismatch for {bad[:3]}; this Mesorch variant expects a timm '{arch}' state dict")
    body.load_state_dict(loaded, strict=True)


def widen_stem(body: nn.Module, in_chans: int) -> nn.Conv2d:
    """Give the first conv `in_chans` inputs: RGB weights kept, the extra channels zero (see module doc)."""
    conv = next(m for m in body.modules() if isinstance(m, nn.Conv2d))
    old = conv.weight.data
    new = torch.zeros(old.shape[0], in_chans, *old.shape[2:], dtype=old.dtype)
    new[:, : old.shape[1]] = old
    conv.weight = nn.Parameter(new)
    conv.in_channels = in_chans
    return conv


class CNNBranch(nn.Module):
    """Local-feature branch: a features-only timm CNN on RGB + high frequency (6 channels), 4 scales."""

    def __init__(self, arch: str, out_indices: tuple[int, ...], pretrained_path: str | None = None,
                 pretrained: bool = False) -> None:
        super().__init__()
        if pretrained_path or pretrained:
            self.body = timm_encoder(arch, out_indices, pretrained=pretrained and not pretrained_path)
            if pretrained_path:
                load_cnn_weights(self.body, pretrained_path, arch)
            widen_stem(self.body, 6)
        else:
            self.body = timm_encoder(arch, out_indices, in_chans=6)
        self.channels: list[int] = list(self.body.feature_info.channels())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


class MiTBranch(nn.Module):
    """Global-feature branch: a SegFormer-MiT-geometry PVTv2 (timm) on RGB + low frequency, 4 scales."""

    def __init__(self, embed_dims: tuple[int, ...], depths: tuple[int, ...], num_heads: tuple[int, ...],
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.body = timm_encoder("pvt_v2_b0", (0, 1, 2, 3), in_chans=6, embed_dims=tuple(embed_dims),
                                 depths=tuple(depths), num_heads=tuple(num_heads), mlp_ratios=(4, 4, 4, 4),
                                 sr_ratios=(8, 4, 2, 1), drop_path_rate=drop_path)
        self.channels: list[int] = list(self.body.feature_info.channels())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


# --------------------------------------------------------------------------------------- heads and gate

class ScaleHead(nn.Module):
    """One scale to one stride-4 logit map: 2x transposed convs (kernel 4) through `widths`, then 1x1."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        self.up = nn.Sequential(*(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1) for a, b in zip(widths, widths[1:])))
        self.out = nn.Conv2d(widths[-1], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.up(x))


def head_widths(channels: list[int], scale: int, head_width: int | None) -> list[int]:
    """Paper: halve along the branch's own widths (768->384->192->96), as the authors' upsamplers do;
    tiny: one narrow width after the first step."""
    if head_width is None:
        return [channels[i] for i in range(scale, -1, -1)]
    return [channels[scale]] + [head_width] * scale


class ScaleGate(nn.Module):
    """Adaptive weighting module: 7x7/2 conv, a residual inverted-bottleneck block (LN, 3x3, 1x1 expand x4,
    1x1 reduce, GELU), 7x7/2 conv to one channel per scale, softmax over scales -> (B, 8, H/4, W/4)."""

    def __init__(self, in_chans: int = 9, width: int = 192, n_scales: int = N_SCALES) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_chans, width, 7, stride=2, padding=3)
        self.block = nn.Sequential(LayerNorm2d(width), nn.Conv2d(width, width, 3, padding=1),
                                   nn.Conv2d(width, 4 * width, 1), nn.Conv2d(4 * width, width, 1), nn.GELU())
        self.out = nn.Conv2d(width, n_scales, 7, stride=2, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.block(x)
        return self.out(x).float().softmax(dim=1)


# ---------------------------------------------------------------------------------------------- detector

class Mesorch(Detector):
    def __init__(self, info: DetectorInfo, *, cnn: str, cnn_indices: tuple[int, ...], mit: dict[str, Any],
                 head_width: int | None, gate_width: int, drop_path: float = 0.0, alpha: float = 0.05,
                 dice_weight: float = 0.0, pos_weight: float = 1.0, pretrained_path: str | None = None,
                 pretrained: bool = False) -> None:
        super().__init__()
        if not 0 < alpha < 1:
            raise ValueError(f"mesorch: alpha {alpha} must be in (0, 1) (fraction of low DCT frequencies per axis)")
        self.info = info
        self.dice_weight = float(dice_weight)
        self.pos_weight = float(pos_weight)
        self.alpha = float(alpha)
        self.cnn = CNNBranch(cnn, tuple(cnn_indices), pretrained_path, pretrained)
        self.mit = MiTBranch(**mit, drop_path=drop_path)
        self.heads = nn.ModuleList(
            [ScaleHead(head_widths(self.cnn.channels, s, head_width)) for s in range(4)]
            + [ScaleHead(head_widths(self.mit.channels, s, head_width)) for s in range(4)])
        self.gate = ScaleGate(9, gate_width, N_SCALES)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        h, w = x.shape[-2:]
        low, high = dct_split(x, self.alpha)
        low, high = minmax_per_image(low).to(x.dtype), minmax_per_image(high).to(x.dtype)
        feats = self.cnn(torch.cat([x, high], 1)) + self.mit(torch.cat([x, low], 1))
        weights = self.gate(torch.cat([x, high, low], 1))                      # (B, 8, H/4, W/4)
        size = weights.shape[-2:]
        maps = [head(f) for head, f in zip(self.heads, feats)]
        maps = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                for m in maps]
        scale_logits = torch.cat(maps, 1)
        fused = (weights.to(scale_logits.dtype) * scale_logits).sum(1, keepdim=True)
        mask_logits = F.interpolate(fused, size=(h, w), mode="bilinear", align_corners=False)
        return {"mask_logits": mask_logits, "score_logits": None, "scale_logits": scale_logits,
                "gate_weights": weights}

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Pixel BCE of the fused mask over valid pixels (Mesorch's only training term), with an optional
        class weight on forged pixels (``pos_weight``), plus an optional Dice term (``dice_weight``); neither
        is in the paper's objective."""
        loss = bce(out["mask_logits"], batch, pos_weight=self.pos_weight if self.pos_weight != 1.0 else None)
        parts = {"bce": float(loss.detach())}
        return add_dice(loss, parts, out["mask_logits"], batch, self.dice_weight), parts


@register_detector("mesorch")
def mesorch(variant: str = "tiny", pretrained_path: str | None = None, pretrained: bool = False,
            **kwargs: Any) -> Mesorch:
    """Mesorch. ``pretrained_path``: a local timm-format state dict of the variant's CNN
    (``tf_efficientnet_lite0`` for tiny: the harness's offline ImageNet file; ``convnext_tiny`` for paper);
    it initializes the CNN branch's RGB part. ``pretrained``: timm's own CNN weights (needs a network).
    Overrides: ``alpha`` (DCT low-frequency fraction), ``head_width``, ``gate_width``, ``drop_path``,
    ``dice_weight``, ``pos_weight``."""
    cfg = dict(variant_spec("mesorch", variant, VARIANTS))
    check_options("mesorch", kwargs, ("alpha", "head_width", "gate_width", "drop_path", "dice_weight", "pos_weight"))
    cfg.update({k: v for k, v in kwargs.items() if v is not None})
    mean, std, input_size = cfg.pop("mean"), cfg.pop("std"), cfg.pop("input_size")
    weights = weights_note("CNN branch (RGB)", pretrained_path, pretrained, f"timm {cfg['cnn']} (online)",
                           "; transformer branch, heads and gate random")
    info = DetectorInfo(name="mesorch", family="parallel CNN + Transformer on DCT high/low frequencies, "
                        "gated multi-scale fusion", paper=PAPER, variant=variant, input_size=input_size, stride=32,
                        mean=mean, std=std, weights=weights)
    return Mesorch(info, **cfg, pretrained_path=pretrained_path, pretrained=pretrained)


__all__ = ["Mesorch", "ScaleGate", "dct_matrix", "dct_split", "load_cnn_weights", "mesorch", "minmax_per_image"]
