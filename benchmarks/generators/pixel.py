"""Training-free pixel-space baselines: absolute difference and structural (SSIM) difference."""

from __future__ import annotations

import torch

from benchmarks.generators.base import GeneratorInfo, MaskGenerator, register_generator
from benchmarks.generators.ops import gaussian_blur, otsu_threshold, soft_threshold


class _ThresholdedMap(MaskGenerator):
    """A per-pixel change score, smoothed, thresholded at a fixed value or per image by Otsu."""

    def __init__(self, threshold: float | str, sigma: float, min_threshold: float = 0.02):
        super().__init__()
        if not (threshold == "otsu" or (isinstance(threshold, (int, float)) and threshold > 0)):
            raise ValueError(f"threshold must be a positive number or 'otsu', got {threshold!r}")
        self.threshold = threshold
        self.sigma = float(sigma)
        self.min_threshold = float(min_threshold)  # Otsu always splits; below this floor nothing changed

    def score(self, original: torch.Tensor, edited: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, original, edited, instruction, truth=None):
        score = gaussian_blur(self.score(original, edited), self.sigma)
        thr = otsu_threshold(score).clamp_min(self.min_threshold) if self.threshold == "otsu" else float(self.threshold)
        return soft_threshold(score, thr)


class PixelDiff(_ThresholdedMap):
    """Mean absolute RGB difference. The fixed threshold (0.1, i.e. ~25 grey levels) is a round value, not
    tuned on any test benchmark."""

    def __init__(self, threshold: float | str = 0.1, sigma: float = 2.0):
        super().__init__(threshold, sigma)
        variant = "Otsu" if threshold == "otsu" else f"fixed {threshold}"
        self.info = GeneratorInfo("pixel_diff" + ("_otsu" if threshold == "otsu" else ""),
                                  f"|edited - original|, Gaussian sigma {sigma}, {variant} threshold")

    def score(self, original, edited):
        return (edited - original).abs().mean(1, keepdim=True)


class SSIMDiff(_ThresholdedMap):
    """(1 - SSIM) / 2 on luminance with an 11x11 Gaussian window (sigma 1.5), as in Wang et al. 2004."""

    def __init__(self, threshold: float | str = "otsu", sigma: float = 2.0):
        super().__init__(threshold, sigma)
        self.info = GeneratorInfo("ssim_diff", f"(1 - SSIM)/2 on luminance, Gaussian sigma {sigma}, "
                                  f"{'Otsu' if threshold == 'otsu' else threshold} threshold")

    def score(self, original, edited):
        weights = torch.tensor([0.299, 0.587, 0.114], device=original.device, dtype=original.dtype).view(1, 3, 1, 1)
        x, y = (original * weights).sum(1, keepdim=True), (edited * weights).sum(1, keepdim=True)
        mx, my = gaussian_blur(x, 1.5), gaussian_blur(y, 1.5)
        vx = gaussian_blur(x * x, 1.5) - mx ** 2
        vy = gaussian_blur(y * y, 1.5) - my ** 2
        cov = gaussian_blur(x * y, 1.5) - mx * my
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        return ((1 - ssim) / 2).clamp(0, 1)


@register_generator("pixel_diff")
def pixel_diff(threshold: float | str = 0.1, sigma: float = 2.0) -> MaskGenerator:
    return PixelDiff(threshold, sigma)


@register_generator("pixel_diff_otsu")
def pixel_diff_otsu(sigma: float = 2.0) -> MaskGenerator:
    return PixelDiff("otsu", sigma)


@register_generator("ssim_diff")
def ssim_diff(threshold: float | str = "otsu", sigma: float = 2.0) -> MaskGenerator:
    return SSIMDiff(threshold, sigma)


