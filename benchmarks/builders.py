"""The model libraries' objects built from composed configs: a mask generator (``cfg.generator``), a
detector's factory arguments (offline weights filled in), a trained detector from its checkpoint, and the
check that a ``--generator`` / ``--detector`` choice names registered ones."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from benchmarks.config import to_container
from benchmarks.generators.base import MaskGenerator, create_from_node, list_generators
from detectors import Detector, create_detector, list_detectors

log = logging.getLogger(__name__)

OFFLINE_LITE0 = "offline-efficientnet-lite0"  # detector config value that asks for the offline ImageNet weights


def generator_from_config(cfg: DictConfig) -> MaskGenerator:
    """The generator ``cfg.generator`` names, built with the rest of that node as its arguments."""
    return create_from_node(OmegaConf.to_container(cfg.generator, resolve=True))


def detector_params(dcfg: DictConfig | dict) -> dict[str, Any]:
    """Factory keyword arguments from a detector config (minus ``name``); ``pretrained_path:
    offline-efficientnet-lite0`` becomes the offline ImageNet EfficientNet-Lite0 file."""
    params = {k: v for k, v in (to_container(dcfg) if isinstance(dcfg, DictConfig) else dict(dcfg)).items()
              if k != "name"}
    if params.get("pretrained_path") == OFFLINE_LITE0:
        from benchmarks.weights import offline_backbone_file

        params["pretrained_path"] = offline_backbone_file("tf_efficientnet_lite0")
    return params


def load_detector(cfg: DictConfig, detector: str, checkpoint: Path, device: torch.device) -> tuple[Detector, dict]:
    """The detector built as it was trained (params from the checkpoint's meta when present), with its
    weights, in eval mode on `device`; also the checkpoint's other entries (epoch, step, metrics)."""
    from detectors.train import load_checkpoint, load_weights

    meta = load_checkpoint(checkpoint).get("meta", {})
    if meta.get("detector") not in (None, detector):
        raise ValueError(f"{checkpoint}: trained for detector {meta['detector']!r}, not {detector!r}")
    params = dict(meta["params"]) if "params" in meta else detector_params(cfg.detector)
    params.pop("pretrained_path", None)  # the checkpoint holds every weight
    model = create_detector(detector, **params)
    info = load_weights(model, checkpoint)
    return model.to(device).eval(), info


def implemented(group: str, names: list[str], choice: str) -> list[str]:
    """The registered ones of `names` (a ``generator`` or ``detector`` choice): with ``all`` a config
    without an implementation is left out with a warning, a name given by hand is an error."""
    known = set(list_generators() if group == "generator" else list_detectors())
    out = []
    for name in names:
        if name in known:
            out.append(name)
        elif choice == "all":
            log.warning("%s %s has a config but no implementation; left out", group, name)
        else:
            raise ValueError(f"{group} {name!r} is not implemented; available: {sorted(known)}")
    return out
