"""PSCC-Net: progressive spatio-channel correlation network, reimplemented light.

Paper: Liu, Liu, Chen, Liu, "PSCC-Net: Progressive Spatio-Channel Correlation Network for Image Manipulation
Detection and Localization", IEEE TCSVT 2022.

What is built (facts from the paper and the authors' public release, cited inline):

- **Backbone**: a compact HRNet written here. Stem of two 3x3 convs at *stride 1* (the release keeps the top
  branch at full resolution), a bottleneck stage, then stages 2-4 that add a branch at half the resolution
  each (branches at strides 1, 2, 4, 8) and end every module with cross-resolution fusion (upsampled 1x1
  convs from coarser branches, strided 3x3 convs from finer ones, summed). ``paper`` follows the release's
  HRNet-W18 configuration: stem 64, stage 1 = 2 bottlenecks (64 -> 256), branch widths 18/36/72/144, one
  module per stage, 2 basic blocks per branch. ``tiny``: stem 16, 1 bottleneck (8 -> 32), widths 8/16/32/64,
  1 block per branch.
- **SCCM** (spatio-channel correlation module) on each branch: space-to-depth by a factor r (the release uses
  r = 4, 2, 2, 1 for strides 1, 2, 4, 8, so attention runs on a stride-4/4/8/8 token grid), 1x1 theta/phi/g,
  spatial self-attention (tokens x tokens) and channel self-attention (channels x channels), each projected by
  a 1x1 conv and added to the input with a learnable scale (initialised to 1, as the release); a
  3x3(16)-ReLU-3x3(1) head gives that scale's mask logits. ``tiny`` doubles r (8, 4, 4, 2) to keep the CPU
  attention cost small.
- **Progressive coarse-to-fine masks**: the stride-8 mask comes first; each finer branch is multiplied by the
  sigmoid of the upsampled coarser mask before its SCCM, down to the full-resolution mask (the output).
- **Detection head** (the release's HRNet classification-style head): a bottleneck per branch, strided 3x3
  convs that carry the finest branch down and add each coarser one, 1x1 conv to 128 (tiny 32), global average
  pooling and an MLP (128 -> 16 -> 1 logit; the release uses 2-way softmax, equivalent to one logit).

Loss (``PSCCNet.loss``): sum over the four scales of class-balanced pixel BCE against the ground truth
downsampled to each scale (median-frequency balancing as the release: positives weighted 0.5 / positive
share, negatives 0.5 / negative share, computed over the batch's valid pixels), plus the image-level BCE; all
five terms with weight 1 (release ``train.py``: ``loss = seg_loss + cls_loss``, ``seg_loss`` the plain sum
of the four mask losses). Not reproduced: the release's dataset-specific class weights on the detection CE
(1 / authentic share, 1 / fake share of its training mix).

Weights: the family's norm is an ImageNet-initialised HRNet-W18, but no HRNet weights exist offline here, so
both variants start from random init (He init for the HRNet convs). ``pretrained_path`` is a state dict of
this detector (same variant), e.g. from an earlier run; ``pretrained=True`` only logs a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detectors.base import Detector, DetectorInfo, check_options, register_detector, variant_spec
from detectors.losses import bce, image_bce
from detectors.train_state import load_state_dict_file

PAPER = ("Liu et al., 'PSCC-Net: Progressive Spatio-Channel Correlation Network for Image Manipulation "
         "Detection and Localization', IEEE TCSVT 2022")

VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": {"stem": 8, "stage1_planes": 4, "stage1_blocks": 1, "widths": (8, 16, 32, 64), "blocks": 1,
             "modules": 1, "reduce": (8, 4, 4, 2), "head": 32, "input_size": 256, "bn_momentum": 0.1},
    "paper": {"stem": 64, "stage1_planes": 64, "stage1_blocks": 2, "widths": (18, 36, 72, 144), "blocks": 2,
              "modules": 1, "reduce": (4, 2, 2, 1), "head": 128, "input_size": 256,  # release crop 256
              "bn_momentum": 0.01},  # HRNet's
}
# BatchNorm momentum: HRNet's 0.01 suits its long schedules; after the ~100 steps a tiny CPU run takes, the
# running statistics are still mostly their initial values (0.99^112 = 0.32) and eval-mode masks come out
# empty (`python -m benchmarks.perf.overfit_check --detector pscc_net`: F1 0.000 in eval mode vs 0.869 with
# batch statistics on a batch it was fitted to), so `tiny` uses PyTorch's default 0.1.

log = logging.getLogger(__name__)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)  # momentum: the variant's bn_momentum, set once the network is built


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _bn(cout), nn.ReLU(inplace=True),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), _bn(cout))
        self.skip = (nn.Identity() if cin == cout and stride == 1
                     else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, expansion: int = 4):
        super().__init__()
        cout = planes * expansion
        self.body = nn.Sequential(nn.Conv2d(cin, planes, 1, bias=False), _bn(planes), nn.ReLU(inplace=True),
                                  nn.Conv2d(planes, planes, 3, 1, 1, bias=False), _bn(planes), nn.ReLU(inplace=True),
                                  nn.Conv2d(planes, cout, 1, bias=False), _bn(cout))
        self.skip = nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _bn(cout))
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


def _down(cin: int, cout: int, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), _bn(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HRModule(nn.Module):
    """Parallel branches of basic blocks, then every branch receives the sum of all branches resampled to it."""

    def __init__(self, widths: tuple[int, ...], blocks: int):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*[BasicBlock(w, w) for _ in range(blocks)]) for w in widths)
        self.fuse = nn.ModuleList()
        for i, wi in enumerate(widths):
            row = nn.ModuleList()
            for j, wj in enumerate(widths):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:  # coarser -> finer: 1x1 conv then upsample (in forward)
                    row.append(nn.Sequential(nn.Conv2d(wj, wi, 1, bias=False), _bn(wi)))
                else:  # finer -> coarser: i - j strided 3x3 convs, the last one to wi without ReLU
                    steps = [_down(wj, wj) for _ in range(i - j - 1)] + [_down(wj, wi, relu=False)]
                    row.append(nn.Sequential(*steps))
            self.fuse.append(row)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            y = xs[i]
            for j, op in enumerate(row):
                if j == i:
                    continue
                z = op(xs[j])
                if z.shape[-2:] != y.shape[-2:]:
                    z = F.interpolate(z, size=y.shape[-2:], mode="bilinear", align_corners=False)
                y = y + z
            out.append(F.relu(y))
        return out


class HRNetBackbone(nn.Module):
    """Stride-1 stem, a bottleneck stage, then stages with 2, 3 and 4 branches (strides 1, 2, 4, 8)."""

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        stem, widths = cfg["stem"], cfg["widths"]
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), _bn(stem), nn.ReLU(inplace=True),
                                  nn.Conv2d(stem, stem, 3, 1, 1, bias=False), _bn(stem), nn.ReLU(inplace=True))
        layers, cin = [], stem
        for _ in range(cfg["stage1_blocks"]):
            layers.append(Bottleneck(cin, cfg["stage1_planes"]))
            cin = layers[-1].out_channels
        self.stage1 = nn.Sequential(*layers)
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        prev: tuple[int, ...] = (cin,)
        for n in (2, 3, 4):
            cur = widths[:n]
            trans = nn.ModuleList()
            for i, w in enumerate(cur):
                if i < len(prev):
                    trans.append(nn.Identity() if prev[i] == w else nn.Sequential(
                        nn.Conv2d(prev[i], w, 3, 1, 1, bias=False), _bn(w), nn.ReLU(inplace=True)))
                else:  # new branch: a strided 3x3 conv from the coarsest existing branch
                    trans.append(_down(prev[-1], w))
            self.transitions.append(trans)
            self.stages.append(nn.Sequential(*[HRModule(cur, cfg["blocks"]) for _ in range(cfg["modules"])]))
            prev = cur
        self.channels = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        xs = [self.stage1(self.stem(x))]
        for trans, stage in zip(self.transitions, self.stages):
            xs = [t(xs[min(i, len(xs) - 1)]) for i, t in enumerate(trans)]
            xs = stage(xs)
        return xs


class SCCM(nn.Module):
    """Spatio-channel correlation: spatial and channel self-attention on a space-to-depth token grid.

    Deviation from the release, for numerical stability under bf16 autocast: attention logits are scaled
    (1/sqrt(dim), as scaled dot-product attention), and space-to-depth is ``pixel_unshuffle`` rather than a raw
    reshape. Spatial attention goes through ``scaled_dot_product_attention`` (memory-efficient on GPU).
    """

    def __init__(self, channels: int, reduce: int):
        super().__init__()
        self.r = reduce
        d = channels * reduce * reduce
        self.theta, self.phi, self.g = nn.Conv2d(d, d, 1), nn.Conv2d(d, d, 1), nn.Conv2d(d, d, 1)
        self.w_s, self.w_c = nn.Conv2d(channels, channels, 1), nn.Conv2d(channels, channels, 1)
        self.gamma_s, self.gamma_c = nn.Parameter(torch.ones(1)), nn.Parameter(torch.ones(1))
        self.mask = nn.Sequential(nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(16, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.r, (-w) % self.r
        xp = F.pad(x, (0, pw, 0, ph)) if ph or pw else x
        t = F.pixel_unshuffle(xp, self.r) if self.r > 1 else xp
        b, d, th, tw = t.shape
        q, k, v = (m(t).flatten(2) for m in (self.theta, self.phi, self.g))  # (B, D, N)
        y_s = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, N, D)
        y_s = y_s.transpose(1, 2)
        y_c = F.scaled_dot_product_attention(q, k, v)  # channels as the sequence: (B, D, N)

        def back(y: torch.Tensor) -> torch.Tensor:
            y = y.reshape(b, d, th, tw)
            y = F.pixel_shuffle(y, self.r) if self.r > 1 else y
            return y[..., :h, :w]

        z = x + self.gamma_s * self.w_s(back(y_s)) + self.gamma_c * self.w_c(back(y_c))
        return self.mask(z), z


class DetectionHead(nn.Module):
    """HRNet classification-style head over the four branches, one image logit."""

    def __init__(self, channels: tuple[int, ...], width: int):
        super().__init__()
        self.incre = nn.ModuleList(Bottleneck(c, c, expansion=2) for c in channels)
        self.downs = nn.ModuleList(_down(2 * channels[i], 2 * channels[i + 1]) for i in range(len(channels) - 1))
        self.final = nn.Sequential(nn.Conv2d(2 * channels[-1], width, 1), _bn(width), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Linear(width, 16), nn.ReLU(inplace=True), nn.Linear(16, 1))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        y = self.incre[0](xs[0])
        for i, down in enumerate(self.downs):
            z = self.incre[i + 1](xs[i + 1])
            y = down(y)
            if y.shape[-2:] != z.shape[-2:]:
                y = F.interpolate(y, size=z.shape[-2:], mode="bilinear", align_corners=False)
            y = y + z
        y = self.final(y).mean((2, 3))
        return self.classifier(y).squeeze(1)


class PSCCNet(Detector):
    """HRNet features -> progressive SCCM masks (stride 8 -> 1) and a detection head (see module doc)."""

    def __init__(self, variant: str = "tiny", pretrained_path: str | None = None, pretrained: bool = False):
        super().__init__()
        cfg = variant_spec("pscc_net", variant, VARIANTS)
        if pretrained:
            log.warning("pscc_net: pretrained=True has no effect (no HRNet weights are wired in); random init. "
                        "Pass pretrained_path=<a pscc_net state dict> to start from trained weights")
        self.backbone = HRNetBackbone(cfg)
        ch = self.backbone.channels
        self.sccm = nn.ModuleList(SCCM(c, r) for c, r in zip(ch, cfg["reduce"]))
        self.detect = DetectionHead(ch, cfg["head"])
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = cfg["bn_momentum"]
        self._init_weights()
        weights = "random init (no offline HRNet weights)"
        if pretrained_path:
            self._load(pretrained_path)
            weights = f"pscc_net checkpoint (offline: {Path(pretrained_path).name})"
        # predict() pads so every branch (stride 2^i) splits into r x r tokens evenly
        stride = max((2 ** i) * r for i, r in enumerate(cfg["reduce"]))
        self.info = DetectorInfo(
            name="pscc_net", family="HRNet with progressive spatio-channel correlation mask heads",
            paper=PAPER, variant=variant, input_size=cfg["input_size"], stride=stride, weights=weights)

    def _init_weights(self) -> None:
        # He init for the BN-followed convs; the SCCMs keep PyTorch's default init, and each mask head's last
        # conv starts small so the first masks sit near 0.5 (the coarse-to-fine gating starts neutral)
        for part in (self.backbone, self.detect):
            for m in part.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for sccm in self.sccm:
            nn.init.normal_(sccm.mask[-1].weight, std=0.01)
            nn.init.zeros_(sccm.mask[-1].bias)

    def _load(self, path: str) -> None:
        state = load_state_dict_file(path)
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or bad:
            raise ValueError(f"{path}: not a pscc_net state dict of this variant (missing {missing[:3]}, "
                             f"shape mismatch {bad[:3]}); no offline HRNet/ImageNet weights fit pscc_net, "
                             "so leave pretrained_path null for random init")
        self.load_state_dict({k: state[k] for k in own}, strict=True)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        feats = self.backbone(x)
        masks: list[torch.Tensor] = [None] * 4  # type: ignore[list-item]
        coarser = None
        for i in (3, 2, 1, 0):  # stride 8 first, then condition each finer branch on the coarser mask
            f = feats[i]
            if coarser is not None:
                up = F.interpolate(coarser, size=f.shape[-2:], mode="bilinear", align_corners=False)
                f = f * torch.sigmoid(up)
            masks[i], _ = self.sccm[i](f)
            coarser = masks[i]
        full = masks[0]
        if full.shape[-2:] != x.shape[-2:]:
            full = F.interpolate(full, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"mask_logits": full, "score_logits": self.detect(feats),
                "mask_logits_s2": masks[1], "mask_logits_s4": masks[2], "mask_logits_s8": masks[3]}

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        gt = batch["mask"].float().to(out["mask_logits"].device)
        valid = batch.get("valid")
        if valid is None:
            valid = torch.ones_like(gt, dtype=torch.bool)
        valid = valid.to(gt.device).float()
        parts: dict[str, float] = {}
        total = out["mask_logits"].new_zeros((), dtype=torch.float32)
        for key in ("mask_logits", "mask_logits_s2", "mask_logits_s4", "mask_logits_s8"):
            logits = out[key]
            size = logits.shape[-2:]
            # downsampled GT: area resize then threshold 0.5 (the release resizes with antialiasing)
            target = gt if gt.shape[-2:] == size else (F.interpolate(gt, size=size, mode="area") > 0.5).float()
            v = valid if valid.shape[-2:] == size else (F.interpolate(valid, size=size, mode="area") > 0.5).float()
            weight = _balance(target, v)
            term = bce(logits, {"mask": target, "valid": v > 0.5}, weight=weight)
            total = total + term
            parts[f"bce_{key.removeprefix('mask_logits').lstrip('_') or 's1'}"] = float(term.detach())
        det = image_bce(out["score_logits"], batch)
        parts["det_bce"] = float(det.detach())
        return total + det, parts


def _balance(target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Median-frequency class weights over the batch's valid pixels (all ones when a class is absent)."""
    n = valid.sum().clamp_min(1.0)
    pos = (target * valid).sum()
    neg = ((1 - target) * valid).sum()
    if pos < 1 or neg < 1:
        return torch.ones_like(target)
    return torch.where(target > 0.5, 0.5 * n / pos, 0.5 * n / neg)


@register_detector("pscc_net")
def pscc_net(variant: str = "tiny", pretrained_path: str | None = None, pretrained: bool = False,
             **kwargs: Any) -> PSCCNet:
    check_options("pscc_net", kwargs)
    return PSCCNet(variant=variant, pretrained_path=pretrained_path, pretrained=pretrained)
