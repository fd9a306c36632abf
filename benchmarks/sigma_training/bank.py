"""SIGMA's training data in memory and on disk: images turned into frozen backbone features once.

Everything SIGMA's heads train on is a function of fixed inputs (the suite, the backbone weights, the
stand-in autoencoder's seed), so backbone features are computed once and kept in a ``FeatureBank``
(float16 on disk and in memory). Training steps then cost only the heads, which is what makes Stage I +
Stage II fit a CPU budget and lets every ablation reuse the same bank. On disk the bank and its pair
tables are plain tensors, lists and dicts, so the file loads with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.data.imageio import load_image, load_mask, resize_image
from benchmarks.data.manifest import PairRecord, read_manifest
from benchmarks.io import save_torch
from sigma.serialization import load_file

log = logging.getLogger(__name__)

BANK_FORMAT = 2  # 2: plain containers (weights_only loads); 1 pickled the pair tables as objects


@dataclass
class PairTable:
    """Pairs as indices into a FeatureBank (original / edited image names), plus per-pair labels."""

    orig: list[int]
    edit: list[int]
    instruction: list[str]
    masks: torch.Tensor | None = None          # (N,1,H,W) bool, None for the unlabelled corpus
    intended: torch.Tensor | None = None       # (N,1,H,W) bool: what the instruction describes
    roundtrip: torch.Tensor | None = None      # (N,) bool
    meta: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.edit)


class FeatureBank:
    """Backbone pyramids of many images, stacked per level, plus the images (uint8)."""

    def __init__(self, dtype: torch.dtype = torch.float16) -> None:
        self.dtype = dtype  # float16 for training banks; float32 where results must equal the generator path
        self.levels: list[list[torch.Tensor]] = [[], [], []]
        self.images: list[torch.Tensor] = []
        self.size = 0
        self._stacked: list[torch.Tensor] | None = None

    @torch.no_grad()
    def add(self, images: np.ndarray | torch.Tensor, backbone: torch.nn.Module, device: torch.device,
            batch: int = 32, desc: str = "features", progress: bool = True) -> list[int]:
        """Add uint8 images (N,H,W,3); returns their indices."""
        from tqdm import tqdm

        images = torch.as_tensor(images)
        start = self.size
        for i in tqdm(range(0, len(images), batch), desc=desc, disable=not progress, leave=False):
            x = images[i:i + batch].permute(0, 3, 1, 2).float().div(255).to(device)
            x = x.contiguous(memory_format=torch.channels_last)
            for level, f in zip(self.levels, backbone(x)):
                level.append(f.to(self.dtype).cpu())
            self.images.append(images[i:i + batch].clone())
        self.size += len(images)
        self._stacked = None
        return list(range(start, self.size))

    def stack(self) -> None:
        if self._stacked is None:
            self._stacked = [torch.cat(level) for level in self.levels]
            self.levels = [[t] for t in self._stacked]
            self._images = torch.cat(self.images)
            self.images = [self._images]

    def features(self, idx: list[int] | torch.Tensor) -> list[torch.Tensor]:
        self.stack()
        idx = torch.as_tensor(idx)
        return [level.index_select(0, idx).float() for level in self._stacked]

    def pixels(self, idx: list[int] | torch.Tensor) -> torch.Tensor:
        self.stack()
        return self._images.index_select(0, torch.as_tensor(idx)).permute(0, 3, 1, 2).float().div(255)

    def state(self) -> dict:
        self.stack()
        return {"levels": self._stacked, "images": self._images, "size": self.size}

    @classmethod
    def from_state(cls, state: dict) -> FeatureBank:
        bank = cls()
        bank._stacked, bank._images, bank.size = state["levels"], state["images"], state["size"]
        bank.levels, bank.images = [[t] for t in bank._stacked], [bank._images]
        return bank


def load_pairs(folder: Path, with_masks: bool, exclude_split: str | None = None,
               exclude_families: Sequence[str] = ()
               ) -> tuple[list[PairRecord], np.ndarray, np.ndarray, torch.Tensor | None, torch.Tensor | None]:
    """Decode a pairs folder: records, originals, edited (uint8 N,H,W,3), masks and intended masks (bool).
    Records whose ``split`` is `exclude_split`, or whose ``family`` is one of `exclude_families` (leave-one-
    family-out training), are left out (logged with their counts)."""
    records = read_manifest(folder)
    for key, excluded in (("split", {exclude_split} if exclude_split else set()), ("family", set(exclude_families))):
        kept = [r for r in records if r.meta.get(key) not in excluded]
        if len(kept) < len(records):
            log.info("%s: %d pairs with %s in %s left out of SIGMA training", folder, len(records) - len(kept),
                     key, sorted(excluded))
        records = kept
    if not records:
        raise ValueError(f"{folder}: no pairs left for SIGMA training after leaving out split={exclude_split!r} and "
                         f"families {list(exclude_families)}")
    originals, edited, masks, intended = [], [], [], []
    for rec in records:
        e = load_image(rec.edited)
        o = load_image(rec.original)
        if o.shape != e.shape:
            o = resize_image(o, e.shape[:2])
        originals.append(o)
        edited.append(e)
        if with_masks:
            m = load_mask(rec.mask)
            masks.append(m)
            extra = rec.meta.get("mask_intended")
            intended.append(load_mask(folder / extra) if extra else m)
    shapes = {a.shape for a in edited}
    if len(shapes) > 1:
        raise ValueError(f"{folder}: SIGMA training batches need one image size, found {sorted(shapes)[:3]}; "
                         "resize the set first")
    to_t = lambda ms: torch.from_numpy(np.stack(ms))[:, None] if ms else None  # noqa: E731
    return records, np.stack(originals), np.stack(edited), to_t(masks), to_t(intended)


def save_bank(path: Path, bank: FeatureBank, tables: dict[str, PairTable], info: dict[str, Any]) -> Path:
    """The bank, its named pair tables and a description, as one file of plain values."""
    state = {"format": BANK_FORMAT, "bank": bank.state(), "info": info,
             "tables": {name: dataclasses.asdict(table) for name, table in tables.items()}}
    return save_torch(state, path)


def load_bank(path: Path) -> tuple[FeatureBank, dict[str, PairTable], dict[str, Any]]:
    """What :func:`save_bank` wrote; a file of another format is an error naming it and the fix."""
    state = load_file(path)
    if not isinstance(state, dict) or state.get("format") != BANK_FORMAT:
        raise ValueError(f"{path}: a SIGMA data bank of another format (want {BANK_FORMAT}); delete its folder and "
                         "run `bench train-sigma` again to rebuild it")
    tables = {name: PairTable(**values) for name, values in state["tables"].items()}
    return FeatureBank.from_state(state["bank"]), tables, state["info"]
