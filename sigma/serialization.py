"""SIGMA's torch files (exported heads, stage checkpoints, backbone weights): written atomically, read
with ``weights_only=True`` so that a file from elsewhere can hold tensors and plain values but no code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch


def save_file(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary name beside `path`, then rename (a kill never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path


def load_file(path: str | Path, map_location: Any = "cpu") -> Any:
    """Tensors and plain containers from `path`; any other pickled object is refused, naming the file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: not loaded: the file pickles Python objects beyond tensors, numbers, strings "
                         "and containers, and unpickling those can run code (weights_only=True refuses them). "
                         "Re-export it with `bench train-sigma`, or load it by hand only if you trust it") from exc
