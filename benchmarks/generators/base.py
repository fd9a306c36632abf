"""The MaskGenerator contract and its registry.

A generator maps ``(original, edited, instruction)`` to a soft mask: images are float (B,3,H,W) in [0,1]
on the generator's device, ``instruction`` a list of B strings; the result is (B,1,H,W) in [0,1] where
>= 0.5 reads as "edited". Generators run without gradients and never see ground truth, except the
``oracle`` sanity row, which declares ``needs_truth`` and receives ``truth=``.

Adding a generator is one module with ``@register_generator("name")`` plus ``configs/generator/name.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchmarks.registry import Registry


@dataclass(frozen=True)
class GeneratorInfo:
    """Metadata shown in leaderboards and docs."""

    name: str
    summary: str
    paper: str = ""
    weights: str = "none"
    calibration: bool = False  # reads the ground truth to calibrate the benchmark (the ladder); never a competitor


class MaskGenerator(nn.Module):
    info: GeneratorInfo
    needs_truth: bool = False
    min_side: int = 1  # smallest image side (px) the generator takes; the harness skips or refuses smaller pairs

    def forward(self, original: torch.Tensor, edited: torch.Tensor, instruction: list[str],
                truth: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, original: torch.Tensor, edited: torch.Tensor, instruction: list[str] | None = None,
                 truth: torch.Tensor | None = None) -> torch.Tensor:
        """Checked, gradient-free call: moves inputs to the generator's device, validates the output."""
        if original.shape != edited.shape or original.ndim != 4 or original.shape[1] != 3:
            raise ValueError(f"original {tuple(original.shape)} and edited {tuple(edited.shape)} must both be (B,3,H,W)")
        instruction = list(instruction) if instruction is not None else [""] * original.shape[0]
        if len(instruction) != original.shape[0]:
            raise ValueError(f"{len(instruction)} instructions for a batch of {original.shape[0]}")
        if min(original.shape[-2:]) < self.min_side:
            raise ValueError(f"generator {self.info.name!r} takes images of at least {self.min_side} px a side, got "
                             f"{original.shape[-1]}x{original.shape[-2]} (WxH)")
        device = self.device
        if self.needs_truth and truth is None:
            raise ValueError(f"generator {self.info.name!r} is the ground-truth sanity row and needs truth=")
        out = self.forward(original.to(device), edited.to(device), instruction,
                           truth.to(device) if truth is not None else None)
        b, _, h, w = original.shape
        if out.shape != (b, 1, h, w):
            raise RuntimeError(f"generator {self.info.name!r} returned {tuple(out.shape)}, expected {(b, 1, h, w)}")
        return out.clamp(0.0, 1.0)

    def __init__(self) -> None:
        super().__init__()
        # an empty buffer follows .to(device), so parameter-free generators know their device too
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._device_anchor.device


GENERATORS: dict[str, Callable[..., MaskGenerator]] = {}
_REGISTRY: Registry[Callable[..., MaskGenerator]] = Registry("generator", GENERATORS, lambda: _import_builtin())
register_generator = _REGISTRY.register  # @register_generator("name") on a factory that returns a MaskGenerator


def list_generators() -> list[str]:
    return _REGISTRY.names()


def create_generator(name: str, **kwargs: Any) -> MaskGenerator:
    """Build a registered generator; an unknown name raises with the known ones listed."""
    return _REGISTRY.create(name, **kwargs)


def _import_builtin() -> None:
    from benchmarks.generators import feature, ladder, pixel, reference, sigma  # noqa: F401  (registration side effects)
