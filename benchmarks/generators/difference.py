"""Per-pair stages of aligned differencing (numpy / OpenCV on one H x W pair): perceptual colour difference,
tone-drift removal, a robust per-image threshold and morphological clean-up.

Kept as plain functions so the tuning script (benchmarks/perf/tune_baselines.py) can cache the expensive
stages and sweep the cheap ones with exactly the code the generators run.
"""

from __future__ import annotations

import cv2
import numpy as np

TONES = ("none", "global", "local")
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


def to_lab(rgb: np.ndarray, prefilter_sigma: float) -> np.ndarray:
    """float32 RGB in [0,1] (H,W,3) -> CIELAB (L in 0..100), after a Gaussian prefilter.

    The prefilter (sigma in pixels) discounts what an editor regenerates at the finest scale (grain, JPEG
    blocks, the detail a latent decoder re-synthesises) before colours are compared.
    """
    if prefilter_sigma > 0:
        rgb = cv2.GaussianBlur(rgb, (0, 0), prefilter_sigma, borderType=cv2.BORDER_REFLECT)
    return cv2.cvtColor(np.clip(rgb, 0.0, 1.0).astype(np.float32), cv2.COLOR_RGB2Lab)


def tone_corrected(diff: np.ndarray, valid: np.ndarray, tone: str) -> np.ndarray:
    """Remove the editor's tone / colour drift from a signed Lab difference (H,W,3).

    ``global``: the per-channel median difference (gain/offset drift shared by the whole image).
    ``local``: a smooth per-channel field, the normalised-convolution blur (sigma = 1/8 of the long side) of
    the difference over the pixels that changed least (the smooth field an editor's decoder adds; edits are
    left out of the fit because they are among the pixels that changed most).
    Both fit on the half of the valid pixels whose change is smallest.
    """
    if tone not in TONES:
        raise ValueError(f"tone={tone!r}; use one of {TONES}")
    if tone == "none" or not valid.any():
        return diff
    magnitude = np.sqrt((diff ** 2).sum(axis=2))
    reliable = valid & (magnitude <= np.median(magnitude[valid]))
    if tone == "global":
        return diff - np.median(diff[reliable], axis=0)
    h, w = valid.shape
    sigma = max(h, w) / 8.0  # the drift field varies over about a quarter of the image
    step = max(1, int(sigma // 4))  # so fit it on a grid that much coarser (same field, a fraction of the cost)
    size = (max(1, w // step), max(1, h // step))
    weight = cv2.resize(reliable.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    total = cv2.resize((diff * reliable[..., None]).astype(np.float32), size, interpolation=cv2.INTER_AREA)
    weight = cv2.GaussianBlur(weight, (0, 0), sigma / step, borderType=cv2.BORDER_REFLECT)
    total = cv2.GaussianBlur(total, (0, 0), sigma / step, borderType=cv2.BORDER_REFLECT).reshape(size[1], size[0], 3)
    field = cv2.resize(total / np.maximum(weight, 1e-3)[..., None], (w, h), interpolation=cv2.INTER_LINEAR)
    return diff - field.reshape(h, w, 3)


def delta_e(lab_a: np.ndarray, lab_b: np.ndarray, valid: np.ndarray, tone: str) -> np.ndarray:
    """CIE76 colour difference (Euclidean in CIELAB; ~2.3 is a just-noticeable difference) after tone
    correction; 0 outside ``valid``."""
    diff = tone_corrected(lab_b - lab_a, valid, tone)
    out = np.sqrt((diff ** 2).sum(axis=2)).astype(np.float32)
    out[~valid] = 0.0
    return out


def smooth(score: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(score, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) if sigma > 0 else score


def noise_level(score: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """(median, MAD) of the score over valid pixels: most pixels of an edited pair are unchanged, so these
    describe the pair's own noise (the editor round trip), not the edit."""
    values = score[valid] if valid.any() else score.reshape(-1)
    median = float(np.median(values))
    return median, float(np.median(np.abs(values - median)))


def threshold_from(noise: tuple[float, float], k: float, floor: float) -> float:
    """max(floor, median + k * 1.4826 * MAD): tracks the pair's noise, never below an absolute floor (so a
    clean pair marks nothing)."""
    median, mad = noise
    return max(float(floor), median + k * MAD_TO_SIGMA * mad)


def robust_threshold(score: np.ndarray, valid: np.ndarray, k: float, floor: float) -> float:
    """The per-image threshold :func:`threshold_from` gives for this score map's :func:`noise_level`."""
    return threshold_from(noise_level(score, valid), k, floor)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def clean(binary: np.ndarray, open_radius: int, close_radius: int, min_area: float) -> np.ndarray:
    """Opening (drops specks), closing (fills cracks), then components below ``min_area`` (fraction of the
    image) removed. bool (H,W) in and out."""
    m = binary.astype(np.uint8)
    if open_radius > 0:
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, _disk(open_radius))
    if close_radius > 0:
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, _disk(close_radius))
    if min_area > 0 and m.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        small = stats[:, cv2.CC_STAT_AREA] < min_area * m.size
        small[0] = False  # background
        if small.any():
            m[small[labels]] = 0
    return m.astype(bool)


def soft_mask(score: np.ndarray, threshold: float, kept: np.ndarray) -> np.ndarray:
    """The contract's soft mask: s / (s + t) (>= 0.5 exactly where s >= t, monotone in s), then moved to the
    right side of 0.5 where the clean-up added or removed a pixel, so thresholding at 0.5 gives ``kept``."""
    soft = (score / (score + max(threshold, 1e-8))).astype(np.float32)
    below = np.nextafter(np.float32(0.5), np.float32(0.0))  # the largest float32 under 0.5
    return np.where(kept, np.maximum(soft, np.float32(0.5)), np.minimum(soft, below)).astype(np.float32)
