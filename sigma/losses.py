"""SIGMA's objectives: mask (BCE + Dice), instruction prior, EMA pseudo-labels, edit-noise disentanglement."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_dice(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1.0) -> torch.Tensor:
    """Pixel BCE (optionally weighted: 0 ignores a pixel) + soft Dice per image; logits/target (B,1,H,W)."""
    logits = logits.float()
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    w = torch.ones_like(target) if weight is None else weight
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * w).sum() / w.sum().clamp_min(1.0)
    prob = torch.sigmoid(logits) * w
    t = target * w
    inter = (prob * t).flatten(1).sum(1)
    dice = 1 - (2 * inter + eps) / (prob.flatten(1).sum(1) + t.flatten(1).sum(1) + eps)
    return bce + dice.mean()


def prior_loss(prior_logits: torch.Tensor, intended: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
    """BCE of the stride-16 prior against the area-averaged intended mask, for pairs with an instruction."""
    if prior_logits is None or not bool(has_text.any()):
        return prior_logits.sum() * 0 if prior_logits is not None else torch.zeros(())
    target = F.adaptive_avg_pool2d(intended.float(), prior_logits.shape[-2:])
    loss = F.binary_cross_entropy_with_logits(prior_logits.float(), target, reduction="none").flatten(1).mean(1)
    return loss[has_text].mean()


def pseudo_labels(teacher_prob: torch.Tensor, hi: float, lo: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Confident teacher pixels only: (target, weight), weight 0 where lo <= p <= hi."""
    target = (teacher_prob > hi).float()
    weight = ((teacher_prob > hi) | (teacher_prob < lo)).float()
    return target, weight


def disentangle_loss(embed: torch.Tensor, edit: torch.Tensor, noise: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Push difference embeddings of true edits apart from those of round-trip noise.

    `embed` (B,C,h,w) is L2-normalized; `edit` / `noise` (B,1,h,w) mark edited pixels and pixels whose only
    change is the autoencoder round trip. Two batch prototypes (mean edit / mean noise embedding) act as
    class centres; each pixel is classified against them with temperature `tau` (a two-class InfoNCE).
    """
    e = embed.float().permute(0, 2, 3, 1).reshape(-1, embed.shape[1])
    edit, noise = edit.flatten() > 0.5, noise.flatten() > 0.5
    if edit.sum() < 2 or noise.sum() < 2:
        return embed.sum() * 0
    proto = F.normalize(torch.stack([e[noise].mean(0), e[edit].mean(0)]), dim=1)   # (2, C)
    logits = e @ proto.t() / tau
    pixels = torch.cat([logits[noise], logits[edit]])
    labels = torch.cat([torch.zeros(int(noise.sum())), torch.ones(int(edit.sum()))]).long().to(e.device)
    # balance the two classes: edits are a small fraction of the pixels
    weight = torch.tensor([1.0 / noise.sum().item(), 1.0 / edit.sum().item()], device=e.device)
    return F.cross_entropy(pixels, labels, weight=weight)
