"""Test-time averaging for a learned mask generator: the mask probability averaged over copies of the
pair rescaled by each of ``scales`` (bilinear with antialiasing, both images alike) and, with ``flip``,
mirrored left-right, each copy's mask brought back to the pair's own size and orientation.

The point is a mask that depends less on one resampling grid: an editor's round trip leaves noise whose
structure is tied to the pixel grid, while an intended edit survives a change of scale. Off by default;
an option of the ``sigma`` generator (``+generator.tta='{scales: [1.0, 0.75], flip: true}'``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Annotator = Callable[[torch.Tensor, torch.Tensor, list[str]], torch.Tensor]


@dataclass(frozen=True)
class TTAConfig:
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False

    def __post_init__(self) -> None:
        if not self.scales or any(not 0.1 <= float(s) <= 4.0 for s in self.scales):
            raise ValueError(f"tta.scales: need one or more factors in [0.1, 4]; got {list(self.scales)}")

    @classmethod
    def from_dict(cls, d: dict | None) -> TTAConfig:
        from benchmarks.config import typed

        return typed(cls, d or {}, "tta")

    def describe(self) -> str:
        return f"scales {', '.join(f'{s:g}' for s in self.scales)}{' with left-right flips' if self.flip else ''}"


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == hw:
        return x
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)


def averaged(annotator: Annotator, original: torch.Tensor, edited: torch.Tensor, instructions: list[str],
             cfg: TTAConfig, min_side: int) -> torch.Tensor:
    """The mean of `annotator`'s (B,1,H,W) probabilities over the copies `cfg` names. A scale that would
    take a side below `min_side` is clamped to it, so small pairs still get every copy."""
    h, w = edited.shape[-2:]
    total, count = None, 0
    for s in cfg.scales:
        hw = (max(min_side, round(h * s)), max(min_side, round(w * s)))
        o, e = _resize(original, hw), _resize(edited, hw)
        for mirrored in ((False, True) if cfg.flip else (False,)):
            if mirrored:
                prob = annotator(o.flip(-1), e.flip(-1), instructions).flip(-1)
            else:
                prob = annotator(o, e, instructions)
            prob = _resize(prob.float(), (h, w)).clamp_(0.0, 1.0)
            total = prob if total is None else total + prob
            count += 1
    return total / count
