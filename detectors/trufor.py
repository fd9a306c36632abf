"""TruFor-like detector: learned noise residual + dual-stream MiT with cross-modal fusion, anomaly and
confidence decoders, and a detector that pools the anomaly map weighted by confidence.

Guillaro et al., "TruFor: Leveraging all-round clues for trustworthy image forgery detection and
localization", CVPR 2023 (arXiv:2212.10957). Our own compact code; facts taken from the paper and the public
TruFor/CMX descriptions are cited beside the code that uses them.

Architecture (``forward`` returns ``mask_logits``, ``score_logits``, ``conf_logits``, all always present):

1. **Noise extractor** (stands in for Noiseprint++): a DnCNN stack, conv+ReLU, (L-2) x conv+BN+ReLU, linear
   conv, giving a 3-channel residual. TruFor uses 17 layers of 64 channels with a 1-channel output tiled to
   3 channels and pre-trains it contrastively on pristine images (phase 1); here it outputs 3 channels and
   is trained jointly through the localization loss, since no Noiseprint++ weights or phase-1 data exist.
2. **Dual-stream MiT encoder** (CMX, Zhang et al., "CMX: Cross-Modal Fusion for RGB-X Semantic
   Segmentation with Transformers", T-ITS 2023, which TruFor's encoder is): one MiT on RGB, one on the
   noise residual. After each stage a *feature rectification* module (CM-FRM) lets each stream correct the
   other channel- and spatial-wise, and the rectified pair feeds the next stage; a *feature fusion* module
   (FFM: cross-attention through global context, then a channel embedding) turns the pair into one map
   per stage for the decoders.
3. **Anomaly decoder** and **confidence decoder**: two SegFormer all-MLP decoders on the fused maps.
4. **Detector**: weighted statistics pooling (soft min, soft max, mean, mean square) of the confidence map
   (uniform weights) and of the anomaly map weighted by sigmoid(confidence), 8 numbers, MLP 8-128-1 with
   dropout 0.5 (public TruFor code) to the image score.

Variants: ``tiny`` = two MiT-B0 streams, 256-wide decoders, an 8-layer 32-channel DnCNN (about 9.7M params);
``paper`` = two MiT-B2 streams, 512-wide decoders, the 17-layer 64-channel DnCNN (about 69M params).

Objective (phases 2 and 3 of TruFor folded into one; phase 1, the contrastive Noiseprint++ training, is
replaced by joint training of the noise extractor):

- localization (phase 2): ``0.3 * weighted BCE + 0.7 * Dice``, BCE weights 0.5 on pristine and 2.5 on
  forged pixels (TruFor paper and its public training setup, as ported in IMDL-BenCo);
- confidence (phase 3): MSE between sigmoid(confidence) and the true-class probability of the anomaly map
  (TCP, Corbiere et al., NeurIPS 2019, as TruFor uses), target under stop-gradient; ``conf_target="hard"``
  uses the per-pixel correctness of the map thresholded at 0.5 instead;
- detection (phase 3): image BCE, weight 0.5 against the confidence loss (``L_conf + 0.5 L_det``).

With ``staged_gradients=True`` (default) the phase boundaries survive the folding: the confidence decoder
reads detached encoder features and the detector a detached anomaly map, so ``L_conf`` and ``L_det`` train
only the confidence decoder and the detector (as in phase 3, where encoder and anomaly decoder are frozen)
and the encoder learns from ``L_loc`` alone (phase 2). ``False`` trains everything end to end.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detectors.base import Detector, DetectorInfo, register_detector, variant_spec, weights_note
from detectors.losses import bce, dice, image_bce, target_at, valid_mask
from detectors.mit import MIT_GEOMETRIES, AllMLPDecoder, init_weights, mit_encoder

_PAPER = ("Guillaro et al., TruFor: Leveraging all-round clues for trustworthy image forgery detection and "
          "localization, CVPR 2023 (arXiv:2212.10957)")

# variant -> MiT geometry, decoder width, DnCNN depth and width, FRM/FFM channel reduction, training size
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": dict(arch="mit_b0", decoder_dim=128, noise_layers=6, noise_width=16, reduction=4, size=256),
    # TruFor: MiT-B2 streams, decoder width 512, DnCNN 17 x 64 (public TruFor config); CMX reduction 1.
    "paper": dict(arch="mit_b2", decoder_dim=512, noise_layers=17, noise_width=64, reduction=1, size=512),
}

# Loss weights (TruFor paper / public training setup as ported in IMDL-BenCo): L_loc = 0.3 WBCE + 0.7 Dice,
# WBCE weights 0.5 (pristine) / 2.5 (forged); phase 3: L_conf + 0.5 L_det.
LOC_BCE_WEIGHT, BCE_W_PRISTINE, BCE_W_FORGED = 0.3, 0.5, 2.5
DET_WEIGHT = 0.5


class NoiseExtractor(nn.Module):
    """DnCNN-style residual extractor (Zhang et al., TIP 2017; Noiseprint/Noiseprint++ use this body)."""

    def __init__(self, layers: int = 17, width: int = 64, in_chans: int = 3, out_chans: int = 3):
        super().__init__()
        if layers < 3:
            raise ValueError(f"NoiseExtractor needs at least 3 layers, got {layers}")
        body: list[nn.Module] = [nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            body += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        body.append(nn.Conv2d(width, out_chans, 3, padding=1))  # linear output: the residual
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FeatureRectify(nn.Module):
    """CMX's CM-FRM: channel weights from avg+max pooling of both streams (MLP, sigmoid) and spatial weights
    from their concatenation (two 1x1 convs, sigmoid); each stream adds the other stream scaled by them,
    with lambda_C = lambda_S = 0.5 (CMX paper, Sec. on CM-FRM)."""

    def __init__(self, dim: int, reduction: int = 1, lambda_c: float = 0.5, lambda_s: float = 0.5):
        super().__init__()
        self.lambda_c, self.lambda_s = lambda_c, lambda_s
        self.channel = nn.Sequential(nn.Linear(4 * dim, 4 * dim // reduction), nn.ReLU(inplace=True),
                                     nn.Linear(4 * dim // reduction, 2 * dim), nn.Sigmoid())
        self.spatial = nn.Sequential(nn.Conv2d(2 * dim, dim // reduction, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(dim // reduction, 2, 1), nn.Sigmoid())

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        both = torch.cat([a, b], dim=1)
        pooled = torch.cat([both.mean((2, 3)), both.amax((2, 3))], dim=1)
        cw = self.channel(pooled).view(a.shape[0], 2, a.shape[1], 1, 1)
        sw = self.spatial(both)
        a_out = a + self.lambda_c * cw[:, 1] * b + self.lambda_s * sw[:, 1:2] * b
        b_out = b + self.lambda_c * cw[:, 0] * a + self.lambda_s * sw[:, 0:1] * a
        return a_out, b_out


class FeatureFusion(nn.Module):
    """CMX's FFM, compact. Stage 1 (information exchange): each stream's tokens split into a residual part
    and an interaction part; the interaction part queries the *other* stream's global context K^T V
    (efficient attention: softmax of K over tokens, of Q over channels), is concatenated back with the
    residual part, projected and added to the input (LayerNorm). Stage 2 (fusion): a channel embedding of
    the concatenated streams, 1x1 conv plus a 1x1 -> 3x3 depthwise -> 1x1 branch, then BatchNorm."""

    def __init__(self, dim: int, heads: int, reduction: int = 1):
        super().__init__()
        self.heads = heads
        self.split = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(2))
        self.qkv = nn.ModuleList(nn.Linear(dim, 3 * dim, bias=False) for _ in range(2))
        self.out = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(2))
        self.norm = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        hidden = max(dim // reduction, 8)
        self.embed_skip = nn.Conv2d(2 * dim, dim, 1, bias=False)
        self.embed = nn.Sequential(nn.Conv2d(2 * dim, hidden, 1, bias=False),
                                   nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.ReLU(inplace=True),
                                   nn.Conv2d(hidden, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.embed_norm = nn.BatchNorm2d(dim)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        return t.view(b, n, self.heads, c // self.heads).transpose(1, 2)  # (B,h,N,d)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        bsz, c, h, w = a.shape
        tokens = [a.flatten(2).transpose(1, 2), b.flatten(2).transpose(1, 2)]
        residual, queries, contexts = [], [], []
        for i, t in enumerate(tokens):
            keep, inter = self.split[i](t).chunk(2, dim=-1)
            q, k, v = (self._heads(p) for p in self.qkv[i](inter).chunk(3, dim=-1))
            residual.append(keep)
            queries.append(q.softmax(dim=-1))
            contexts.append(k.softmax(dim=-2).transpose(-2, -1) @ v)  # (B,h,d,d) global context
        fused_tokens = []
        for i, t in enumerate(tokens):
            cross = queries[i] @ contexts[1 - i]  # this stream's queries read the other's context
            cross = cross.transpose(1, 2).reshape(bsz, h * w, c)
            fused_tokens.append(self.norm[i](t + self.out[i](torch.cat([residual[i], cross], dim=-1))))
        both = torch.cat([t.transpose(1, 2).reshape(bsz, c, h, w) for t in fused_tokens], dim=1)
        return self.embed_norm(self.embed_skip(both) + self.embed(both))


class DualMiT(nn.Module):
    """Two MiT streams (RGB, noise) with CM-FRM after every stage and FFM outputs for the decoders."""

    def __init__(self, arch: str, reduction: int, pretrained_path: str | None = None, pretrained: bool = False,
                 drop_path_rate: float = 0.1):
        super().__init__()
        # Both streams start from the same MiT weights, as CMX/TruFor initialise them from ImageNet MiT.
        self.rgb = mit_encoder(arch, pretrained_path, pretrained, drop_path_rate=drop_path_rate)
        self.noise = mit_encoder(arch, pretrained_path, pretrained, drop_path_rate=drop_path_rate)
        geo = MIT_GEOMETRIES[arch]
        self.rectify = nn.ModuleList(FeatureRectify(d, reduction) for d in geo.embed_dims)
        self.fuse = nn.ModuleList(FeatureFusion(d, hd, reduction) for d, hd in zip(geo.embed_dims, geo.num_heads))
        self.rectify.apply(init_weights)  # CMX initialises its fusion modules like MiT
        self.fuse.apply(init_weights)

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        return self.rgb.out_channels

    def forward(self, rgb: torch.Tensor, noise: torch.Tensor) -> list[torch.Tensor]:
        fused = []
        for i in range(4):
            rgb, noise = self.rgb.stage(i, rgb), self.noise.stage(i, noise)
            rgb, noise = self.rectify[i](rgb, noise)  # rectified pair feeds the next stage
            fused.append(self.fuse[i](rgb, noise))
        return fused


def weighted_statistics(x: torch.Tensor, log_w: torch.Tensor | None = None) -> torch.Tensor:
    """Per-channel weighted pooling of a (B,C,H,W) map: soft min, soft max, mean and mean square, with
    pixel weights softmax(log_w) over the image (uniform if None). Returns (B, 4C).

    The soft extremes are log-sum-exp under the same weights, so pixels with little weight cannot decide
    the score: this is how TruFor lets confidence gate the anomaly map."""
    b, c = x.shape[:2]
    x = x.float().reshape(b, c, -1)
    log_w = x.new_zeros(b, 1, x.shape[-1]) if log_w is None else log_w.float().reshape(b, 1, -1)
    log_w = F.log_softmax(log_w, dim=-1)
    w = log_w.exp()
    soft_min = -torch.logsumexp(log_w - x, dim=-1)
    soft_max = torch.logsumexp(log_w + x, dim=-1)
    return torch.cat([soft_min, soft_max, (w * x).sum(-1), (w * x * x).sum(-1)], dim=1)


def confidence_pooling(anomaly_logits: torch.Tensor, conf_logits: torch.Tensor) -> torch.Tensor:
    """TruFor's detector input: statistics of the confidence map (uniform weights) and of the anomaly map
    weighted by sigmoid(confidence) (log weights = logsigmoid), 8 numbers per image."""
    return torch.cat([weighted_statistics(conf_logits),
                      weighted_statistics(anomaly_logits, F.logsigmoid(conf_logits.float()))], dim=1)


class TruFor(Detector):
    def __init__(self, info: DetectorInfo, arch: str, decoder_dim: int, noise_layers: int, noise_width: int,
                 reduction: int, pretrained_path: str | None = None, pretrained: bool = False,
                 conf_target: str = "tcp", staged_gradients: bool = True, drop_path_rate: float = 0.1):
        super().__init__()
        if conf_target not in ("tcp", "hard"):
            raise ValueError(f"trufor: conf_target must be 'tcp' or 'hard', got {conf_target!r}")
        self.info = info
        self.conf_target, self.staged_gradients = conf_target, bool(staged_gradients)
        self.noise_extractor = NoiseExtractor(noise_layers, noise_width)
        self.encoder = DualMiT(arch, reduction, pretrained_path, pretrained, drop_path_rate)
        self.anomaly_decoder = AllMLPDecoder(self.encoder.out_channels, decoder_dim, num_classes=1)
        self.conf_decoder = AllMLPDecoder(self.encoder.out_channels, decoder_dim, num_classes=1)
        self.detector = nn.Sequential(nn.Linear(8, 128), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(128, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        size = x.shape[-2:]
        feats = self.encoder(x, self.noise_extractor(x))
        up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)  # noqa: E731
        mask_logits = up(self.anomaly_decoder(feats))
        staged = self.staged_gradients
        conf_logits = up(self.conf_decoder([f.detach() for f in feats] if staged else feats))
        pooled = confidence_pooling(mask_logits.detach() if staged else mask_logits, conf_logits)
        score_logits = self.detector(pooled.to(conf_logits.dtype)).view(-1)  # pooled in float32, see above
        return {"mask_logits": mask_logits, "score_logits": score_logits, "conf_logits": conf_logits}

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = out["mask_logits"]
        target = target_at(batch, logits)
        pixel_w = BCE_W_PRISTINE + (BCE_W_FORGED - BCE_W_PRISTINE) * target
        loss_wbce = bce(logits, batch, weight=pixel_w)
        loss_dice = dice(logits, batch)
        loss_loc = LOC_BCE_WEIGHT * loss_wbce + (1 - LOC_BCE_WEIGHT) * loss_dice

        with torch.no_grad():  # stop-gradient on the confidence target
            prob = torch.sigmoid(logits.float())
            if self.conf_target == "tcp":
                conf_tgt = target * prob + (1 - target) * (1 - prob)
            else:
                conf_tgt = ((prob > 0.5).float() == target).float()
        conf = torch.sigmoid(out["conf_logits"].float())
        valid = valid_mask(batch, conf).float()
        loss_conf = (((conf - conf_tgt) ** 2) * valid).sum() / valid.sum().clamp_min(1.0)

        loss_det = image_bce(out["score_logits"], batch)
        total = loss_loc + loss_conf + DET_WEIGHT * loss_det
        parts = {"wbce": loss_wbce, "dice": loss_dice, "loc": loss_loc, "conf": loss_conf, "det": loss_det}
        return total, {k: float(v.detach()) for k, v in parts.items()}


@register_detector("trufor")
def trufor(variant: str = "tiny", pretrained_path: str | None = None, pretrained: bool = False,
           **kwargs: Any) -> TruFor:
    """TruFor-like detector; ``pretrained_path`` is a local MiT state dict of the variant's geometry, loaded
    into both the RGB and the noise stream."""
    v = dict(variant_spec("trufor", variant, VARIANTS))
    size = v.pop("size")
    info = DetectorInfo(name="trufor", family=f"noise residual + dual-stream {v['arch']} (CMX fusion), "
                        "anomaly/confidence decoders, confidence-pooled detector",
                        paper=_PAPER, variant=variant, input_size=size, stride=32,
                        weights=weights_note(f"both {v['arch']} streams", pretrained_path, pretrained,
                                             "ImageNet-1k (smp hub download)", "; rest random init"))
    return TruFor(info, **v, pretrained_path=pretrained_path, pretrained=pretrained, **kwargs)
