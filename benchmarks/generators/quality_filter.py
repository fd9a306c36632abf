"""Filtering masks by their quality score, as CAAAv2 / MIMLv2 (arXiv 2508.20987) filters its corpus.

Two consumers:

- ``bench annotate --min-quality Q``: after the merge, pairs whose mask scored below Q are left out of
  ``iml.json`` (what detectors train on), listed in ``quality_excluded.jsonl`` and counted in
  ``provenance.json`` under ``quality_filter`` (:func:`filter_annotation`). ``manifest.jsonl`` and the mask
  files keep every pair, so the filter can be changed or undone (``--merge-only`` without it).
- generator leaderboards: :func:`f1_with_and_without_filter` gives the headline F1 over every manipulated
  pair and over the pairs a filter keeps, with how many each keeps.

Scores come from :meth:`benchmarks.generators.base.MaskGenerator.generate_scored`, recorded per pair as
``quality`` (annotation shards, per-pair evaluation rows).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EXCLUDED = "quality_excluded.jsonl"


def check_min_quality(min_quality: float) -> float:
    if not (isinstance(min_quality, (int, float)) and 0.0 <= float(min_quality) <= 1.0):
        raise ValueError(f"min_quality={min_quality!r}; quality scores lie in [0, 1], so give a number there, e.g. 0.5")
    return float(min_quality)


def keeps(quality: float | None, min_quality: float) -> bool:
    """A pair without a score (None / NaN) is kept: the filter only drops what it has evidence against."""
    return quality is None or (isinstance(quality, float) and math.isnan(quality)) or quality >= min_quality


def f1_with_and_without_filter(rows: Iterable[dict[str, Any]], min_quality: float) -> dict[str, float | int]:
    """Headline F1 (per image, threshold 0.5, manipulated pairs) over all pairs and over the kept ones.

    ``rows``: per-pair results with ``f1`` (None / NaN for authentic pairs, which the headline leaves out)
    and ``quality``. Returns ``f1_per_image`` / ``n_pairs`` (all manipulated pairs),
    ``f1_per_image_filtered`` / ``n_kept`` (those with quality >= min_quality) and ``n_excluded``.
    """
    min_quality = check_min_quality(min_quality)
    all_f1, kept_f1 = [], []
    for row in rows:
        f1 = row.get("f1")
        if f1 is None or (isinstance(f1, float) and math.isnan(f1)):
            continue
        all_f1.append(float(f1))
        if keeps(row.get("quality"), min_quality):
            kept_f1.append(float(f1))
    nan = float("nan")
    return {"min_quality": min_quality,
            "f1_per_image": sum(all_f1) / len(all_f1) if all_f1 else nan, "n_pairs": len(all_f1),
            "f1_per_image_filtered": sum(kept_f1) / len(kept_f1) if kept_f1 else nan, "n_kept": len(kept_f1),
            "n_excluded": len(all_f1) - len(kept_f1)}


def filter_annotation(out: str | Path, min_quality: float) -> dict[str, Any]:
    """Apply the filter to a merged annotation folder (idempotent; re-apply after every merge).

    Reads ``manifest.jsonl`` (the annotated pairs) and the shard entries' ``quality``; rewrites ``iml.json``
    with the kept pairs; writes ``quality_excluded.jsonl`` (id, index, quality, edited, mask); adds a
    ``quality_filter`` block (threshold, kept, excluded, unscored) to ``provenance.json``. Returns that block.
    """
    from benchmarks.annotation.shards import merged_entries
    from benchmarks.io import atomic_open, atomic_write, read_json, to_json

    out = Path(out).resolve()
    min_quality = check_min_quality(min_quality)
    manifest = out / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: not found; the quality filter runs on a merged annotation folder "
                                "(`bench annotate ... --merge-only` merges one)")
    entries = (e for e in merged_entries(out) if "skipped" not in e)
    current: dict[str, Any] | None = next(entries, None)
    counts = {"kept": 0, "excluded": 0, "unscored": 0}
    with open(manifest, encoding="utf-8") as fh, atomic_open(out / "iml.json") as iml, \
            atomic_open(out / EXCLUDED) as dropped:  # streamed: corpora hold millions of pairs
        iml.write("[")
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            while current is not None and current["index"] < row["index"]:  # both are sorted by index
                current = next(entries, None)
            quality = current.get("quality") if current is not None and current["index"] == row["index"] else None
            counts["unscored"] += quality is None
            if keeps(quality, min_quality):
                iml.write(("\n" if counts["kept"] == 0 else ",\n") + json.dumps([row["edited"], row["mask"]],
                                                                                ensure_ascii=False))
                counts["kept"] += 1
            else:
                counts["excluded"] += 1
                dropped.write(json.dumps({"index": row["index"], "id": row["id"], "quality": quality,
                                          "edited": row["edited"], "mask": row["mask"]}, ensure_ascii=False) + "\n")
        iml.write("\n]\n")
    block = {"min_quality": min_quality, **counts, "excluded_list": EXCLUDED}
    if counts["unscored"]:
        log.warning("%s: %d pairs carry no quality score (annotated before scores were recorded); they are kept",
                    out, counts["unscored"])
    prov_path = out / "provenance.json"
    if prov_path.is_file():
        prov = read_json(prov_path)
        prov["quality_filter"] = block
        atomic_write(prov_path, to_json(prov, indent=2) + "\n")
    log.info("%s: quality >= %.3f keeps %d pairs, excludes %d (listed in %s)", out, min_quality, counts["kept"],
             counts["excluded"], EXCLUDED)
    return block


def with_quality_filter(out: str | Path, provenance: dict[str, Any] | None,
                        min_quality: float | None) -> dict[str, Any] | None:
    """A merge's provenance with the filter applied (when asked for, and when this process merged)."""
    if provenance is None or min_quality is None:
        return provenance
    return {**provenance, "quality_filter": filter_annotation(out, min_quality)}
