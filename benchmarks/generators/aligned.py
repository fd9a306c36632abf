"""Baselines that register the pair first, as published annotators of editing corpora do.

- ``aligned_diff``: registration (keypoints + robust fit + ECC, with counted fallbacks;
  :mod:`benchmarks.generators.registration`), then a CIELAB colour difference with the editor's tone drift
  removed, a robust per-image threshold and morphological clean-up (:mod:`benchmarks.generators.difference`).
- ``aligned_semantic`` (after PromptForge-350k, Wang et al., arXiv 2603.29386: keypoint alignment, then
  similarity in a semantic feature space): the same registration, then 1 - cosine similarity of frozen
  backbone features per location at strides 4/8/16, fused and thresholded per image.

Both are training-free; OpenCV works per pair on the CPU (inputs on another device are copied over and the
mask is returned there). Every threshold and scale in their configs was chosen on a validation split, never
on a test benchmark; the config says which (``chosen_on``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.generators import difference
from benchmarks.generators.base import GeneratorInfo, MaskGenerator, register_generator
from benchmarks.generators.ops import gaussian_blur, otsu_threshold
from benchmarks.generators.quality import agreement, stability
from benchmarks.generators.registration import (Registration, RegistrationConfig, RegistrationLog, opencv_single_thread,
                                                register, warp)

PROMPTFORGE = "PromptForge-350k (Wang et al., arXiv 2603.29386): keypoint alignment + semantic-space similarity"


def _numpy_images(x: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) float in [0,1] on any device -> (B,H,W,3) float32 numpy."""
    return np.ascontiguousarray(x.detach().float().permute(0, 2, 3, 1).cpu().numpy())


def align_pair(original: np.ndarray, edited: np.ndarray, cfg: RegistrationConfig, log: RegistrationLog
               ) -> tuple[np.ndarray, np.ndarray, Registration]:
    """One pair (H,W,3 float32): (original warped onto the edited grid, valid pixels, the registration),
    counted in `log`."""
    reg = register(original, edited, cfg)
    log.record(reg)
    warped, valid = warp(original, reg.matrix, edited.shape[:2])
    return warped, valid, reg


def align_onto(original: torch.Tensor, edited: torch.Tensor, cfg: RegistrationConfig,
               log: RegistrationLog) -> torch.Tensor:
    """(B,3,H,W) originals in [0,1] registered and warped onto their edited images' grids, for models that
    compare the two pixel by pixel. Where a warp uncovers the border (no original there), the edited pixels
    are copied in: no difference, so no evidence either way. Same device and dtype as ``original``."""
    edits = _numpy_images(edited)
    out = np.empty_like(edits)
    with opencv_single_thread():
        for k, (o, e) in enumerate(zip(_numpy_images(original), edits)):
            warped, valid, _ = align_pair(o, e, cfg, log)
            warped[~valid] = e[~valid]
            out[k] = warped
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(original.device, original.dtype)


class _Aligned(MaskGenerator):
    """Registration shared by the aligned baselines: one transform per pair, counted in :meth:`counters`."""

    def __init__(self, name: str, registration: dict[str, Any] | None):
        super().__init__()
        self.registration = RegistrationConfig.from_dict(registration)
        self.registration_log = RegistrationLog(name)

    def align(self, original: np.ndarray, edited: np.ndarray) -> tuple[np.ndarray, np.ndarray, Registration]:
        """One pair (H,W,3 float32): (original warped onto the edited grid, valid pixels, the registration)."""
        return align_pair(original, edited, self.registration, self.registration_log)

    def counters(self) -> dict[str, int]:
        return self.registration_log.counters()

    def forward(self, original, edited, instruction, truth=None):
        return self.forward_scored(original, edited, instruction, truth)[0]


def diff_score(warped: np.ndarray, edited: np.ndarray, valid: np.ndarray, prefilter_sigma: float, tone: str,
               sigma: float) -> np.ndarray:
    """Smoothed deltaE between the warped original and the edited image (H,W float32; 0 off ``valid``)."""
    lab_o = difference.to_lab(warped, prefilter_sigma)
    lab_e = difference.to_lab(edited, prefilter_sigma)
    score = difference.smooth(difference.delta_e(lab_o, lab_e, valid, tone), sigma)
    score[~valid] = 0.0
    return score


