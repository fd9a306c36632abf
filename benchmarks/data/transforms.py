"""Geometry and augmentation, applied jointly to image, original, mask and valid.

Two geometries are used in the IML field and both are here; the one used is recorded in every sample
(``geometry``) and in every result:

- ``resize``: warp to ``size`` x ``size`` (image: antialiased bicubic, mask: nearest); every pixel valid.
- ``pad``: shrink (never enlarge) so the long side fits ``size``, keeping the aspect ratio, then pad
  bottom/right with zeros to ``size`` x ``size``; ``valid`` is False on the padding (IML-ViT style).
- ``none``: native size (batch size 1, or a collate that pads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmarks.data.errors import DataError
from benchmarks.data.imageio import resize_image, resize_mask

GEOMETRIES = ("resize", "pad", "crop", "none")


@dataclass(frozen=True)
class Geometry:
    """How samples are sized: every ``geometry`` node of the configs (``geometry``, ``eval.geometry``,
    ``train.geometry``, ``train.test.geometry``) is this ``{mode, size}``. ``size`` None (detector
    training only) means the model's own input size, filled in with :meth:`sized`."""

    mode: str = "resize"
    size: int | None = 256

    def __post_init__(self) -> None:
        if self.mode not in GEOMETRIES:
            raise DataError(f"geometry mode {self.mode!r} is unknown; use one of {GEOMETRIES}")
        if self.size is not None and self.size < 8:
            raise DataError(f"geometry size {self.size} is too small; use >= 8")

    def sized(self, default: int) -> Geometry:
        """This geometry with `default` as its size when it has none."""
        return self if self.size is not None else Geometry(self.mode, int(default))

    @property
    def tag(self) -> str:
        return "native" if self.mode == "none" else f"{self.mode}-{self.size}"


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    pad = [(0, size - a.shape[0]), (0, size - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad)


def apply_geometry(arrays: dict[str, np.ndarray], geometry: Geometry,
                   rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Apply `geometry` to uint8 RGB arrays (``image``, ``original``) and bool arrays (``mask``, ``valid``).
    ``crop`` cuts a size x size window at native resolution (random with `rng`, else centred; smaller
    images are padded), which keeps the pixel-level traces that resizing would blur."""
    h, w = arrays["image"].shape[:2]
    out = dict(arrays)
    out.setdefault("valid", np.ones((h, w), dtype=bool))
    if geometry.mode == "none":
        return out
    if geometry.mode == "crop":
        s = geometry.size
        top = _offset(h - s, rng)
        left = _offset(w - s, rng)
        for key in ("image", "original", "mask", "valid"):
            if isinstance(out.get(key), np.ndarray):
                out[key] = _pad(out[key][top:top + s, left:left + s], s)
        return out
    if geometry.mode == "resize":
        hw = (geometry.size, geometry.size)
    else:
        scale = min(1.0, geometry.size / max(h, w))
        hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    for key, value in arrays.items():
        if value is None or not isinstance(value, np.ndarray):
            continue
        out[key] = resize_mask(value, hw) if value.dtype == bool else resize_image(value, hw)
    out["valid"] = resize_mask(out["valid"], hw)
    if geometry.mode == "pad":
        for key in ("image", "original", "mask", "valid"):
            if isinstance(out.get(key), np.ndarray):
                out[key] = _pad(out[key], geometry.size)
    return out


def _offset(room: int, rng: np.random.Generator | None) -> int:
    if room <= 0:
        return 0
    return int(rng.integers(0, room + 1)) if rng is not None else room // 2


def random_flip(arrays: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Horizontal flip with probability 0.5, the same for every array of the sample."""
    if rng.random() < 0.5:
        return {k: (np.ascontiguousarray(v[:, ::-1]) if isinstance(v, np.ndarray) else v) for k, v in arrays.items()}
    return arrays


def to_tensors(arrays: dict[str, Any]) -> dict[str, Any]:
    """uint8 HWC → float (3,H,W) in [0,1]; bool HW masks → (1,H,W) float mask / bool valid."""
    out: dict[str, Any] = {}
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):
            out[key] = value
            continue
        value = np.ascontiguousarray(value)
        if not value.flags.writeable:  # decoded images are often read-only views; torch wants its own
            value = value.copy()
        if key == "valid":
            out[key] = torch.from_numpy(value)[None].bool()
        elif value.dtype == bool:
            out[key] = torch.from_numpy(value)[None].float()
        else:
            out[key] = torch.from_numpy(value).permute(2, 0, 1).float().div_(255.0)
    return out


class SampleTransform:
    """Geometry (+ optional train-time flip) then tensors. Deterministic given `seed` and the item index.

    Two steps, so a decoded cache can keep the first (:mod:`benchmarks.data.cache`): :meth:`fixed` is the
    part that draws nothing (resize / pad; crop and none keep native arrays), :meth:`draw` the rest (the
    crop window and the flip, from ``rng((seed, epoch, index))``, then tensors). Both steps in a row give
    exactly what one call gives."""

    def __init__(self, geometry: Geometry, train: bool = False, seed: int = 0):
        self.geometry = geometry
        self.train = train
        self.seed = seed

    def fixed(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """The deterministic part of the geometry on decoded uint8 / bool arrays (``valid`` added)."""
        if self.geometry.mode in ("resize", "pad"):
            return apply_geometry(arrays, self.geometry)
        out = dict(arrays)
        out.setdefault("valid", np.ones(arrays["image"].shape[:2], dtype=bool))
        return out

    def draw(self, arrays: dict[str, Any], index: int = 0, epoch: int = 0) -> dict[str, Any]:
        """The per-epoch part on :meth:`fixed` arrays: crop window and flip (training only), then tensors."""
        rng = np.random.default_rng((self.seed, epoch, index)) if self.train else None
        if self.geometry.mode == "crop":
            arrays = apply_geometry(arrays, self.geometry, rng)
        if rng is not None:
            arrays = random_flip(arrays, rng)
        sample = to_tensors(arrays)
        sample["geometry"] = self.geometry.tag
        return sample

    def __call__(self, arrays: dict[str, Any], index: int = 0, epoch: int = 0) -> dict[str, Any]:
        return self.draw(self.fixed(arrays), index, epoch)
