"""The label-quality ladder: ground-truth masks degraded in controlled ways (calibration rows, not competitors).

Trained on like any generator's masks, the ladder gives the downstream benchmark's dose-response curve,
detector F1 against label F1, and from it the benchmark's resolving power. Every row reads the ground truth
(``needs_truth``) and is labelled a calibration row in the leaderboards.

Degradations, each at a strength s in [0, 1], in pixels of a 256 px image (scaled with the image side):

- ``boundary``: the mask eroded or dilated (one or the other per image) by a disc of radius round(6 s) px;
- ``miss``: regions missed, as an annotator that drops what the instruction never mentions: every connected
  region but the largest is dropped with probability s, and a share 0.5 s of the largest region is cut off
  beyond a random straight line;
- ``blobs``: false-positive blobs (ellipses) outside the mask, of total area s times the mask's area;
- ``shift``: the mask displaced by 12 s px in a random direction;
- ``mix``: all four at once (the ladder proper: ``ladder_1`` .. ``ladder_4`` at s = 0.25, 0.5, 0.75, 1).

Randomness is drawn from a generator seeded by the mask's own content, so a pair's degraded mask does not
depend on the batch it arrives in, the device or the number of workers.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from benchmarks.generators.base import GeneratorInfo, MaskGenerator, register_generator

KINDS = ("boundary", "miss", "blobs", "shift", "mix")
BASE_SIDE = 256  # pixel sizes below are for a 256 px image and scale with the side
MAX_RADIUS, MAX_SHIFT, MAX_CUT = 6.0, 12.0, 0.5
LADDER = {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}   # ladder_<level>: mix at this strength
SINGLE_STRENGTH = 0.5                          # ladder_<kind>: one degradation at the middle strength


def _disc(radius: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def boundary(mask: np.ndarray, s: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    import cv2

    radius = int(round(MAX_RADIUS * s * scale))
    if radius < 1 or not mask.any():
        return mask
    op = cv2.erode if rng.random() < 0.5 else cv2.dilate
    return op(mask.astype(np.uint8), _disc(radius)).astype(bool)


def miss(mask: np.ndarray, s: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1 or s <= 0:
        return mask
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    keep = labels == largest
    for k in range(1, n):
        if k != largest and rng.random() >= s:
            keep |= labels == k
    ys, xs = np.nonzero(labels == largest)
    angle = rng.uniform(0, 2 * np.pi)
    along = ys * np.sin(angle) + xs * np.cos(angle)
    cut = np.quantile(along, 1 - MAX_CUT * s)   # the share beyond this line is dropped
    keep[ys[along > cut], xs[along > cut]] = False
    return keep


def blobs(mask: np.ndarray, s: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    import cv2

    want = s * mask.sum()
    if want < 1:
        return mask
    h, w = mask.shape
    out = mask.copy()
    added, tries = 0.0, 0
    while added < want and tries < 50:
        tries += 1
        area = min(want - added, max(want / 3, 16 * scale * scale))
        ry = max(1, int(round(np.sqrt(area / np.pi) * rng.uniform(0.6, 1.6))))
        rx = max(1, int(round(area / (np.pi * ry))))
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        blob = np.zeros((h, w), np.uint8)
        cv2.ellipse(blob, (cx, cy), (rx, ry), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        blob = blob.astype(bool) & ~mask       # false positives only: never on the true region
        if blob.sum() == 0:
            continue
        added += float((blob & ~out).sum())
        out |= blob
    return out


def shift(mask: np.ndarray, s: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    dist = MAX_SHIFT * s * scale
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = int(round(dist * np.sin(angle))), int(round(dist * np.cos(angle)))
    if dy == 0 and dx == 0:
        return mask
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h + min(-dy, 0),
                                                                     max(-dx, 0):w + min(-dx, 0)]
    return out


DEGRADE = {"boundary": boundary, "miss": miss, "blobs": blobs, "shift": shift}


def degrade(mask: np.ndarray, kind: str, strength: float) -> np.ndarray:
    """One bool (H, W) mask degraded; deterministic in (mask, kind, strength)."""
    if kind not in KINDS:
        raise ValueError(f"unknown ladder degradation {kind!r}; known: {KINDS}")
    rng = np.random.default_rng([zlib.crc32(np.packbits(mask).tobytes()), zlib.crc32(kind.encode()),
                                 int(round(strength * 1000)), *mask.shape])
    scale = min(mask.shape) / BASE_SIDE
    steps = ("miss", "boundary", "shift", "blobs") if kind == "mix" else (kind,)
    for step in steps:
        mask = DEGRADE[step](mask, strength, rng, scale)
    return mask


class Ladder(MaskGenerator):
    """The ground truth, degraded (a calibration row: it reads the truth)."""

    needs_truth = True

    def __init__(self, name: str, kind: str, strength: float):
        super().__init__()
        if kind not in KINDS or not 0.0 <= strength <= 1.0:
            raise ValueError(f"ladder: kind must be one of {KINDS} and strength in [0, 1], got {kind!r}, {strength}")
        self.kind, self.strength = kind, float(strength)
        self.info = GeneratorInfo(name, f"calibration row: the ground truth with {kind} degradation at strength "
                                        f"{strength:g}", calibration=True)

    def forward(self, original, edited, instruction, truth=None):
        masks = (truth[:, 0] > 0.5).cpu().numpy()
        out = np.stack([degrade(m, self.kind, self.strength) for m in masks])
        return torch.from_numpy(out[:, None]).to(device=edited.device, dtype=edited.dtype)


def _register(name: str, kind: str, strength: float) -> None:
    register_generator(name)(lambda: Ladder(name, kind, strength))


for _level, _strength in LADDER.items():
    _register(f"ladder_{_level}", "mix", _strength)
for _kind in DEGRADE:
    _register(f"ladder_{_kind}", _kind, SINGLE_STRENGTH)
