"""Composing the Hydra configs: named flags select groups, extra ``key=value`` arguments override.

Configs select, code defines: the YAML files under ``configs/`` pick parts and sizes; the dataclasses in
the code (e.g. :class:`benchmarks.synth.build.SynthConfig`, :class:`detectors.train.TrainConfig`) hold the
typed defaults and validate, and ``tests/test_configs.py`` checks that both say the same. Folder paths
resolve against the project root (:mod:`benchmarks.paths`), so a command runs the same from anywhere.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from benchmarks.paths import config_roots, portable_tree, register_resolvers

T = TypeVar("T")

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
    """`name` when it is a file of config group `group`; else an error listing the choices."""
    options = group_options(group)
    if name not in options:
        raise ValueError(f"--{group} {name!r} is unknown; choose one of {options}"
                         + (" or 'all'" if group in ("generator", "detector", "dataset") else ""))
    return name


def compose(overrides: Sequence[str] = (), command: str | None = None) -> DictConfig:
    """Compose ``configs/config.yaml`` with Hydra overrides (``group=option`` or ``key=value``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
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
    """Write the fully resolved config beside a command's outputs (atomically), its paths written against
    the project root and ``paths.*`` (:func:`benchmarks.paths.portable`), so the record holds no machine's
    folders."""
    from benchmarks.io import atomic_write

    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    record = portable_tree(resolved, config_roots(resolved.get("paths", {})))
    return atomic_write(Path(folder) / name, OmegaConf.to_yaml(OmegaConf.create(record)))


def to_container(node: DictConfig) -> dict:
    """A config node as plain Python values, interpolations resolved."""
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def typed(cls: type[T], node: DictConfig | Mapping[str, Any], where: str) -> T:
    """A config node as the typed config `cls` (a dataclass): unknown keys are an error naming them and
    the known ones, lists become tuples, nested dataclass fields are built the same way."""
    values = to_container(node) if isinstance(node, DictConfig) else dict(node)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    hints = _field_types(cls)
    out = {}
    for key, value in values.items():
        kind = hints.get(key)
        if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            value = typed(kind, value, f"{where}.{key}")
        elif isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return cls(**out)


def _field_types(cls: type) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # a hint that does not resolve: no nested typing for that class
        return {}
