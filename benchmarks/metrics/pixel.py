"""Pixel-level localization metrics (definitions in docs/design.md; keys name their averaging).

The per-pixel work runs in NumPy for CPU tensors (its counting and histogram kernels are several times
faster than torch's bool reductions on CPU) and in torch for tensors on an accelerator; both paths give
identical counts. States stay on the device of the data.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.metrics.base import Metric, check_threshold


def _numpy_path(x: torch.Tensor) -> bool:
    return x.device.type == "cpu"


def _prepare(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None):
    """Flatten to (B, N): float scores, bool truth restricted to valid, bool valid (None when all valid)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if pred.ndim == 3:
        pred, target = pred[:, None], target[:, None]
        valid = None if valid is None else valid[:, None]
    if pred.ndim != 4 or pred.shape[1] != 1:
        raise ValueError(f"expected (B,1,H,W) soft masks, got {tuple(pred.shape)}")
    if valid is not None and valid.shape != target.shape:
        raise ValueError(f"valid {tuple(valid.shape)} must match target {tuple(target.shape)}")
    b = pred.shape[0]
    p = pred.detach().reshape(b, -1).float()
    t = target.detach().reshape(b, -1)
    if _numpy_path(p):  # torch's CPU bool ops are slow; NumPy's are not (same results)
        tn = t.numpy()
        tn = tn if tn.dtype == bool else tn > 0.5
        vn = None if valid is None else valid.detach().reshape(b, -1).numpy().astype(bool, copy=False)
        if vn is not None and vn.all():
            vn = None
        if vn is not None:
            tn = tn & vn
        return p, torch.from_numpy(tn), None if vn is None else torch.from_numpy(vn)
    t = t if t.dtype == torch.bool else t > 0.5
    v = None if valid is None else valid.detach().reshape(b, -1).bool()
    if v is not None and bool(v.all()):
        v = None
    if v is not None:
        t = t & v
    return p, t, v


def _rows(fn, *arrays: np.ndarray) -> np.ndarray:
    return np.fromiter((fn(*row) for row in zip(*arrays)), dtype=np.int64, count=len(arrays[0]))


def confusion_counts(p: torch.Tensor, t: torch.Tensor, v: torch.Tensor | None, threshold: float) -> torch.Tensor:
    """Per-image (tp, predicted positives, true positives) as a (B, 3) int64 tensor on p's device."""
    if _numpy_path(p):
        pos = p.numpy() >= threshold
        if v is not None:
            pos &= v.numpy()
        tn = t.numpy()
        both = pos & tn
        counts = np.stack([_rows(np.count_nonzero, both), _rows(np.count_nonzero, pos), _rows(np.count_nonzero, tn)], 1)
        return torch.from_numpy(counts)
    pos = p >= threshold
    if v is not None:
        pos = pos & v
    return torch.stack([(pos & t).sum(1), pos.sum(1), t.sum(1)], 1)


def score_histograms(p: torch.Tensor, t: torch.Tensor, v: torch.Tensor | None, bins: int) -> torch.Tensor:
    """Per-image histograms of scores in ``bins`` equal bins on [0,1], split by truth: (B, 2, bins) float64.

    Bin k holds scores in [k/bins, (k+1)/bins) (1.0 goes to the last bin), so "score >= k/bins" is
    exactly "bin >= k".
    """
    b = p.shape[0]
    if _numpy_path(p):
        idx = np.minimum((np.clip(p.numpy(), 0.0, 1.0) * bins).astype(np.int64), bins - 1)
        idx += t.numpy().astype(np.int64) * bins
        vn = None if v is None else v.numpy()
        hist = np.stack([np.bincount(idx[i] if vn is None else idx[i][vn[i]], minlength=2 * bins) for i in range(b)])
        return torch.from_numpy(hist.reshape(b, 2, bins).astype(np.float64))
    idx = (p.clamp(0, 1) * bins).floor().clamp_(max=bins - 1).long() + t.long() * bins
    idx = idx + torch.arange(b, device=p.device)[:, None] * (2 * bins)
    flat = idx if v is None else idx[v]
    return torch.bincount(flat.flatten(), minlength=b * 2 * bins).reshape(b, 2, bins).double()


