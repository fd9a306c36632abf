"""MVSS-Net: multi-view (RGB + noise) multi-scale supervised manipulation localization, reimplemented light.

Paper: Chen, Dong, Wang, Wang, Shao, Cao, "Image Manipulation Detection by Multi-View Multi-Scale
Supervision", ICCV 2021; extended as Dong, Chen, Hu, Cao, Li, "MVSS-Net: Multi-View Multi-Scale Supervised
Networks for Image Manipulation Detection", IEEE TPAMI 2022.

What is built (facts from the papers and the authors' public release, cited inline):

- **RGB view**: an ImageNet CNN with its last stage dilated (output stride 16, as the release's DeepLab-style
  ResNet-50 ``layer4``). ``paper`` = timm ``resnet50`` (stages of 256/512/1024/2048 channels);
  ``tiny`` = timm ``tf_efficientnet_lite0`` (24/40/112/320), so the offline EfficientNet-Lite0 file inits it.
- **Edge-supervised branch (ESB)** on all four RGB stages: a fixed Sobel operator (x and y kernels summed over
  channels, then BatchNorm) gates each feature map by ``sigmoid(|grad|)``; an edge residual block (ERB: 1x1
  conv to one channel, then a 3x3-BN-ReLU-3x3 residual) maps it to one channel; shallow-to-deep, each deeper
  ERB output is upsampled and added, then refined by another ERB. The last one (no ReLU) is the edge logit
  map at stride 4.
- **Noise view (noise-sensitive branch)**: grayscale -> BayarConv2d (1 -> 3 channels, 5x5, constrained: the
  centre tap is -1 and the other taps of each kernel sum to 1) -> a second ImageNet CNN. ``paper`` = a second
  ResNet-50 (as the release); ``tiny`` = EfficientNet-Lite0 cut after its stride-16 stage (112 channels), a
  lighter noise encoder so the tiny model stays under 5M parameters.
- **Dual attention fusion** (DANet position + channel attention, as the release's ``_DAHead``) on the
  concatenated last features of both views; the sum of both attention paths gives the mask logits at
  stride 16, upsampled to the input.
- **Image score**: global max pooling of the mask logits (the paper's GMP; max of logits = logit of max prob).

Loss (``MVSSNet.loss``): ``alpha * Dice(mask) + beta * BCE(image) + (1 - alpha - beta) * Dice(edge)`` with
alpha = 0.16, beta = 0.04 (ICCV 2021, Sec. 3.4; the same constants in the authors' release), so the edge
term carries weight 0.80. The edge target is the boundary band of the ground-truth mask
(``losses.edge_map``); every pixel term counts valid pixels only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detectors.base import Detector, DetectorInfo, check_options, register_detector, variant_spec
from detectors.encoders import load_encoder_weights, timm_encoder
from detectors.losses import dice, edge_map, image_bce

PAPER = ("Chen et al., 'Image Manipulation Detection by Multi-View Multi-Scale Supervision', ICCV 2021; "
         "Dong et al., 'MVSS-Net: Multi-View Multi-Scale Supervised Networks for Image Manipulation "
         "Detection', IEEE TPAMI 2022")

# encoder: timm RGB encoder (also the noise encoder's architecture); noise_stages: EfficientNet-Lite0 stages kept
# in the noise view (None = the full encoder, as the release); da_channels: DA-head width (None = in // 4, as
# the release)
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": {"encoder": "tf_efficientnet_lite0", "noise_stages": 5, "da_channels": 64, "input_size": 256,
             "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "weights_name": "ImageNet EfficientNet-Lite0"},
    "paper": {"encoder": "resnet50", "noise_stages": None, "da_channels": None, "input_size": 512,
              "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "weights_name": "ImageNet ResNet-50"},
}

ALPHA, BETA = 0.16, 0.04  # seg / image-level weights; edge gets 1 - ALPHA - BETA (ICCV 2021 Sec. 3.4)


class BayarConv2d(nn.Module):
    """Constrained convolution (Bayar & Stamm, 2018): per kernel the centre tap is -1 and the other taps sum
    to 1, so the layer learns prediction-error (noise residual) filters. Only the k*k-1 free taps are
    parameters; the constraint is applied in ``forward`` (never by editing ``.data``), so it holds after any
    optimizer step."""

    def __init__(self, in_channels: int = 1, out_channels: int = 3, kernel_size: int = 5):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        free = torch.rand(out_channels, in_channels, kernel_size * kernel_size - 1)
        self.free = nn.Parameter(free / free.sum(-1, keepdim=True))

    @property
    def weight(self) -> torch.Tensor:
        """The effective (constrained) kernel, (out, in, k, k)."""
        total = self.free.sum(-1, keepdim=True)
        # keep the divisor away from zero without flipping its sign (the free taps may turn negative)
        sign = torch.where(total >= 0, 1.0, -1.0)
        total = torch.where(total.abs() < 1e-4, sign * 1e-4, total)
        taps = self.free / total
        centre = (self.kernel_size * self.kernel_size) // 2
        minus_one = -torch.ones_like(taps[..., :1])
        kernel = torch.cat([taps[..., :centre], minus_one, taps[..., centre:]], dim=-1)
        return kernel.view(self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), padding=self.kernel_size // 2)


class SobelGate(nn.Module):
    """Fixed Sobel x/y over all channels -> one channel each, BatchNorm, then ``x * sigmoid(|grad|)``."""

    def __init__(self, channels: int):
        super().__init__()
        gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        kernel = torch.stack([gx, gx.t()]).unsqueeze(1).repeat(1, channels, 1, 1)  # (2, C, 3, 3)
        self.register_buffer("kernel", kernel, persistent=False)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.bn(F.conv2d(x, self.kernel.to(x.dtype), padding=1))
        magnitude = torch.sqrt(g.pow(2).sum(1, keepdim=True) + 1e-6)  # eps: finite gradient at 0
        return x * torch.sigmoid(magnitude)


class ERB(nn.Module):
    """Edge residual block: 1x1 projection, then a 3x3-BN-ReLU-3x3 residual (ReLU after unless last)."""

    def __init__(self, in_channels: int, out_channels: int = 1):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 1)
        self.res = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                                 nn.ReLU(inplace=True), nn.Conv2d(out_channels, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        x = self.proj(x)
        x = x + self.res(x)
        return F.relu(x) if relu else x


class EdgeBranch(nn.Module):
    """ESB over the four RGB stages, accumulated shallow to deep into one edge logit map (stride 4)."""

    def __init__(self, channels: list[int]):
        super().__init__()
        self.gates = nn.ModuleList(SobelGate(c) for c in channels)
        self.erbs = nn.ModuleList(ERB(c, 1) for c in channels)
        self.trans = nn.ModuleList(ERB(1, 1) for _ in channels[1:])

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        edge = self.erbs[0](self.gates[0](feats[0]))
        for i, f in enumerate(feats[1:], start=1):
            deeper = self.erbs[i](self.gates[i](f))
            deeper = F.interpolate(deeper, size=edge.shape[-2:], mode="bilinear", align_corners=False)
            edge = self.trans[i - 1](edge + deeper, relu=i < len(feats) - 1)
        return edge


class PositionAttention(nn.Module):
    """DANet position attention: softmax(q^T k) over all positions, residual with a zero-initialised scale."""

    def __init__(self, channels: int):
        super().__init__()
        self.q = nn.Conv2d(channels, max(1, channels // 8), 1)
        self.k = nn.Conv2d(channels, max(1, channels // 8), 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)  # (B, N, C/8)
        k = self.k(x).flatten(2).transpose(1, 2)
        v = self.v(x).flatten(2).transpose(1, 2)  # (B, N, C)
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # DANet uses unscaled energies
        return x + self.gamma * out.transpose(1, 2).reshape(b, c, h, w)


class ChannelAttention(nn.Module):
    """DANet channel attention: softmax over (max - energy) of the channel Gram matrix, zero-init residual."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        a = x.flatten(2)  # (B, C, N)
        energy = torch.bmm(a, a.transpose(1, 2))
        energy = energy.amax(-1, keepdim=True) - energy
        out = torch.bmm(torch.softmax(energy, dim=-1), a).view(b, c, h, w)
        return x + self.gamma * out


