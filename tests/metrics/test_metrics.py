"""Metrics checked against scikit-learn on random inputs, per batch split, and in a two-process gloo run."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import f1_score, jaccard_score, roc_auc_score

from benchmarks.metrics import BestThresholdF1, ImageMetrics, PixelAUC, PixelMetrics
from benchmarks.metrics.pixel import _prepare, confusion_counts, score_histograms
from benchmarks.metrics.image import roc_auc


def random_batch(seed: int, b: int = 12, h: int = 20, w: int = 24, with_padding: bool = True):
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros(b, 1, h, w)
    for i in range(b):
        if i % 4 == 3:
            continue  # authentic: all-zero ground truth
        y0, x0 = torch.randint(0, h // 2, (2,), generator=g).tolist()
        target[i, :, y0:y0 + h // 3 + i % 5, x0:x0 + w // 3 + 1] = 1
    noise = torch.rand(b, 1, h, w, generator=g)
    pred = (0.55 * target + 0.6 * noise).clamp(0, 1)
    valid = torch.ones(b, 1, h, w, dtype=torch.bool)
    if with_padding:
        valid[:, :, :, -5:] = False  # a padded strip never counts
        pred[:, :, :, -5:] = 1.0
        target[:, :, :, -5:] = 0.0
    return pred, target, valid


def sklearn_reference(pred, target, valid, threshold=0.5):
    f1s, ious, tp_all = [], [], []
    yt_all, yp_all = [], []
    for p, t, v in zip(pred, target, valid):
        yt = t[v].numpy().astype(int)
        yp = (p[v] >= threshold).numpy().astype(int)
        if yt.sum() == 0:
            continue
        f1s.append(f1_score(yt, yp, zero_division=0))
        ious.append(jaccard_score(yt, yp, zero_division=0))
        yt_all.append(yt)
        yp_all.append(yp)
    yt_all, yp_all = np.concatenate(yt_all), np.concatenate(yp_all)
    return {"f1_per_image": np.mean(f1s), "iou_per_image": np.mean(ious),
            "f1_pooled": f1_score(yt_all, yp_all), "iou_pooled": jaccard_score(yt_all, yp_all), "n": len(f1s)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_metrics_match_sklearn(seed):
    pred, target, valid = random_batch(seed)
    metric = PixelMetrics()
    for chunk in range(0, len(pred), 5):  # accumulation over uneven batches
        metric.update(pred[chunk:chunk + 5], target[chunk:chunk + 5], valid[chunk:chunk + 5])
    got, ref = metric.compute(), sklearn_reference(pred, target, valid)
    for key in ("f1_per_image", "iou_per_image", "f1_pooled", "iou_pooled"):
        assert got[key] == pytest.approx(ref[key], abs=1e-9), key
    assert got["n_manipulated"] == ref["n"] and got["n_excluded_empty_gt"] == len(pred) - ref["n"]


def test_a_wrong_threshold_is_caught():
    """The comparison above is sharp: a metric binarizing at 0.3 instead of 0.5 fails it."""
    pred, target, valid = random_batch(5)
    ref = sklearn_reference(pred, target, valid, threshold=0.5)
    wrong = PixelMetrics(threshold=0.3)
    wrong.update(pred, target, valid)
    assert abs(wrong.compute()["f1_per_image"] - ref["f1_per_image"]) > 0.01
    right = PixelMetrics(threshold=0.5)
    right.update(pred, target, valid)
    assert right.compute()["f1_per_image"] == pytest.approx(ref["f1_per_image"], abs=1e-9)


def test_oracle_and_degenerate_predictions():
    _, target, valid = random_batch(3, with_padding=False)
    for pred, f1 in ((target.clone(), 1.0), (torch.zeros_like(target), 0.0)):
        m = PixelMetrics()
        m.update(pred, target, valid)
        out = m.compute()
        assert out["f1_per_image"] == f1 and out["iou_per_image"] == f1 and out["f1_pooled"] == f1


def test_per_image_values_are_returned_with_nan_for_authentic():
    pred, target, valid = random_batch(4)
    per = PixelMetrics().update(pred, target, valid)
    ref_manip = (target * valid).flatten(1).sum(1) > 0
    assert torch.equal(per["manipulated"], ref_manip)
    assert torch.isnan(per["f1"][~ref_manip]).all() and not torch.isnan(per["f1"][ref_manip]).any()


def test_best_threshold_curve_agrees_with_fixed_threshold_and_is_oracle():
    pred, target, valid = random_batch(6)
    best, fixed = BestThresholdF1(bins=100), PixelMetrics()
    best.update(pred, target, valid)
    fixed.update(pred, target, valid)
    out = best.compute()
    curve = best.f1_curve / best.n_images
    assert float(curve[50]) == pytest.approx(fixed.compute()["f1_per_image"], abs=1e-9)  # threshold 0.5 is bin 50
    thr = out["best_thr_oracle"]
    assert out["f1_best_thr_oracle"] == pytest.approx(sklearn_reference(pred, target, valid, thr)["f1_per_image"], abs=1e-9)
    assert out["f1_best_thr_oracle"] >= fixed.compute()["f1_per_image"]


def test_numpy_and_torch_paths_count_the_same(monkeypatch):
    """CPU tensors take the NumPy path, accelerator tensors the torch path: both must count identically."""
    import benchmarks.metrics.pixel as pixel

    pred, target, valid = random_batch(9)
    p, t, v = _prepare(pred, target, valid)
    fast, hist_fast = confusion_counts(p, t, v, 0.5), score_histograms(p, t, v, 37)
    fast_all_valid = confusion_counts(p, t, None, 0.5)
    monkeypatch.setattr(pixel, "_numpy_path", lambda x: False)
    p2, t2, v2 = _prepare(pred, target, valid)
    assert torch.equal(t, t2) and torch.equal(v, v2)
    assert torch.equal(fast, confusion_counts(p, t, v, 0.5))
    assert torch.equal(hist_fast, score_histograms(p, t, v, 37))
    assert torch.equal(fast_all_valid, confusion_counts(p, t, None, 0.5))


def test_pixel_auc_matches_sklearn():
    pred, target, valid = random_batch(7)
    manip = ((target > 0) & valid).flatten(1).any(1)
    auc = PixelAUC(bins=1000)
    auc.update(pred, target, valid)
    yt = target[manip][valid[manip]].numpy()
    ys = pred[manip][valid[manip]].numpy()
    assert auc.compute()["pixel_auc_pooled"] == pytest.approx(roc_auc_score(yt, ys), abs=1e-3)
    # exact on scores already on the bin grid (ties are ties in both)
    quantized = (pred * 1000).floor().clamp(max=999) / 1000
    exact = PixelAUC(bins=1000)
    exact.update(quantized, target, valid)
    assert exact.compute()["pixel_auc_pooled"] == pytest.approx(
        roc_auc_score(yt, quantized[manip][valid[manip]].numpy()), abs=1e-12)


def test_image_metrics_match_sklearn_with_ties():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (200,), generator=g)
    scores = (torch.rand(200, generator=g) * 0.6 + 0.4 * labels).round(decimals=1)  # many ties
    m = ImageMetrics()
    m.update(scores[:77], labels[:77])
    m.update(scores[77:], labels[77:])
    out = m.compute()
    assert out["image_auc"] == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-12)
    assert out["image_acc"] == pytest.approx(((scores >= 0.5).long() == labels).double().mean().item())
    assert np.isnan(roc_auc(torch.ones(3), torch.ones(3)))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="same shape"):
        PixelMetrics().update(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))


# ------------------------------------------------------------------------------------ two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        pred, target, valid = random_batch(11, b=13)
        pix, best, auc, img = PixelMetrics(), BestThresholdF1(), PixelAUC(), ImageMetrics()
        part = slice(0, 6) if rank == 0 else slice(6, 13)  # uneven split, as a DistributedSampler tail can be
        for m in (pix, best, auc):
            m.update(pred[part], target[part], valid[part])
        img.update(pred[part].flatten(1).amax(1), (target[part].flatten(1).amax(1) > 0).long())
        result = {**pix.compute(), **best.compute(), **auc.compute(), **img.compute()}
        if rank == 0:
            out.update(result)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_equals_single_process():
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    pred, target, valid = random_batch(11, b=13)
    pix, best, auc, img = PixelMetrics(), BestThresholdF1(), PixelAUC(), ImageMetrics()
    for m in (pix, best, auc):
        m.update(pred, target, valid)
    img.update(pred.flatten(1).amax(1), (target.flatten(1).amax(1) > 0).long())
    single = {**pix.compute(), **best.compute(), **auc.compute(), **img.compute()}
    for key, value in single.items():
        assert out[key] == pytest.approx(value, abs=1e-12, nan_ok=True), key
