"""Perceptual hashes for finding near-duplicate photographs (same shot, crops, burst frames, re-encodes).

Two hashes, each robust to resizing and recompression: a 16x16 difference hash (gradient signs of a
17x16 grey thumbnail, 256 bits) and a DCT hash (signs of the 8x8 lowest frequencies of a 32x32 thumbnail
against their median, 64 bits). A pair is compared in four orientations (as is, mirrored, rotated 180
degrees, both), since a re-published photo is often flipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _grey(image: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)


def dhash(image: np.ndarray, size: int = 16) -> np.ndarray:
    """Difference hash: size*size bits, True where a pixel is brighter than its right neighbour."""
    small = _grey(image, size + 1, size)
    return (small[:, 1:] > small[:, :-1]).ravel()


def dct_hash(image: np.ndarray) -> np.ndarray:
    """DCT hash: 64 bits, the 8x8 lowest DCT coefficients of a 32x32 thumbnail above their median."""
    import cv2

    coeffs = cv2.dct(_grey(image, 32, 32))[:8, :8].ravel()
    return coeffs > np.median(coeffs[1:])


def orientations(image: np.ndarray) -> list[np.ndarray]:
    return [image, image[:, ::-1], image[::-1, ::-1], image[::-1, :]]


def distances(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise Hamming distances (n, n) of the difference and DCT hashes, minimised over orientations."""
    d = np.stack([np.stack([dhash(o) for o in orientations(im)]) for im in images])     # (n, 4, 256)
    p = np.stack([np.stack([dct_hash(o) for o in orientations(im)]) for im in images])  # (n, 4, 64)

    def pairwise(bits: np.ndarray) -> np.ndarray:
        plain = bits[:, 0].astype(np.int16)                                        # (n, B)
        turned = bits.astype(np.int16)                                             # (n, 4, B)
        # Hamming(a, b) = |a| + |b| - 2 a.b, against every orientation of b
        ones_a, ones_b = plain.sum(1), turned.sum(2)
        dots = np.einsum("ib,jkb->ijk", plain, turned)
        return (ones_a[:, None, None] + ones_b[None] - 2 * dots).min(axis=2)

    return pairwise(d), pairwise(p)


# Limits chosen from the distances of the shipped pool. Unrelated photos come no closer than 14 by the DCT hash;
# the difference hash is fooled by flat, dark or gradient photos (unrelated pairs at 30-50), so it only counts
# together with a DCT distance inside the review limit. benchmarks/synth/assets/near_duplicates.csv lists every
# pair within the review limits with its verdict (`python -m benchmarks.synth.photos --review-duplicates`).
DCT_LIMIT = 10
DHASH_LIMIT = 24
DCT_REVIEW = 16
DHASH_REVIEW = 50


def near_duplicate(dhash_distance: np.ndarray, dct_distance: np.ndarray) -> np.ndarray:
    """Whether pairs at these distances count as one scene (re-encode, mirror, small crop, burst frame)."""
    return (dct_distance <= DCT_LIMIT) | ((dhash_distance <= DHASH_LIMIT) & (dct_distance <= DCT_REVIEW))
