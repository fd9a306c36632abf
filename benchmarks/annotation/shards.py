"""The layout of an annotation output folder: committed shard files, the done set a resumed run skips, and
the merge that turns shards into iml.json, manifest.jsonl, skipped.jsonl and provenance.json (see
:mod:`benchmarks.annotation` for the folder as a whole)."""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import logging
import platform
import re
import shutil
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.data.errors import DataError
from benchmarks.data.pair_sources import PairSource, open_source
from benchmarks.io import atomic_open, atomic_write, read_json, to_json

log = logging.getLogger(__name__)

FORMAT = "sigma-bench/annotation-v1"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def file_stem(item_id: str) -> str:
    """A file name for an id: the id itself when safe, else a cleaned id plus a short hash (stays unique)."""
    stem = _UNSAFE.sub("_", item_id)[:120]
    if stem != item_id or not stem or stem.startswith("."):
        stem = f"{stem.lstrip('.')}-{hashlib.sha1(item_id.encode()).hexdigest()[:10]}"
    return stem


def entry_index(line: str) -> int:
    if line.startswith('{"index": '):  # shard lines are written index first: skip the JSON parser
        return int(line[10:line.index(",", 10)])
    return int(json.loads(line)["index"])


def is_skip_line(line: str) -> bool:
    return '"skipped": ' in line  # a quote inside a string value is escaped, so this cannot match an instruction


