"""What a ``--dataset`` choice names: the synthetic suite (built on first use), config entries of the
``dataset`` group as one typed :class:`DatasetConfig`, and the folders or item lists they resolve to
for the commands that score generators (pairs with masks) and detectors (IML lists)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from benchmarks.config import compose, expand, save_resolved, to_container, typed
from benchmarks.data.iml import ImlItem, list_iml
from benchmarks.synth.build import SynthConfig, build_suite, suite_dir

SOURCES = ("synth", "pairs", "iml", "adapter")


@dataclass(frozen=True)
class DatasetConfig:
    """One file of ``configs/dataset/``: ``source`` says what the other keys mean: ``synth`` (a ``set``
    of the synthetic ``suite``), ``pairs`` (a pairs-manifest folder at ``root``), ``iml`` (an IMDL-BenCo
    list or Tp/+Gt/ folder at ``root``), ``adapter`` (a public benchmark at ``root`` read by ``adapter``)."""

    name: str
    source: str
    root: str | None = None
    adapter: str | None = None
    suite: str | None = None
    set: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"dataset {self.name!r}: source {self.source!r} is unknown; use one of {SOURCES}")
        need = {"synth": ("suite", "set"), "pairs": ("root",), "iml": ("root",), "adapter": ("root", "adapter")}
        missing = [k for k in need[self.source] if not getattr(self, k)]
        if missing:
            raise ValueError(f"dataset {self.name!r} (source {self.source}) needs {missing}; set "
                             f"{' '.join(f'dataset.{k}=...' for k in missing)}")


def dataset_config(cfg: DictConfig, overrides: list[str], name: str) -> DatasetConfig:
    """The typed entry ``configs/dataset/<name>.yaml`` (with the command's overrides)."""
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(compose([*overrides, f"dataset={name}"]).dataset, resolve=True,
                                  throw_on_missing=False)
    values = {k: (None if v == "???" else v) for k, v in node.items()}  # type: ignore[union-attr]  # ??? = not given
    return typed(DatasetConfig, values, f"configs/dataset/{name}.yaml")


# ---------------------------------------------------------------------------------------------- the synthetic suite


def synth_config(cfg: DictConfig) -> SynthConfig:
    """``cfg.synth`` as the typed suite config."""
    return SynthConfig.from_dict(to_container(cfg.synth))


def ensure_suite(cfg: DictConfig, force: bool = False, progress: bool = True) -> Path:
    """Build (or reuse) the synthetic suite `cfg.synth` describes; return its folder."""
    root = build_suite(synth_config(cfg), cfg.paths.data, force=force, progress=progress)
    save_resolved(cfg, root)
    return root


def with_suite(cfg: DictConfig, suite: str) -> DictConfig:
    """A copy of `cfg` whose ``synth`` node is the ``configs/synth/<suite>.yaml`` suite, its sizes, image size
    and data folder resolved against `cfg` (its profile, experiment and overrides), as `cfg.synth`'s are."""
    named = compose([f"synth={suite}"]).synth  # unresolved: ${sizes.*}, ${geometry.size} read `cfg` below
    out = copy.deepcopy(cfg)
    out.synth = named
    return out


def suite_root(cfg: DictConfig, suite: str | None = None, overrides: list[str] | None = None) -> Path:
    """The folder of a synthetic suite (`suite`: a ``configs/synth/`` name; None: ``cfg.synth``), built on
    first use: with `overrides` composed afresh, else under `cfg`'s own settings (:func:`with_suite`)."""
    if suite in (None, cfg.synth.name):
        suite_cfg = cfg
    elif overrides:
        suite_cfg = compose([*overrides, f"synth={suite}"])
    else:
        suite_cfg = with_suite(cfg, suite)
    root = suite_dir(synth_config(suite_cfg), suite_cfg.paths.data)
    return root if (root / "DONE").is_file() else ensure_suite(suite_cfg)


def dataset_root(cfg: DictConfig, dataset: DatasetConfig, overrides: list[str] | None = None) -> Path:
    """Folder of a synthetic dataset entry (building its suite on first use)."""
    if dataset.source != "synth":
        raise ValueError(f"dataset {dataset.name!r} is not synthetic (source={dataset.source!r})")
    return suite_root(cfg, dataset.suite, overrides) / str(dataset.set)


# ---------------------------------------------------------------------------------------------- --dataset


def _is_path(choice: str) -> bool:
    return Path(choice).expanduser().exists() or "/" in choice


def pair_datasets(cfg: DictConfig, choice: str, overrides: list[str]) -> list[tuple[str, Path]]:
    """(name, pairs folder) for a generator evaluation's ``--dataset``: config names, 'all', or a folder."""
    if _is_path(choice):
        path = Path(choice).expanduser()
        return [(path.name or "pairs", path)]
    out = []
    for name in expand("dataset", choice, cfg):
        ds = dataset_config(cfg, overrides, name)
        if ds.source == "synth":
            out.append((name, dataset_root(cfg, ds, overrides)))
        elif ds.source == "pairs":
            out.append((name, Path(str(ds.root))))
        else:
            raise ValueError(f"dataset {name!r} is an IML dataset (source={ds.source}); generators need pairs "
                             "(original, edited, instruction) with masks: a pairs-manifest folder or a synth benchmark")
    return out


def iml_test_sets(cfg: DictConfig, choice: str, overrides: list[str]) -> list[tuple[str, list[ImlItem]]]:
    """(name, items) for a detector test's ``--dataset``: config names, 'all' (the profile's test sets), or
    an IML list path."""
    if _is_path(choice):
        path = Path(choice).expanduser()
        return [(path.stem if path.suffix else path.name, list_iml(path))]
    out = []
    for name in expand("dataset", choice, cfg):
        ds = dataset_config(cfg, overrides, name)
        if ds.source == "synth":
            out.append((name, list_iml(dataset_root(cfg, ds, overrides) / "iml.json")))
        elif ds.source in ("iml", "adapter"):
            out.append((name, list_iml(str(ds.root), adapter=ds.adapter)))
        else:
            raise ValueError(f"dataset {name!r} (source={ds.source}) is not an IML dataset; detectors are tested on "
                             "IMDL-BenCo lists, Tp/+Gt/ folders, adapters or synth_* benchmarks")
    return out
