"""Where things are: the project root, the folders a config names (resolved against that root, never the
current directory), and how outputs write paths down so that they stay true on another machine.

- The project root is ``$SIGMA_BENCH_ROOT`` when set, else the checkout that holds ``configs/``.
- ``configs/config.yaml`` wraps its default folders in ``${root_path:...}``: a relative value resolves
  against the root, so ``bench`` behaves the same from any directory (``$SIGMA_BENCH_HOME`` sits inside
  that wrapper, so a relative value of it resolves against the root too). A value given on the command
  line (``paths.results=out``, ``dataset.root=...``, ``--pairs``) replaces the wrapper and is taken as
  given: relative to the current directory, as a shell user expects.
- Recorded paths (cells, sidecars, resolved configs) are written relative to the root, or as
  ``${paths.home}/...`` / ``${paths.results}/...`` for those folders when they live elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT_ENV = "SIGMA_BENCH_ROOT"
HOME_ENV = "SIGMA_BENCH_HOME"
DEFAULT_HOME = ".bench"


def project_root() -> Path:
    """The folder relative config paths resolve against: ``$SIGMA_BENCH_ROOT``, else this checkout."""
    env = os.environ.get(ROOT_ENV)
    return Path(env).expanduser().resolve() if env else Path(__file__).resolve().parents[1]


def under_root(value: str | os.PathLike[str]) -> str:
    """`value` as an absolute path: as it is when absolute, else below the project root."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else project_root() / path)


def home_dir() -> Path:
    """Generated data and caches (``paths.home``) for code that runs without a composed config."""
    return Path(under_root(os.environ.get(HOME_ENV, DEFAULT_HOME)))


def register_resolvers() -> None:
    """Make ``${root_path:VALUE}`` available to the configs (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("root_path"):
        OmegaConf.register_new_resolver("root_path", under_root)


def config_roots(paths: Mapping[str, Any]) -> dict[str, Path]:
    """The roots recorded paths are written against, most specific name first: the project root (written
    as a plain relative path), then ``${paths.results}`` and ``${paths.home}`` of a config's ``paths``."""
    roots = {"": project_root()}
    for key in ("results", "home"):
        if paths.get(key):
            roots[f"${{paths.{key}}}"] = Path(under_root(paths[key])).resolve()
    return roots


def portable(path: str | os.PathLike[str] | None, roots: Mapping[str, Path]) -> str | None:
    """`path` written against the first root it lies under (see :func:`config_roots`); a path under none
    of them (a user's own data) is kept as it is."""
    if path is None:
        return None
    text = str(path)
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        return text
    candidate = Path(os.path.abspath(candidate))
    for name, root in roots.items():
        try:
            rel = candidate.relative_to(Path(os.path.abspath(root)))
        except ValueError:
            continue
        rel_text = rel.as_posix() if rel.parts else "."
        return rel_text if not name else (name if rel_text == "." else f"{name}/{rel_text}")
    return text


def portable_tree(obj: Any, roots: Mapping[str, Path]) -> Any:
    """Every string of a JSON-like tree that is an absolute path under a root, written with :func:`portable`."""
    if isinstance(obj, str):
        return portable(obj, roots) if os.path.isabs(obj) else obj
    if isinstance(obj, Mapping):
        return {k: portable_tree(v, roots) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable_tree(v, roots) for v in obj]
    return obj
