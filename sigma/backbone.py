"""Frozen vision backbones for semantic-feature differencing, as a pyramid at strides 4 / 8 / 16.

- ``tf_efficientnet_lite0`` (offline default): timm features at reductions 4/8/16 (24/40/112 channels),
  ImageNet weights from a timm-format file (``pretrained_path``), input (x - 0.5) / 0.5; ``-lite1`` (same
  channels) and ``-lite2`` (24/48/120), deeper and wider, have offline weights too.
- DINOv2 geometry (``vit_small_patch14_dinov2``, ``vit_base_patch14_dinov2``): patch tokens of several
  blocks (a ViT has one stride, 14), resampled to strides 4/8/16 so the same heads apply; weights from
  ``pretrained_path`` (a timm state dict) or timm's pretrained flag for users with a network.

The backbone stays frozen: SIGMA's heads are trained on thousands of pairs, which would overfit a tuned
backbone, and frozen features let training cache them once (the CPU budget depends on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sigma.serialization import load_file

STRIDES = (4, 8, 16)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    channels: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    vit_blocks: tuple[int, int, int] | None = None  # for ViTs: the blocks that feed strides 4/8/16


SPECS = {
    "tf_efficientnet_lite0": BackboneSpec("tf_efficientnet_lite0", (24, 40, 112), (0.5,) * 3, (0.5,) * 3),
    "tf_efficientnet_lite1": BackboneSpec("tf_efficientnet_lite1", (24, 40, 112), (0.5,) * 3, (0.5,) * 3),
    "tf_efficientnet_lite2": BackboneSpec("tf_efficientnet_lite2", (24, 48, 120), (0.5,) * 3, (0.5,) * 3),
    "vit_small_patch14_dinov2": BackboneSpec("vit_small_patch14_dinov2", (384, 384, 384), (0.485, 0.456, 0.406),
                                             (0.229, 0.224, 0.225), vit_blocks=(3, 7, 11)),
    "vit_base_patch14_dinov2": BackboneSpec("vit_base_patch14_dinov2", (768, 768, 768), (0.485, 0.456, 0.406),
                                            (0.229, 0.224, 0.225), vit_blocks=(3, 7, 11)),
}


def load_weights(model: nn.Module, path: str) -> None:
    """Load a timm state dict; strict on every tensor the (features-only) model uses."""
    state = load_file(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"{path}: lacks {len(missing)} backbone tensors (first: {missing[:3]}); is it a timm "
                         "state dict of this backbone?")
    model.load_state_dict({k: state[k] for k in own}, strict=True)


class FrozenBackbone(nn.Module):
    """images in [0,1] (B,3,H,W) -> three feature maps at H/4, H/8, H/16 (H, W multiples of 16)."""

    def __init__(self, name: str = "tf_efficientnet_lite0", pretrained_path: str | None = None,
                 pretrained: bool = False):
        super().__init__()
        import timm

        if name not in SPECS:
            raise ValueError(f"backbone {name!r} is not supported; choose one of {sorted(SPECS)}")
        self.spec = SPECS[name]
        if self.spec.vit_blocks is None:
            self.net = timm.create_model(name, features_only=True, out_indices=(1, 2, 3),
                                         pretrained=pretrained and not pretrained_path)
        else:
            self.net = timm.create_model(name, pretrained=pretrained and not pretrained_path, num_classes=0,
                                         dynamic_img_size=True)
        if pretrained_path:
            load_weights(self.net, pretrained_path)
        self.weights = pretrained_path or ("timm pretrained" if pretrained else "random init")
        if self.weights == "random init":
            import logging

            logging.getLogger(__name__).warning("SIGMA backbone %s has random weights: pass pretrained_path (a timm "
                                                "state dict) or pretrained=True", name)
        self.register_buffer("mean", torch.tensor(self.spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.spec.std).view(1, 3, 1, 1), persistent=False)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenBackbone:  # always in eval mode (BN statistics frozen)
        return super().train(False)

    @property
    def channels(self) -> tuple[int, int, int]:
        return self.spec.channels

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = (image - self.mean) / self.std
        h, w = image.shape[-2:]
        if self.spec.vit_blocks is None:
            return list(self.net(x))
        blocks = self.net.forward_intermediates(x, indices=list(self.spec.vit_blocks), intermediates_only=True)
        return [F.interpolate(f, size=(h // s, w // s), mode="bilinear", align_corners=False)
                for f, s in zip(blocks, STRIDES)]
