"""Per-pair mask-quality scores: how far a generator's own mask can be trusted, without ground truth.

Annotators for editing corpora drop the masks they cannot trust before anything trains on them (CAAAv2 /
MIMLv2, arXiv 2508.20987, filters its corpus with such a score, QES). The scores here are in [0, 1], higher
is more trustworthy, and need nothing but what the generator computed:

- :func:`stability` (the contract's default, for any soft mask): the IoU of the mask thresholded a little
  above and a little below 0.5, as SAM's stability score (Kirillov et al. 2023). A mask whose pixels sit
  far from the decision boundary survives both thresholds; one that is mostly boundary does not.
- :func:`agreement`: mean IoU between several binary masks of the same pair (evidence at several feature
  scales, or pixel vs semantic evidence). Independent evidence that agrees is more likely right.
"""

from __future__ import annotations

import torch

EMPTY = 1.0  # two empty masks agree perfectly: "nothing changed" is a confident answer too


def _count(mask: torch.Tensor) -> torch.Tensor:
    """True pixels per item of a boolean (B, N) mask, as float64 (an int32 sum: several times faster than
    the default int64 one on CPU, and exact below 2**31 pixels an image)."""
    return mask.sum(1, dtype=torch.int32).double()


def _ratio(inter: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, EMPTY)).float()


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boolean (B, ...) masks per item; EMPTY where both are empty."""
    a, b = a.flatten(1), b.flatten(1)
    return _ratio(_count(a & b), _count(a | b))


def stability(soft: torch.Tensor, delta: float = 0.1) -> torch.Tensor:
    """(B,1,H,W) soft masks in [0,1] -> (B,) IoU of (soft >= 0.5 + delta) and (soft >= 0.5 - delta)."""
    if not 0 < delta < 0.5:
        raise ValueError(f"stability delta={delta}; it must lie in (0, 0.5), e.g. 0.1")
    soft = soft.flatten(1)
    # the high mask lies inside the low one: their intersection is the high mask, their union the low one
    return _ratio(_count(soft >= 0.5 + delta), _count(soft >= 0.5 - delta))


def agreement(masks: list[torch.Tensor]) -> torch.Tensor:
    """Mean pairwise IoU of two or more boolean (B,1,H,W) masks of the same pairs -> (B,)."""
    if len(masks) < 2:
        raise ValueError(f"agreement needs at least two masks, got {len(masks)}")
    scores = [_iou(masks[i], masks[j]) for i in range(len(masks)) for j in range(i + 1, len(masks))]
    return torch.stack(scores).mean(0)
