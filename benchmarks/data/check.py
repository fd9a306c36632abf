"""`bench data check`: decode every item of a dataset and report what it holds and what is wrong. A bad item
(unreadable line or file, a duplicate id, a size mismatch) is listed with its reason and the scan goes on,
so the report covers every item up to ``--limit``."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data.errors import DataError

log = logging.getLogger(__name__)
MAX_LISTED = 20


def _kind(path: Path, adapter: str | None) -> str:
    if adapter:
        return "iml"
    if path.suffix == ".parquet" or any(ch in str(path) for ch in "*?[") or (
            path.is_dir() and any(path.glob("*.parquet")) and not (path / "manifest.jsonl").exists()):
        return "parquet"
    if (path.is_dir() and (path / "manifest.jsonl").is_file()) or path.suffix == ".jsonl":
        return "pairs"
    return "iml"


def _scan(items: Iterable[Any], load: Callable[[Any], dict[str, Any]], item_id: Callable[[Any], str],
          limit: int | None) -> dict[str, Any]:
    bad, reasons, areas = [], Counter(), []
    counts = Counter()
    for item in islice(items, limit):
        counts["items"] += 1
        try:
            out = load(item)
        except DataError as exc:
            reasons[exc.reason] += 1
            if len(bad) < MAX_LISTED:
                bad.append({"id": item_id(item), "reason": exc.reason, "error": str(exc)})
            continue
        counts.update(k for k, v in out.items() if isinstance(v, bool) and v)
        mask = out.get("mask")
        if out.get("has_mask", True) and mask is not None:
            if mask.any():
                areas.append(float(mask.mean()))
            else:
                counts["all_zero_mask"] += 1
    report = dict(counts)
    report["ok"] = counts["items"] - sum(reasons.values())
    report["bad"] = sum(reasons.values())
    report["bad_by_reason"] = dict(reasons)
    report["bad_items"] = bad
    report["mean_mask_area_of_manipulated"] = round(float(np.mean(areas)), 4) if areas else None
    return report


def _manifest_lines(folder: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-empty manifest line: parsed one by one, so a broken line is one bad item."""
    from benchmarks.data.manifest import manifest_path

    with open(manifest_path(folder), encoding="utf-8") as fh:
        yield from ((n, line) for n, line in enumerate(fh, start=1) if line.strip())


def _line_id(entry: tuple[int, str]) -> str:
    try:
        return str(json.loads(entry[1])["id"])
    except (ValueError, KeyError, TypeError):
        return f"line-{entry[0]}"


def _pair_loader(folder: Path) -> Callable[[tuple[int, str]], dict[str, Any]]:
    """Parse a manifest line and decode its pair; an id seen on an earlier line is a ``duplicate-id``."""
    from benchmarks.data.manifest import load_pair, manifest_path, parse_line

    path = manifest_path(folder)
    seen: dict[str, int] = {}

    def load(entry: tuple[int, str]) -> dict[str, Any]:
        lineno, line = entry
        rec = parse_line(line, path.parent, f"{path}:{lineno}")
        if rec.id in seen:
            raise DataError(f"{path}:{lineno}: id {rec.id!r} is already used on line {seen[rec.id]}; ids must be "
                            "unique (they name every output)", path=path, reason="duplicate-id")
        seen[rec.id] = lineno
        out = load_pair(rec)
        out["empty_instruction"] = not rec.instruction.strip()
        return out

    return load


def check_dataset(path: Path, adapter: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """The report ``bench data check`` prints: counts, mask areas, bad items by reason (the first 20 listed)."""
    kind = _kind(path, adapter)
    if kind == "pairs":
        report = _scan(_manifest_lines(path), _pair_loader(path), _line_id, limit)
    elif kind == "parquet":
        from benchmarks.data.parquet import ParquetPairs

        reader = ParquetPairs(str(path), on_error="skip")
        rows = list(islice(iter(reader), limit))
        report = _scan(rows, lambda row: {"mask": row.get("mask"), "has_mask": row.get("mask") is not None,
                                          "original_resized": bool(row.get("original_resized"))},
                       lambda row: row["id"], None)
        report["bad"] += reader.skip_log.total
        report["bad_by_reason"] = {**report["bad_by_reason"], **reader.skip_log.summary()}
    else:
        from benchmarks.data.iml import list_iml, load_item

        items = list_iml(path, adapter=adapter)
        report = _scan(items, lambda it: {**load_item(it), "authentic": it.mask is None}, lambda it: it.id, limit)
    return {"path": str(path), "kind": kind, **({"adapter": adapter} if adapter else {}), **report}