def diff_mask(score: np.ndarray, valid: np.ndarray, k: float, floor: float, open_radius: int, close_radius: int,
              min_area: float, noise: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """(soft mask after clean-up, soft mask before it, threshold) from a deltaE score map; ``noise`` is the
    map's :func:`difference.noise_level` when the caller has it already."""
    thr = difference.threshold_from(noise or difference.noise_level(score, valid), k, floor)
    kept = difference.clean(score >= thr, open_radius, close_radius, min_area)
    raw = (score / (score + thr)).astype(np.float32)
    return difference.soft_mask(score, thr, kept), raw, thr


class AlignedDiff(_Aligned):
    """Registered CIELAB differencing: the pixel baseline with the editor's global misalignment undone.

    Per pair: register and warp the original; Gaussian prefilter (``prefilter_sigma``) and CIELAB on both;
    remove tone drift (``tone``: none / global / local); CIE76 deltaE, smoothed (``sigma``); threshold
    max(``floor``, median + ``k`` x 1.4826 x MAD); opening / closing / small-component removal. The quality
    score is the stability of the mask before clean-up (:func:`benchmarks.generators.quality.stability`).
    """

    def __init__(self, registration: dict[str, Any] | None = None, prefilter_sigma: float = 2.0, tone: str = "local",
                 sigma: float = 1.0, k: float = 4.0, floor: float = 6.0, open_radius: int = 2, close_radius: int = 3,
                 min_area: float = 0.001, chosen_on: str = "code defaults"):
        super().__init__("aligned_diff", registration)
        if tone not in difference.TONES:
            raise ValueError(f"aligned_diff tone={tone!r}; use one of {difference.TONES}")
        if floor <= 0 or k < 0:
            raise ValueError(f"aligned_diff needs floor > 0 (deltaE units, e.g. 4) and k >= 0; got floor={floor}, "
                             f"k={k}")
        self.prefilter_sigma, self.tone, self.sigma = float(prefilter_sigma), tone, float(sigma)
        self.k, self.floor = float(k), float(floor)
        self.open_radius, self.close_radius, self.min_area = int(open_radius), int(close_radius), float(min_area)
        self.info = GeneratorInfo(
            "aligned_diff", f"registered (keypoints+ECC) CIELAB deltaE, tone drift '{tone}', threshold max({floor:g}, "
            f"median + {k:g} MAD), morphological clean-up; parameters chosen on: {chosen_on}",
            paper="registration then differencing, as in " + PROMPTFORGE)

    def forward_scored(self, original, edited, instruction, truth=None):
        masks, raws, diagnostics = [], [], []
        with opencv_single_thread():
            for o, e in zip(_numpy_images(original), _numpy_images(edited)):
                warped, valid, reg = self.align(o, e)
                score = diff_score(warped, e, valid, self.prefilter_sigma, self.tone, self.sigma)
                soft, raw, thr = diff_mask(score, valid, self.k, self.floor, self.open_radius, self.close_radius,
                                           self.min_area)
                masks.append(soft)
                raws.append(raw)
                diagnostics.append({"registration": reg.as_dict(), "threshold": round(thr, 4),
                                    "marked": round(float((soft >= 0.5).mean()), 6)})
        mask = torch.from_numpy(np.stack(masks))[:, None].to(edited.device, edited.dtype)
        quality = stability(torch.from_numpy(np.stack(raws))[:, None]).to(edited.device)
        return mask, quality, diagnostics


def smoothed_scales(dists: list[torch.Tensor], sigma: float) -> list[torch.Tensor]:
    """Each scale's distance map smoothed (blurring before fusing equals blurring the fused map: it is linear)."""
    return [gaussian_blur(d, sigma) for d in dists]


def semantic_mask(smoothed: list[torch.Tensor], valid: torch.Tensor, layer_weights: tuple[float, ...], threshold: str,
                  k: float, floor: float, with_quality: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Fuse smoothed per-scale distances (B,1,H,W each) into (soft mask, (B,) thresholds, (B,) quality or None).

    Quality: the mean pairwise IoU of the per-scale masks at the fused threshold (scale agreement); with a
    single scale, the fused mask's stability.
    """
    score = sum(w * d for w, d in zip(layer_weights, smoothed) if w > 0) / sum(layer_weights) * valid
    if threshold == "otsu":
        thr = otsu_threshold(score).clamp_min(floor)
    else:
        thr = torch.tensor([difference.robust_threshold(s[0].cpu().numpy(), v[0].cpu().numpy(), k, floor)
                            for s, v in zip(score, valid)], device=score.device, dtype=score.dtype)
    t = thr.view(-1, 1, 1, 1)
    mask = score / (score + t.clamp_min(1e-8))
    if not with_quality:
        return mask, thr, None
    per_scale = [d * valid >= t for w, d in zip(layer_weights, smoothed) if w > 0]
    quality = agreement(per_scale) if len(per_scale) > 1 else stability(mask)
    return mask, thr, quality


class AlignedSemantic(_Aligned):
    """PromptForge-style semantic differencing of a registered pair (arXiv 2603.29386).

    Per batch: register and warp each original (CPU); frozen backbone features of warped original and edited
    (offline ImageNet EfficientNet-Lite0 by default; DINOv2 geometry with ``backbone=vit_small_patch14_dinov2
    pretrained_path=FILE``); 1 - cosine similarity per location at strides 4/8/16, upsampled and fused with
    ``layer_weights``; smoothed (``sigma``); thresholded per image (``threshold``: otsu, floored at ``floor``,
    or mad: max(floor, median + k MAD)). Quality: agreement (mean IoU) of the per-scale masks at the same
    threshold, the evidence at each scale voting on the fused mask.
    """

    def __init__(self, registration: dict[str, Any] | None = None, backbone: str = "tf_efficientnet_lite0",
                 pretrained_path: str | None = None, pretrained: bool = False,
                 layer_weights: tuple[float, ...] = (1.0, 1.0, 0.0), sigma: float = 4.0, threshold: str = "mad",
                 k: float = 3.0, floor: float = 0.3, input_scale: float = 1.0, min_input: int = 32,
                 chosen_on: str = "code defaults"):
        super().__init__("aligned_semantic", registration)
        from sigma.backbone import FrozenBackbone

        layer_weights = tuple(float(w) for w in layer_weights)
        if len(layer_weights) != 3 or min(layer_weights) < 0 or sum(layer_weights) <= 0:
            raise ValueError(f"aligned_semantic layer_weights={list(layer_weights)}; give three non-negative weights "
                             "for strides 4/8/16, not all zero, e.g. [1, 1, 1]")
        if threshold not in ("otsu", "mad"):
            raise ValueError(f"aligned_semantic threshold={threshold!r}; use 'otsu' or 'mad'")
        if pretrained_path is None and not pretrained:
            from benchmarks.weights import offline_backbone_file

            pretrained_path = offline_backbone_file(backbone)
        self.backbone = FrozenBackbone(backbone, pretrained_path, pretrained)
        self.layer_weights, self.sigma, self.threshold = layer_weights, float(sigma), threshold
        if input_scale <= 0:
            raise ValueError(f"aligned_semantic input_scale={input_scale}; give a positive factor (1 = as loaded, 2)")
        self.k, self.floor, self.min_input = float(k), float(floor), int(min_input)
        self.input_scale = float(input_scale)
        used = [s for s, w in zip((4, 8, 16), layer_weights) if w > 0]
        self.info = GeneratorInfo(
            "aligned_semantic", f"registered pair, 1 - cosine of frozen {backbone} features at strides {used}, "
            f"fused, {threshold} threshold (floor {floor:g}); parameters chosen on: {chosen_on}", paper=PROMPTFORGE,
            weights=str(self.backbone.weights))

    def layer_distances(self, warped: torch.Tensor, edited: torch.Tensor) -> list[torch.Tensor]:
        """1 - cos per location for each backbone scale, upsampled to (B,1,H,W)."""
        h, w = edited.shape[-2:]
        both = torch.cat([warped, edited])
        # input_scale > 1 gives finer feature maps; tiny pairs are enlarged so the stride-16 map has a few cells
        scale = max(self.input_scale, self.min_input / min(h, w))
        if scale != 1.0:
            both = F.interpolate(both, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                                 align_corners=False)
        out = []
        for feats in self.backbone(both):
            a, b = feats.chunk(2)
            dist = 1 - F.cosine_similarity(a, b, dim=1, eps=1e-6)[:, None]
            out.append(F.interpolate(dist, size=(h, w), mode="bilinear", align_corners=False).clamp_min(0))
        return out

    def forward_scored(self, original, edited, instruction, truth=None):
        warped, valid, diagnostics = [], [], []
        with opencv_single_thread():
            for o, e in zip(_numpy_images(original), _numpy_images(edited)):
                w_o, ok, reg = self.align(o, e)
                warped.append(w_o)
                valid.append(ok)
                diagnostics.append({"registration": reg.as_dict()})
        warped_t = torch.from_numpy(np.stack(warped)).permute(0, 3, 1, 2).to(edited.device, edited.dtype)
        valid_t = torch.from_numpy(np.stack(valid))[:, None].to(edited.device)
        dists = self.layer_distances(warped_t, edited)
        mask, thr, quality = semantic_mask(smoothed_scales(dists, self.sigma), valid_t, self.layer_weights,
                                           self.threshold, self.k, self.floor)
        for d, value, m in zip(diagnostics, thr.tolist(), (mask >= 0.5).flatten(1).float().mean(1).tolist()):
            d.update(threshold=round(value, 4), marked=round(m, 6))
        return mask, quality, diagnostics


@register_generator("aligned_diff")
def aligned_diff(**kwargs: Any) -> MaskGenerator:
    return AlignedDiff(**kwargs)


@register_generator("aligned_semantic")
def aligned_semantic(**kwargs: Any) -> MaskGenerator:
    if "layer_weights" in kwargs:
        kwargs["layer_weights"] = tuple(kwargs["layer_weights"])
    return AlignedSemantic(**kwargs)
