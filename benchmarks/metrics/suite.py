"""Metrics updated together from one prediction and computed together (torchmetrics' MetricCollection):
what the one evaluation loop (:mod:`benchmarks.evaluation.loop`) is fed, per kind of evaluation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from benchmarks.metrics.base import Metric
from benchmarks.metrics.image import ImageMetrics
from benchmarks.metrics.pixel import BestThresholdF1, PixelAUC, PixelMetrics

Inputs = Mapping[str, Any]  # mask (B,1,H,W) probabilities, truth, valid, score (B,), label (B,)


class MetricSuite:
    """Named metrics; :meth:`update` hands each the inputs it declares (``Metric.inputs``) and returns the
    per-image results (``f1``, ``iou``, ``manipulated``) of the first metric that gives them; :meth:`compute`
    merges every metric's numbers, in the order the metrics were given."""

    def __init__(self, metrics: Mapping[str, Metric]):
        self.metrics = dict(metrics)

    def update(self, inputs: Inputs) -> dict[str, torch.Tensor]:
        per_image: dict[str, torch.Tensor] = {}
        for metric in self.metrics.values():
            out = metric.update(*(inputs.get(name) for name in metric.inputs))
            if out and not per_image:
                per_image = out
        return per_image

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in self.metrics.values():
            out.update(metric.compute())
        return out


class SlicedSuite:
    """The same suite kept per slice of the items (``{name: selects(inputs) -> (B,) bool}``); numbers come
    back as ``<slice>/<metric>``. A slice no item of a batch belongs to is not updated by that batch."""

    def __init__(self, slices: Mapping[str, Callable[[Inputs], torch.Tensor]], make: Callable[[], MetricSuite]):
        self.slices = dict(slices)
        self.suites = {name: make() for name in self.slices}

    def update(self, inputs: Inputs) -> dict[str, torch.Tensor]:
        for name, select in self.slices.items():
            keep = select(inputs)
            if bool(keep.any()):
                self.suites[name].update({k: _take(v, keep) for k, v in inputs.items()})
        return {}

    def compute(self) -> dict[str, float]:
        return {f"{name}/{k}": v for name, suite in self.suites.items() for k, v in suite.compute().items()}


def _take(value: Any, keep: torch.Tensor) -> Any:
    if isinstance(value, torch.Tensor):
        return value[keep.to(value.device)]
    if isinstance(value, list):
        return [v for v, k in zip(value, keep.tolist()) if k]
    return value


def localization_suite(*, thresholds: bool = True, image_level: bool = False) -> MetricSuite:
    """The headline pixel metrics (per-image and pooled F1 / IoU at 0.5), with ``thresholds`` the oracle
    best-threshold F1 and the pooled pixel AUC, with ``image_level`` the image AUC / accuracy."""
    metrics: dict[str, Metric] = {"pixel": PixelMetrics()}
    if thresholds:
        metrics.update(best=BestThresholdF1(), auc=PixelAUC())
    if image_level:
        metrics["image"] = ImageMetrics()
    return MetricSuite(metrics)
