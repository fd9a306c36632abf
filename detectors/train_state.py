"""What a detector training checkpoint holds besides weights: seeding and every RNG state, written
atomically, and the loaders that read checkpoints back (weights only, ``weights_only=True``)."""

from __future__ import annotations

import os
import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all CUDA devices included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG state as plain types and tensors (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file, fsync, then rename over `path` (a kill never leaves a torn file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_file(path: str | Path) -> Any:
    """A torch file of tensors and plain containers, read with ``weights_only=True``: a file whose pickle
    would build any other object (and so could run code on load) is refused with an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: refused: its pickle holds objects other than tensors and plain containers "
                         "(torch.load weights_only=True), which could run code on load; use a checkpoint or "
                         "state dict saved by torch.save of tensors only") from exc


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A weights file (a state dict, or a dict holding one under ``state_dict``) as a state dict."""
    state = load_file(path)
    return state["state_dict"] if isinstance(state, dict) and "state_dict" in state else state


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by :class:`detectors.train.Trainer` (see :func:`load_file`)."""
    return load_file(path)


def load_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load the ``model`` weights of a trainer checkpoint (last.pt or best.pt) into `model`; returns the
    checkpoint's other entries (epoch, step, metrics, meta)."""
    ckpt = load_checkpoint(path)
    if "model" not in ckpt:
        raise ValueError(f"{path}: no 'model' entry; is it a checkpoint written by detectors.train?")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the model ({exc}); was it trained with the same detector "
                         "and variant?") from exc
    return {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler", "scaler", "rng")}
