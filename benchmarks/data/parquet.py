"""Streaming reader for hub-style parquet editing corpora (InstructPix2Pix, MagicBrush, UltraEdit, ...).

Files are read one row group at a time with ``ParquetFile.iter_batches`` (small batches, only the needed
columns), so memory stays bounded by one row group whatever the corpus size; a file is never loaded whole.

Columns are found by name from known aliases (see :data:`ALIASES`), as the hub cards declare them:

- InstructPix2Pix (``timbrooks/instructpix2pix-clip-filtered``): ``original_image``, ``edited_image``,
  ``edit_prompt`` (plus ``original_prompt`` / ``edited_prompt`` captions, which are *not* instructions);
- MagicBrush (``osunlp/MagicBrush``): ``img_id``, ``turn_index``, ``source_img``, ``mask_img``,
  ``instruction``, ``target_img``; ids are ``f"{img_id}_{turn_index}"``;
- UltraEdit (``BleachNick/UltraEdit*``): ``source_image``, ``edited_image``, ``edit_prompt``, ``idx``,
  ``mask_image`` (an all-null column in the free-form splits, an image in the region-based one).

Image cells are either the ``datasets`` Image struct ``{"bytes": binary, "path": string}`` or raw binary.
A caller can override any role with ``columns={"mask": "my_mask", "id": None, ...}``.

Masks: MagicBrush masks come from the DALL-E 2 editor and mark the edit by transparency (alpha 0 inside
the edited region, opaque elsewhere). ``mask_reader="auto"`` (default) reads such an alpha channel when the
mask has one that is not fully opaque, and otherwise applies :func:`load_mask`'s value rule.

Row selection is by *global* row index (files sorted, rows counted from each footer): ``shard(r, n)``
keeps rows ``i % n == r``, so torchrun ranks partition the corpus without overlap or gap, and shards
compose (``ParquetPairsDataset`` shards a rank's rows again across DataLoader workers). ``start_row``
resumes after the last row written (each row carries its global index as ``row``).

Random access (``row_at(i)``, for training that draws rows): the row is read with its whole row group,
and the last ``keep_groups`` groups read stay in memory (their needed columns, still encoded), so rows
drawn from a few row groups at a time cost one read per group; memory is bounded by those groups.
"""

from __future__ import annotations

import glob
import logging
from bisect import bisect_right
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch.utils.data

from benchmarks.data.errors import DataError, SkipLog
from benchmarks.data.imageio import _open, _pil_to_array, load_image, load_mask, resize_image
from benchmarks.data.transforms import Geometry, SampleTransform

log = logging.getLogger(__name__)

ROLES = ("original", "edited", "instruction", "mask", "id")
ALIASES: dict[str, tuple[str, ...]] = {
    "original": ("original_image", "source_img", "source_image", "input_image", "input_img", "image_0",
                 "original", "source", "input"),
    "edited": ("edited_image", "target_img", "target_image", "output_image", "output_img", "edited_img",
               "image_1", "edited", "target", "output"),
    "instruction": ("edit_prompt", "instruction", "edit_instruction", "instructions", "prompt", "text"),
    "mask": ("mask_img", "mask_image", "mask"),
    "id": ("id", "key", "uid", "idx"),
}
COMPOSITE_IDS = (("img_id", "turn_index"),)  # MagicBrush: one COCO image, several edit turns
MASK_READERS = ("auto", "alpha", "value")

MaskReader = str | Callable[[bytes, str], np.ndarray]


@dataclass(frozen=True)
class ColumnMap:
    """Which parquet column plays which role. ``id`` may join several columns with ``_``."""

    original: str
    edited: str
    instruction: str | None = None
    mask: str | None = None
    id: tuple[str, ...] = ()

    @property
    def needed(self) -> list[str]:
        cols = [self.original, self.edited, self.instruction, self.mask, *self.id]
        return list(dict.fromkeys(c for c in cols if c))


