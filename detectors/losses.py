"""Losses shared by the detector families; every pixel term respects ``valid`` (padding never counts)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def valid_mask(batch: dict, like: torch.Tensor) -> torch.Tensor:
    """The batch's valid pixels at the resolution of `like` (all valid when the batch has none)."""
    valid = batch.get("valid")
    if valid is None:
        return torch.ones_like(like, dtype=torch.bool)
    return _resize(valid.float(), like.shape[-2:]) > 0.5


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if x.shape[-2:] == tuple(size) else F.interpolate(x, size=size, mode="nearest")


def target_at(batch: dict, logits: torch.Tensor) -> torch.Tensor:
    """The ground-truth mask at the resolution of `logits` (nearest: stays binary)."""
    return _resize(batch["mask"].float(), logits.shape[-2:])


def bce(logits: torch.Tensor, batch: dict, pos_weight: float | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel BCE over valid pixels (mean). Computed in float32 for autocast safety."""
    target = target_at(batch, logits)
    v = valid_mask(batch, logits).float()
    pw = None if pos_weight is None else torch.tensor(pos_weight, device=logits.device)
    loss = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none", pos_weight=pw)
    if weight is not None:
        loss = loss * weight
    return (loss * v).sum() / v.sum().clamp_min(1.0)


def dice(logits: torch.Tensor, batch: dict, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss per image over valid pixels, averaged over the batch (authentic images included:
    an empty prediction on an empty mask scores 1 thanks to the smoothing term)."""
    target = target_at(batch, logits)
    v = valid_mask(batch, logits).float()
    prob = torch.sigmoid(logits.float()) * v
    target = target * v
    inter = (prob * target).flatten(1).sum(1)
    total = prob.flatten(1).sum(1) + target.flatten(1).sum(1)
    return (1 - (2 * inter + eps) / (total + eps)).mean()


def add_dice(total: torch.Tensor, parts: dict[str, float], logits: torch.Tensor, batch: dict,
             weight: float) -> torch.Tensor:
    """``total + weight * Dice`` with the Dice value logged in `parts` as ``dice``; `total` unchanged when
    `weight` is 0 (an optional term some families add on top of their published objective)."""
    if not weight:
        return total
    loss_dice = dice(logits, batch)
    parts["dice"] = float(loss_dice.detach())
    return total + weight * loss_dice


def edge_map(mask: torch.Tensor, width: int = 3) -> torch.Tensor:
    """Boundary band of a binary mask (dilation minus erosion with a `width` square)."""
    pad = width // 2
    dil = F.max_pool2d(mask, width, stride=1, padding=pad)
    ero = -F.max_pool2d(-mask, width, stride=1, padding=pad)
    return (dil - ero).clamp(0, 1)


def image_bce(score_logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """Image-level BCE against ``label`` (1 = manipulated)."""
    label = batch["label"].to(score_logits.device).float().view(-1)
    return F.binary_cross_entropy_with_logits(score_logits.float().view(-1), label)


def image_label(batch: dict) -> torch.Tensor:
    return batch["label"].float().view(-1)