def _cbr(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DualAttentionHead(nn.Module):
    """Position path + channel path, each conv-attention-conv, summed, dropout, 1x1 to one logit."""

    def __init__(self, in_channels: int, inner: int | None = None):
        super().__init__()
        inner = inner or in_channels // 4
        self.pos = nn.Sequential(_cbr(in_channels, inner), PositionAttention(inner), _cbr(inner, inner))
        self.chan = nn.Sequential(_cbr(in_channels, inner), ChannelAttention(), _cbr(inner, inner))
        self.out = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(inner, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.pos(x) + self.chan(x))


class _LiteNoiseEncoder(nn.Module):
    """EfficientNet-Lite0 stem + its first `stages` stages (stride 16 for 5); timm key names, so a timm
    ``tf_efficientnet_lite0`` state dict loads into it."""

    def __init__(self, stages: int, pretrained: bool = False):
        import timm

        super().__init__()
        full = timm.create_model("tf_efficientnet_lite0", pretrained=pretrained)
        self.conv_stem, self.bn1 = full.conv_stem, full.bn1
        self.blocks = nn.Sequential(*full.blocks[:stages])
        self.out_channels = self.blocks[-1][-1].conv_pwl.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.bn1(self.conv_stem(x)))


class _ResNetNoiseEncoder(nn.Module):
    def __init__(self, name: str, pretrained_path: str | None, pretrained: bool):
        super().__init__()
        self.body = timm_encoder(name, (4,), pretrained_path, pretrained, output_stride=16)
        self.out_channels = self.body.feature_info.channels()[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)[-1]


