"""Optional adapter: any pure-PyTorch mmsegmentation segmentor (SegFormer, UPerNet, ...) as a Detector.

mmsegmentation is never required: it is imported only when an adapter is built, and its absence is an
error that says what to install::

    pip install mmcv-lite==2.1.0 mmsegmentation==1.2.2 ftfy regex      # the 'mmseg' extra

Why mmcv-lite: mmcv's compiled ops (``mmcv._ext``: deformable conv, CARAFE, point sampling, ...) cannot be
built against torch 2.14, and mmcv-lite ships without them. :func:`install_mmcv_ext_shim` puts a
placeholder ``mmcv._ext`` in place so that mmseg's modules that merely *import* ``mmcv.ops`` load; a model
that actually *calls* a compiled op fails at that call with an error naming the op. Pure-PyTorch models
(MiT/SegFormer, ResNet/Swin + UPerNet, FCN, ...) build and train normally.

    from detectors.mmseg import MmsegDetector
    model = MmsegDetector("path/to/segformer_mit-b0_8xb2-160k_ade20k-512x512.py")   # or a model dict
    out = model(model.normalize(image))   # {"mask_logits": (B,1,H,W) at input size, "score_logits": None}

The decode head is set to one output channel (binary logits); the auxiliary head, the data preprocessor
and mmseg's own losses are not used: ``loss`` is BCE + Dice over valid pixels (detectors/losses.py).
The adapter is not registered by default (the zoo tests build every registered name); register one with
``register_detector("segformer_mmseg")(functools.partial(MmsegDetector, config))``.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from detectors.base import Detector, DetectorInfo
from detectors.losses import bce, dice

MMSEG_INSTALL = "pip install mmcv-lite==2.1.0 mmsegmentation==1.2.2 ftfy regex"
MMSEG_EXTRA = "sigma-bench[mmseg]"

INFO = DetectorInfo(name="mmseg", family="mmsegmentation segmentor (encoder + decode head)",
                    paper="MMSegmentation contributors, OpenMMLab semantic segmentation toolbox (2020)",
                    variant="config", input_size=512, stride=32,
                    license="Apache-2.0 (mmsegmentation); weights per the config's checkpoint")


class MmsegUnavailable(ImportError):
    """mmsegmentation (or mmcv / mmengine) is not installed."""


def require_mmseg() -> types.ModuleType:
    """Import mmseg (with the mmcv shim), or raise :class:`MmsegUnavailable` naming the extra to install."""
    try:
        importlib.import_module("mmengine")
        importlib.import_module("mmcv")
    except ImportError as exc:
        raise _unavailable(exc) from exc
    install_mmcv_ext_shim()
    try:
        return importlib.import_module("mmseg")
    except ImportError as exc:
        raise _unavailable(exc) from exc


def _unavailable(exc: ImportError) -> MmsegUnavailable:
    return MmsegUnavailable(
        f"the mmsegmentation adapter needs mmsegmentation, mmcv-lite and mmengine ({exc}). Install the optional "
        f"extra: `pip install {MMSEG_EXTRA}` or `{MMSEG_INSTALL}`. mmcv's compiled ops cannot be built against "
        "torch 2.14, so only mmcv-lite is supported: pure-PyTorch models (SegFormer/MiT, UPerNet, FCN, ...) work, "
        "and a model that needs a compiled mmcv op fails with an error naming that op.")


def mmcv_ext_shim() -> types.ModuleType:
    """A placeholder for ``mmcv._ext``: every attribute is a function that raises a clear error when called.

    mmcv's ``ext_loader.load_ext`` only checks that the names exist, so importing ``mmcv.ops`` succeeds.
    """
    module = types.ModuleType("mmcv._ext")
    module.__doc__ = "placeholder for mmcv's compiled ops (not built for this torch); calling any op raises"

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def missing_op(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"mmcv compiled op {name!r} is not available: mmcv's CUDA/C++ ops (mmcv._ext) cannot "
                               "be built against torch 2.14, and mmcv-lite ships without them. Choose a config whose "
                               "model is pure PyTorch (e.g. SegFormer/MiT, UPerNet with a ResNet/Swin backbone)")

        missing_op.__name__ = name
        return missing_op

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]  # module-level __getattr__ (PEP 562)
    return module


def install_mmcv_ext_shim() -> bool:
    """Register :func:`mmcv_ext_shim` as ``mmcv._ext`` unless a real one imports. True when the shim is used."""
    if "mmcv._ext" in sys.modules:
        return (getattr(sys.modules["mmcv._ext"], "__doc__", None) or "").startswith("placeholder")
    try:
        importlib.import_module("mmcv._ext")
        return False
    except ImportError:
        sys.modules["mmcv._ext"] = mmcv_ext_shim()
        return True


def _binary_head(head: Any) -> Any:
    """One output channel, binary logits (mmseg 1.x: out_channels=1 with num_classes=2)."""
    if head is None:
        return None
    heads = head if isinstance(head, list) else [head]
    for h in heads:
        h["num_classes"] = 2
        h["out_channels"] = 1
        h.pop("loss_decode", None)
    return head


class MmsegDetector(Detector):
    """An mmsegmentation segmentor config (file path, or the ``model`` dict) behind the Detector contract."""

    def __init__(self, config: str | Path | dict, *, checkpoint: str | None = None, input_size: int | None = None,
                 bce_weight: float = 1.0, dice_weight: float = 1.0, name: str = "mmseg", **_: Any):
        super().__init__()
        require_mmseg()
        from mmengine.config import Config, ConfigDict
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules

        register_all_modules(init_default_scope=True)
        if isinstance(config, dict):
            model_cfg = ConfigDict(config.get("model", config))
        else:
            model_cfg = Config.fromfile(str(config)).model
        model_cfg = model_cfg.copy()
        model_cfg.pop("data_preprocessor", None)  # normalization is the Detector's (normalize())
        model_cfg.pop("auxiliary_head", None)
        model_cfg["decode_head"] = _binary_head(model_cfg.get("decode_head"))
        model_cfg.pop("train_cfg", None)
        model_cfg.pop("test_cfg", None)
        self.segmentor = MODELS.build(model_cfg)
        if checkpoint:
            from mmengine.runner import load_checkpoint

            load_checkpoint(self.segmentor, checkpoint, map_location="cpu", revise_keys=[(r"^module\.", "")])
        self.info = replace(INFO, name=name, input_size=input_size or INFO.input_size,
                            weights=checkpoint or "random init (or the config's init_cfg)")
        self.bce_weight, self.dice_weight = bce_weight, dice_weight

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        feats = self.segmentor.extract_feat(x)
        logits = self.segmentor.decode_head(feats)
        if logits.shape[1] != 1:
            raise RuntimeError(f"decode head gave {logits.shape[1]} channels; expected 1 (binary logits)")
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"mask_logits": logits, "score_logits": None}

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        b = bce(out["mask_logits"], batch)
        d = dice(out["mask_logits"], batch)
        total = self.bce_weight * b + self.dice_weight * d
        return total, {"bce": b.detach(), "dice": d.detach()}
