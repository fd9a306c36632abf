"""``sigma_aligned``: SIGMA's soft mask and the registered pixel baseline's, fused per pixel.

The two see different evidence. SIGMA compares semantic features of the pair as given and reads the
instruction; ``aligned_diff`` undoes the editor's global misalignment and compares colours, with a
per-image noise threshold. On the val splits their errors differ enough that their mean, thresholded below
0.5, beats either alone (``python -m benchmarks.perf.fusion_grid``: the grid of rules and thresholds the
config's values were chosen from, on val only).

Per batch: both generators' soft masks (each >= 0.5 where it reads "edited"); their weighted mean (``mean``)
or per-pixel maximum (``max``); thresholded at ``threshold``, i.e. remapped piecewise linearly so that the
fused score's ``threshold`` lands on the contract's 0.5 (monotone, 0 and 1 kept). Quality: the fused mask's
stability. Diagnostics: aligned_diff's (registration, threshold) plus each part's marked share.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.generators.base import GeneratorInfo, MaskGenerator, register_generator

RULES = ("mean", "max")


def fuse(a: torch.Tensor, b: torch.Tensor, rule: str, weight: float) -> torch.Tensor:
    """Per-pixel fusion of two soft masks: ``mean`` gives weight * a + (1 - weight) * b, ``max`` the larger."""
    if rule == "mean":
        return weight * a + (1.0 - weight) * b
    if rule == "max":
        return torch.maximum(a, b)
    raise ValueError(f"fusion rule={rule!r}; use one of {RULES}")


def at_threshold(score: torch.Tensor, threshold: float) -> torch.Tensor:
    """Soft scores in [0,1] remapped so that ``score >= threshold`` is exactly ``out >= 0.5`` (piecewise
    linear through (0,0), (threshold, 0.5), (1,1))."""
    low = score * (0.5 / threshold)
    high = 0.5 + (score - threshold) * (0.5 / (1.0 - threshold))
    return torch.where(score >= threshold, high.clamp_min(0.5), low.clamp_max(0.5)).clamp(0.0, 1.0)


class SigmaAligned(MaskGenerator):
    def __init__(self, sigma: MaskGenerator, aligned: MaskGenerator, rule: str = "mean", weight: float = 0.5,
                 threshold: float = 0.3, chosen_on: str = "code defaults"):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"sigma_aligned rule={rule!r}; use one of {RULES}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"sigma_aligned weight={weight}; give SIGMA's share of the mean in [0, 1], e.g. 0.5")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"sigma_aligned threshold={threshold}; give the fused score's cut in (0, 1), e.g. 0.3")
        self.sigma, self.aligned = sigma, aligned
        self.rule, self.weight, self.threshold = rule, float(weight), float(threshold)
        self.min_side = max(sigma.min_side, aligned.min_side)
        how = f"mean (SIGMA weight {weight:g})" if rule == "mean" else "per-pixel maximum"
        self.info = GeneratorInfo(
            "sigma_aligned", f"SIGMA's and aligned_diff's soft masks fused: {how}, cut at {threshold:g}; chosen on: "
            f"{chosen_on}", paper=sigma.info.paper + " + registered differencing", weights=sigma.info.weights)

    def forward_scored(self, original, edited, instruction, truth=None):
        from benchmarks.generators.quality import stability

        s = self.sigma.generate(original, edited, instruction)
        a, _, diagnostics = self.aligned.forward_scored(original, edited, instruction)
        mask = at_threshold(fuse(s, a.to(s.dtype), self.rule, self.weight), self.threshold)
        for d, ms, ma in zip(diagnostics, (s >= 0.5).flatten(1).float().mean(1).tolist(),
                             (a >= 0.5).flatten(1).float().mean(1).tolist()):
            d.update(marked_sigma=round(ms, 6), marked_aligned=round(ma, 6))
        return mask, stability(mask), diagnostics

    def forward(self, original, edited, instruction, truth=None):
        return self.forward_scored(original, edited, instruction, truth)[0]

    def counters(self) -> dict[str, int]:
        return {**self.sigma.counters(), **self.aligned.counters()}


@register_generator("sigma_aligned")
def sigma_aligned(sigma: dict[str, Any], aligned_diff: dict[str, Any], rule: str = "mean", weight: float = 0.5,
                  threshold: float = 0.3, chosen_on: str = "code defaults") -> MaskGenerator:
    from benchmarks.generators.base import create_from_node

    return SigmaAligned(create_from_node(sigma, "sigma"), create_from_node(aligned_diff, "aligned_diff"), rule,
                        weight, threshold, chosen_on)
