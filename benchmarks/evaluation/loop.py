"""The one evaluation loop: batches in, a predict function, a metric suite, numbers out.

Every scored number of the harness goes through :func:`evaluate`: generators against ground truth
(``bench eval-generators``, the ablation baselines), trained detectors on test sets (``bench
eval-detector``, ``bench run``), the validation that picks a detector's checkpoint, SIGMA's ablation
rows and the mask quality of an annotated corpus. What differs between them is only the predict function,
the suite and what a caller collects per batch (``on_batch``).

A batch is a dict with ``mask`` (B,1,H,W truth) and, where the data has them, ``valid``, ``label``, ``id``
and the model's inputs; ``skipped`` lists the loader's skip markers. The loop moves the truth to the
prediction's device, so metrics accumulate where the predictions are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from benchmarks.data.errors import DataError, SkipLog
from benchmarks.data.loading import take_skips
from benchmarks.metrics.suite import MetricSuite, SlicedSuite

Batch = dict[str, Any]


@dataclass
class Prediction:
    """What a model says about a batch: per-pixel probabilities (B,1,H,W) and, for detectors, an image score."""

    mask: torch.Tensor
    score: torch.Tensor | None = None


Predict = Callable[[Batch], Prediction]
Screen = Callable[[Batch], list[tuple[int, DataError]]]  # items a model cannot take: (position, why)
OnBatch = Callable[[Batch, Prediction, dict[str, torch.Tensor]], None]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    items: int = 0                                              # items scored
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason) of every item left out


def evaluate(batches: Iterable[Batch], predict: Predict, suite: MetricSuite | SlicedSuite, *,
             on_error: str = "raise", skip_log: SkipLog | None = None, hint: str = "", screen: Screen | None = None,
             on_batch: OnBatch | None = None, desc: str | None = None, progress: bool = False) -> EvalResult:
    """Score `predict` on `batches` with `suite`.

    Items the loader could not read (skip markers) and items `screen` rules out for this model are left
    out and recorded in `skip_log` with ``on_error="skip"``; with ``"raise"`` the first of them stops the
    loop with a :class:`DataError` naming it and ending with `hint` (how to skip instead). `on_batch`
    sees each scored batch with its prediction and the suite's per-image results (rows, figures, sweeps).
    """
    skipped: list[tuple[str, str]] = []
    items = 0
    for batch in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
        skipped += [(m["id"], m["_skip"]) for m in batch.get("skipped", [])]
        take_skips(batch, skip_log, on_error, hint)
        if "mask" not in batch:  # every item of the batch was skipped
            continue
        if screen is not None:
            batch, ruled_out = _screened(batch, screen(batch))
            for item_id, error in ruled_out:
                if on_error == "raise":
                    raise DataError(f"{item_id}: {error}{f' ({hint})' if hint else ''}", path=error.path,
                                    reason=error.reason)
                skipped.append((item_id, error.reason))
                if skip_log is not None:
                    skip_log.record(item_id, error)
            if batch is None:
                continue
        prediction = predict(batch)
        device = prediction.mask.device
        inputs = {"mask": prediction.mask, "score": prediction.score,
                  **{key: _to(batch.get(name), device) for key, name in (("truth", "mask"), ("valid", "valid"),
                                                                         ("label", "label"))},
                  **{k: v for k, v in batch.items() if k not in ("mask", "valid", "label", "skipped")}}
        per_image = suite.update(inputs)
        items += int(prediction.mask.shape[0])
        if on_batch is not None:
            on_batch(batch, prediction, per_image)
    return EvalResult(suite.compute(), items, skipped)


def valid_extent(valid: torch.Tensor) -> tuple[int, int]:
    """(h, w) of a sample's valid region (1,H,W): collate and geometry pad bottom/right, so it is top-left."""
    v = valid[0]
    return int(v.any(1).sum()), int(v.any(0).sum())


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _screened(batch: Batch, ruled_out: list[tuple[int, DataError]]) -> tuple[Batch | None, list[tuple[str, DataError]]]:
    """The batch without the ruled-out positions (None when none is left), and their (id, error)."""
    if not ruled_out:
        return batch, []
    drop = {i for i, _ in ruled_out}
    n = len(batch["id"])
    keep = [i for i in range(n) if i not in drop]
    named = [(batch["id"][i], error) for i, error in ruled_out]
    if not keep:
        return None, named
    index = torch.tensor(keep)
    out: Batch = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == n:
            out[key] = value.index_select(0, index)
        elif isinstance(value, list) and len(value) == n:
            out[key] = [value[i] for i in keep]
        else:
            out[key] = value
    return out, named
