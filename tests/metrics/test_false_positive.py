"""FalsePositiveRate (marked pixels on pairs with nothing to find) against NumPy on random masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.metrics.false_positive import FalsePositiveRate


def test_matches_numpy_over_batches_with_invalid_pixels():
    rng = np.random.default_rng(0)
    pred = rng.random((6, 1, 9, 11)).astype(np.float32) ** 3
    valid = rng.random((6, 1, 9, 11)) > 0.2
    metric = FalsePositiveRate()
    per = torch.cat([metric.update(torch.from_numpy(pred[i:i + 3]), torch.from_numpy(valid[i:i + 3])) for i in (0, 3)])
    marked = (pred >= 0.5) & valid
    rates = marked.reshape(6, -1).sum(1) / valid.reshape(6, -1).sum(1)
    out = metric.compute()
    assert np.allclose(per.numpy(), rates, atol=1e-6)
    assert out["fp_rate_pooled"] == pytest.approx(marked.sum() / valid.sum())
    assert out["fp_rate_per_image"] == pytest.approx(rates.mean())
    assert out["images_with_fp"] == pytest.approx((marked.reshape(6, -1).sum(1) > 0).mean()) and out["n_images"] == 6


def test_empty_masks_score_zero_and_bad_shapes_are_named():
    metric = FalsePositiveRate()
    metric.update(torch.zeros(2, 1, 4, 4))
    assert metric.compute() == {"fp_rate_pooled": 0.0, "fp_rate_per_image": 0.0, "images_with_fp": 0.0, "n_images": 2}
    with pytest.raises(ValueError, match=r"\(B,1,H,W\)"):
        metric.update(torch.zeros(2, 4, 4))
