"""Where `bench annotate` reads pairs from: a pairs-manifest folder (read line by line) or hub-style parquet
files (streamed). Both yield, in increasing global index, either a pair or a skip marker for a pair that
cannot be read, so a long annotation run logs and counts bad input instead of stopping or dropping it."""

from __future__ import annotations

import contextlib
import hashlib
import json
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from benchmarks.data.errors import DataError, SkipLog
from benchmarks.data.manifest import MANIFEST, load_pair, manifest_path, parse_line
from benchmarks.data.parquet import ParquetPairs, expand_files

SKIP = "_skip"  # the key of a skip marker: {"index", "id", SKIP: reason, "error"}


class PairSource(Protocol):
    """What the annotation loop streams from. ``iter_items`` yields, in increasing global index, one dict
    per selected index < ``stop``: a pair (``index id original edited instruction original_resized edited_path
    original_path source``, images uint8 HWC) or a skip marker (``index id _skip error``)."""

    kind: str
    edited_on_disk: bool  # False: the edited images are written to DIR/images so the IMDL-BenCo list can name them

    def count(self, limit: int | None = None) -> int: ...
    def describe(self) -> dict[str, Any]: ...
    def check_same(self, recorded: dict[str, Any]) -> None: ...
    def iter_items(self, residue: int, step: int, start: int, stop: int, on_error: str) -> Iterator[dict]: ...


def marker(index: int, item_id: str, reason: str, error: str) -> dict[str, Any]:
    return {"index": index, "id": item_id, SKIP: reason, "error": error}