def read_done(out: Path, *, rank: int, world: int, retry_skipped: bool = False) -> np.ndarray:
    """Sorted unique global indices of this rank's pairs listed in committed shards (any earlier world size)."""
    done = array("q")
    for path in sorted((out / "shards").glob("rank*-*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip() and not (retry_skipped and is_skip_line(line)):
                    i = entry_index(line)
                    if i % world == rank:
                        done.append(i)
    return np.unique(np.frombuffer(done, dtype=np.int64)) if len(done) else np.zeros(0, dtype=np.int64)


# ---------------------------------------------------------------------------------------------- merge


def _shard_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield line


def merged_entries(out: Path) -> Iterator[dict[str, Any]]:
    """Every committed shard entry, sorted by global index, one per index (an annotated entry wins over a
    skipped one). Streams: files are opened only when their first index comes up."""
    firsts = []
    for path in (out / "shards").glob("rank*-*.jsonl"):
        with open(path, encoding="utf-8") as fh:
            line = fh.readline()
        if line.strip():
            firsts.append((entry_index(line), path.name, path))
    firsts.sort()
    heap: list[tuple[int, int, str, Iterator[str]]] = []
    seq, nxt = 0, 0

    def push(lines: Iterator[str]) -> None:
        nonlocal seq
        line = next(lines, None)
        if line is not None:
            heapq.heappush(heap, (entry_index(line), seq, line, lines))
            seq += 1

    def pop() -> tuple[int, str]:
        nonlocal nxt
        while nxt < len(firsts) and (not heap or firsts[nxt][0] <= heap[0][0]):
            push(_shard_lines(firsts[nxt][2]))
            nxt += 1
        index, _, line, lines = heapq.heappop(heap)
        push(lines)
        return index, line

    current: tuple[int, str] | None = None
    while heap or nxt < len(firsts):
        index, line = pop()
        if current is not None and current[0] == index:
            if is_skip_line(current[1]) and not is_skip_line(line):
                current = (index, line)
            continue
        if current is not None:
            yield json.loads(current[1])
        current = (index, line)
    if current is not None:
        yield json.loads(current[1])


def _id_hash(item_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "little")


def _duplicate_ids(out: Path) -> set[str]:
    hashes = array("Q", (_id_hash(e["id"]) for e in merged_entries(out) if "skipped" not in e))
    values, counts = np.unique(np.frombuffer(hashes, dtype=np.uint64), return_counts=True) if hashes else ([], [])
    dup_hashes = {int(v) for v, c in zip(values, counts) if c > 1}
    if not dup_hashes:
        return set()
    seen = Counter(e["id"] for e in merged_entries(out) if "skipped" not in e and _id_hash(e["id"]) in dup_hashes)
    return {i for i, c in seen.items() if c > 1}


def _union_seconds(sessions: list[dict[str, Any]]) -> float:
    spans = sorted((s["started"], s["started"] + s["seconds"]) for s in sessions)
    total, end = 0.0, float("-inf")
    for a, b in spans:
        total += max(0.0, b - max(a, end))
        end = max(end, b)
    return total


def software_versions() -> dict[str, str]:
    import numpy
    import PIL
    import pyarrow

    from benchmarks import __version__

    versions = {"sigma-bench": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "numpy": numpy.__version__, "pillow": PIL.__version__, "pyarrow": pyarrow.__version__,
                "platform": platform.platform()}
    if torch.cuda.is_available():
        versions.update(cuda=str(torch.version.cuda), gpu=torch.cuda.get_device_name(0))
    return versions


def merge(out: str | Path, source: PairSource | None = None, limit: int | None = None,
          on_duplicate: str = "skip") -> dict[str, Any]:
    """Build iml.json, manifest.jsonl, skipped.jsonl and provenance.json from the committed shards.

    Idempotent (reads only shards and state, writes by rename). ``complete`` is true when every global
    index below the source's count (or ``limit``) is listed; only then are stale temporary files removed.
    Pairs that share an id have one ambiguous mask file: it is deleted, and the pairs are listed as
    skipped (``on_duplicate="skip"``) or the merge stops with an error naming them (``"raise"``).
    """
    out = Path(out).resolve()
    if not (out / "run.json").is_file():
        raise FileNotFoundError(f"{out}: no run.json here; merge needs a folder `bench annotate` wrote")
    run = read_json(out / "run.json")
    source = source if source is not None else open_source(run["pairs"])
    expected = source.count(limit)
    dups = _duplicate_ids(out)
    if dups:
        _drop_duplicate_masks(out, dups, on_duplicate)
    counts = Counter()
    skipped_by = Counter()
    covered = 0
    with contextlib.ExitStack() as stack:
        man, iml, skipped = (stack.enter_context(atomic_open(out / name)) for name in
                             ("manifest.jsonl", "iml.json", "skipped.jsonl"))
        iml.write("[")
        for item_id, reason, error in getattr(source, "file_errors", []):
            skipped.write(json.dumps({"index": None, "id": item_id, "reason": reason, "error": error}) + "\n")
            counts["unreadable_files"] += 1
        for e in merged_entries(out):
            covered += e["index"] < expected
            if "skipped" not in e and e["id"] in dups:
                e = {"index": e["index"], "id": e["id"], "skipped": "duplicate-id",
                     "error": f"id {e['id']!r} is used by more than one pair; its mask file is ambiguous"}
            if "skipped" in e:
                skipped_by[e["skipped"]] += 1
                skipped.write(json.dumps({"index": e["index"], "id": e["id"], "reason": e["skipped"],
                                          "error": e["error"]}, ensure_ascii=False) + "\n")
                continue
            counts["annotated"] += 1
            counts["original_resized"] += bool(e.get("original_resized"))
            counts["empty_instruction"] += not str(e.get("instruction", "")).strip()
            row = {"id": e["id"], "index": e["index"], "original": e.get("original"), "edited": e["edited"],
                   "instruction": e["instruction"], "mask": e["mask"], "source": e.get("source"),
                   "original_resized": e.get("original_resized", False)}
            man.write(json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False) + "\n")
            iml.write(("\n" if counts["annotated"] == 1 else ",\n") + json.dumps([e["edited"], e["mask"]],
                                                                                ensure_ascii=False))
        iml.write("\n]\n")
    sessions = [read_json(p) for p in sorted((out / "state").glob("session-*.json"))]
    wall = _union_seconds(sessions)
    processed = sum(s["annotated"] + s["skipped"] for s in sessions)
    complete = covered == expected
    provenance = {
        "format": FORMAT, "complete": complete, "generator": run["generator"], "source": run["source"],
        "pairs": run["pairs"], "mask": run["mask"],
        "counts": {"pairs": expected, "listed": covered, "missing": expected - covered, "annotated": counts["annotated"],
                   "skipped": sum(skipped_by.values()), "skipped_by_reason": dict(sorted(skipped_by.items())),
                   "original_resized": counts["original_resized"], "empty_instruction": counts["empty_instruction"],
                   "duplicate_ids": len(dups), "unreadable_files": counts["unreadable_files"]},
        "timing": {"wall_s": round(wall, 3), "pairs_processed": processed,
                   "pairs_per_s": round(processed / wall, 2) if wall else None, "sessions": sessions},
        "outputs": {"iml": "iml.json", "manifest": "manifest.jsonl", "skipped": "skipped.jsonl", "masks": "masks/",
                    "config": "config.yaml"},
        "config": run.get("config"), "software": software_versions(), "merged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write(out / "provenance.json", to_json(provenance, indent=2) + "\n")
    if complete:
        shutil.rmtree(out / "tmp", ignore_errors=True)
        for stale in out.glob(".*.tmp"):  # a killed merge's files; live ones are younger
            if time.time() - stale.stat().st_mtime > 600:
                stale.unlink(missing_ok=True)
    else:
        log.warning("%s: %d of %d pairs are not annotated yet; run the same command again to finish", out,
                    expected - covered, expected)
    return provenance


def _drop_duplicate_masks(out: Path, dups: set[str], on_duplicate: str) -> None:
    """Delete the mask files of ids used by more than one pair; with ``"raise"``, then stop naming them."""
    where: dict[str, list[int]] = {}
    for e in merged_entries(out):
        if "skipped" not in e and e["id"] in dups:
            where.setdefault(e["id"], []).append(e["index"])
            (out / e["mask"]).unlink(missing_ok=True)
    if on_duplicate == "raise":
        listed = "; ".join(f"id {i!r} at indices {idx}" for i, idx in sorted(where.items())[:5])
        raise DataError(f"{out}: pairs share an id, so their masks would overwrite each other ({listed}"
                        f"{'; ...' if len(where) > 5 else ''}); give every pair its own id, or annotate with "
                        "--on-error skip to leave them out", reason="duplicate-id")
