"""Metrics that accumulate over batches and processes (torchmetrics-style ``update`` / ``compute``).

Every reported number names its averaging in its key (docs/design.md, "Metrics"):

- ``f1_per_image`` / ``iou_per_image``: headline, threshold 0.5, mean over manipulated images;
- ``f1_pooled`` / ``iou_pooled``: one confusion matrix over every valid pixel of manipulated images;
- ``f1_best_thr_oracle``: the dataset-level threshold that maximizes mean per-image F1 (an oracle; never
  the headline) and that threshold;
- ``pixel_auc_pooled``: ROC AUC over every valid pixel of the dataset, from fixed-bin histograms;
- ``image_auc`` / ``image_acc``: image-level detection, for models that give a score.
"""

from benchmarks.metrics.base import Metric
from benchmarks.metrics.image import ImageMetrics
from benchmarks.metrics.pixel import BestThresholdF1, PixelAUC, PixelMetrics

__all__ = ["BestThresholdF1", "ImageMetrics", "Metric", "PixelAUC", "PixelMetrics"]