def _sha256_head(path: Path, size: int) -> str:
    h, left = hashlib.sha256(), size
    with open(path, "rb") as fh:
        while left > 0:
            chunk = fh.read(min(left, 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


class ManifestSource:
    """A pairs-manifest folder, read line by line (never loaded whole)."""

    kind = "manifest"
    edited_on_disk = True

    def __init__(self, folder: str | Path):
        self.path = manifest_path(folder).resolve()
        self.root = self.path.parent

    def _lines(self) -> Iterator[tuple[int, int, str]]:
        with open(self.path, encoding="utf-8") as fh:
            index = 0
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    yield index, lineno, line
                    index += 1

    def count(self, limit: int | None = None) -> int:
        n = 0
        for _ in self._lines():
            if limit is not None and n >= limit:
                break
            n += 1
        return n

    def describe(self) -> dict[str, Any]:
        size = self.path.stat().st_size
        return {"kind": self.kind, "path": str(self.path), "size": size, "sha256": _sha256_head(self.path, size)}

    def check_same(self, recorded: dict[str, Any]) -> None:
        # growing by appended lines is fine (indices of existing lines stay); anything else is not
        size = int(recorded.get("size", -1))
        if (recorded.get("kind") != self.kind or self.path.stat().st_size < size
                or _sha256_head(self.path, size) != recorded.get("sha256")):
            raise ValueError(f"{self.path}: this manifest changed since the output folder was started (only appending "
                             "lines is allowed); annotate into a new --out folder")

    def iter_items(self, residue: int, step: int, start: int, stop: int, on_error: str) -> Iterator[dict]:
        for index, lineno, line in self._lines():
            if index >= stop:
                break
            if index < start or index % step != residue:
                continue
            item_id = f"line-{lineno}"
            try:
                rec = parse_line(line, self.root, f"{self.path}:{lineno}")
                item_id = rec.id
                arrays = load_pair(replace(rec, mask=None))  # annotation never reads ground truth
            except DataError as err:
                if on_error == "raise":
                    raise
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    item_id = str(json.loads(line).get("id", item_id))
                yield marker(index, item_id, err.reason, str(err))
                continue
            yield {"index": index, "id": rec.id, "original": arrays["original"], "edited": arrays["image"],
                   "instruction": rec.instruction, "original_resized": arrays["original_resized"],
                   "edited_path": rec.edited, "original_path": rec.original, "source": None}


@dataclass
class _Sink(SkipLog):
    """Collects the reader's skips so the stream can turn each skipped row into a marker with its index."""

    items: list[tuple[str, str, str]] = field(default_factory=list)

    def record(self, item_id: str, error: Exception) -> None:
        self.items.append((item_id, getattr(error, "reason", type(error).__name__), str(error)))


class ParquetSource:
    """Hub-style parquet files, streamed by :class:`ParquetPairs` (mask columns are not read)."""

    kind = "parquet"
    edited_on_disk = False

    def __init__(self, spec: str | Path):
        self.files = [p.resolve() for p in expand_files(spec)]
        self._counts: list[int] | None = None
        self.file_errors: list[tuple[str, str, str]] = []

    def _reader(self, on_error: str, sink: SkipLog) -> ParquetPairs:
        return ParquetPairs(self.files, columns={"mask": None}, on_error=on_error, skip_log=sink)

    @property
    def row_counts(self) -> list[int]:
        """Rows per file from the footers; an unreadable file counts 0 and is listed in ``file_errors``."""
        if self._counts is None:
            sink = _Sink()
            self._counts = list(self._reader("skip", sink).row_counts)
            self.file_errors = sink.items
        return self._counts

    def count(self, limit: int | None = None) -> int:
        total = sum(self.row_counts)
        return total if limit is None else min(total, limit)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "files": [[str(p), n] for p, n in zip(self.files, self.row_counts)]}

    def check_same(self, recorded: dict[str, Any]) -> None:
        if recorded.get("kind") != self.kind or recorded.get("files") != self.describe()["files"]:
            raise ValueError("the parquet files (names or row counts) changed since the output folder was started; "
                             "global row indices would no longer match the shards: annotate into a new --out folder")

    def _default_id(self, index: int) -> str:
        bounds = np.cumsum([0, *self.row_counts]).tolist()
        f = bisect_right(bounds, index) - 1
        return f"{self.files[f].stem}-{index - bounds[f]}"

    def iter_items(self, residue: int, step: int, start: int, stop: int, on_error: str) -> Iterator[dict]:
        sink = _Sink()
        reader = self._reader(on_error, sink).shard(residue, step).resume(start)
        file_ids = {str(p) for p in self.files}
        expected = start + (residue - start) % step
        rows = iter(reader)
        while True:
            row = next(rows, None)
            upto = stop if row is None else min(row["row"], stop)
            gap = list(range(expected, upto, step))
            records = [r for r in sink.items if r[0] not in file_ids]  # file-level errors: reported by the merge
            sink.items.clear()
            yield from self._gap_markers(gap, records)
            if row is None or row["row"] >= stop:
                return
            expected = row["row"] + step
            yield {"index": row["row"], "id": row["id"], "original": row["original"], "edited": row["edited"],
                   "instruction": row["instruction"], "original_resized": row["original_resized"],
                   "edited_path": None, "original_path": None, "source": row["source"],
                   "edited_bytes": row["edited_bytes"]}

    def _gap_markers(self, gap: list[int], records: list[tuple[str, str, str]]) -> Iterator[dict]:
        """Every selected row the reader did not return is a skip; pair them with the reader's records."""
        if len(records) == len(gap):
            for index, (item_id, reason, error) in zip(gap, records):
                yield marker(index, item_id, reason, error)
            return
        _, reason, error = records[-1] if records else ("", "unreadable", "row not returned by the parquet reader")
        for index in gap:
            yield marker(index, self._default_id(index), reason, error)


def open_source(spec: str | Path) -> ManifestSource | ParquetSource:
    """A pairs-manifest folder (or its manifest.jsonl), else parquet files (a file, folder or glob)."""
    path = Path(spec)
    if (path.is_dir() and (path / MANIFEST).is_file()) or path.suffix == ".jsonl":
        return ManifestSource(path)
    try:
        return ParquetSource(spec)
    except DataError as exc:
        raise DataError(f"{spec}: neither a pairs-manifest folder (with {MANIFEST}) nor parquet files ({exc})",
                        path=spec, reason="missing") from exc
