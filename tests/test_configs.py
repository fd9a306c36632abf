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
    assert container["profile"]["name"] in ("cpu-quick", "cpu-study", "gpu-paper")
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


# ---------------------------------------------------------------------------------------------- typed configs vs YAML


def _twins():
    from benchmarks.evaluation.detectors import TestConfig
    from benchmarks.evaluation.generators import EvalConfig
    from benchmarks.sigma_training.inputs import SigmaDataConfig
    from benchmarks.synth.editor import RoundTripConfig
    from benchmarks.training.config import HarnessTraining
    from detectors.train import TrainConfig
    from sigma.model import SigmaConfig
    from sigma.train import Stage2Config, StageConfig

    return [
        pytest.param(SigmaConfig, "sigma/default.yaml", "model", id="sigma.model"),
        pytest.param(StageConfig, "sigma/default.yaml", "stage1", id="sigma.stage1"),
        pytest.param(Stage2Config, "sigma/default.yaml", "stage2", id="sigma.stage2"),
        pytest.param(SigmaDataConfig, "sigma/default.yaml", "data", id="sigma.data"),
        pytest.param(TrainConfig, "train/default.yaml", "", id="train (trainer keys)"),
        pytest.param(HarnessTraining, "train/default.yaml", "", id="train (harness keys)"),
        pytest.param(TestConfig, "train/default.yaml", "test", id="train.test"),
        pytest.param(EvalConfig, "config.yaml", "eval", id="eval"),
        pytest.param(RoundTripConfig, "synth/default.yaml", "roundtrip", id="synth.roundtrip"),
        pytest.param(SynthConfig, "synth/default.yaml", "", id="synth"),
    ]


def _differences(typed_default, yaml_node, where: str) -> list[str]:
    """Fields whose code default differs from the YAML's literal value (values the YAML interpolates, e.g.
    from the profile, are the profile's to set and are left out)."""
    import dataclasses

    out = []
    for f in dataclasses.fields(typed_default):
        if f.name not in yaml_node:
            continue
        raw = OmegaConf.to_container(yaml_node, resolve=False)[f.name]
        if isinstance(raw, str) and "${" in raw:
            continue
        default = getattr(typed_default, f.name)
        if dataclasses.is_dataclass(default):
            out += _differences(default, yaml_node[f.name], f"{where}.{f.name}")
            continue
        value = tuple(raw) if isinstance(raw, list) else raw
        if default != value:
            out.append(f"{where}.{f.name}: code {default!r}, YAML {value!r}")
    return out


@pytest.mark.parametrize("cls,file,node", _twins())
def test_code_defaults_equal_the_yaml(cls, file, node):
    import dataclasses

    raw = OmegaConf.load(config_dir() / file)
    yaml_node = OmegaConf.select(raw, node) if node else raw
    default = cls()  # every typed config with a YAML twin must build from its defaults alone
    assert not _differences(default, yaml_node, f"{file}:{node or '<root>'}")
    if file == "train/default.yaml" and not node:  # the group is split over two typed configs
        from benchmarks.training.config import HarnessTraining
        from detectors.train import TrainConfig

        known = {f.name for c in (HarnessTraining, TrainConfig) for f in dataclasses.fields(c)}
    else:
        known = {f.name for f in dataclasses.fields(cls)}
    assert set(yaml_node) <= known, f"{file}:{node}: keys without a typed field: {sorted(set(yaml_node) - known)}"


def test_paths_resolve_against_the_project_root_not_the_current_directory(tmp_path, monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIGMA_BENCH_ROOT", raising=False)
    cfg = compose([])
    assert Path(cfg.paths.results) == root / "results"
    assert Path(cfg.sigma.export) == root / "results" / "sigma" / "cpu-quick" / "sigma.pt"
    assert Path(cfg.sigma.export).is_file()  # the committed checkpoint, found from anywhere
    monkeypatch.setenv("SIGMA_BENCH_ROOT", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("SIGMA_BENCH_HOME", "scratch")
    cfg = compose([])
    assert Path(cfg.paths.results) == tmp_path / "elsewhere" / "results"
    assert Path(cfg.paths.data) == tmp_path / "elsewhere" / "scratch" / "data"
    assert compose(["paths.results=out"]).paths.results == "out"  # typed by hand: taken as given


def test_study_profile_is_cpu_quick_with_a_bigger_training_budget():
    quick, study = compose(["profile=cpu-quick"]), compose(["profile=cpu-study"])
    assert study.profile.name == "cpu-study"
    assert OmegaConf.to_container(study.synth, resolve=True) == OmegaConf.to_container(quick.synth, resolve=True)
    assert study.sigma.export == quick.sigma.export                    # cpu-quick's trained SIGMA heads
    assert compose(["profile=cpu-study", "generator=grounding_only"]).generator.checkpoint == \
        compose(["profile=cpu-quick", "generator=grounding_only"]).generator.checkpoint
    assert list(study.profile.detectors) == list(quick.profile.detectors)
    assert study.train.epochs * 1.0 / max(1, study.train.batch_size) > quick.train.epochs * 1.0 / max(1, quick.train.batch_size)


def test_sigmas_partial_opacity_training_suite_changes_only_the_opacity_of_its_training_pairs():
    default, opacity = compose(["synth=default"]).synth, compose(["synth=train_opacity"]).synth
    assert list(opacity.edit_opacity) == [0.4, 1.0] and "edit_opacity" not in default
    # it writes training pairs only: no benchmark, val or round-trip-only sets, so nothing judged or reported moves
    assert (opacity.n_per_benchmark, opacity.n_val, opacity.n_noedit, opacity.n_val_noedit) == (0, 0, 0, 0)
    same = {k for k in default if k not in ("name", "n_per_benchmark", "n_val", "n_noedit", "n_val_noedit")}
    assert {k: opacity[k] for k in same} == {k: default[k] for k in same}


def test_sigma_trains_on_its_named_suite_under_the_commands_own_sizes_and_folders(tmp_path):
    """sigma.suite names another suite than cfg.synth (train_opacity by default); it is built with the
    command's experiment, sizes and data folder (a smoke run builds a smoke-sized suite in its own home), not
    with the profile's defaults."""
    from benchmarks.data.datasets import synth_config, with_suite
    from benchmarks.synth.build import suite_dir

    cfg = compose(["experiment=smoke", f"paths.home={tmp_path}"])
    assert cfg.sigma.suite == "train_opacity" and cfg.synth.name == "default"
    named = synth_config(with_suite(cfg, cfg.sigma.suite))
    assert named.name == "train_opacity" and list(named.edit_opacity) == [0.4, 1.0]
    assert (named.n_inpainting, named.n_corpus, named.image_size) == (12, 12, 64) == (
        cfg.sizes.inpainting, cfg.sizes.corpus, cfg.geometry.size)
    assert suite_dir(named, cfg.paths.data).parent.parent == tmp_path / "data"
    full = synth_config(compose(["synth=train_opacity"]))
    assert full.n_inpainting > named.n_inpainting and full.content_hash() != named.content_hash()
