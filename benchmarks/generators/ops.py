"""Small batched image operations shared by the training-free generators."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B,C,H,W), reflect padding; sigma <= 0 returns x."""
    if sigma <= 0:
        return x
    radius = max(1, int(round(3 * sigma)))
    coords = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    pad_h, pad_w = min(radius, x.shape[2] - 1), min(radius, x.shape[3] - 1)
    x = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect") if pad_w else x
    x = F.conv2d(x, kernel[radius - pad_w: radius + pad_w + 1].view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.pad(x, (0, 0, pad_h, pad_h), mode="reflect") if pad_h else x
    return F.conv2d(x, kernel[radius - pad_h: radius + pad_h + 1].view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def otsu_threshold(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Per-image Otsu threshold of (B,1,H,W) maps (values anywhere): returns (B,) thresholds."""
    b = x.shape[0]
    flat = x.reshape(b, -1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = (hi - lo).clamp_min(1e-12)
    idx = ((flat - lo[:, None]) / span[:, None] * (bins - 1)).round().long()
    hist = torch.zeros(b, bins, device=x.device, dtype=torch.float64).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    p = hist / hist.sum(1, keepdim=True)
    centers = torch.arange(bins, device=x.device, dtype=torch.float64)
    w0 = p.cumsum(1)
    mu = (p * centers).cumsum(1)
    mu_t = mu[:, -1:]
    between = (mu_t * w0 - mu) ** 2 / (w0 * (1 - w0)).clamp_min(1e-12)
    k = between[:, :-1].argmax(1).double()  # split after bin k: foreground is > k
    return (lo.double() + (k + 0.5) / (bins - 1) * span.double()).to(x.dtype)


def soft_threshold(score: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """Map a non-negative score to [0,1): s / (s + t) is >= 0.5 exactly where s >= t, and strictly monotone
    in s, so thresholding at 0.5 reproduces the generator's own threshold and the ranking (AUC) is kept."""
    if not torch.is_tensor(threshold):
        threshold = torch.tensor(float(threshold), device=score.device, dtype=score.dtype)
    t = threshold.reshape(-1, 1, 1, 1).clamp_min(1e-8)
    score = score.clamp_min(0.0)
    return score / (score + t)
