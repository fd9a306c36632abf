"""The label-quality ladder: deterministic, monotone in strength, a calibration row that reads the truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.generators.base import create_generator, list_generators
from benchmarks.generators.ladder import LADDER, degrade


def _masks(n: int = 24, size: int = 96, seed: int = 0) -> list[np.ndarray]:
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = np.zeros((size, size), np.uint8)
        for _ in range(int(rng.integers(1, 4))):  # a main region and maybe side effects
            cv2.ellipse(m, (int(rng.integers(10, size - 10)), int(rng.integers(10, size - 10))),
                        (int(rng.integers(4, 20)), int(rng.integers(4, 20))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        out.append(m.astype(bool))
    return out


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2 * float((pred & truth).sum()) / max(1, int(pred.sum() + truth.sum()))


def test_label_f1_falls_with_every_ladder_level():
    masks = _masks()
    means = [1.0] + [np.mean([_f1(degrade(m, "mix", s), m) for m in masks]) for s in LADDER.values()]
    assert all(a > b + 0.05 for a, b in zip(means, means[1:])), means
    for kind in ("boundary", "miss", "blobs", "shift"):
        assert np.mean([_f1(degrade(m, kind, 0.5), m) for m in masks]) < 0.97, kind
        assert all(np.array_equal(degrade(m, kind, 0.0), m) for m in masks), kind


def test_degraded_mask_depends_on_the_mask_only():
    masks = _masks(6)
    truth = torch.from_numpy(np.stack(masks)[:, None]).float()
    images = torch.rand(6, 3, 96, 96)
    gen = create_generator("ladder_2")
    whole = gen.generate(images, images, truth=truth)
    alone = torch.cat([gen.generate(images[i:i + 1], images[i:i + 1], truth=truth[i:i + 1]) for i in range(6)])
    assert torch.equal(whole, alone) and set(whole.unique().tolist()) <= {0.0, 1.0}


def test_ladder_rows_are_calibration_rows_that_need_truth():
    names = [n for n in list_generators() if n.startswith("ladder_")]
    assert len(names) == 8
    for name in names:
        gen = create_generator(name)
        assert gen.needs_truth and gen.info.calibration, name
    with pytest.raises(ValueError, match="needs truth"):
        create_generator("ladder_1").generate(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert not create_generator("pixel_diff").info.calibration
