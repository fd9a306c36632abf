"""The MaskGenerator contract and its registry.

A generator maps ``(original, edited, instruction)`` to a soft mask: images are float (B,3,H,W) in [0,1]
on the generator's device, ``instruction`` a list of B strings; the result is (B,1,H,W) in [0,1] where
>= 0.5 reads as "edited". Generators run without gradients and never see ground truth, except the
``oracle`` sanity row, which declares ``needs_truth`` and receives ``truth=``.

Adding a generator is one module with ``@register_generator("name")`` plus ``configs/generator/name.yaml``.

Optional, for annotators that filter their output: :meth:`MaskGenerator.generate_scored` also returns a
per-pair quality score in [0, 1] (higher = more trustworthy) and per-pair diagnostics. A generator that
knows better than the default (mask stability, :mod:`benchmarks.generators.quality`) overrides
:meth:`MaskGenerator.forward_scored`; :meth:`MaskGenerator.counters` reports run totals (e.g. registration
fallbacks) for a runner's report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


@dataclass
class ScoredMasks:
    """What :meth:`MaskGenerator.generate_scored` returns for a batch of B pairs."""

    mask: torch.Tensor                 # (B,1,H,W) soft mask in [0,1], as generate() returns it
    quality: torch.Tensor              # (B,) in [0,1]: how far each mask can be trusted (higher = better)
    diagnostics: list[dict[str, Any]]  # B dicts of JSON-ready per-pair facts (may be empty dicts)


class MaskGenerator(nn.Module):
    info: GeneratorInfo
    needs_truth: bool = False
    min_side: int = 1  # smallest image side (px) the generator takes; the harness skips or refuses smaller pairs

    def forward(self, original: torch.Tensor, edited: torch.Tensor, instruction: list[str],
                truth: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward_scored(self, original: torch.Tensor, edited: torch.Tensor, instruction: list[str],
                       truth: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor | None, list[dict[str, Any]]]:
        """Optional hook: (mask, quality (B,) or None, diagnostics). The default runs forward() and leaves the
        quality to generate_scored's default (the mask's stability)."""
        return self.forward(original, edited, instruction, truth), None, [{} for _ in range(original.shape[0])]

    def counters(self) -> dict[str, int]:
        """Totals since construction a runner may log or report (e.g. registration fallbacks); none by default."""
        return {}

    @torch.no_grad()
    def generate(self, original: torch.Tensor, edited: torch.Tensor, instruction: list[str] | None = None,
                 truth: torch.Tensor | None = None) -> torch.Tensor:
        """Checked, gradient-free call: moves inputs to the generator's device, validates the output."""
        args = self._checked_inputs(original, edited, instruction, truth)
        return self._checked_mask(self.forward(*args), original.shape)

    @torch.no_grad()
    def generate_scored(self, original: torch.Tensor, edited: torch.Tensor, instruction: list[str] | None = None,
                        truth: torch.Tensor | None = None) -> ScoredMasks:
        """generate() plus a per-pair quality score and diagnostics (same checks, same mask)."""
        from benchmarks.generators.quality import stability

        args = self._checked_inputs(original, edited, instruction, truth)
        out, quality, diagnostics = self.forward_scored(*args)
        mask = self._checked_mask(out, original.shape)
        b = original.shape[0]
        quality = stability(mask) if quality is None else quality.reshape(-1).to(mask.device, mask.dtype)
        if quality.shape != (b,) or len(diagnostics) != b:
            raise RuntimeError(f"generator {self.info.name!r} returned {tuple(quality.shape)} quality scores and "
                               f"{len(diagnostics)} diagnostics for a batch of {b}")
        return ScoredMasks(mask, quality.clamp(0.0, 1.0), diagnostics)

    def _checked_inputs(self, original: torch.Tensor, edited: torch.Tensor, instruction: list[str] | None,
                        truth: torch.Tensor | None
                        ) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor | None]:
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
        return original.to(device), edited.to(device), instruction, truth.to(device) if truth is not None else None

    def _checked_mask(self, out: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        b, _, h, w = shape
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


def create_from_node(node: Mapping[str, Any] | None, name: str | None = None) -> MaskGenerator:
    """Build the generator a config node describes: the rest of the node, minus its ``name``, as the
    factory's arguments. `name` builds that generator instead of the node's own (a node nested under
    another generator, whose kind is fixed)."""
    params = {k: v for k, v in dict(node or {}).items() if k != "name"}
    chosen = name if name is not None else (node or {}).get("name")
    if chosen is None:
        raise ValueError(f"generator config {dict(node or {})!r} has no 'name' (set generator.name to one of "
                         f"{', '.join(list_generators())})")
    return create_generator(chosen, **params)


def _import_builtin() -> None:
    # imported for their registration side effects
    from benchmarks.generators import aligned, feature, fusion, ladder, pixel, reference, sigma  # noqa: F401
