"""SegFormer as an IML detector: hierarchical MiT encoder + all-MLP decoder, one forgery channel.

Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation with Transformers",
NeurIPS 2021. Encoder and decoder live in ``detectors.mit``; this module picks the geometry per variant and
adds the IML objective.

- ``tiny``: MiT-B0 (widths 32/64/160/256, depths 2/2/2/2, heads 1/2/5/8, reduction ratios 8/4/2/1) and a
  256-wide decoder (SegFormer's decoder width: 256 for B0/B1, 768 for B2-B5); about 3.7M params.
- ``paper``: MiT-B2 (widths 64/128/320/512, depths 3/4/6/3) and a 768-wide decoder, the geometry IML
  benchmarks use for their SegFormer baseline; about 27M params, trained at 512 px.

Objective: SegFormer's own objective is pixel cross-entropy on logits upsampled to the label size; with one
forgery channel that is BCE at input resolution over valid pixels, with an optional class weight on the
forged pixels (``pos_weight``, 1 by default: mmseg's ``class_weight`` of the CE loss), plus an optional Dice
term (``dice_weight``, 0 by default). The CPU profiles turn both on (configs/profile/cpu-quick.yaml says why). ``score_logits`` is None: SegFormer in
IML benchmarks is a pixel-only baseline, and a score pooled from the mask would only restate the mask
metrics.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from detectors.base import Detector, DetectorInfo, register_detector, variant_spec, weights_note
from detectors.losses import add_dice, bce
from detectors.mit import AllMLPDecoder, mit_encoder

_PAPER = ("Xie et al., SegFormer: Simple and Efficient Design for Semantic Segmentation with Transformers, "
          "NeurIPS 2021 (arXiv:2105.15203)")

# variant -> (MiT geometry, decoder width, training size)
VARIANTS: dict[str, tuple[str, int, int]] = {
    "tiny": ("mit_b0", 256, 256),
    "paper": ("mit_b2", 768, 512),
}


class SegFormer(Detector):
    def __init__(self, info: DetectorInfo, arch: str, decoder_dim: int, pretrained_path: str | None = None,
                 pretrained: bool = False, dice_weight: float = 0.0, pos_weight: float = 1.0,
                 drop_path_rate: float = 0.1):
        super().__init__()
        self.info = info
        self.encoder = mit_encoder(arch, pretrained_path=pretrained_path, pretrained=pretrained,
                                   drop_path_rate=drop_path_rate)
        self.decoder = AllMLPDecoder(self.encoder.out_channels, decoder_dim, num_classes=1)
        self.dice_weight = float(dice_weight)
        self.pos_weight = float(pos_weight)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        logits = self.decoder(self.encoder(x))  # (B,1,H/4,W/4)
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"mask_logits": logits, "score_logits": None}

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = out["mask_logits"]
        loss_bce = bce(logits, batch, pos_weight=self.pos_weight if self.pos_weight != 1.0 else None)
        parts = {"bce": float(loss_bce.detach())}
        return add_dice(loss_bce, parts, logits, batch, self.dice_weight), parts


@register_detector("segformer")
def segformer(variant: str = "tiny", pretrained_path: str | None = None, pretrained: bool = False,
              **kwargs: Any) -> SegFormer:
    """SegFormer detector; ``pretrained_path`` is a local MiT state dict of the variant's geometry."""
    arch, decoder_dim, size = variant_spec("segformer", variant, VARIANTS)
    info = DetectorInfo(name="segformer", family=f"hierarchical transformer ({arch}) + all-MLP decoder",
                        paper=_PAPER, variant=variant, input_size=size, stride=32,
                        weights=weights_note(f"{arch} encoder", pretrained_path, pretrained,
                                             "ImageNet-1k (smp hub download)"))
    return SegFormer(info, arch, decoder_dim, pretrained_path=pretrained_path, pretrained=pretrained, **kwargs)
