"""The Sample contract (see docs/design.md), documented once and checked in one place.

A sample is a plain dict:

- ``image``  float32 tensor (3, H, W) in [0, 1], the (possibly edited) RGB image;
- ``mask``   float32 tensor (1, H, W) in {0, 1}; all zeros for an authentic image;
- ``valid``  bool tensor (1, H, W); False on padding added by a transform;
- ``label``  int, 1 = manipulated, 0 = authentic;
- ``id``, ``dataset`` strings, plus any provenance keys (``source``, ``geometry``, ...).

Pairs (editing corpora, generator benchmarks) add ``original`` (3, H, W) and ``instruction`` (str).
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.data.errors import DataError

SAMPLE_KEYS = ("image", "mask", "valid", "label", "id", "dataset")
PAIR_KEYS = ("original", "instruction")


def validate_sample(sample: dict[str, Any], *, pair: bool = False) -> dict[str, Any]:
    """Check a sample against the contract; return it unchanged or raise DataError naming the key."""
    need = SAMPLE_KEYS + (PAIR_KEYS if pair else ())
    missing = [k for k in need if k not in sample]
    if missing:
        raise DataError(f"sample {sample.get('id', '?')!r} lacks keys {missing}; a sample needs {list(need)}")
    image, mask, valid = sample["image"], sample["mask"], sample["valid"]
    sid = sample["id"]
    if not (isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] == 3):
        raise DataError(f"sample {sid!r}: 'image' must be a (3,H,W) tensor, got {_shape(image)}")
    if image.dtype != torch.float32 or float(image.min()) < 0.0 or float(image.max()) > 1.0:
        raise DataError(f"sample {sid!r}: 'image' must be float32 in [0,1], got {image.dtype}")
    hw = tuple(image.shape[1:])
    for key, tensor in (("mask", mask), ("valid", valid)):
        if not (isinstance(tensor, torch.Tensor) and tensor.ndim == 3 and tensor.shape[0] == 1):
            raise DataError(f"sample {sid!r}: {key!r} must be a (1,H,W) tensor, got {_shape(tensor)}")
        if tuple(tensor.shape[1:]) != hw:
            raise DataError(f"sample {sid!r}: {key!r} is {tuple(tensor.shape[1:])} but 'image' is {hw}")
    if valid.dtype != torch.bool:
        raise DataError(f"sample {sid!r}: 'valid' must be bool, got {valid.dtype}")
    if not torch.all((mask == 0) | (mask == 1)):
        raise DataError(f"sample {sid!r}: 'mask' must hold only 0 and 1")
    if int(sample["label"]) not in (0, 1):
        raise DataError(f"sample {sid!r}: 'label' must be 0 or 1, got {sample['label']!r}")
    if pair:
        original = sample["original"]
        if not (isinstance(original, torch.Tensor) and tuple(original.shape) == tuple(image.shape)):
            raise DataError(f"sample {sid!r}: 'original' must match 'image' {tuple(image.shape)}, got {_shape(original)}")
        if not isinstance(sample["instruction"], str):
            raise DataError(f"sample {sid!r}: 'instruction' must be a string, got {type(sample['instruction']).__name__}")
    return sample


def _shape(x: Any) -> str:
    return str(tuple(x.shape)) if hasattr(x, "shape") else type(x).__name__
