"""``feature_diff``: per-patch cosine distance of frozen backbone features (untrained semantic differencing)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from benchmarks.generators.base import GeneratorInfo, MaskGenerator, register_generator
from benchmarks.generators.ops import gaussian_blur, otsu_threshold, soft_threshold
from detectors.encoders import timm_encoder

log = logging.getLogger(__name__)


class FeatureDiff(MaskGenerator):
    """1 - cos(f(original), f(edited)) per feature-map cell at several depths, upsampled and averaged.

    Default backbone: ImageNet EfficientNet-Lite0 from the offline pip package (strides 4/8/16). Any timm
    backbone works with ``backbone=NAME pretrained_path=FILE`` (a timm-format state dict), or with
    ``pretrained=True`` where timm can download.
    """

    def __init__(self, backbone: str = "tf_efficientnet_lite0", out_indices: tuple[int, ...] = (1, 2, 3),
                 pretrained_path: str | None = None, pretrained: bool = False, threshold: float | str = "otsu",
                 sigma: float = 2.0, min_threshold: float = 0.02, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None):
        super().__init__()
        if pretrained_path is None and not pretrained:
            from benchmarks.weights import offline_backbone_file

            pretrained_path = offline_backbone_file(backbone)
        self.backbone = timm_encoder(backbone, tuple(out_indices), pretrained_path, pretrained).eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        lite = backbone.startswith("tf_efficientnet_lite")  # TF-Lite models take (x - 0.5) / 0.5
        mean = mean or ((0.5, 0.5, 0.5) if lite else self.backbone.pretrained_cfg.get("mean"))
        std = std or ((0.5, 0.5, 0.5) if lite else self.backbone.pretrained_cfg.get("std"))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.threshold, self.sigma, self.min_threshold = threshold, float(sigma), float(min_threshold)
        weights = pretrained_path or ("timm pretrained" if pretrained else "random init (no weights given)")
        if not pretrained_path and not pretrained:
            log.warning("feature_diff: backbone %s has random weights; pass pretrained_path", backbone)
        self.info = GeneratorInfo("feature_diff", f"1 - cosine of frozen {backbone} features at reductions "
                                  f"{self.backbone.feature_info.reduction()}, Otsu threshold", weights=str(weights))

    def forward(self, original, edited, instruction, truth=None):
        h, w = edited.shape[-2:]
        both = torch.cat([original, edited])
        feats = self.backbone((both - self.mean) / self.std)
        score = torch.zeros_like(edited[:, :1])
        for f in feats:
            a, b = f.chunk(2)
            dist = 1 - F.cosine_similarity(a, b, dim=1, eps=1e-6)[:, None]
            score += F.interpolate(dist, size=(h, w), mode="bilinear", align_corners=False)
        score = gaussian_blur(score / len(feats), self.sigma)
        # Otsu always splits the map in two; the floor keeps identical images from producing a mask
        thr = otsu_threshold(score).clamp_min(self.min_threshold) if self.threshold == "otsu" else float(self.threshold)
        return soft_threshold(score, thr)


@register_generator("feature_diff")
def feature_diff(**kwargs) -> MaskGenerator:
    if "out_indices" in kwargs:
        kwargs["out_indices"] = tuple(kwargs["out_indices"])
    return FeatureDiff(**kwargs)
