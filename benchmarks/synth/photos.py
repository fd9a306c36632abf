"""Real photographs that ship inside the dependencies' wheels, split into disjoint pools.

The pools keep test photos away from training photos: the inpainting set and the editing corpus draw from
``train``; the five test benchmarks from ``test``; the generalization set from ``holdout``. The two
motorcycle views show the same scene, so both sit in one pool.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from benchmarks.data.imageio import load_image


def _skimage(name: str) -> Path:
    import skimage

    return Path(os.path.dirname(skimage.__file__)) / "data" / name


def _sklearn(name: str) -> Path:
    import sklearn

    return Path(os.path.dirname(sklearn.__file__)) / "datasets" / "images" / name


def _matplotlib(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


# name -> file inside an installed wheel. Grayscale photos are used as 3-channel gray images.
PHOTOS: dict[str, callable] = {
    "astronaut": lambda: _skimage("astronaut.png"),
    "coffee": lambda: _skimage("coffee.png"),
    "rocket": lambda: _skimage("rocket.jpg"),
    "hubble_deep_field": lambda: _skimage("hubble_deep_field.jpg"),
    "camera": lambda: _skimage("camera.png"),
    "brick": lambda: _skimage("brick.png"),
    "grass": lambda: _skimage("grass.png"),
    "page": lambda: _skimage("page.png"),
    "chelsea": lambda: _skimage("chelsea.png"),
    "retina": lambda: _skimage("retina.jpg"),
    "coins": lambda: _skimage("coins.png"),
    "moon": lambda: _skimage("moon.png"),
    "text": lambda: _skimage("text.png"),
    "china": lambda: _sklearn("china.jpg"),
    "flower": lambda: _sklearn("flower.jpg"),
    "grace_hopper": lambda: _matplotlib("grace_hopper.jpg"),
    "motorcycle_left": lambda: _skimage("motorcycle_left.png"),
    "motorcycle_right": lambda: _skimage("motorcycle_right.png"),
    "ihc": lambda: _skimage("ihc.png"),
    "clock_motion": lambda: _skimage("clock_motion.png"),
    "gravel": lambda: _skimage("gravel.png"),
}

POOLS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "coffee", "rocket", "hubble_deep_field", "camera", "brick", "grass", "page"),
    "test": ("chelsea", "china", "flower", "grace_hopper", "retina", "coins", "moon", "text"),
    "holdout": ("motorcycle_left", "motorcycle_right", "ihc", "clock_motion", "gravel"),
}


def check_pools(pools: dict[str, list[str]] | dict[str, tuple[str, ...]]) -> None:
    """Every photo known, and no photo in two pools (that would leak test content into training)."""
    seen: dict[str, str] = {}
    for pool, names in pools.items():
        for name in names:
            if name not in PHOTOS:
                raise ValueError(f"synth pool {pool!r}: unknown photo {name!r}; known photos: {sorted(PHOTOS)}")
            if name in seen:
                raise ValueError(f"photo {name!r} is in pools {seen[name]!r} and {pool!r}; pools must be disjoint")
            seen[name] = pool


@functools.lru_cache(maxsize=32)
def load_photo(name: str) -> np.ndarray:
    """The photo as uint8 RGB (read-only; cached per process)."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; known photos: {sorted(PHOTOS)}")
    arr = load_image(PHOTOS[name]())
    arr.setflags(write=False)
    return arr


def random_crop(photo: np.ndarray, size: int, rng: np.random.Generator, min_frac: float = 0.45) -> np.ndarray:
    """A square crop of side U(min_frac, 1) x short side, resized to `size`, randomly mirrored."""
    import cv2

    h, w = photo.shape[:2]
    side = int(round(min(h, w) * rng.uniform(min_frac, 1.0)))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crop = photo[y:y + side, x:x + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    out = cv2.resize(crop, (size, size), interpolation=interp)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)
