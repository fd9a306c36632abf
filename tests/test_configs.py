"""Every config file composes, and the typed configs accept what the YAML gives them."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from benchmarks.config import GROUPS, compose, config_dir, expand, group_options
from benchmarks.synth.build import SynthConfig

ALL_CHOICES = [(group, name) for group in GROUPS for name in group_options(group)]


def test_every_group_has_files():
    for group in GROUPS:
        assert group_options(group), f"configs/{group}/ is empty"


@pytest.mark.parametrize("group,name", ALL_CHOICES, ids=[f"{g}/{n}" for g, n in ALL_CHOICES])
def test_every_config_file_composes(group, name):
    cfg = compose([f"{group}={name}"])
    # resolve everything except the mandatory paths a user must supply (???)
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert container["profile"]["name"] in ("cpu-quick", "gpu-paper")
    if group in ("generator", "detector", "dataset"):
        assert cfg[group].name == name
    if group == "synth":
        SynthConfig.from_dict(OmegaConf.to_container(cfg.synth, resolve=True)).validate()


def test_profiles_differ_in_scale():
    quick, paper = compose(["profile=cpu-quick"]), compose(["profile=gpu-paper"])
    assert quick.geometry.size < paper.geometry.size
    assert quick.synth.n_corpus < paper.synth.n_corpus
    assert compose(["experiment=paper"]).profile.name == "gpu-paper"


def test_profile_lists_name_existing_configs():
    cfg = compose([])
    for group, key in (("generator", "generators"), ("detector", "detectors"), ("dataset", "test_datasets")):
        assert set(cfg.profile[key]) <= set(group_options(group)), key
    assert len(cfg.profile.test_datasets) == 5 and len(cfg.profile.detectors) == 6


def test_expand_all_and_lists():
    cfg = compose([])
    assert expand("detector", "all", cfg) == list(cfg.profile.detectors)
    assert expand("generator", "oracle,empty", cfg) == ["oracle", "empty"]
    with pytest.raises(ValueError, match="choose one of"):
        expand("detector", "no_such_detector", cfg)


def test_holdout_suite_keeps_its_own_sizes_under_profiles():
    for profile in ("cpu-quick", "gpu-paper"):
        cfg = compose([f"profile={profile}", "synth=holdout"])
        assert cfg.synth.n_inpainting == 0 and cfg.synth.n_corpus == 0
        assert cfg.synth.test_pool == ["pool:holdout"] and compose([]).synth.test_pool == ["pool:test"]


def test_overrides_reach_the_config():
    cfg = compose(["seed=7", "synth.n_corpus=3"])
    assert cfg.seed == 7 and cfg.synth.n_corpus == 3
    assert (config_dir() / "config.yaml").is_file()


def test_dataset_configs_point_at_real_adapters_and_suites():
    from benchmarks.data.adapters import adapter_names

    for name in group_options("dataset"):
        ds = compose([f"dataset={name}"]).dataset
        if ds.source == "adapter":
            assert ds.adapter in adapter_names(), name
        elif ds.source == "synth":
            assert ds.suite in group_options("synth"), name
        else:
            assert ds.source in ("pairs", "iml"), name
