"""Composing the Hydra configs: named flags select groups, extra ``key=value`` arguments override.

Configs select, code defines: the YAML files under ``configs/`` pick parts and sizes; the dataclasses in
the code (e.g. :class:`benchmarks.synth.build.SynthConfig`) hold the typed defaults and validate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

GROUPS = ("synth", "sigma", "train", "generator", "detector", "dataset", "profile", "experiment")


def config_dir() -> Path:
    """The configs folder: $SIGMA_BENCH_CONFIGS, else ``configs/`` of the (editable) checkout."""
    env = os.environ.get("SIGMA_BENCH_CONFIGS")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "configs"
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(f"no config.yaml in {path}; install the repo editable (pip install -e .) "
                                "or point SIGMA_BENCH_CONFIGS at its configs/ folder")
    return path


def group_options(group: str) -> list[str]:
    """Names of the config files in a group, sorted."""
    folder = config_dir() / group
    if not folder.is_dir():
        raise ValueError(f"unknown config group {group!r}; groups: {list(GROUPS)}")
    return sorted(p.stem for p in folder.glob("*.yaml"))


def check_option(group: str, name: str) -> str:
    options = group_options(group)
    if name not in options:
        raise ValueError(f"--{group} {name!r} is unknown; choose one of {options}"
                         + (" or 'all'" if group in ("generator", "detector", "dataset") else ""))
    return name


def compose(overrides: Sequence[str] = (), command: str | None = None) -> DictConfig:
    """Compose ``configs/config.yaml`` with Hydra overrides (``group=option`` or ``key=value``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    if command is not None:
        OmegaConf.update(cfg, "command", command, force_add=True)
    return cfg


def expand(group: str, choice: str, cfg: DictConfig | None = None) -> list[str]:
    """Resolve a named-flag value: ``all`` (the profile's list for the group, else every file), a
    comma-separated list, or one name. Unknown names raise with the known ones listed."""
    if choice == "all":
        key = {"generator": "generators", "detector": "detectors", "dataset": "test_datasets"}.get(group)
        if cfg is not None and key and OmegaConf.select(cfg, f"profile.{key}") is not None:
            return list(OmegaConf.select(cfg, f"profile.{key}"))
        return group_options(group)
    return [check_option(group, name.strip()) for name in choice.split(",") if name.strip()]


def save_resolved(cfg: DictConfig, folder: str | Path, name: str = "config.yaml") -> Path:
    """Write the fully resolved config beside a command's outputs (atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = path.with_name(name + ".tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tmp.replace(path)
    return path


def to_container(node: DictConfig) -> dict:
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
