"""Sanity rows: the ground truth itself (``oracle``), nothing (``empty``), everything (``full``)."""

from __future__ import annotations

import torch

from benchmarks.generators.base import GeneratorInfo, MaskGenerator, register_generator
from benchmarks.generators.quality import stability


class Oracle(MaskGenerator):
    needs_truth = True
    info = GeneratorInfo("oracle", "the ground-truth mask (upper bound; F1 = IoU = 1 by construction)")

    def forward(self, original, edited, instruction, truth=None):
        return (truth > 0.5).to(edited.dtype)


class Constant(MaskGenerator):
    def __init__(self, value: float, name: str):
        super().__init__()
        self.value = value
        self.info = GeneratorInfo(name, f"every pixel {value:g} (sanity row)")

    def forward(self, original, edited, instruction, truth=None):
        return torch.full_like(edited[:, :1], self.value)

    def forward_scored(self, original, edited, instruction, truth=None):
        """The mask and its stability, computed on one pixel: every pixel holds the same value, so the
        score is the one :func:`~benchmarks.generators.quality.stability` gives the whole mask, at no cost
        (the default would threshold and count every pixel of the batch twice)."""
        mask = self.forward(original, edited, instruction, truth)
        return mask, stability(mask[:, :, :1, :1].clamp(0.0, 1.0)), [{} for _ in range(mask.shape[0])]


@register_generator("oracle")
def oracle() -> MaskGenerator:
    return Oracle()


@register_generator("empty")
def empty() -> MaskGenerator:
    return Constant(0.0, "empty")


@register_generator("full")
def full() -> MaskGenerator:
    return Constant(1.0, "full")
