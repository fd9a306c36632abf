"""A simulated editor round trip: what a latent-diffusion editor does to every pixel it hands back.

A diffusion editor decodes the whole image from an 8x-downsampled latent, so even pixels it was not asked
to change come back altered. The simulation touches every pixel with the same kinds of change:

1. sub-pixel misalignment (a fraction-of-a-pixel shift, tiny scale and rotation);
2. 8x latent-style resampling: a band-limited copy from an 8x-reduced grid carries the low frequencies,
   while detail above it is kept only partly;
3. regenerated fine texture: the lost detail comes back as new, plausible noise whose strength follows the
   local texture energy (the decoder hallucinates grain where there was grain);
4. tone and colour drift: per-channel gain/offset/gamma plus a smooth spatial field;
5. recompression (JPEG, done by the writer so the stored file is the real bytes).

The residual of steps 1-4 is scaled so the PSNR against the input hits a target drawn per image (the
20-30 dB range of diffusion VAEs), measured over pixels outside the edited region.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class RoundTripConfig:
    psnr_min: float = 21.0
    psnr_max: float = 29.0
    shift_max: float = 0.6          # pixels
    detail_keep: tuple[float, float] = (0.35, 0.75)
    texture_gain: tuple[float, float] = (0.4, 0.9)
    drift: float = 0.03             # gain / offset scale of tone and colour drift
    jpeg_quality: tuple[int, int] = (80, 95)


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR in dB between two uint8 images, over pixels where `where` is True (all when None)."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    sq = (diff ** 2).mean(axis=2) if diff.ndim == 3 else diff ** 2
    mse = float(sq[where].mean()) if where is not None else float(sq.mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def _smooth_field(shape: tuple[int, int], cells: int, rng: np.random.Generator, channels: int = 3) -> np.ndarray:
    coarse = rng.standard_normal((cells, cells, channels)).astype(np.float32)
    field = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return field.reshape(shape[0], shape[1], channels)


def _unscaled(x: np.ndarray, rng: np.random.Generator, cfg: RoundTripConfig) -> np.ndarray:
    """Steps 1-4 on a float32 image in [0, 1] (H, W, 3)."""
    h, w = x.shape[:2]
    # 1. misalignment
    angle = rng.uniform(-0.15, 0.15)
    scale = 1.0 + rng.uniform(-0.004, 0.004)
    mat = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    mat[:, 2] += rng.uniform(-cfg.shift_max, cfg.shift_max, size=2)
    y = cv2.warpAffine(x, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # 2. latent grid: low frequencies from an 8x-reduced copy, detail above them only partly kept
    small = cv2.resize(y, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    base = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    mid = cv2.GaussianBlur(y, (0, 0), 0.7)
    detail = y - base
    keep = rng.uniform(*cfg.detail_keep)
    y = base + keep * (mid - base) + 0.15 * (detail - (mid - base))
    # 3. regenerated texture: band-limited noise scaled by the local detail energy it replaces
    energy = np.sqrt(cv2.GaussianBlur((detail ** 2).mean(axis=2), (0, 0), 3.0))[:, :, None]
    noise = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.8)
    noise = (noise / (noise.std() + 1e-6))[:, :, None]
    y = y + rng.uniform(*cfg.texture_gain) * (energy + 0.01) * noise
    # 4. tone and colour drift
    gain = 1.0 + cfg.drift * rng.standard_normal(3).astype(np.float32)
    offset = cfg.drift * 0.5 * rng.standard_normal(3).astype(np.float32)
    gamma = float(np.exp(rng.normal(0.0, 0.05)))
    y = np.clip(y, 0.0, 1.0) ** gamma * gain + offset
    # the smooth field is mostly tone (shared by the channels), with a little chroma
    field = _smooth_field((h, w), 4, rng, 1) + 0.3 * _smooth_field((h, w), 4, rng)
    y = y + cfg.drift * 0.7 * field
    return y.astype(np.float32)


def round_trip(image: np.ndarray, rng: np.random.Generator, cfg: RoundTripConfig = RoundTripConfig(),
               measure: np.ndarray | None = None, target_psnr: float | None = None) -> tuple[np.ndarray, int]:
    """Round-trip a uint8 RGB image. Returns (image before recompression, JPEG quality to store it at).

    `measure` (bool, H x W) selects the pixels the PSNR target is calibrated on (outside the edit);
    the JPEG step happens when the caller writes the file (see :func:`jpeg_roundtrip`).
    """
    x = image.astype(np.float32) / 255.0
    residual = _unscaled(x, rng, cfg) - x
    target = rng.uniform(cfg.psnr_min, cfg.psnr_max) if target_psnr is None else target_psnr
    sq = (residual ** 2).mean(axis=2)
    mse = float(sq[measure].mean()) if measure is not None and measure.any() else float(sq.mean())
    # recompression adds error too: aim a little above the target so the stored file lands near it
    want = 10.0 ** (-(target + 0.4) / 10.0)  # MSE of [0,1] images at that PSNR
    scale = np.sqrt(want / max(mse, 1e-12))
    out = np.clip(np.round((x + scale * residual) * 255.0), 0, 255).astype(np.uint8)
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    return out, quality


def jpeg_roundtrip(image: np.ndarray, quality: int) -> tuple[np.ndarray, bytes]:
    """Encode as JPEG and decode again: the pixels a reader of the stored file will see, and the bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    data = buf.getvalue()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), data
