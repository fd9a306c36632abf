"""A second editor round trip, written apart from ``editor.py`` and used only by the generalization set.

It stands for another editor's decoder and saving pipeline, so a model that learned the first round trip's
particular noise is tested on noise it never saw. Its chain differs at every step:

1. geometry: an affine warp with rotation, anisotropic scale and shear (Lanczos interpolation);
2. resampling: a non-integer downscale (factor 2.5-4, area averaging) and a Lanczos upscale, mixed with a
   sharpened copy (an over-sharpening decoder) instead of a band-limited 8x latent grid;
3. regeneration: edge-preserving smoothing blended in, then signal-dependent (shot + read) noise in linear
   light and low-resolution chroma noise, instead of texture-matched grain;
4. colour: a near-identity 3x3 colour matrix (channel cross-talk), a radial vignette and a tone curve,
   instead of per-channel gain/offset/gamma with a smooth field;
5. codec: WebP (lossy, quality 55-90) when Pillow has it, else JPEG with 4:2:0 chroma subsampling at
   quality 60-85.

The strength of steps 1-4 is set so the PSNR against the input lands in [psnr_min, psnr_max], measured
outside the edit, by a few bisection steps on one global strength (not by scaling a fixed residual).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, features

from benchmarks.synth.editor import psnr


@dataclass(frozen=True)
class AltRoundTripConfig:
    psnr_min: float = 19.0
    psnr_max: float = 27.0
    quality: tuple[int, int] = (55, 90)


def _chain(x: np.ndarray, strength: float, draws: dict[str, np.ndarray | float]) -> np.ndarray:
    """Steps 1-4 at `strength` (0 = identity) on float32 RGB in [0, 1], with the random draws fixed."""
    h, w = x.shape[:2]
    a = draws["affine"] * strength
    mat = np.float32([[1 + a[0], a[1], a[2]], [a[3], 1 + a[4], a[5]]])
    centre = np.float32([w / 2, h / 2])
    mat[:, 2] += centre - mat[:, :2] @ centre                       # about the centre, not the corner
    y = cv2.warpAffine(x, mat, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)
    factor = 1 + (float(draws["factor"]) - 1) * min(1.0, strength)
    if factor > 1.01:
        small = cv2.resize(y, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
        up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LANCZOS4)
        sharp = up + float(draws["sharpen"]) * (up - cv2.GaussianBlur(up, (0, 0), 1.2))
        y = y + min(1.0, strength) * (sharp - y)
    smooth = cv2.bilateralFilter(np.clip(y, 0, 1).astype(np.float32), 5, 0.08, 3)
    y = y + float(draws["smooth"]) * min(1.0, strength) * (smooth - y)
    linear = np.clip(y, 0, 1) ** 2.2
    shot = np.sqrt(linear * 0.002 + 1e-6) * draws["noise"]
    chroma = cv2.resize(draws["chroma"], (w, h), interpolation=cv2.INTER_LINEAR)
    linear = np.clip(linear + strength * (shot + 0.004 * chroma), 0, 1)
    y = linear ** (1 / 2.2)
    colour = np.eye(3, dtype=np.float32) + strength * draws["matrix"]
    y = y @ colour.T
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    radius = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    y = y * (1 - strength * float(draws["vignette"]) * radius)[:, :, None]
    curve = float(draws["curve"]) * strength                          # an S-shaped tone curve
    y = np.clip(y, 0, 1)
    y = y + curve * (y - 0.5) * (1 - np.abs(2 * y - 1))
    return np.clip(y, 0, 1).astype(np.float32)


def _draws(shape: tuple[int, int], rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    h, w = shape
    rot, sx, sy, shear = rng.uniform(-0.006, 0.006), rng.uniform(-0.008, 0.008), rng.uniform(-0.008, 0.008), \
        rng.uniform(-0.004, 0.004)
    return {"affine": np.float32([sx, shear - rot, rng.uniform(-1.2, 1.2), shear + rot, sy, rng.uniform(-1.2, 1.2)]),
            "factor": rng.uniform(2.5, 4.0), "sharpen": rng.uniform(0.2, 0.8), "smooth": rng.uniform(0.2, 0.7),
            "noise": rng.standard_normal((h, w, 3)).astype(np.float32),
            "chroma": rng.standard_normal((max(1, h // 6), max(1, w // 6), 3)).astype(np.float32),
            "matrix": rng.normal(0, 0.03, (3, 3)).astype(np.float32), "vignette": rng.uniform(0.05, 0.25),
            "curve": rng.uniform(-0.25, 0.35)}


def alt_round_trip(image: np.ndarray, rng: np.random.Generator, cfg: AltRoundTripConfig = AltRoundTripConfig(),
                   measure: np.ndarray | None = None) -> tuple[np.ndarray, bytes, str]:
    """Round-trip a uint8 RGB image; returns (decoded pixels, stored bytes, file extension)."""
    x = image.astype(np.float32) / 255.0
    draws = _draws(image.shape[:2], rng)
    target = rng.uniform(cfg.psnr_min, cfg.psnr_max)
    lo, hi = 0.0, 4.0
    for _ in range(7):  # PSNR falls as strength rises: bisect for the target (to ~0.3 dB)
        mid = (lo + hi) / 2
        out = np.clip(np.round(_chain(x, mid, draws) * 255), 0, 255).astype(np.uint8)
        if psnr(out, image, measure) > target + 0.3:  # the codec below costs a little more
            lo = mid
        else:
            hi = mid
    out = np.clip(np.round(_chain(x, (lo + hi) / 2, draws) * 255), 0, 255).astype(np.uint8)
    quality = int(rng.integers(cfg.quality[0], cfg.quality[1] + 1))
    return encode(out, quality)


def encode(image: np.ndarray, quality: int) -> tuple[np.ndarray, bytes, str]:
    """WebP when this Pillow has it, else 4:2:0 JPEG: (decoded pixels, bytes, extension)."""
    buf = io.BytesIO()
    if features.check("webp"):
        Image.fromarray(image).save(buf, format="WEBP", quality=quality, method=4)
        ext = "webp"
    else:
        Image.fromarray(image).save(buf, format="JPEG", quality=max(60, min(85, quality)), subsampling=2)
        ext = "jpg"
    data = buf.getvalue()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), data, ext
