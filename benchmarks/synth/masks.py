"""Region masks for synthetic edits: organic blobs and object-like superpixel unions."""

from __future__ import annotations

import cv2
import numpy as np
from skimage.segmentation import felzenszwalb


def blob_mask(size: int, area: float, rng: np.random.Generator, avoid: np.ndarray | None = None,
              tries: int = 30) -> np.ndarray:
    """A star-shaped blob covering about `area` of the image, away from `avoid` when given."""
    best = None
    for _ in range(tries):
        n = 48
        theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
        radius = np.ones(n)
        for k in range(1, 5):  # a few low harmonics give organic, non-convex outlines
            radius += rng.uniform(-0.25, 0.25) / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        aspect = rng.uniform(0.6, 1.6)
        r0 = np.sqrt(area * size * size / (np.pi * np.mean(radius ** 2)))
        rx, ry = r0 * np.sqrt(aspect), r0 / np.sqrt(aspect)
        margin = min(max(rx, ry) * 0.6, size / 2 - 1)
        cx, cy = rng.uniform(margin, size - margin), rng.uniform(margin, size - margin)
        rot = rng.uniform(0, np.pi)
        px = radius * rx * np.cos(theta)
        py = radius * ry * np.sin(theta)
        pts = np.stack([cx + px * np.cos(rot) - py * np.sin(rot), cy + px * np.sin(rot) + py * np.cos(rot)], 1)
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
        mask = mask.astype(bool)
        if not mask.any():
            continue
        if avoid is None or not (mask & avoid).any():
            return mask
        if best is None or (mask & avoid).sum() < (best & avoid).sum():
            best = mask
    return best & ~avoid if best is not None else np.zeros((size, size), bool)


def segments(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Felzenszwalb superpixels at half resolution (4x cheaper), upsampled to full size."""
    size = image.shape[0]
    small = cv2.resize(image, (size // 2, size // 2), interpolation=cv2.INTER_AREA)
    seg = felzenszwalb(small, scale=float(rng.choice([80.0, 150.0, 300.0])), sigma=0.8, min_size=max(20, size // 8))
    return cv2.resize(seg.astype(np.int32), (size, size), interpolation=cv2.INTER_NEAREST)


def object_mask(image: np.ndarray, area: float, rng: np.random.Generator, avoid: np.ndarray | None = None,
                seg: np.ndarray | None = None) -> np.ndarray | None:
    """A union of adjacent superpixels of about `area`, so the region follows image content like an object.

    Returns None when the image offers no suitable region (the caller falls back to a blob).
    """
    size = image.shape[0]
    seg = segments(image, rng) if seg is None else seg
    total = size * size
    labels, counts = np.unique(seg, return_counts=True)
    lo, hi = 0.25 * area * total, 1.6 * area * total
    border = np.unique(np.concatenate([seg[0], seg[-1], seg[:, 0], seg[:, -1]]))
    candidates = [l for l, c in zip(labels, counts) if 0.005 * total <= c <= hi and l not in border]
    if avoid is not None:
        candidates = [l for l in candidates if not (avoid & (seg == l)).any()]
    if not candidates:
        return None
    mask = seg == rng.choice(candidates)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(12):  # grow by neighbouring segments until the target area is reached
        if mask.sum() >= lo:
            break
        ring = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask
        neighbours = [l for l in np.unique(seg[ring]) if l not in border]
        if avoid is not None:
            neighbours = [l for l in neighbours if not (avoid & (seg == l)).any()]
        if not neighbours:
            break
        grown = mask | (seg == rng.choice(neighbours))
        if grown.sum() > hi:
            break
        mask = grown
    if not (lo <= mask.sum() <= hi):
        return None
    # close small holes and jagged borders, as an object outline would be
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)).astype(bool)
    if avoid is not None:
        mask &= ~avoid
    return mask


def region_mask(image: np.ndarray, area: float, rng: np.random.Generator, object_prob: float = 0.6,
                avoid: np.ndarray | None = None) -> np.ndarray:
    """An object-like region with probability `object_prob`, else (or when none fits) an organic blob."""
    if rng.random() < object_prob:
        mask = object_mask(image, area, rng, avoid=avoid)
        if mask is not None and mask.any():
            return mask
    return blob_mask(image.shape[0], area, rng, avoid=avoid)


def feather(mask: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Soft alpha (H, W, 1) from a bool mask: editors blend their output into the image at the border."""
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    return np.clip(np.maximum(alpha, mask * 0.85), 0, 1)[:, :, None]
