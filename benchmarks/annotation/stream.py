"""The pairs of one rank as batches for the annotation loop (see :mod:`benchmarks.annotation` for the
order and sharding rules), and how the first bad pair is found when several workers decode."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data
from PIL import Image

from benchmarks.annotation.shards import file_stem
from benchmarks.data.imageio import verbatim_suffix
from benchmarks.data.pair_sources import SKIP, PairSource


def write_png(path: Path, array: np.ndarray, tmp_dir: Path) -> None:
    """A PNG written under `tmp_dir` (this rank's in-flight folder, cleared on start), then renamed to `path`."""
    # unique per process and thread: pairs sharing an id (an input error, reported by the merge) may be in flight at once
    tmp = tmp_dir / f"{path.parent.name}-{path.name}.{os.getpid()}-{threading.get_ident()}.tmp"
    Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def write_pngs(files: list[tuple[Path, np.ndarray]], tmp_dir: Path) -> None:
    """Each (path, array) written as by :func:`write_png`, in order: one writer task for many masks."""
    for path, array in files:
        write_png(path, array, tmp_dir)


def write_file(path: Path, data: bytes, tmp_dir: Path) -> None:
    """`data` written under `tmp_dir`, then renamed to `path` (as :func:`write_png`)."""
    tmp = tmp_dir / f"{path.parent.name}-{path.name}.{os.getpid()}-{threading.get_ident()}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_edited(out: Path, stem: str, item: dict[str, Any], tmp_dir: Path) -> Path:
    """A parquet pair's edited image in ``out/images``: the cell's own file when every reader decodes it to
    the pixels annotated (:func:`verbatim_suffix`: RGB PNG / JPEG), else the decoded pixels as PNG."""
    data = item.get("edited_bytes")
    suffix = verbatim_suffix(data) if data is not None else None
    path = out / "images" / f"{stem}{suffix or '.png'}"
    if suffix is not None:
        write_file(path, data, tmp_dir)
    else:
        write_png(path, item["edited"], tmp_dir)
    return path


def _rel(path: Path, out: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), out)).as_posix()


class PairStream(torch.utils.data.IterableDataset):
    """One rank's pairs as batches: windows of ``batch_size`` consecutive pairs of each worker's sequence,
    done pairs left out, parquet edited images written to ``DIR/images`` (:func:`write_edited`); images stay
    uint8 (padded). A
    batch says which worker made it and its window number (see :func:`first_bad_pair`)."""

    def __init__(self, source: PairSource, out: Path, *, rank: int, world: int, batch_size: int, stop: int,
                 done: np.ndarray, write_images: bool = False):
        self.source, self.out, self.rank, self.world = source, out, rank, world
        self.batch_size, self.stop, self.done = batch_size, stop, done
        self.write_images = write_images
        self.tmp = out / "tmp" / f"rank{rank}"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        w, n = (0, 1) if info is None else (info.id, info.num_workers)
        step, residue = self.world * n, self.rank + self.world * w
        mine = self.done[self.done % step == residue]
        positions = (mine - residue) // step
        holes = np.nonzero(positions != np.arange(len(positions)))[0]
        first = int(holes[0]) if len(holes) else len(positions)  # the done prefix is never read again
        later, ptr = mine[first:], 0
        window, buf = -1, []
        # a bad pair always comes back as a marker: the main process skips it or raises for the first one in
        # index order (a worker raising would name whichever bad pair it met, in a worker traceback)
        for item in self.source.iter_items(residue, step, residue + first * step, self.stop, "skip"):
            i = item["index"]
            while ptr < len(later) and later[ptr] < i:
                ptr += 1
            if ptr < len(later) and later[ptr] == i:
                continue
            win = (i - residue) // step // self.batch_size
            if buf and win != window:
                yield self._collate(buf, w, window)
                buf = []
            window = win
            buf.append(self._prepare(item))
        if buf:
            yield self._collate(buf, w, window)

    def _prepare(self, item: dict[str, Any]) -> dict[str, Any]:
        if SKIP in item:
            return item
        stem = file_stem(item["id"])
        edited_path = item["edited_path"]
        if edited_path is None and self.write_images:
            edited_path = write_edited(self.out, stem, item, self.tmp)
        entry = {"index": item["index"], "id": item["id"], "mask": f"masks/{stem}.png",
                 "edited": _rel(edited_path, self.out) if edited_path is not None else None,
                 "original": _rel(item["original_path"], self.out) if item["original_path"] is not None else None,
                 "source": item["source"], "instruction": item["instruction"],
                 "original_resized": bool(item["original_resized"])}
        return {"entry": entry, "original": torch.from_numpy(item["original"]).permute(2, 0, 1),
                "edited": torch.from_numpy(item["edited"]).permute(2, 0, 1)}

    @staticmethod
    def _collate(buf: list[dict[str, Any]], worker: int, window: int) -> dict[str, Any]:
        pairs = [b for b in buf if SKIP not in b]
        batch: dict[str, Any] = {"skipped": [b for b in buf if SKIP in b], "entry": [p["entry"] for p in pairs],
                                 "hw": [tuple(p["edited"].shape[-2:]) for p in pairs], "worker": worker,
                                 "window": window}
        if pairs:
            h, w = max(s[0] for s in batch["hw"]), max(s[1] for s in batch["hw"])
            for key in ("original", "edited"):
                out = torch.zeros(len(pairs), 3, h, w, dtype=torch.uint8)
                for k, p in enumerate(pairs):
                    out[k, :, : p[key].shape[1], : p[key].shape[2]] = p[key]
                batch[key] = out
        return batch


def first_bad_pair(batch: dict[str, Any], batches: Iterator[dict[str, Any]], seen: dict[int, int],
                   workers: int) -> dict[str, Any]:
    """The bad pair of lowest global index, given a `batch` that holds skip markers.

    Workers interleave in index space (worker w takes every n-th pair) and the DataLoader hands their
    batches over in turn, so a worker whose batch of the same window has not arrived yet may hold a bad
    pair of lower index. Reads on (without annotating) until every worker has delivered that window
    (`seen`: worker -> last window delivered), at most two rounds of batches (a worker that delivers nothing
    in two rounds has run out of pairs), or the stream ends.
    """
    markers = list(batch["skipped"])
    window = batch["window"]
    seen = {**seen, batch["worker"]: window}
    for _ in range(2 * workers):
        if all(seen.get(w, -1) >= window for w in range(workers)):
            break
        more = next(batches, None)
        if more is None:
            break
        seen[more["worker"]] = more["window"]
        markers += more["skipped"]
    return min(markers, key=lambda m: m["index"])