def resolve_columns(names: Sequence[str], overrides: dict[str, Any] | None = None, *, where: str = "") -> ColumnMap:
    """Map roles to columns of a file: caller overrides first, then the first alias present (any case)."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(ROLES)
    if unknown:
        raise DataError(f"columns= has unknown role(s) {sorted(unknown)}; roles are {list(ROLES)}", reason="bad-value")
    lower = {n.lower(): n for n in names}

    def fail(what: str) -> DataError:
        return DataError(f"{where}: {what}; its columns are {list(names)}. Pass columns={{'original': ..., "
                         "'edited': ..., 'instruction': ..., 'mask': ..., 'id': ...}} to name them",
                         path=where, reason="unknown-columns")

    found: dict[str, Any] = {}
    for role in ROLES:
        if role in overrides:
            value = overrides[role]
            cols = () if value is None else ((value,) if isinstance(value, str) else tuple(value))
            missing = [c for c in cols if c not in names]
            if missing:
                raise fail(f"column(s) {missing} given for {role!r} are not in this file")
            found[role] = cols
            continue
        alias = next((lower[a] for a in ALIASES[role] if a in lower), None)
        if role == "id" and alias is None:
            alias = next((tuple(lower[c] for c in combo) for combo in COMPOSITE_IDS if all(c in lower for c in combo)),
                         None)
        found[role] = () if alias is None else ((alias,) if isinstance(alias, str) else alias)
    for role in ("original", "edited"):
        if len(found[role]) != 1:
            raise fail(f"no {role} image column (looked for {list(ALIASES[role])})")
    return ColumnMap(original=found["original"][0], edited=found["edited"][0],
                     instruction=(found["instruction"] or (None,))[0], mask=(found["mask"] or (None,))[0],
                     id=tuple(found["id"]))


def expand_files(files: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files from a glob, a directory (every ``*.parquet`` under it), a path, or a list of those; sorted."""
    items = [files] if isinstance(files, (str, Path)) else list(files)
    out: set[Path] = set()
    for item in items:
        text = str(item)
        if glob.has_magic(text):
            matches = [Path(p) for p in glob.glob(text, recursive=True)]
        elif Path(text).is_dir():
            matches = list(Path(text).rglob("*.parquet"))
        else:
            matches = [Path(text)] if Path(text).is_file() else []
        if not matches:
            raise DataError(f"{text}: no parquet files here (give a file, a folder or a glob such as "
                            "'data/train-*.parquet')", path=text, reason="missing")
        out.update(p for p in matches if p.is_file())
    return sorted(out, key=lambda p: p.as_posix())


def _cell_bytes(value: Any, name: str, parquet_dir: Path) -> bytes:
    """Encoded image bytes from a cell: raw binary or the ``datasets`` struct {bytes, path}."""
    path = None
    if isinstance(value, dict):
        value, path = value.get("bytes"), value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value):
        return bytes(value)
    if isinstance(value, str):
        path, value = value, None
    if path:  # a struct whose bytes were not embedded: the path is absolute or relative to the parquet folder
        for candidate in (Path(path), parquet_dir / path):
            if candidate.is_file():
                return candidate.read_bytes()
        raise DataError(f"{name}: image not embedded and its path {path!r} is not found", path=name, reason="missing")
    if value is None:
        raise DataError(f"{name}: no image in this cell (null)", path=name, reason="missing")
    raise DataError(f"{name}: empty image bytes", path=name, reason="corrupt")


def read_mask(data: bytes, name: str, reader: MaskReader = "auto") -> np.ndarray:
    """Decode a mask cell to bool (H, W), True = edited. See the module docstring for ``auto``."""
    if callable(reader):
        return np.asarray(reader(data, name), dtype=bool)
    if reader == "value":
        return load_mask(data, name)
    arr = _pil_to_array(_open(data, name), name)
    has_alpha = arr.ndim == 3 and arr.shape[2] in (2, 4)
    if reader == "alpha" and not has_alpha:
        raise DataError(f"{name}: mask_reader='alpha' but this mask has no alpha channel; use mask_reader='value'",
                        path=name, reason="unsupported")
    if has_alpha and (reader == "alpha" or int(arr[:, :, -1].min()) < 255):
        return arr[:, :, -1] < 128  # transparent = edited (DALL-E 2 / MagicBrush convention)
    return load_mask(data, name)


