"""sigma_aligned: the fusion rule, the cut's remapping onto the contract's 0.5, and its config."""

from __future__ import annotations

import pytest
import torch

from benchmarks.generators.base import GeneratorInfo, MaskGenerator
from benchmarks.generators.fusion import SigmaAligned, at_threshold, fuse


class Constant(MaskGenerator):
    """A soft mask given in advance (the same for every pair of the batch)."""

    def __init__(self, mask: torch.Tensor, name: str):
        super().__init__()
        self.mask = mask
        self.info = GeneratorInfo(name, "constant soft mask", paper=name)

    def forward(self, original, edited, instruction, truth=None):
        return self.mask.expand(original.shape[0], 1, *original.shape[-2:]).clone()


def test_the_cut_lands_on_the_contracts_half_and_keeps_the_ends():
    score = torch.linspace(0, 1, 101)
    for cut in (0.2, 0.3, 0.5, 0.7):
        out = at_threshold(score, cut)
        assert torch.equal(out >= 0.5, score >= cut)
        assert float(out[0]) == 0.0 and float(out[-1]) == 1.0
        assert bool((out[1:] >= out[:-1]).all())     # monotone


def test_fuse_mean_weights_and_max():
    a, b = torch.tensor([0.8, 0.2, 0.4]), torch.tensor([0.0, 0.6, 0.4])
    assert torch.allclose(fuse(a, b, "mean", 0.5), torch.tensor([0.4, 0.4, 0.4]))
    assert torch.allclose(fuse(a, b, "mean", 1.0), a) and torch.allclose(fuse(a, b, "mean", 0.0), b)
    assert torch.equal(fuse(a, b, "max", 0.5), torch.tensor([0.8, 0.6, 0.4]))
    with pytest.raises(ValueError, match="use one of"):
        fuse(a, b, "vote", 0.5)


def test_a_pixel_one_part_is_sure_of_and_the_other_half_sure_of_is_marked():
    # SIGMA sure (0.9) on the left column, unsure (0.1) elsewhere; aligned_diff mildly positive (0.4) on the
    # left two columns. Mean: 0.65 / 0.25 / 0.05; cut 0.3 marks only the left column, cut 0.2 the two left ones.
    sigma = torch.tensor([0.9, 0.1, 0.1]).view(1, 1, 1, 3)
    aligned = torch.tensor([0.4, 0.4, 0.0]).view(1, 1, 1, 3)
    pair = torch.zeros(2, 3, 1, 3), torch.zeros(2, 3, 1, 3)
    for cut, marked in ((0.3, [True, False, False]), (0.2, [True, True, False])):
        gen = SigmaAligned(Constant(sigma, "sigma"), Constant(aligned, "aligned_diff"), "mean", 0.5, cut).eval()
        scored = gen.generate_scored(*pair, ["", ""])
        assert (scored.mask >= 0.5)[0, 0, 0].tolist() == marked
        assert scored.diagnostics[0]["marked_sigma"] == pytest.approx(1 / 3)
        assert scored.quality.shape == (2,)


@pytest.mark.parametrize("kwargs, match", [({"rule": "vote"}, "rule"), ({"weight": 1.5}, "weight"),
                                           ({"threshold": 1.0}, "threshold"), ({"threshold": 0.0}, "threshold")])
def test_bad_settings_name_the_key(kwargs, match):
    parts = Constant(torch.zeros(1, 1, 1, 1), "sigma"), Constant(torch.zeros(1, 1, 1, 1), "aligned_diff")
    with pytest.raises(ValueError, match=f"sigma_aligned {match}="):
        SigmaAligned(*parts, **kwargs)


def test_the_config_composes_both_parts_from_their_own_configs():
    from benchmarks.config import compose

    cfg = compose(["generator=sigma_aligned"])
    aligned = compose(["generator=aligned_diff"]).generator
    assert cfg.generator.name == "sigma_aligned"
    assert cfg.generator.aligned_diff == aligned                      # one place for the baseline's settings
    assert cfg.generator.sigma.checkpoint == compose(["generator=sigma"]).generator.checkpoint
    assert (cfg.generator.rule, cfg.generator.weight, cfg.generator.threshold) == ("mean", 0.3, 0.4)
