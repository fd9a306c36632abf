"""Pairs manifests: a folder with ``manifest.jsonl``, one JSON object per line (docs/design.md).

    {"id": "0001", "original": "original/0001.jpg", "edited": "edited/0001.jpg",
     "instruction": "make the car red", "mask": "mask/0001.png"}

Paths are relative to the folder. ``mask`` is optional (unlabelled corpora). Extra keys are kept as
metadata. Other tools write folders in this format; this reader accepts them unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from benchmarks.data.errors import DataError
from benchmarks.data.imageio import load_image, load_mask, resize_image
from benchmarks.data.transforms import Geometry, SampleTransform
from benchmarks.io import atomic_open

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
REQUIRED = ("id", "original", "edited")
KNOWN = REQUIRED + ("instruction", "mask")


@dataclass(frozen=True)
class PairRecord:
    """One line of a manifest, with paths resolved against the folder."""

    id: str
    original: Path
    edited: Path
    instruction: str
    mask: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self, root: Path) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id, "original": _rel(self.original, root),
                               "edited": _rel(self.edited, root), "instruction": self.instruction}
        if self.mask is not None:
            row["mask"] = _rel(self.mask, root)
        row.update(self.meta)
        return row


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def manifest_path(folder: str | Path) -> Path:
    folder = Path(folder)
    path = folder / MANIFEST if folder.is_dir() or folder.suffix != ".jsonl" else folder
    if not path.is_file():
        raise DataError(f"{path}: no pairs manifest here; a pairs folder holds {MANIFEST} (see docs/design.md)",
                        path=path, reason="missing")
    return path


def parse_line(line: str, root: Path, where: str) -> PairRecord:
    """Parse one manifest line; `where` ("file:line") labels errors."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object",
                        path=where, reason="bad-json") from exc
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}", path=where, reason="bad-json")
    missing = [k for k in REQUIRED if row.get(k) is None or row.get(k) == ""]  # id 0 is a valid id
    if missing:
        raise DataError(f"{where}: missing key(s) {missing}; every line needs {list(REQUIRED)}",
                        path=where, reason="missing-key")
    instruction = row.get("instruction")
    if instruction is None:
        instruction = ""
    if not isinstance(instruction, str):
        raise DataError(f"{where}: 'instruction' must be a string, got {instruction!r}", path=where, reason="bad-value")
    mask = row.get("mask")
    return PairRecord(
        id=str(row["id"]),
        original=root / row["original"],
        edited=root / row["edited"],
        instruction=instruction,
        mask=(root / mask) if mask else None,
        meta={k: v for k, v in row.items() if k not in KNOWN},
    )


def iter_manifest(folder: str | Path) -> Iterator[PairRecord]:
    """Stream the records of a manifest, line by line (constant memory)."""
    path = manifest_path(folder)
    root = path.parent
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                yield parse_line(line, root, f"{path}:{lineno}")


def read_manifest(folder: str | Path) -> list[PairRecord]:
    """All records of a manifest; duplicate ids are an error (they would collide in outputs)."""
    path = manifest_path(folder)
    records: list[PairRecord] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            rec = parse_line(line, path.parent, f"{path}:{lineno}")
            if rec.id in seen:
                raise DataError(f"{path}: id {rec.id!r} appears on lines {seen[rec.id]} and {lineno}; ids must be unique",
                                path=path, reason="duplicate-id")
            seen[rec.id] = lineno
            records.append(rec)
    return records


def write_manifest(folder: str | Path, records: list[PairRecord] | list[dict[str, Any]]) -> Path:
    """Write ``manifest.jsonl`` atomically. Records may be PairRecords or ready JSON dicts."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST
    with atomic_open(path) as fh:
        for rec in records:
            row = rec.to_json(folder) if isinstance(rec, PairRecord) else rec
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def load_pair(record: PairRecord, *, require_mask: bool = False) -> dict[str, Any]:
    """Decode one pair into uint8/bool arrays, with the checks every consumer needs.

    The original is resized to the edited image when sizes differ (flag ``original_resized``, which the
    runners count and report). A mask whose size differs from the edited image is an error: it cannot be
    aligned without guessing.
    """
    edited = load_image(record.edited)
    original = load_image(record.original)
    resized = original.shape[:2] != edited.shape[:2]
    if resized:
        log.warning("%s: original %s resized to edited %s", record.id, original.shape[:2], edited.shape[:2])
        original = resize_image(original, edited.shape[:2])
    if record.mask is None:
        if require_mask:
            raise DataError(f"pair {record.id!r}: no 'mask' in the manifest, but this command needs ground truth",
                            path=record.edited, reason="no-mask")
        mask, has_mask = np.zeros(edited.shape[:2], dtype=bool), False
    else:
        mask, has_mask = load_mask(record.mask), True
        if mask.shape != edited.shape[:2]:
            raise DataError(f"{record.mask}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but the edited image "
                            f"{record.edited} is {edited.shape[1]}x{edited.shape[0]}; masks must match the edited "
                            "image size", path=record.mask, reason="size-mismatch")
    return {"image": edited, "original": original, "mask": mask, "has_mask": has_mask, "original_resized": resized}


class PairsDataset(torch.utils.data.Dataset):
    """A pairs-manifest folder as Samples (image = edited, plus original and instruction)."""

    def __init__(self, folder: str | Path, geometry: Geometry | None = None, *, require_mask: bool = False,
                 name: str | None = None, train: bool = False, seed: int = 0):
        self.folder = Path(folder)
        self.records = read_manifest(self.folder)
        self.require_mask = require_mask
        self.name = name or self.folder.name
        self.transform = SampleTransform(geometry or Geometry("none"), train=train, seed=seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        arrays = load_pair(rec, require_mask=self.require_mask)
        has_mask, resized = arrays.pop("has_mask"), arrays.pop("original_resized")
        sample = self.transform(arrays, index)
        sample.update(id=rec.id, dataset=self.name, instruction=rec.instruction, has_mask=has_mask,
                      original_resized=resized, label=int(bool(arrays["mask"].any())) if has_mask else 1)
        return sample