class ParquetPairs:
    """Iterate ``{id, original, edited, instruction, mask, source, row, original_resized[, meta]}`` dicts.

    ``original``/``edited`` are uint8 RGB (H, W, 3), ``mask`` bool (H, W) or None; ``source`` is
    ``"file#row"`` (row within the file) and ``row`` the global row index (for ``start_row``).
    ``on_error="skip"`` logs, counts and records undecodable rows in ``skip_log`` and goes on. DataLoader
    workers count in their own copies: give ``SkipLog(path=...)`` to collect every worker's skips in one file.
    """

    def __init__(self, files: str | Path | Sequence[str | Path], *, columns: dict[str, Any] | None = None,
                 mask_reader: MaskReader = "auto", on_error: str = "raise", skip_log: SkipLog | None = None,
                 batch_size: int = 8, start_row: int = 0, extra: Sequence[str] = (), keep_groups: int = 4):
        if on_error not in ("raise", "skip"):
            raise DataError(f"on_error={on_error!r}; use 'raise' or 'skip'", reason="bad-value")
        if not callable(mask_reader) and mask_reader not in MASK_READERS:
            raise DataError(f"mask_reader={mask_reader!r}; use one of {MASK_READERS} or a callable", reason="bad-value")
        if batch_size < 1 or start_row < 0:
            raise DataError(f"batch_size must be >= 1 and start_row >= 0, got {batch_size}, {start_row}",
                            reason="bad-value")
        self.files = expand_files(files)
        self.columns = dict(columns or {})
        self.mask_reader = mask_reader
        self.on_error = on_error
        self.skip_log = skip_log if skip_log is not None else SkipLog()
        self.batch_size = int(batch_size)
        self.start_row = int(start_row)
        self.extra = tuple(extra)
        self.rank, self.world_size = 0, 1
        self._row_counts: list[int] | None = None
        self.keep_groups = max(1, int(keep_groups))
        self._groups: OrderedDict[tuple[int, int], Any] = OrderedDict()  # (file, group) -> pa.Table (row_at)
        self._group_starts: list[tuple[int, int, int]] | None = None     # (global start, file, group)

    def __getstate__(self) -> dict[str, Any]:  # picklable for spawned DataLoader workers (SkipLog holds a lock)
        state = dict(self.__dict__)
        skip_log = state.pop("skip_log")
        state["_skip_state"] = (skip_log.path, dict(skip_log.counts))
        state["_groups"] = OrderedDict()  # each process reads its own row groups
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        path, counts = state.pop("_skip_state")
        self.__dict__.update(state)
        self.skip_log = SkipLog(path=path, counts=Counter(counts))

    # ---- selection -------------------------------------------------------------------------------
    def shard(self, rank: int, world_size: int) -> ParquetPairs:
        """A copy that keeps global rows ``i % world_size == rank`` of this reader's rows (shards compose)."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"shard(rank={rank}, world_size={world_size}): need 0 <= rank < world_size",
                            reason="bad-value")
        other = self._copy()
        # rows with i % w1 == r1, then every w2-th of those from the r2-th: i % (w1*w2) == r2*w1 + r1
        other.rank, other.world_size = rank * self.world_size + self.rank, self.world_size * world_size
        return other

    def resume(self, start_row: int) -> ParquetPairs:
        """A copy that starts at global row ``start_row`` (the ``row`` of the last item done, plus one)."""
        if start_row < 0:
            raise DataError(f"start_row must be >= 0, got {start_row}", reason="bad-value")
        other = self._copy()
        other.start_row = int(start_row)
        return other

    def _copy(self) -> ParquetPairs:
        other = ParquetPairs.__new__(ParquetPairs)
        other.__dict__.update(self.__dict__)  # shares the skip log and the cached row counts
        return other

    def _selected(self, i: int) -> bool:
        return i >= self.start_row and i % self.world_size == self.rank

    def _any_selected(self, lo: int, hi: int) -> bool:
        first = max(lo, self.start_row)
        return first + (self.rank - first) % self.world_size < hi

    @property
    def row_counts(self) -> list[int]:
        """Rows per file, from the footers only (no data read)."""
        if self._row_counts is None:
            counts = []
            for path in self.files:
                try:
                    counts.append(pq.read_metadata(path).num_rows)
                except (OSError, pa.ArrowException) as exc:
                    err = DataError(f"{path}: not a readable parquet file ({exc})", path=path, reason="corrupt")
                    if self.on_error == "raise":
                        raise err from exc
                    self.skip_log.record(str(path), err)
                    counts.append(0)
            self._row_counts = counts
        return self._row_counts

    def __len__(self) -> int:
        """Number of rows this reader selects (skipped rows included)."""
        total = sum(self.row_counts)
        first = self.start_row + (self.rank - self.start_row) % self.world_size
        return max(0, (total - first + self.world_size - 1) // self.world_size)

    # ---- random access ---------------------------------------------------------------------------
    @property
    def row_groups(self) -> list[tuple[int, int]]:
        """Every row group as its global row range ``(start, stop)``, in file order (footers only)."""
        return [(start, start + n) for start, n in self._group_sizes()]

    def _group_sizes(self) -> list[tuple[int, int]]:
        if self._group_starts is None:
            starts, base = [], 0
            for f, (path, count) in enumerate(zip(self.files, self.row_counts)):
                if count:
                    meta = pq.read_metadata(path)
                    for g in range(meta.num_row_groups):
                        starts.append((base, f, g))
                        base += meta.row_group(g).num_rows
                else:
                    base += count
            self._group_starts = starts
        bounds = [s for s, _, _ in self._group_starts] + [sum(self.row_counts)]
        return [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(len(self._group_starts))]

    def row_at(self, index: int) -> dict[str, Any] | None:
        """Global row `index` (the dict iteration yields), read with its row group: see the module docstring.
        None when the row is bad and ``on_error="skip"`` (recorded in the skip log)."""
        total = sum(self.row_counts)
        if not 0 <= index < total:
            raise IndexError(f"row {index} of {total}")
        self._group_sizes()
        starts = [s for s, _, _ in self._group_starts]
        k = bisect_right(starts, index) - 1
        start, f, group = self._group_starts[k]
        path = self.files[f]
        base = sum(self.row_counts[:f])
        try:
            cmap, table = self._group(f, group)
        except DataError as err:
            if self.on_error == "raise":
                raise
            self.skip_log.record(f"{path}#rg{group}", err)
            return None
        j = index - start
        cell = {c: table.column(c)[j].as_py() for c in table.column_names}
        return self._row(path, index - base, index, cell, cmap)

    def _columns(self, pf: pq.ParquetFile, path: Path) -> tuple[ColumnMap, list[str]]:
        """A file's column map and the columns to read (the map's and the extra ones); an extra column the
        file lacks is an error naming the file and its columns."""
        names = pf.schema_arrow.names
        cmap = resolve_columns(names, self.columns, where=str(path))
        missing = [c for c in self.extra if c not in names]
        if missing:
            raise DataError(f"{path}: extra column(s) {missing} not in this file; its columns are {names}",
                            path=path, reason="unknown-columns")
        return cmap, list(dict.fromkeys(cmap.needed + list(self.extra)))

    def _group(self, f: int, group: int) -> tuple[ColumnMap, Any]:
        key = (f, group)
        if key in self._groups:
            self._groups.move_to_end(key)
            return self._groups[key]
        path = self.files[f]
        try:
            with pq.ParquetFile(path) as pf:
                cmap, wanted = self._columns(pf, path)
                table = pf.read_row_group(group, columns=wanted, use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path}: row group {group} is unreadable ({exc})", path=path, reason="corrupt") from exc
        self._groups[key] = (cmap, table)
        while len(self._groups) > self.keep_groups:
            self._groups.popitem(last=False)
        return cmap, table

    # ---- reading ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        base = 0
        for path, count in zip(self.files, self.row_counts):
            if count and self._any_selected(base, base + count):
                yield from self._iter_file(path, base)
            base += count

    def _iter_file(self, path: Path, base: int) -> Iterator[dict[str, Any]]:
        pf = pq.ParquetFile(path)
        try:
            cmap, wanted = self._columns(pf, path)
            if cmap.instruction is None:
                log.warning("%s: no instruction column (looked for %s); instructions will be ''",
                            path, list(ALIASES["instruction"]))
            start = base
            for group in range(pf.num_row_groups):
                n = pf.metadata.row_group(group).num_rows
                if self._any_selected(start, start + n):
                    yield from self._iter_group(pf, path, group, start, base, cmap, wanted)
                start += n
        finally:
            pf.close()

    def _iter_group(self, pf: pq.ParquetFile, path: Path, group: int, start: int, base: int, cmap: ColumnMap,
                    wanted: list[str]) -> Iterator[dict[str, Any]]:
        i = start
        try:
            for batch in pf.iter_batches(batch_size=self.batch_size, row_groups=[group], columns=wanted,
                                         use_threads=False):
                cols = {c: batch.column(c) for c in wanted}
                for j in range(batch.num_rows):
                    if self._selected(i + j):  # only selected rows are copied out of arrow
                        row = self._row(path, i + j - base, i + j, {c: col[j].as_py() for c, col in cols.items()},
                                        cmap)
                        if row is not None:
                            yield row
                i += batch.num_rows
        except (OSError, pa.ArrowException) as exc:  # a damaged row group: the rest of it is lost, not the run
            err = DataError(f"{path}: row group {group} is unreadable from row {i - base} ({exc})", path=path,
                            reason="corrupt")
            if self.on_error == "raise":
                raise err from exc
            self.skip_log.record(f"{path}#rg{group}", err)

    def _row(self, path: Path, local: int, index: int, cell: dict[str, Any], cmap: ColumnMap) -> dict[str, Any] | None:
        source = f"{path}#{local}"
        ids = [cell[c] for c in cmap.id]
        item_id = "_".join(str(v) for v in ids) if ids and all(v is not None for v in ids) else f"{path.stem}-{local}"
        try:
            edited_bytes = _cell_bytes(cell[cmap.edited], f"{source}:{cmap.edited}", path.parent)
            edited = load_image(edited_bytes, f"{source}:{cmap.edited}")
            original = load_image(_cell_bytes(cell[cmap.original], f"{source}:{cmap.original}", path.parent),
                                  f"{source}:{cmap.original}")
            mask = None
            if cmap.mask is not None and _has_image(cell[cmap.mask]):
                name = f"{source}:{cmap.mask}"
                mask = read_mask(_cell_bytes(cell[cmap.mask], name, path.parent), name, self.mask_reader)
                if mask.shape != edited.shape[:2]:
                    raise DataError(f"{name}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but the edited image is "
                                    f"{edited.shape[1]}x{edited.shape[0]}; masks must match the edited image size",
                                    path=name, reason="size-mismatch")
        except DataError as err:
            if self.on_error == "raise":
                raise
            self.skip_log.record(item_id, err)
            return None
        resized = original.shape[:2] != edited.shape[:2]
        if resized:
            log.warning("%s: original %s resized to edited %s", item_id, original.shape[:2], edited.shape[:2])
            original = resize_image(original, edited.shape[:2])
        instruction = cell[cmap.instruction] if cmap.instruction else None
        row = {"id": item_id, "original": original, "edited": edited, "edited_bytes": edited_bytes,
               "instruction": "" if instruction is None else str(instruction), "mask": mask, "source": source,
               "row": index, "original_resized": resized}
        if self.extra:
            row["meta"] = {c: cell[c] for c in self.extra}
        return row


def _has_image(value: Any) -> bool:
    """False for a null mask cell (UltraEdit's free-form splits), so the row has no mask rather than an error."""
    if isinstance(value, dict):
        return bool(value.get("bytes")) or bool(value.get("path"))
    return value is not None


class ParquetPairsDataset(torch.utils.data.IterableDataset):
    """Parquet pairs as Samples (image = edited, plus original and instruction), split across workers.

    Pass a reader already sharded for this process (``reader.shard(rank, world_size)``); each DataLoader
    worker then takes every ``num_workers``-th of those rows, so workers and ranks never overlap.
    """

    def __init__(self, reader: ParquetPairs, geometry: Geometry | None = None, *, name: str = "parquet",
                 train: bool = False, seed: int = 0):
        self.reader = reader
        self.name = name
        self.transform = SampleTransform(geometry or Geometry("none"), train=train, seed=seed)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        reader = self.reader if info is None else self.reader.shard(info.id, info.num_workers)
        for row in reader:
            has_mask = row["mask"] is not None
            mask = row["mask"] if has_mask else np.zeros(row["edited"].shape[:2], dtype=bool)
            sample = self.transform({"image": row["edited"], "original": row["original"], "mask": mask}, row["row"])
            sample.update(id=row["id"], dataset=self.name, instruction=row["instruction"], has_mask=has_mask,
                          source=row["source"], original_resized=row["original_resized"],
                          label=int(bool(mask.any())) if has_mask else 1)
            yield sample


__all__ = ["ALIASES", "ColumnMap", "ParquetPairs", "ParquetPairsDataset", "expand_files", "read_mask",
           "resolve_columns"]
