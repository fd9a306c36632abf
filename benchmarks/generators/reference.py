"""Sanity rows: the ground truth itself (``oracle``), nothing (``empty``), everything (``full``)."""

from __future__ import annotations

import torch

from benchmarks.generators.base import GeneratorInfo, MaskGenerator, register_generator


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


@register_generator("oracle")
def oracle() -> MaskGenerator:
    return Oracle()


@register_generator("empty")
def empty() -> MaskGenerator:
    return Constant(0.0, "empty")


@register_generator("full")
def full() -> MaskGenerator:
    return Constant(1.0, "full")