class PixelMetrics(Metric):
    """Per-image (headline) and pooled F1 / IoU at a fixed threshold.

    A pixel is predicted "edited" when ``pred >= threshold``. Only ``valid`` pixels count. Images whose
    valid ground truth is all zero (authentic) are excluded and counted in ``n_excluded_empty_gt``; a
    manipulated image with an empty prediction scores F1 = IoU = 0.
    """

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = check_threshold(threshold)
        zero = torch.zeros((), dtype=torch.float64)
        self.add_state("f1_sum", zero, "sum")
        self.add_state("iou_sum", zero, "sum")
        self.add_state("n_images", zero, "sum")
        self.add_state("n_excluded", zero, "sum")
        self.add_state("confusion", torch.zeros(3, dtype=torch.float64), "sum")  # pooled tp, fp, fn

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Accumulate a batch; returns per-image ``f1``, ``iou`` (NaN where excluded) and ``manipulated``."""
        p, t, v = _prepare(pred, target, valid)
        counts = confusion_counts(p, t, v, self.threshold).double()
        tp, fp, fn = counts[:, 0], counts[:, 1] - counts[:, 0], counts[:, 2] - counts[:, 0]
        m = counts[:, 2] > 0
        nan = torch.full_like(tp, float("nan"))
        f1 = torch.where(m, 2 * tp / (2 * tp + fp + fn).clamp_min(1), nan)
        iou = torch.where(m, tp / (tp + fp + fn).clamp_min(1), nan)
        self._to("f1_sum", tp).add_(f1[m].sum())
        self._to("iou_sum", tp).add_(iou[m].sum())
        self._to("n_images", tp).add_(m.sum())
        self._to("n_excluded", tp).add_((~m).sum())
        self._to("confusion", tp).add_(torch.stack([tp[m].sum(), fp[m].sum(), fn[m].sum()]))
        return {"f1": f1.float(), "iou": iou.float(), "manipulated": m}

    def compute(self) -> dict[str, float]:
        s = self.synced_states()
        n = float(s["n_images"])
        tp, fp, fn = (float(x) for x in s["confusion"])
        nan = float("nan")
        return {
            "f1_per_image": float(s["f1_sum"]) / n if n else nan,
            "iou_per_image": float(s["iou_sum"]) / n if n else nan,
            "f1_pooled": 2 * tp / (2 * tp + fp + fn) if (tp + fn) else nan,
            "iou_pooled": tp / (tp + fp + fn) if (tp + fn) else nan,
            "n_manipulated": int(n),
            "n_excluded_empty_gt": int(s["n_excluded"]),
        }


class BestThresholdF1(Metric):
    """Oracle threshold: the one of ``k / bins`` that maximizes mean per-image F1 over the dataset.

    It is chosen on the evaluated data itself, so it is an upper bound, reported beside (never instead of)
    the fixed-threshold headline. Its curve at 0.5 equals ``f1_per_image`` when ``0.5 * bins`` is whole.
    """

    def __init__(self, bins: int = 100):
        super().__init__()
        self.bins = int(bins)
        self.add_state("f1_curve", torch.zeros(self.bins, dtype=torch.float64), "sum")
        self.add_state("n_images", torch.zeros((), dtype=torch.float64), "sum")

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        p, t, v = _prepare(pred, target, valid)
        hist = score_histograms(p, t, v, self.bins)
        m = hist[:, 1].sum(-1) > 0
        hist = hist[m]
        above = hist.flip(-1).cumsum(-1).flip(-1)          # pixels whose score bin >= k
        tp, predicted = above[:, 1], above[:, 0] + above[:, 1]
        positives = hist[:, 1].sum(-1, keepdim=True)
        curve = 2 * tp / (predicted + positives).clamp_min(1)
        self._to("f1_curve", curve).add_(curve.sum(0))
        self._to("n_images", curve).add_(m.sum())

    def compute(self) -> dict[str, float]:
        s = self.synced_states()
        n = float(s["n_images"])
        if not n:
            return {"f1_best_thr_oracle": float("nan"), "best_thr_oracle": float("nan")}
        curve = s["f1_curve"] / n
        best = int(torch.argmax(curve))
        return {"f1_best_thr_oracle": float(curve[best]), "best_thr_oracle": best / self.bins}


class PixelAUC(Metric):
    """Pooled pixel ROC AUC over the valid pixels of manipulated images, in constant memory.

    Scores are binned into ``bins`` equal-width bins on [0, 1]; pixels in one bin count as tied, which is
    exactly scikit-learn's ROC AUC on scores quantized to those bins (tested), and close to it on
    continuous scores.
    """

    def __init__(self, bins: int = 1000):
        super().__init__()
        self.bins = int(bins)
        self.add_state("hist", torch.zeros(2, self.bins, dtype=torch.float64), "sum")

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        p, t, v = _prepare(pred, target, valid)
        hist = score_histograms(p, t, v, self.bins)
        manipulated = hist[:, 1].sum(-1) > 0
        self._to("hist", hist).add_(hist[manipulated].sum(0))

    def compute(self) -> dict[str, float]:
        hist = self.synced_states()["hist"]
        neg, pos = hist[0].flip(0), hist[1].flip(0)          # from the highest score bin down
        if pos.sum() == 0 or neg.sum() == 0:
            return {"pixel_auc_pooled": float("nan")}
        tpr = torch.cat([torch.zeros(1, dtype=hist.dtype), pos.cumsum(0) / pos.sum()])
        fpr = torch.cat([torch.zeros(1, dtype=hist.dtype), neg.cumsum(0) / neg.sum()])
        return {"pixel_auc_pooled": float(torch.trapezoid(tpr, fpr))}