class MVSSNet(Detector):
    """RGB view with ESB edge supervision + BayarConv noise view, fused by dual attention (see module doc)."""

    def __init__(self, variant: str = "tiny", pretrained_path: str | None = None, pretrained: bool = False):
        super().__init__()
        cfg = variant_spec("mvss_net", variant, VARIANTS)
        self.rgb = timm_encoder(cfg["encoder"], (1, 2, 3, 4), pretrained_path, pretrained, output_stride=16)
        channels = self.rgb.feature_info.channels()
        self.edge = EdgeBranch(channels)
        self.bayar = BayarConv2d(1, 3, 5)
        if cfg["noise_stages"] is not None:
            self.noise = _LiteNoiseEncoder(cfg["noise_stages"], pretrained=pretrained and not pretrained_path)
            if pretrained_path:
                load_encoder_weights(self.noise, pretrained_path)
        else:
            self.noise = _ResNetNoiseEncoder(cfg["encoder"], pretrained_path, pretrained)
        self.head = DualAttentionHead(channels[-1] + self.noise.out_channels, cfg["da_channels"])
        if pretrained_path:
            weights = f"{cfg['weights_name']} (offline: {Path(pretrained_path).name}; RGB and noise encoders)"
        elif pretrained:
            weights = f"{cfg['weights_name']} (timm pretrained, online)"
        else:
            weights = "random init"
        self.info = DetectorInfo(
            name="mvss_net", family="dual-view CNN (RGB + BayarConv noise) with edge supervision and dual attention",
            paper=PAPER, variant=variant, input_size=cfg["input_size"], stride=16, mean=cfg["mean"], std=cfg["std"],
            weights=weights)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        size = x.shape[-2:]
        feats = self.rgb(x)
        edge = self.edge(feats)
        # noise view on luminance (the release converts to grayscale before the constrained conv)
        gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        noise = self.noise(self.bayar(gray))
        deep = feats[-1]
        if noise.shape[-2:] != deep.shape[-2:]:  # odd sizes: stride-16 grids may differ by one cell
            noise = F.interpolate(noise, size=deep.shape[-2:], mode="bilinear", align_corners=False)
        mask = self.head(torch.cat([deep, noise], dim=1))
        mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
        edge = F.interpolate(edge, size=size, mode="bilinear", align_corners=False)
        return {"mask_logits": mask, "score_logits": mask.flatten(1).amax(1), "edge_logits": edge}

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        mask_logits, edge_logits = out["mask_logits"], out["edge_logits"]
        seg = dice(mask_logits, batch)
        gt = batch["mask"].float().to(mask_logits.device)
        if gt.shape[-2:] != mask_logits.shape[-2:]:
            gt = F.interpolate(gt, size=mask_logits.shape[-2:], mode="nearest")
        edge_batch = {"mask": edge_map(gt), "valid": batch.get("valid")}
        edg = dice(edge_logits, edge_batch)
        # GMP over valid pixels only, so padding never decides the image score during training
        valid = batch.get("valid")
        score = out["score_logits"]
        if valid is not None:
            v = valid.to(mask_logits.device)
            if v.shape[-2:] != mask_logits.shape[-2:]:
                v = F.interpolate(v.float(), size=mask_logits.shape[-2:], mode="nearest") > 0.5
            score = mask_logits.float().masked_fill(~v.bool(), float("-inf")).flatten(1).amax(1)
            score = torch.where(torch.isfinite(score), score, out["score_logits"].float())
        clf = image_bce(score, batch)
        total = ALPHA * seg + BETA * clf + (1.0 - ALPHA - BETA) * edg
        parts = {"seg_dice": seg, "clf_bce": clf, "edge_dice": edg}
        return total, {k: float(v.detach()) for k, v in parts.items()}


@register_detector("mvss_net")
def mvss_net(variant: str = "tiny", pretrained_path: str | None = None, pretrained: bool = False,
             **kwargs: Any) -> MVSSNet:
    check_options("mvss_net", kwargs)
    return MVSSNet(variant=variant, pretrained_path=pretrained_path, pretrained=pretrained)
