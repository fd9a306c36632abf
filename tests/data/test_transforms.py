"""The geometries of the field (resize, pad + valid, native crops), applied jointly and recorded."""

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


def test_crop_cuts_native_pixels_jointly_random_when_training_centred_otherwise():
    arrays = _arrays(40, 80)
    index_grid = np.arange(40 * 80).reshape(40, 80)
    arrays["image"] = np.stack([index_grid % 256, index_grid // 256, np.zeros_like(index_grid)], -1).astype(np.uint8)
    centred = apply_geometry(arrays, Geometry("crop", 32))
    assert centred["image"].shape == (32, 32, 3) and centred["valid"].all()
    assert np.array_equal(centred["image"], arrays["image"][4:36, 24:56])       # no resampling, centred
    t = SampleTransform(Geometry("crop", 32), train=True, seed=1)
    tops = set()
    for index in range(6):
        out = t(arrays, index=index)
        img = (out["image"].permute(1, 2, 0) * 255).round().byte().numpy()
        pos = img[0, 0, 0].astype(int) + 256 * img[0, 0, 1].astype(int)            # where the window starts
        top, left = divmod(int(pos), 80)
        flipped = not np.array_equal(img, arrays["image"][top:top + 32, left:left + 32])
        window = arrays["mask"][top:top + 32, left - 31:left + 1][:, ::-1] if flipped else \
            arrays["mask"][top:top + 32, left:left + 32]
        assert np.array_equal(out["mask"][0].bool().numpy(), window)             # mask cut with the image
        assert t(arrays, index=index)["image"].equal(out["image"])              # seeded
        tops.add((top, left))
    assert len(tops) > 1 and out["geometry"] == "crop-32"
    small = apply_geometry(_arrays(10, 20), Geometry("crop", 32))               # smaller: padded, marked invalid
    assert small["image"].shape == (32, 32, 3) and small["valid"].sum() == 10 * 20


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
        Geometry("warp", 64)
