"""SIGMA at inference: backbone + text encoder + trained heads, loaded from one checkpoint file.

A checkpoint holds the head weights, the :class:`SigmaConfig` they were trained with, and what the frozen
parts were (backbone name and weights, text encoder). Loading with an ``expected`` config that differs in
any architecture field is an error naming the fields, so a checkpoint made for another configuration is
never silently used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sigma.backbone import FrozenBackbone
from sigma.model import SigmaConfig, SigmaNet
from sigma.serialization import load_file, save_file
from sigma.text import TextEncoder

FORMAT = "sigma-bench/sigma-heads-v1"
MIN_SIDE = 16  # one cell of the stride-16 pyramid level; smaller images cannot be padded up by reflection


def save_checkpoint(path: str | Path, net: SigmaNet, meta: dict[str, Any]) -> Path:
    """Write the heads, their config and `meta` (plain values only: the file loads with weights_only=True)."""
    state = {"format": FORMAT, "config": net.cfg.to_dict(), "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
             "meta": meta}
    return save_file(state, path)


def load_checkpoint(path: str | Path, expected: SigmaConfig | None = None) -> tuple[SigmaNet, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no SIGMA checkpoint here; train one with `bench train-sigma`")
    state = load_file(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a SIGMA heads checkpoint (format {state.get('format') if isinstance(state, dict) else '?'!r}, "
                         f"expected {FORMAT!r})")
    cfg = SigmaConfig.from_dict(state["config"])
    if expected is not None and cfg != expected:
        diff = {k: (v, getattr(expected, k)) for k, v in cfg.to_dict().items() if getattr(expected, k) != v}
        raise ValueError(f"{path}: checkpoint was trained with another SIGMA config; differing fields "
                         f"(checkpoint, requested): {diff}. Retrain with `bench train-sigma` or point to the matching checkpoint")
    net = SigmaNet(cfg)
    net.load_state_dict(state["state_dict"], strict=True)
    return net.eval(), state.get("meta", {})


class SigmaAnnotator(nn.Module):
    """(original, edited, instructions) -> soft mask (B,1,H,W) in [0,1]."""

    def __init__(self, net: SigmaNet, backbone: FrozenBackbone, text: TextEncoder | None):
        super().__init__()
        self.net, self.backbone, self.text = net.eval(), backbone, text

    @classmethod
    def from_checkpoint(cls, path: str | Path, expected: SigmaConfig | None = None, backbone_path: str | None = None,
                        text_encoder_path: str | None = None) -> SigmaAnnotator:
        net, meta = load_checkpoint(path, expected)
        backbone = FrozenBackbone(net.cfg.backbone, pretrained_path=backbone_path or meta.get("backbone_path"))
        text = TextEncoder(net.cfg.text_encoder, path=text_encoder_path or meta.get("text_encoder_path")) if net.cfg.use_text else None
        annotator = cls(net, backbone, text)
        annotator.meta = meta
        return annotator

    @torch.no_grad()
    def forward(self, original: torch.Tensor, edited: torch.Tensor, instructions: list[str]) -> torch.Tensor:
        h, w = edited.shape[-2:]
        if h < MIN_SIDE or w < MIN_SIDE:
            raise ValueError(f"SIGMA needs images of at least {MIN_SIDE}x{MIN_SIDE} px (one stride-16 feature "
                             f"cell); got {w}x{h} (WxH)")
        ph, pw = (-h) % 16, (-w) % 16
        if ph or pw:  # the backbone pyramid needs multiples of 16: reflect-pad, crop back after
            original = F.pad(original, (0, pw, 0, ph), mode="reflect")
            edited = F.pad(edited, (0, pw, 0, ph), mode="reflect")
        device = edited.device
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
        with autocast:
            feats_e = self.backbone(edited)
            feats_o = self.backbone(original) if self.net.cfg.difference else None
        text = valid = None
        if self.net.cfg.use_text:
            text, valid = self.text(list(instructions), device)
        with autocast:
            out = self.net(feats_o, feats_e, text, valid, original, edited, out_size=edited.shape[-2:])
        return torch.sigmoid(out["mask_logits"].float())[..., :h, :w]
