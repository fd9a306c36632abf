"""Image-level detection metrics for models that give a manipulation score."""

from __future__ import annotations

import torch

from benchmarks.metrics.base import Metric


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula with tied ranks averaged; NaN with one class only."""
    scores, labels = scores.double().flatten(), labels.bool().flatten()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # average the ranks of tied scores
    uniq, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks[order] = mean_rank[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class ImageMetrics(Metric):
    """Image-level ``image_auc`` and ``image_acc`` (probability >= threshold means manipulated)."""

    inputs = ("score", "label")

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = threshold
        self.add_state("scores", [], "cat")
        self.add_state("labels", [], "cat")

    @torch.no_grad()
    def update(self, prob: torch.Tensor, label: torch.Tensor) -> None:
        self.scores.append(prob.detach().flatten().double())
        self.labels.append(label.detach().flatten().to(prob.device).double())

    def compute(self) -> dict[str, float]:
        s = self.synced_states()
        scores, labels = s["scores"], s["labels"]
        if scores.numel() == 0:
            return {"image_auc": float("nan"), "image_acc": float("nan"), "n_images": 0}
        acc = float(((scores >= self.threshold) == labels.bool()).double().mean())
        return {"image_auc": roc_auc(scores, labels), "image_acc": acc, "n_images": int(scores.numel())}
