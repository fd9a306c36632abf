"""False positives on pairs with nothing to find (the editor round trip only, empty masks).

On such pairs every marked pixel is a false positive, so the metric needs no ground truth beyond "empty":

- ``fp_rate_pooled``: marked valid pixels / all valid pixels, pooled over the dataset;
- ``fp_rate_per_image``: the same fraction per image, averaged over images;
- ``images_with_fp``: the share of images with at least one marked pixel.

A pixel is marked when the soft mask is >= ``threshold`` (0.5, the contract's decision point).
"""

from __future__ import annotations

import torch

from benchmarks.metrics.base import Metric, check_threshold


class FalsePositiveRate(Metric):
    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = check_threshold(threshold)
        zero = torch.zeros((), dtype=torch.float64)
        for name in ("marked", "pixels", "rate_sum", "n_images", "n_with_fp"):
            self.add_state(name, zero, "sum")

    @torch.no_grad()
    def update(self, pred: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Accumulate (B,1,H,W) soft masks; returns the per-image marked fraction (B,)."""
        if pred.ndim != 4 or pred.shape[1] != 1:
            raise ValueError(f"expected (B,1,H,W) soft masks, got {tuple(pred.shape)}")
        if valid is not None and valid.shape != pred.shape:
            raise ValueError(f"valid {tuple(valid.shape)} must match the masks {tuple(pred.shape)}")
        marked = pred.detach() >= self.threshold
        v = torch.ones_like(marked) if valid is None else valid.to(marked.device).bool()
        marked = (marked & v).flatten(1).sum(1).double()
        pixels = v.flatten(1).sum(1).double()
        rate = marked / pixels.clamp_min(1)
        self._to("marked", rate).add_(marked.sum())
        self._to("pixels", rate).add_(pixels.sum())
        self._to("rate_sum", rate).add_(rate.sum())
        self._to("n_images", rate).add_(rate.numel())
        self._to("n_with_fp", rate).add_((marked > 0).sum())
        return rate.float()

    def compute(self) -> dict[str, float]:
        s = self.synced_states()
        n = float(s["n_images"])
        nan = float("nan")
        return {"fp_rate_pooled": float(s["marked"]) / float(s["pixels"]) if float(s["pixels"]) else nan,
                "fp_rate_per_image": float(s["rate_sum"]) / n if n else nan,
                "images_with_fp": float(s["n_with_fp"]) / n if n else nan,
                "n_images": int(n)}
