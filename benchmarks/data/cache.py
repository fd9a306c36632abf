"""A training list decoded once per run: every item's image, mask and valid plane after the deterministic
part of its geometry (:meth:`benchmarks.data.transforms.SampleTransform.fixed`), kept as uint8, so an
epoch costs a flip and a cast per item instead of a JPEG decode and a resize.

Where the bytes live (``train.cache``):

- ``memory``: numpy arrays in this process;
- ``mmap``: two flat files (``images.u8``: RGB bytes; ``planes.u8``: bit 0 mask, bit 1 valid) and an index
  in a folder keyed by the items and the geometry, built once (by rank 0 under torchrun; the others wait)
  and memory-mapped read-only, so the page cache, not the process, holds them and several runs share one
  copy;
- ``auto``: ``memory`` when the estimate (:func:`estimate_bytes`) fits ``train.cache_memory_mb``, else
  ``mmap``;
- ``off``: decode every item every epoch (the loader's workers do it).

A cached sample equals the uncached one bit for bit (same arrays, same per-epoch random draws), so the
choice is not part of a run's key. A bad item (a :class:`DataError` while decoding) is kept as its error
and comes back as the loader's skip marker when its batch is drawn, as without the cache: ``on_error``
raises or counts it at the same point of the run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from benchmarks.data.errors import DataError
from benchmarks.data.iml import ImlItem, load_item
from benchmarks.data.loading import check_on_error, skip_marker
from benchmarks.data.transforms import Geometry, SampleTransform

log = logging.getLogger(__name__)

CACHE_MODES = ("auto", "memory", "mmap", "off")
MASK_BIT, VALID_BIT = 1, 2
FORMAT = 1


def check_cache_mode(value: str, key: str = "train.cache") -> str:
    if value not in CACHE_MODES:
        raise ValueError(f"{key} must be one of {CACHE_MODES}, got {value!r}")
    return value


def estimate_bytes(items: list[ImlItem], geometry: Geometry) -> int:
    """Bytes the cache of `items` takes: 4 per pixel (RGB + one plane) at the cached size; for native-size
    geometries (crop, none) the first readable item's size stands for every item."""
    if geometry.mode in ("resize", "pad"):
        return len(items) * int(geometry.size) ** 2 * 4
    for item in items[:8]:
        try:
            h, w = load_item(item)["image"].shape[:2]
        except DataError:
            continue
        return len(items) * h * w * 4
    return 0


def choose_mode(mode: str, items: list[ImlItem], geometry: Geometry, memory_mb: float) -> str:
    """`mode` with ``auto`` resolved by the size rule; ``memory`` over the limit is an error naming the fix."""
    check_cache_mode(mode)
    if mode in ("off", "mmap"):
        return mode
    need_mb = estimate_bytes(items, geometry) / 2**20
    if need_mb <= memory_mb:
        return "memory"
    if mode == "memory":
        raise ValueError(f"train.cache=memory: the decoded training list needs about {need_mb:.0f} MB, over "
                         f"train.cache_memory_mb={memory_mb:g}; use train.cache=mmap (or auto), or raise the limit")
    log.info("decoded cache: about %.0f MB, over train.cache_memory_mb=%g; memory-mapped on disk", need_mb, memory_mb)
    return "mmap"


class _Decode(torch.utils.data.Dataset):
    """One item decoded and put through the fixed part of its geometry, or the error it raised."""

    def __init__(self, items: list[ImlItem], transform: SampleTransform):
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        try:
            arrays = load_item(self.items[index])
        except DataError as exc:
            return index, {"error": str(exc), "reason": exc.reason, "path": exc.path}
        resized = arrays.pop("mask_resized")
        arrays = self.transform.fixed(arrays)
        planes = arrays["mask"].astype(np.uint8) * MASK_BIT | arrays["valid"].astype(np.uint8) * VALID_BIT
        return index, {"image": np.ascontiguousarray(arrays["image"]), "planes": planes, "resized": resized}


def _decoded(items: list[ImlItem], transform: SampleTransform, workers: int):
    """(index, record) for every item in order, decoded by `workers` loader processes."""
    loader = torch.utils.data.DataLoader(_Decode(items, transform), batch_size=None, num_workers=workers,
                                         collate_fn=_as_is)
    yield from loader


def _as_is(record: Any) -> Any:
    return record


