"""Test-time averaging (benchmarks/generators/tta.py): copies made and undone exactly, config checked."""

from __future__ import annotations

import pytest
import torch

from benchmarks.generators.tta import TTAConfig, averaged


def difference(original, edited, instructions):  # a pixel-wise annotator: equivariant to flips
    return (edited - original).abs().mean(1, keepdim=True)


def left_column(original, edited, instructions):  # marks the first column only: not flip-equivariant
    out = torch.zeros_like(edited[:, :1])
    out[..., 0] = 1.0
    return out


def pair(h=32, w=48):
    g = torch.Generator().manual_seed(0)
    original = torch.rand(2, 3, h, w, generator=g)
    return original, (original + 0.3 * torch.rand(2, 3, h, w, generator=g)).clamp(0, 1)


def test_one_scale_without_flip_is_the_annotator_itself_and_flips_are_undone():
    o, e = pair()
    assert torch.equal(averaged(difference, o, e, ["", ""], TTAConfig(), 16), difference(o, e, []))
    flipped = averaged(difference, o, e, ["", ""], TTAConfig(flip=True), 16)
    assert torch.allclose(flipped, difference(o, e, []), atol=1e-6)  # each mirrored mask mirrored back
    half = averaged(left_column, o, e, ["", ""], TTAConfig(flip=True), 16)
    assert torch.allclose(half[..., 0], torch.full_like(half[..., 0], 0.5))  # marked by the unflipped copy only
    assert torch.allclose(half[..., -1], torch.full_like(half[..., -1], 0.5))  # and by the mirrored one, undone


def test_rescaled_copies_come_back_at_the_pairs_size_and_small_pairs_are_clamped():
    seen = []

    def recording(original, edited, instructions):
        seen.append(tuple(edited.shape[-2:]))
        return difference(original, edited, instructions)

    o, e = pair(20, 40)
    out = averaged(recording, o, e, ["", ""], TTAConfig(scales=(1.0, 0.5, 2.0)), 16)
    assert out.shape == (2, 1, 20, 40) and 0.0 <= out.min() and out.max() <= 1.0
    assert seen == [(20, 40), (16, 20), (40, 80)]  # 0.5 would take the height to 10: clamped to 16


def test_config_names_a_bad_key_or_value():
    assert TTAConfig.from_dict({"scales": [1, 0.75], "flip": True}).describe() == "scales 1, 0.75 with left-right flips"
    with pytest.raises(ValueError, match="unknown key.*'scale'"):
        TTAConfig.from_dict({"scale": [1.0]})
    with pytest.raises(ValueError, match=r"tta.scales.*\[0.0\]"):
        TTAConfig.from_dict({"scales": [0.0]})
