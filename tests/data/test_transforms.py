"""The two geometries of the field (resize, pad + valid), applied jointly and recorded."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.data.errors import DataError
from benchmarks.data.transforms import Geometry, SampleTransform, apply_geometry


def _arrays(h: int, w: int) -> dict:
    rng = np.random.default_rng(0)
    mask = np.zeros((h, w), bool)
    mask[: h // 2, : w // 3] = True
    return {"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            "original": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "mask": mask}


def test_resize_warps_everything_to_a_square_all_valid():
    out = SampleTransform(Geometry("resize", 32))(_arrays(40, 80))
    assert out["image"].shape == out["original"].shape == (3, 32, 32)
    assert out["mask"].shape == out["valid"].shape == (1, 32, 32)
    assert out["valid"].all() and out["geometry"] == "resize-32"
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    assert abs(out["mask"].mean().item() - 1 / 6) < 0.05


def test_pad_keeps_aspect_and_marks_padding_invalid():
    out = SampleTransform(Geometry("pad", 64))(_arrays(40, 80))  # long side 80 -> 64, short 40 -> 32
    assert out["image"].shape == (3, 64, 64) and out["geometry"] == "pad-64"
    valid = out["valid"][0]
    assert valid[:32].all() and not valid[32:].any()
    assert (out["image"][:, 32:] == 0).all() and (out["mask"][0, 32:] == 0).all()


def test_pad_never_enlarges_small_images():
    out = apply_geometry(_arrays(10, 20), Geometry("pad", 64))
    assert out["valid"].sum() == 10 * 20 and out["image"].shape == (64, 64, 3)


def test_none_keeps_native_size():
    out = SampleTransform(Geometry("none"))(_arrays(17, 23))
    assert out["image"].shape == (3, 17, 23) and out["geometry"] == "native"


def test_train_flip_is_joint_and_seeded():
    arrays = _arrays(16, 16)
    t = SampleTransform(Geometry("none"), train=True, seed=3)
    flips = []
    for index in range(8):
        out = t(arrays, index=index)
        flipped = bool((out["mask"][0, :, -1] > 0).any())
        flips.append(flipped)
        expected_image = arrays["image"][:, ::-1] if flipped else arrays["image"]
        assert np.array_equal((out["image"].permute(1, 2, 0) * 255).round().byte().numpy(), expected_image)
        assert t(arrays, index=index)["mask"].equal(out["mask"])  # same seed + index: same draw
    assert any(flips) and not all(flips)


def test_bad_geometry_names_the_choices():
    with pytest.raises(DataError, match="resize"):
        Geometry("crop", 64)
