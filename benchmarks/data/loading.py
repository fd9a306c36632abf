"""DataLoader helpers: dataset wrappers that turn a bad item into a skip marker, the padding collate for
mixed sizes, and the main-process side that records those markers or stops at the first one.

Why markers, also under ``on_error="raise"``: an exception raised inside a DataLoader worker reaches the
user as a long worker traceback, and with several workers it names whichever bad item a worker met first,
not the first bad item of the data. A marker travels with its batch instead, so the main process sees the
items in order and raises one short error that names the file (:func:`take_skips`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.utils.data

from benchmarks.data.errors import DataError, SkipLog
from benchmarks.data.iml import ImlDataset, ImlItem, load_item
from benchmarks.data.transforms import Geometry

SKIP = "_skip"
ON_ERROR = ("raise", "skip")


def check_on_error(value: str, key: str = "on_error") -> str:
    """`value` when it is raise or skip; else an error naming `key`."""
    if value not in ON_ERROR:
        raise ValueError(f"{key} must be 'raise' or 'skip', got {value!r}")
    return value


def skip_marker(item_id: str, error: DataError) -> dict[str, Any]:
    """What a wrapper returns in place of a sample it could not load."""
    return {SKIP: error.reason, "id": item_id, "error": str(error), "path": error.path}


class SafeDataset(torch.utils.data.Dataset):
    """Wraps a map-style dataset so a bad item (a :class:`DataError`) becomes a skip marker that
    :func:`pad_collate` lists under ``"skipped"``; the main process then skips or raises
    (:func:`take_skips`) according to ``on_error``."""

    def __init__(self, dataset: torch.utils.data.Dataset, on_error: str = "raise"):
        self.dataset, self.on_error = dataset, check_on_error(on_error)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return self.dataset[index]
        except DataError as exc:
            records = getattr(self.dataset, "records", None) or getattr(self.dataset, "items", None)
            item_id = getattr(records[index], "id", str(index)) if records is not None else str(index)
            return skip_marker(item_id, exc)


class EpochSamples(torch.utils.data.Dataset):
    """IML Samples keyed by ``(epoch, index)`` (see :class:`detectors.sampling.EpochBatchSampler`):
    train-time flips change with the epoch yet replay exactly on resume, in any worker. A bad item becomes
    a skip marker (see :class:`SafeDataset`)."""

    def __init__(self, items: list[ImlItem], geometry: Geometry, *, name: str, train: bool, seed: int,
                 on_error: str = "raise"):
        self.base = ImlDataset(items, geometry, name=name, train=train, seed=seed)
        self.on_error = check_on_error(on_error, "train.on_error")

    def __len__(self) -> int:
        return len(self.base)

    @property
    def items(self) -> list[ImlItem]:
        return self.base.items

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        item = self.base.items[index]
        try:
            arrays = load_item(item)
        except DataError as exc:
            return skip_marker(item.id, exc)
        resized = arrays.pop("mask_resized")
        sample = self.base.transform(arrays, index, epoch)
        sample.update(id=item.id, dataset=self.base.name, label=item.label, source=str(item.image),
                      mask_resized=resized)
        return sample


def pad_collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples, padding tensors bottom/right to the largest H, W in the batch (``valid`` False there).

    Non-tensor values become lists. Skip markers are removed and listed under ``"skipped"``.
    """
    skipped = [s for s in samples if SKIP in s]
    samples = [s for s in samples if SKIP not in s]
    batch: dict[str, Any] = {"skipped": skipped}
    if not samples:
        return batch
    h = max(s["image"].shape[-2] for s in samples)
    w = max(s["image"].shape[-1] for s in samples)
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor) and values[0].ndim == 3:
            padded = [torch.nn.functional.pad(v, (0, w - v.shape[-1], 0, h - v.shape[-2])) for v in values]
            batch[key] = torch.stack(padded)  # bool `valid` pads with False, images/masks with 0
        elif isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (int, float, bool)) and not isinstance(values[0], str):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch


def take_skips(batch: dict[str, Any], skip_log: SkipLog | None, on_error: str = "skip", hint: str = "") -> int:
    """The main-process side of skip markers: with ``on_error="skip"`` log and count them (in `skip_log`
    when given) and return how many; with ``"raise"`` raise the first one as a :class:`DataError` whose
    message names the item and its file, plus `hint` (how to skip instead)."""
    markers = batch.get("skipped", [])
    if markers and on_error == "raise":
        first = markers[0]
        raise DataError(f"{first['id']}: {first['error']}{f' ({hint})' if hint else ''}", path=first.get("path"),
                        reason=first[SKIP])
    if skip_log is not None:
        for item in markers:
            skip_log.record(item["id"], DataError(item["error"], path=item.get("path"), reason=item[SKIP]))
    return len(markers)


def record_skips(batch: dict[str, Any], skip_log: SkipLog) -> int:
    """Log and count the skip markers of a collated batch; returns how many."""
    return take_skips(batch, skip_log, "skip")