class DecodedCache:
    """The decoded items (see the module); ``get(index)`` gives uint8 ``image`` (H,W,3), bool ``mask`` and
    ``valid`` (H,W) and ``mask_resized``, or raises the item's :class:`DataError`."""

    def __init__(self, shapes: np.ndarray, offsets: np.ndarray, images: np.ndarray, planes: np.ndarray,
                 errors: dict[int, dict[str, Any]], resized: np.ndarray, mode: str):
        self.shapes, self.offsets, self.images, self.planes = shapes, offsets, images, planes
        self.errors, self.resized, self.mode = errors, resized, mode

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes + self.planes.nbytes)

    def get(self, index: int) -> dict[str, Any]:
        if index in self.errors:
            e = self.errors[index]
            raise DataError(e["error"], path=e["path"], reason=e["reason"])
        h, w = (int(v) for v in self.shapes[index])
        start = int(self.offsets[index])
        image = np.array(self.images[3 * start:3 * (start + h * w)]).reshape(h, w, 3)
        planes = np.asarray(self.planes[start:start + h * w]).reshape(h, w)
        return {"image": image, "mask": (planes & MASK_BIT) > 0, "valid": (planes & VALID_BIT) > 0,
                "mask_resized": bool(self.resized[index])}

    # ------------------------------------------------------------------ building

    @classmethod
    def in_memory(cls, items: list[ImlItem], transform: SampleTransform, workers: int = 0) -> DecodedCache:
        records: list[Any] = [None] * len(items)
        for index, record in _decoded(items, transform, workers):
            records[index] = record
        return cls._pack(records, "memory")

    @classmethod
    def _pack(cls, records: list[dict[str, Any]], mode: str) -> DecodedCache:
        shapes = np.zeros((len(records), 2), dtype=np.int64)
        errors, resized = {}, np.zeros(len(records), dtype=bool)
        for i, r in enumerate(records):
            if "error" in r:
                errors[i] = r
            else:
                shapes[i] = r["planes"].shape
                resized[i] = r["resized"]
        offsets = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])]).astype(np.int64)
        images = np.empty(int(offsets[-1]) * 3, dtype=np.uint8)
        planes = np.empty(int(offsets[-1]), dtype=np.uint8)
        for i, r in enumerate(records):
            if i not in errors:
                images[3 * offsets[i]:3 * offsets[i + 1]] = r["image"].reshape(-1)
                planes[offsets[i]:offsets[i + 1]] = r["planes"].reshape(-1)
        return cls(shapes, offsets[:-1], images, planes, errors, resized, mode)

    @classmethod
    def on_disk(cls, items: list[ImlItem], transform: SampleTransform, folder: Path, workers: int = 0,
                build: bool = True) -> DecodedCache:
        """Memory-map `folder` (built first when `build` and it is not complete; a rank that is not rank 0
        passes ``build=False`` after a barrier)."""
        folder = Path(folder)
        if build and not (folder / "index.json").is_file():
            _write_disk(items, transform, folder, workers)
        index_path = folder / "index.json"
        if not index_path.is_file():
            raise FileNotFoundError(f"{folder}: the decoded cache is not built (no index.json)")
        index = json.loads(index_path.read_text())
        if index.get("format") != FORMAT or index.get("n") != len(items):
            raise ValueError(f"{folder}: a decoded cache of another format or list ({index.get('n')} items, "
                             f"{len(items)} asked for); delete the folder to rebuild it")
        shapes = np.asarray(index["shapes"], dtype=np.int64).reshape(-1, 2)
        offsets = np.asarray(index["offsets"], dtype=np.int64)
        total = int(index["pixels"])
        images = np.memmap(folder / "images.u8", dtype=np.uint8, mode="r", shape=(max(1, 3 * total),))
        planes = np.memmap(folder / "planes.u8", dtype=np.uint8, mode="r", shape=(max(1, total),))
        errors = {int(k): v for k, v in index["errors"].items()}
        return cls(shapes, offsets, images, planes, errors, np.asarray(index["resized"], dtype=bool), "mmap")


def _write_disk(items: list[ImlItem], transform: SampleTransform, folder: Path, workers: int) -> None:
    """Stream every decoded item into a temporary folder, then rename it into place (a kill leaves no torn
    cache: an unfinished build is redone)."""
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shapes, offsets, resized, errors, pixels = [], [], [], {}, 0
    with open(tmp / "images.u8", "wb") as fi, open(tmp / "planes.u8", "wb") as fp:
        for index, r in _decoded(items, transform, workers):  # in index order
            if "error" in r:
                errors[str(index)] = r
                shapes.append((0, 0))
                resized.append(False)
            else:
                fi.write(r["image"].tobytes())
                fp.write(r["planes"].tobytes())
                shapes.append(r["planes"].shape)
                resized.append(bool(r["resized"]))
            offsets.append(pixels)
            pixels += shapes[-1][0] * shapes[-1][1]
        if pixels == 0:  # np.memmap cannot map an empty file
            fi.write(b"\0\0\0")
            fp.write(b"\0")
    (tmp / "index.json").write_text(json.dumps({"format": FORMAT, "n": len(items), "pixels": pixels,
                                                "shapes": [list(s) for s in shapes], "offsets": offsets,
                                                "resized": resized, "errors": errors,
                                                "ids": [it.id for it in items[:5]]}))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


class CachedSamples(torch.utils.data.Dataset):
    """:class:`benchmarks.data.loading.EpochSamples` over a :class:`DecodedCache`: the same samples (keyed
    by ``(epoch, index)``), the same skip markers, no decoding after the first pass."""

    def __init__(self, items: list[ImlItem], transform: SampleTransform, cache: DecodedCache, *, name: str,
                 on_error: str = "raise"):
        self.items, self.transform, self.cache, self.name = list(items), transform, cache, name
        self.on_error = check_on_error(on_error, "train.on_error")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        item = self.items[index]
        try:
            arrays = self.cache.get(index)
        except DataError as exc:
            return skip_marker(item.id, exc)
        resized = arrays.pop("mask_resized")
        sample = self.transform.draw(arrays, index, epoch)
        sample.update(id=item.id, dataset=self.name, label=item.label, source=str(item.image), mask_resized=resized)
        return sample
