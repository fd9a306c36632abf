"""Pairs by global index, for training that draws pairs at random from corpora too large to hold.

The same two formats `bench annotate` streams (:mod:`benchmarks.data.pair_sources`), opened for random
access with memory that does not grow with the number of pairs:

- a pairs-manifest folder: one byte offset per line (8 bytes a pair), each drawn line parsed and decoded
  with the manifest reader (:func:`~benchmarks.data.manifest.parse_line`, :func:`~benchmarks.data.manifest.load_pair`);
- hub-style parquet files: :meth:`benchmarks.data.parquet.ParquetPairs.row_at` (a few row groups kept).

``get(i)`` returns one decoded pair or raises :class:`~benchmarks.data.errors.DataError` naming the file
(a missing or corrupt image, a bad manifest line, a mask of another size); callers turn that into a
counted skip or a stop.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from benchmarks.data.errors import DataError
from benchmarks.data.imageio import load_image, load_mask
from benchmarks.data.manifest import MANIFEST, load_pair, manifest_path, parse_line
from benchmarks.data.parquet import ParquetPairs, expand_files
from benchmarks.io import file_hash


class PairIndex(Protocol):
    """Random access to a set of pairs. ``get(i)`` -> ``{id, original, edited (uint8 H,W,3), mask, intended
    (bool H,W or None), instruction}``; ``blocks`` are the index ranges read together (parquet row groups),
    None when every pair is read on its own."""

    kind: str
    blocks: list[tuple[int, int]] | None

    def __len__(self) -> int: ...
    def get(self, i: int, *, need_mask: bool = False, original_only: bool = False) -> dict[str, Any]: ...
    def describe(self) -> dict[str, Any]: ...


class ManifestIndex:
    """A pairs manifest as byte offsets of its lines. Lines whose ``split`` is `exclude_split` are left
    out (counted in ``excluded``); a line that is not valid JSON stays in, and reading it raises."""

    kind = "manifest"
    blocks = None

    def __init__(self, folder: str | Path, exclude_split: str | None = None):
        self.path = manifest_path(folder)
        self.root = self.path.parent
        offsets, lines = [], []
        self.excluded = 0
        with open(self.path, "rb") as fh:
            lineno, offset = 0, 0
            for raw in fh:
                lineno += 1
                if raw.strip() and not (exclude_split and _split(raw) == exclude_split):
                    offsets.append(offset)
                    lines.append(lineno)
                elif raw.strip():
                    self.excluded += 1
                offset += len(raw)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.lines = np.asarray(lines, dtype=np.int64)
        self._fh, self._pid = None, None

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own file handle
        return {**self.__dict__, "_fh": None, "_pid": None}

    def __len__(self) -> int:
        return len(self.offsets)

    def line(self, i: int) -> str:
        # one handle per process: a forked worker must not share the parent's file position
        if self._fh is None or self._pid != os.getpid():
            self._fh, self._pid = open(self.path, "rb"), os.getpid()  # noqa: SIM115 (kept for the process's life)
        self._fh.seek(int(self.offsets[i]))
        return self._fh.readline().decode("utf-8")

    def get(self, i: int, *, need_mask: bool = False, original_only: bool = False) -> dict[str, Any]:
        where = f"{self.path}:{int(self.lines[i])}"
        rec = parse_line(self.line(i), self.root, where)
        if original_only:
            return {"id": rec.id, "original": load_image(rec.original), "instruction": rec.instruction}
        arrays = load_pair(rec, require_mask=need_mask)
        mask = arrays["mask"] if arrays["has_mask"] else None
        intended = mask
        extra = rec.meta.get("mask_intended")
        if mask is not None and extra:
            intended = load_mask(self.root / extra)
            if intended.shape != mask.shape:
                raise DataError(f"{self.root / extra}: mask_intended is {intended.shape[1]}x{intended.shape[0]} "
                                f"(WxH), the mask {mask.shape[1]}x{mask.shape[0]}; they must match",
                                path=self.root / extra, reason="size-mismatch")
        return {"id": rec.id, "original": arrays["original"], "edited": arrays["image"], "mask": mask,
                "intended": intended, "instruction": rec.instruction}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "manifest": file_hash(self.path, 16), "pairs": len(self)}


def _split(raw: bytes) -> Any:
    try:
        row = json.loads(raw)
    except ValueError:
        return None
    return row.get("split") if isinstance(row, dict) else None


class ParquetIndex:
    """Hub-style parquet files by global row (row groups are the blocks). The ``split`` exclusion of
    manifests does not apply: parquet corpora carry no split column of this suite."""

    kind = "parquet"

    def __init__(self, spec: str | Path, keep_groups: int = 4):
        self.files = expand_files(spec)
        self.reader = ParquetPairs(self.files, on_error="raise", keep_groups=keep_groups)
        self.blocks = self.reader.row_groups
        self.excluded = 0

    def __len__(self) -> int:
        return sum(self.reader.row_counts)

    def get(self, i: int, *, need_mask: bool = False, original_only: bool = False) -> dict[str, Any]:
        row = self.reader.row_at(i)
        if need_mask and row["mask"] is None:
            raise DataError(f"{row['source']}: no mask in this row, but the Stage I set needs ground truth",
                            path=row["source"], reason="no-mask")
        return {"id": row["id"], "original": row["original"], "edited": row["edited"], "mask": row["mask"],
                "intended": row["mask"], "instruction": row["instruction"]}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "files": [[p.name, p.stat().st_size, n]
                                             for p, n in zip(self.files, self.reader.row_counts)]}


def open_index(spec: str | Path, exclude_split: str | None = None,
               keep_groups: int = 4) -> ManifestIndex | ParquetIndex:
    """A pairs-manifest folder (or its manifest.jsonl), else parquet files (a file, folder or glob)."""
    path = Path(spec)
    if (path.is_dir() and (path / MANIFEST).is_file()) or path.suffix == ".jsonl":
        return ManifestIndex(path, exclude_split)
    try:
        return ParquetIndex(spec, keep_groups)
    except DataError as exc:
        raise DataError(f"{spec}: neither a pairs-manifest folder (with {MANIFEST}) nor parquet files ({exc})",
                        path=spec, reason="missing") from exc
