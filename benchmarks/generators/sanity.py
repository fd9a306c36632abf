"""The contract's sanity pair: a box of new content in an otherwise (nearly) unchanged image.

Every training-free baseline must find it (most of the box marked, little else): the registry-driven
generator tests check it for every registered generator, and the tuning script
(benchmarks/perf/tune_baselines.py) only chooses settings that pass it, so a re-tune cannot produce a
config the tests reject.
"""

from __future__ import annotations

import torch

INSIDE_MIN = 0.8   # share of the box a baseline must mark
OUTSIDE_MAX = 0.2  # share of the rest it may mark


def contract_pair(seed: int = 0, b: int = 2, size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(original, edited, truth): random images, 2 % noise everywhere, a 24 x 24 box replaced by new content."""
    g = torch.Generator().manual_seed(seed)
    original = torch.rand(b, 3, size, size, generator=g)
    edited = (original + 0.02 * torch.randn(b, 3, size, size, generator=g)).clamp(0, 1)
    truth = torch.zeros(b, 1, size, size)
    truth[:, :, 16:40, 20:44] = 1
    edited = torch.where(truth.bool(), torch.rand(b, 3, size, size, generator=g), edited)
    return original, edited, truth


def marked_inside_outside(mask: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Share of the box and of the rest that a (B,1,H,W) soft mask marks (>= 0.5)."""
    on = mask >= 0.5
    return float(on[truth.bool()].float().mean()), float(on[~truth.bool()].float().mean())


def finds_the_sanity_edit(generator) -> bool:
    original, edited, truth = contract_pair()
    inside, outside = marked_inside_outside(generator.generate(original, edited, None, truth=truth), truth)
    return inside > INSIDE_MIN and outside < OUTSIDE_MAX
