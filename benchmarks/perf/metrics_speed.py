"""Metric speed: our batched metrics vs a per-image scikit-learn loop on the same masks, in one run.

    python -m benchmarks.perf.metrics_speed            # 1,000 masks of 512 x 512 (the issue's setting)
    python -m benchmarks.perf.metrics_speed --n 200    # quicker

Both sides compute the headline per-image F1 and IoU at threshold 0.5 (ours also accumulates the pooled
confusion matrix and the oracle-threshold curve in the same pass). Results are checked to agree before
the ratio is printed. A second line compares pooled pixel AUC with ``sklearn.metrics.roc_auc_score``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.metrics import f1_score, jaccard_score, roc_auc_score

from benchmarks.metrics import PixelAUC, PixelMetrics


def make_masks(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros(n, 1, size, size, dtype=torch.bool)
    corners = torch.randint(0, size // 2, (n, 2), generator=g)
    sides = torch.randint(size // 8, size // 2, (n, 2), generator=g)
    for i in range(n):
        (y, x), (h, w) = corners[i].tolist(), sides[i].tolist()
        target[i, 0, y:y + h, x:x + w] = True
    pred = (0.5 * target + 0.6 * torch.rand(n, 1, size, size, generator=g)).clamp_(0, 1)
    return pred, target


def ours(pred: torch.Tensor, target: torch.Tensor, batch: int, auc_images: int) -> tuple[dict, dict, float, float]:
    start = time.perf_counter()
    pixel = PixelMetrics()
    for i in range(0, len(pred), batch):
        pixel.update(pred[i:i + batch], target[i:i + batch])
    f1 = pixel.compute()
    t_f1 = time.perf_counter() - start
    start = time.perf_counter()
    auc = PixelAUC()
    for i in range(0, auc_images, batch):
        auc.update(pred[i:min(i + batch, auc_images)], target[i:min(i + batch, auc_images)])
    a = auc.compute()
    return f1, a, t_f1, time.perf_counter() - start


def sklearn_loop(pred: torch.Tensor, target: torch.Tensor, auc_images: int) -> tuple[float, float, float, float, float]:
    p, t = pred.numpy(), target.numpy()
    start = time.perf_counter()
    f1s, ious = [], []
    for i in range(len(p)):
        yt, yp = t[i].ravel(), p[i].ravel() >= 0.5
        f1s.append(f1_score(yt, yp, zero_division=0))
        ious.append(jaccard_score(yt, yp, zero_division=0))
    t_f1 = time.perf_counter() - start
    start = time.perf_counter()
    auc = roc_auc_score(t[:auc_images].ravel(), p[:auc_images].ravel())
    t_auc = time.perf_counter() - start
    return float(np.mean(f1s)), float(np.mean(ious)), auc, t_f1, t_auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="number of masks")
    parser.add_argument("--size", type=int, default=512, help="mask side in pixels")
    parser.add_argument("--batch", type=int, default=50, help="masks per update() call")
    args = parser.parse_args()
    pred, target = make_masks(args.n, args.size)
    print(f"{args.n} masks of {args.size}x{args.size}, torch threads {torch.get_num_threads()}")
    # sklearn's ROC AUC sorts every pixel at once (memory grows with the data; ours is constant), so the AUC
    # comparison runs both sides on the first images up to 64 M pixels
    auc_images = min(args.n, max(1, 64_000_000 // args.size ** 2))
    f1, auc, t_ours_f1, t_ours_auc = ours(pred, target, args.batch, auc_images)
    sk_f1, sk_iou, sk_auc, t_sk_f1, t_sk_auc = sklearn_loop(pred, target, auc_images)
    assert abs(f1["f1_per_image"] - sk_f1) < 1e-9 and abs(f1["iou_per_image"] - sk_iou) < 1e-9, "metrics disagree"
    print(f"per-image F1/IoU   ours {t_ours_f1:7.2f} s   sklearn loop {t_sk_f1:7.2f} s   ratio {t_sk_f1 / t_ours_f1:6.1f}x   "
          f"(F1 {f1['f1_per_image']:.6f} = {sk_f1:.6f}, IoU {f1['iou_per_image']:.6f} = {sk_iou:.6f})")
    print(f"pooled pixel AUC   ours {t_ours_auc:7.2f} s   sklearn       {t_sk_auc:7.2f} s   ratio "
          f"{t_sk_auc / t_ours_auc:6.1f}x   (first {auc_images} masks; AUC {auc['pixel_auc_pooled']:.5f} vs "
          f"{sk_auc:.5f}, 1000 bins)")


if __name__ == "__main__":
    main()
