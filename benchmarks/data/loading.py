"""DataLoader helpers: padding collate for mixed sizes, and skip-and-count for long runs."""

from __future__ import annotations

from typing import Any

import torch
import torch.utils.data

from benchmarks.data.errors import DataError, SkipLog

SKIP = "_skip"


class SafeDataset(torch.utils.data.Dataset):
    """Wraps a dataset so a bad item becomes a skip marker instead of killing a worker.

    With ``on_error="raise"`` errors propagate unchanged (the message names the file). With ``"skip"`` the
    item comes back as ``{"_skip": reason, "id": ..., "error": ...}``; :func:`pad_collate` drops it from
    the batch and lists it under ``"skipped"``, so the runner logs and counts it in the main process.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, on_error: str = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.dataset, self.on_error = dataset, on_error

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return self.dataset[index]
        except DataError as exc:
            if self.on_error == "raise":
                raise
            records = getattr(self.dataset, "records", None) or getattr(self.dataset, "items", None)
            item_id = getattr(records[index], "id", str(index)) if records is not None else str(index)
            return {SKIP: exc.reason, "id": item_id, "error": str(exc)}


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


def record_skips(batch: dict[str, Any], skip_log: SkipLog) -> int:
    """Log and count the skip markers of a collated batch; returns how many."""
    for item in batch.get("skipped", []):
        skip_log.record(item["id"], DataError(item["error"], reason=item[SKIP]))
    return len(batch.get("skipped", []))
