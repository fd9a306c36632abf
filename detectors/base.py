"""The Detector contract, its metadata and the registry.

- ``forward(x)`` takes a *normalized* image batch and returns predictions only: a dict with
  ``mask_logits`` (B,1,H,W) at the input resolution and ``score_logits`` (B,) or None, plus any
  auxiliary predictions the family's loss needs (``aux_mask_logits``, ``edge_logits``, ...). The keys a
  model returns never depend on configuration, and no ground truth is needed.
- ``loss(out, batch)`` is the family's native objective; returns ``(total, {name: value})``.
- ``predict(image)`` takes [0,1] images of any size, normalizes, pads to what the architecture needs
  (a multiple of ``info.stride``, or a fixed ``info.fixed_size`` as IML-ViT does), runs, crops back and
  returns probabilities.

Adding a detector is one module with ``@register_detector("name")``, one config file and nothing else:
the shared tests pick it up from the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DetectorInfo:
    """Metadata that sits next to each model (timm-style pretrained config)."""

    name: str
    family: str                       # e.g. "dual-stream CNN with noise branch"
    paper: str                        # citation of the architecture this reimplements
    variant: str = "tiny"             # tiny (CPU tests, cpu-quick) | paper (published geometry)
    input_size: int = 256             # training resolution of the variant
    stride: int = 32                  # predict() pads H and W to a multiple of this
    fixed_size: int | None = None     # predict() pads every image to this square (IML-ViT style)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    weights: str = "random init"      # what the encoder was initialized from
    license: str = "Apache-2.0 (this reimplementation)"


class Detector(nn.Module):
    info: DetectorInfo

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:  # pragma: no cover - interface
        raise NotImplementedError

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:  # pragma: no cover
        raise NotImplementedError

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.info.mean, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.info.std, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        return (image - mean) / std

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Probabilities for [0,1] images (B,3,H,W) of any size: ``mask`` (B,1,H,W), ``score`` (B,) or None."""
        h, w = image.shape[-2:]
        if self.info.fixed_size is not None:
            side = self.info.fixed_size
            scale = min(1.0, side / max(h, w))
            if scale < 1.0:  # larger images are shrunk to fit, then padded; masks are resized back below
                image = F.interpolate(image, size=(max(1, round(h * scale)), max(1, round(w * scale))),
                                      mode="bilinear", align_corners=False, antialias=True)
            ph, pw = side - image.shape[-2], side - image.shape[-1]
        else:
            s = self.info.stride
            ph, pw = (-h) % s, (-w) % s
        x = self.normalize(image)
        x = F.pad(x, (0, pw, 0, ph))  # zeros after normalization, at the bottom/right
        out = self(x)
        logits = out["mask_logits"][..., : x.shape[-2] - ph, : x.shape[-1] - pw]
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        score = out.get("score_logits")
        return {"mask": torch.sigmoid(logits.float()), "score": None if score is None else torch.sigmoid(score.float())}


DETECTORS: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str) -> Callable[[Callable[..., Detector]], Callable[..., Detector]]:
    """Register ``factory(variant="tiny", pretrained_path=None, **kwargs) -> Detector`` under `name`."""

    def deco(factory: Callable[..., Detector]) -> Callable[..., Detector]:
        if name in DETECTORS:
            raise ValueError(f"detector {name!r} is registered twice")
        DETECTORS[name] = factory
        return factory

    return deco


V = TypeVar("V")
FACTORY_ARGS = ("variant", "pretrained_path", "pretrained")  # what every registered factory takes


def variant_spec(name: str, variant: str, variants: Mapping[str, V]) -> V:
    """A family's settings for `variant`; an unknown one is an error listing the family's variants."""
    if variant not in variants:
        raise ValueError(f"{name}: unknown variant {variant!r}; choose one of {sorted(variants)}")
    return variants[variant]


def check_options(name: str, given: Iterable[str], known: Iterable[str] = ()) -> None:
    """Factory options beyond :data:`FACTORY_ARGS`: an unknown one is an error listing what the family takes."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; it takes {[*FACTORY_ARGS, *sorted(known)]}")


def weights_note(part: str, pretrained_path: str | None, pretrained: bool, online: str, rest: str = "") -> str:
    """``DetectorInfo.weights``: where `part` starts from (a local file, `online`, or nothing)."""
    if pretrained_path:
        return f"{part} from {pretrained_path}{rest}"
    if pretrained:
        return f"{part} from {online}{rest}"
    return "random init"


def _import_builtin() -> None:
    import importlib

    for module in ("mvss_net", "trufor", "segformer", "pscc_net", "iml_vit", "mesorch"):
        try:
            importlib.import_module(f"detectors.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"detectors.{module}":
                raise


def list_detectors() -> list[str]:
    _import_builtin()
    return sorted(DETECTORS)


def create_detector(name: str, **kwargs: Any) -> Detector:
    """Build a registered detector; an unknown name raises with the known ones listed."""
    _import_builtin()
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; registered detectors: {sorted(DETECTORS)}")
    return DETECTORS[name](**kwargs)
