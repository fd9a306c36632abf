"""The robustness sweep of ``bench eval-detector``: each test image perturbed (JPEG quality 50..100 via a
PIL round trip, Gaussian blur sigma 0..3, Gaussian noise std 0..0.1; levels in ``train.test``) and the
detector's per-image F1 at threshold 0.5 under each condition."""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.metrics import PixelMetrics

Condition = tuple[str, float]  # (perturbation, level)


def conditions(jpeg_quality: tuple[float, ...], blur_sigma: tuple[float, ...], noise_std: tuple[float, ...]
               ) -> list[Condition]:
    """(perturbation, level) pairs of the sweep."""
    return ([("jpeg", float(q)) for q in jpeg_quality] + [("blur", float(s)) for s in blur_sigma]
            + [("noise", float(s)) for s in noise_std])


def perturb(image: torch.Tensor, kind: str, level: float, seed: int = 0) -> torch.Tensor:
    """One [0,1] image (3,H,W) perturbed: JPEG round trip at quality `level`, Gaussian blur of sigma
    `level`, or Gaussian noise of std `level` (seeded, clipped to [0,1]). Level 0 blur/noise is identity."""
    if kind == "jpeg":
        arr = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(level))
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        return torch.from_numpy(back.copy()).permute(2, 0, 1).float().div(255.0).to(image.device)
    if kind == "blur":
        if level <= 0:
            return image
        from torchvision.transforms.functional import gaussian_blur

        k = 2 * math.ceil(3 * level) + 1
        return gaussian_blur(image[None], [k, k], [level, level])[0]
    if kind == "noise":
        if level <= 0:
            return image
        g = torch.Generator().manual_seed(seed)
        return (image + level * torch.randn(image.shape, generator=g).to(image.device)).clamp(0, 1)
    raise ValueError(f"perturbation {kind!r} is unknown; use jpeg, blur or noise")


class Sweep:
    """Per-condition pixel metrics over the first `limit` images (None: all) of a test set, fed batch by
    batch by the evaluation loop. `predict(images, valid, transform)` gives mask probabilities for a
    batch whose every image goes through ``transform(image, index_in_batch)`` first."""

    def __init__(self, conditions_: list[Condition], limit: int | None, seed: int,
                 predict: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]):
        self.metrics = {c: PixelMetrics() for c in conditions_}
        self.limit, self.seed, self.predict = limit, seed, predict
        self.images = 0

    def update(self, ids: list[str], images: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor) -> None:
        room = len(ids) if self.limit is None else max(0, self.limit - self.images)
        if not self.metrics or not room:
            return
        keep = slice(0, min(room, len(ids)))
        kept = ids[keep]
        for (kind, level), metric in self.metrics.items():
            def transform(img: torch.Tensor, i: int, kind: str = kind, level: float = level) -> torch.Tensor:
                return perturb(img, kind, level, seed=self.seed + zlib.crc32(f"{kept[i]}|{kind}|{level}".encode()))
            with torch.no_grad():
                masks = self.predict(images[keep], valid[keep], transform)
            metric.update(masks, truth[keep], valid[keep])
        self.images += len(kept)

    def rows(self) -> list[dict[str, Any]]:
        return [{"perturbation": kind, "level": level, **{k: v for k, v in m.compute().items()
                                                          if k in ("f1_per_image", "iou_per_image", "n_manipulated")}}
                for (kind, level), m in self.metrics.items()]
