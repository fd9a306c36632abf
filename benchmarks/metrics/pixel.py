"""Pixel-level localization metrics (definitions in DESIGN.md; keys name their averaging)."""

from __future__ import annotations

import torch

from benchmarks.metrics.base import Metric


def _prepare(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if pred.ndim == 3:
        pred, target = pred[:, None], target[:, None]
        valid = None if valid is None else valid[:, None]
    if pred.ndim != 4 or pred.shape[1] != 1:
        raise ValueError(f"expected (B,1,H,W) soft masks, got {tuple(pred.shape)}")
    if valid is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    elif valid.shape != target.shape:
        raise ValueError(f"valid {tuple(valid.shape)} must match target {tuple(target.shape)}")
    b = pred.shape[0]
    return pred.reshape(b, -1).float(), target.reshape(b, -1) > 0.5, valid.reshape(b, -1).bool()


class PixelMetrics(Metric):
    """Per-image and pooled F1 / IoU at a fixed threshold, and the oracle best-threshold F1.

    A pixel is predicted "edited" when ``pred >= threshold``. Only ``valid`` pixels count. Images whose
    valid ground truth is all zero (authentic) are excluded from every pixel F1/IoU and counted in
    ``n_excluded_empty_gt``; a manipulated image with an empty prediction scores F1 = IoU = 0.

    The oracle threshold curve uses ``bins`` fixed thresholds ``k / bins`` (constant memory); its value at
    ``threshold`` equals ``f1_per_image`` when ``threshold * bins`` is an integer.
    """

    def __init__(self, threshold: float = 0.5, bins: int = 100):
        super().__init__()
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = float(threshold)
        self.bins = int(bins)
        zero = torch.zeros((), dtype=torch.float64)
        self.add_state("f1_sum", zero, "sum")
        self.add_state("iou_sum", zero, "sum")
        self.add_state("n_images", zero, "sum")
        self.add_state("n_excluded", zero, "sum")
        self.add_state("confusion", torch.zeros(3, dtype=torch.float64), "sum")  # pooled tp, fp, fn
        self.add_state("f1_curve", torch.zeros(self.bins, dtype=torch.float64), "sum")

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Accumulate a batch; returns per-image ``f1``, ``iou`` (NaN for excluded images) and ``manipulated``."""
        p, t, v = _prepare(pred, target, valid)
        pos = (p >= self.threshold) & v
        t = t & v
        tp = (pos & t).sum(1).double()
        fp = (pos & ~t).sum(1).double()
        fn = (~pos & t).sum(1).double()
        manipulated = (tp + fn) > 0
        f1 = torch.where(manipulated, 2 * tp / (2 * tp + fp + fn).clamp_min(1), torch.full_like(tp, float("nan")))
        iou = torch.where(manipulated, tp / (tp + fp + fn).clamp_min(1), torch.full_like(tp, float("nan")))
        m = manipulated
        self._to("f1_sum", tp).add_(f1[m].sum())
        self._to("iou_sum", tp).add_(iou[m].sum())
        self._to("n_images", tp).add_(m.sum())
        self._to("n_excluded", tp).add_((~m).sum())
        self._to("confusion", tp).add_(torch.stack([tp[m].sum(), fp[m].sum(), fn[m].sum()]))
        if m.any():
            self._to("f1_curve", tp).add_(self._f1_curve(p[m], t[m], v[m]).sum(0))
        return {"f1": f1.float(), "iou": iou.float(), "manipulated": manipulated}

    def _f1_curve(self, p: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Per-image F1 at thresholds k / bins, k = 0..bins-1, from per-image score histograms."""
        b, k = p.shape[0], self.bins
        idx = (p * k).floor().clamp_(0, k - 1).long()   # pred >= k'/bins  <=>  idx >= k'
        flat = (torch.arange(b, device=p.device)[:, None] * 2 + t.long()) * k + idx
        hist = torch.bincount(flat[v], minlength=b * 2 * k).reshape(b, 2, k).double()
        above = hist.flip(-1).cumsum(-1).flip(-1)         # pixels with score bin >= k'
        tp, fp = above[:, 1], above[:, 0]
        positives = hist[:, 1].sum(-1, keepdim=True)
        return 2 * tp / (tp + fp + positives).clamp_min(1)

    def compute(self) -> dict[str, float]:
        s = self.synced_states()
        n = float(s["n_images"])
        tp, fp, fn = (float(x) for x in s["confusion"])
        out = {
            "f1_per_image": float(s["f1_sum"]) / n if n else float("nan"),
            "iou_per_image": float(s["iou_sum"]) / n if n else float("nan"),
            "f1_pooled": 2 * tp / (2 * tp + fp + fn) if (tp + fn) else float("nan"),
            "iou_pooled": tp / (tp + fp + fn) if (tp + fn) else float("nan"),
            "n_manipulated": int(n),
            "n_excluded_empty_gt": int(s["n_excluded"]),
        }
        if n:
            curve = s["f1_curve"] / n
            best = int(torch.argmax(curve))
            out["f1_best_thr_oracle"] = float(curve[best])
            out["best_thr_oracle"] = best / self.bins
        else:
            out["f1_best_thr_oracle"], out["best_thr_oracle"] = float("nan"), float("nan")
        return out


class PixelAUC(Metric):
    """Pooled pixel ROC AUC over the valid pixels of manipulated images, in constant memory.

    Scores are binned into ``bins`` equal-width bins on [0, 1]; pixels in one bin count as tied, which is
    exactly scikit-learn's ROC AUC on scores quantized to those bins (tested), and within 1 / bins of it
    on continuous scores.
    """

    def __init__(self, bins: int = 1000):
        super().__init__()
        self.bins = int(bins)
        self.add_state("hist", torch.zeros(2, self.bins, dtype=torch.float64), "sum")

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        p, t, v = _prepare(pred, target, valid)
        keep = ((t & v).any(1))[:, None] & v          # manipulated images only, valid pixels only
        idx = (p[keep].clamp(0, 1) * self.bins).floor().clamp_(0, self.bins - 1).long()
        flat = t[keep].long() * self.bins + idx
        self._to("hist", p).add_(torch.bincount(flat, minlength=2 * self.bins).reshape(2, self.bins).double())

    def compute(self) -> dict[str, float]:
        hist = self.synced_states()["hist"]
        neg, pos = hist[0].flip(0), hist[1].flip(0)          # from the highest score bin down
        if pos.sum() == 0 or neg.sum() == 0:
            return {"pixel_auc_pooled": float("nan")}
        tpr = torch.cat([torch.zeros(1, dtype=hist.dtype), pos.cumsum(0) / pos.sum()])
        fpr = torch.cat([torch.zeros(1, dtype=hist.dtype), neg.cumsum(0) / neg.sum()])
        return {"pixel_auc_pooled": float(torch.trapezoid(tpr, fpr))}
