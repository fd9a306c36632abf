"""The annotation loop of one rank: its pairs streamed by DataLoader workers, the generator run batched
without gradients (bf16 autocast on CUDA), masks written as PNG by writer threads and committed shard by
shard, so any interruption resumes where the shard files say (see :mod:`benchmarks.annotation`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from benchmarks.annotation.shards import read_done
from benchmarks.annotation.stream import PairStream, first_bad_pair, write_pngs
from benchmarks.data.errors import DataError
from benchmarks.data.loading import check_on_error
from benchmarks.data.pair_sources import SKIP, PairSource
from benchmarks.generators.base import MaskGenerator
from benchmarks.io import atomic_write

log = logging.getLogger(__name__)

THRESHOLD = 0.5  # the MaskGenerator contract: >= 0.5 reads as "edited"
WRITERS = 2  # threads writing the mask PNGs
RAISE_HINT = "--on-error skip skips it, counts it and goes on"


@dataclass
class AnnotateOptions:
    batch_size: int = 16
    shard_size: int = 1000
    num_workers: int = 2
    on_error: str = "skip"
    soft: bool = False
    limit: int | None = None
    compile: bool = False
    retry_skipped: bool = False
    progress: bool = True
    min_quality: float | None = None  # after the merge, leave pairs scoring below it out of iml.json

    def __post_init__(self) -> None:
        check_on_error(self.on_error, "--on-error")
        if self.min_quality is not None:
            from benchmarks.generators.quality_filter import check_min_quality

            check_min_quality(self.min_quality)
        if self.batch_size < 1 or self.shard_size < 1 or self.num_workers < 0 or (self.limit is not None
                                                                                 and self.limit < 0):
            raise ValueError(f"need batch_size >= 1, shard_size >= 1, num_workers >= 0, limit >= 0; got {self}")


def _as_is(batch: Any) -> Any:  # the stream yields whole batches: the loader's collate has nothing to do
    return batch


def pair_loader(stream: PairStream, num_workers: int, device: torch.device) -> torch.utils.data.DataLoader:
    """The DataLoader over a rank's stream: `num_workers` decode processes, whole batches passed through."""
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers, collate_fn=_as_is,
                                       pin_memory=device.type == "cuda", prefetch_factor=4 if num_workers else None)


def compile_generator(generator: MaskGenerator) -> MaskGenerator:
    """torch.compile the generator's forward (dynamic shapes: batches of mixed sizes), once per generator."""
    if not getattr(generator, "_compiled_forward", False):
        generator.forward = torch.compile(generator.forward, dynamic=True)  # type: ignore[method-assign]
        generator._compiled_forward = True
    return generator


def model_input(images: torch.Tensor, kept: dict[str, torch.Tensor] | None = None, role: str = "") -> torch.Tensor:
    """A uint8 (B,3,H,W) batch as generators take it: float in [0,1] on the batch's device, NCHW contiguous
    (the layout the evaluation loop feeds too, so annotation and evaluation compute the same masks). With
    `kept`, converted into the buffer kept there for `role` when the shape matches (the loop's batches
    mostly share one shape: no fresh allocation, so no page faults, per batch); the same values either way.

    The bytes become floats first and are divided in place: two vectorised float passes take less CPU than
    one mixed uint8 / float division (`python -m benchmarks.perf.annotate_speed --steps` prints both), and
    give the same values for every byte."""
    if kept is None:
        return images.to(torch.float32, copy=True).div_(255.0)  # never divides the caller's tensor in place
    buf = kept.get(role)
    if buf is None or buf.shape != images.shape or buf.device != images.device:
        buf = kept[role] = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    return buf.copy_(images).div_(255.0)


def mask_pixels(prob: torch.Tensor, soft: bool = False) -> np.ndarray:
    """Mask probabilities as the loop writes them, on the host: uint8 0 / 255 at THRESHOLD, or with `soft`
    the probability scaled to 0..255. The threshold of a CPU batch runs in NumPy, which takes a fraction of
    the CPU torch's comparison takes here (`python -m benchmarks.perf.annotate_speed --steps` prints both);
    on another device it runs there and only the bytes come back."""
    prob = prob.detach()
    if soft:
        return (prob * 255.0).round().to(torch.uint8).cpu().numpy()
    if prob.device.type != "cpu":  # the comparison's bytes are 0 / 1 already: read as uint8, no copy
        return (prob >= THRESHOLD).view(torch.uint8).mul_(255).cpu().numpy()
    marked = np.greater_equal(prob.numpy(), THRESHOLD).view(np.uint8)
    return np.multiply(marked, 255, out=marked)


def _ranks_count(n: int, rank: int, world: int) -> int:
    return max(0, (n - rank + world - 1) // world)


def annotate(generator: MaskGenerator, source: PairSource, out: str | Path, options: AnnotateOptions, *,
             rank: int = 0, world: int = 1, device: torch.device | str = "cpu",
             on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Annotate this rank's share of ``source`` into ``out`` (resuming), shard by shard. Returns session stats."""
    out = Path(out).resolve()
    device = torch.device(device)
    tmp = out / "tmp" / f"rank{rank}"
    shutil.rmtree(tmp, ignore_errors=True)  # this rank's in-flight files from an interrupted run
    for sub in (tmp, out / "masks", out / "shards", out / "state"):
        sub.mkdir(parents=True, exist_ok=True)
    (out / "state" / f"done-w{world}-r{rank}.json").unlink(missing_ok=True)
    write_images = not source.edited_on_disk
    if write_images:
        (out / "images").mkdir(exist_ok=True)
    stop = source.count(options.limit)
    done = read_done(out, rank=rank, world=world, retry_skipped=options.retry_skipped)
    remaining = _ranks_count(stop, rank, world) - int((done < stop).sum())
    ks = [int(p.stem.split("-")[1]) for p in (out / "shards").glob(f"rank{rank}-*.jsonl")]
    shard_k = max(ks, default=-1) + 1
    stream = PairStream(source, out, rank=rank, world=world, batch_size=options.batch_size, stop=stop, done=done,
                        write_images=write_images)
    loader = pair_loader(stream, options.num_workers, device)
    if options.compile:
        compile_generator(generator)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext())
    stats = Counter()
    timing = Counter()
    entries: list[dict[str, Any]] = []
    pending: list[tuple[Future, int]] = []  # writer tasks in flight, each with the number of masks it holds
    kept: dict[str, torch.Tensor] = {}  # model input buffers, reused while batches keep their shape
    started, t0 = time.time(), time.perf_counter()
    batches = iter(loader)  # start (fork) the workers before any thread exists in this process
    seen: dict[int, int] = {}  # worker -> last window it delivered (to find the first bad pair)
    too_small = 0
    from tqdm import tqdm

    bar = tqdm(total=max(remaining, 0), unit="pair", desc=f"annotate {generator.info.name} [rank {rank}/{world}]",
               disable=not (options.progress and rank == 0), dynamic_ncols=True, mininterval=1.0)
    pool = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="annotate-write")

    def commit() -> None:
        nonlocal shard_k
        t = time.perf_counter()
        for f, _ in pending:
            f.result()  # every listed file is on disk before the shard names it
        pending.clear()
        timing["write_wait_s"] += time.perf_counter() - t
        if not entries:
            return
        entries.sort(key=lambda e: e["index"])
        path = tmp / f"shard-{shard_k:06d}.tmp"
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        os.replace(path, out / "shards" / f"rank{rank}-{shard_k:06d}.jsonl")
        shard_k += 1
        stats["shards"] += 1
        entries.clear()

    try:
        while True:
            t = time.perf_counter()
            batch = next(batches, None)
            timing["data_wait_s"] += time.perf_counter() - t
            if batch is None:
                break
            seen[batch["worker"]] = batch["window"]
            if batch["skipped"] and options.on_error == "raise":
                bad = first_bad_pair(batch, batches, seen, max(1, options.num_workers))
                raise DataError(f"pair {bad['id']!r} (index {bad['index']}): {bad['error']} ({RAISE_HINT})",
                                reason=bad[SKIP])
            for m in batch["skipped"]:
                log.warning("skipped %s (%s): %s", m["id"], m[SKIP], m["error"])
                entries.append({"index": m["index"], "id": m["id"], "skipped": m[SKIP], "error": m["error"]})
                stats["skipped"] += 1
            t = time.perf_counter()
            groups: dict[tuple[int, int], list[int]] = {}
            for k, hw in enumerate(batch["hw"]):
                groups.setdefault(hw, []).append(k)
            for hw in [hw for hw in groups if min(hw) < generator.min_side]:  # too small for this generator
                for k in groups.pop(hw):
                    entry = batch["entry"][k]
                    error = (f"{entry['edited'] or entry['source']}: {hw[1]}x{hw[0]} px (WxH) is smaller than generator "
                             f"{generator.info.name!r} takes ({generator.min_side} px a side)")
                    if options.on_error == "raise":
                        raise DataError(f"pair {entry['id']!r} (index {entry['index']}): {error} ({RAISE_HINT})",
                                        reason="too-small")
                    log.warning("skipped %s (too-small): %s", entry["id"], error)
                    entries.append({"index": entry["index"], "id": entry["id"], "skipped": "too-small", "error": error})
                    stats["skipped"] += 1
                    too_small += 1
            if groups:  # uint8 to the device once (4x less traffic than float), then one call per size
                originals = batch["original"].to(device, non_blocking=True)
                editeds = batch["edited"].to(device, non_blocking=True)
            for (h, w), members in groups.items():  # the generator never sees padding
                whole = len(members) == len(batch["hw"])  # the usual case: no copy of the members
                sel = slice(None) if whole else torch.tensor(members, device=device)
                orig = model_input(originals[sel, :, :h, :w], kept, "original")
                edit = model_input(editeds[sel, :, :h, :w], kept, "edited")
                with autocast:
                    scored = generator.generate_scored(orig, edit, [batch["entry"][k]["instruction"] for k in members])
                masks = mask_pixels(scored.mask.float(), options.soft)  # on the host: once per size group
                quality = scored.quality.float().cpu().tolist()
                files = []
                for j, k in enumerate(members):
                    entry = batch["entry"][k]
                    entry["quality"] = round(quality[j], 4)  # --min-quality filters on it after the merge
                    files.append((out / entry["mask"], masks[j, 0]))
                    entries.append(entry)
                for share in (files[w::WRITERS] for w in range(WRITERS)):  # one task per writer, not per mask
                    if share:
                        pending.append((pool.submit(write_pngs, share, tmp), len(share)))
            timing["model_s"] += time.perf_counter() - t
            n = len(batch["entry"]) - too_small
            too_small = 0
            stats["annotated"] += n
            while sum(held for _, held in pending) > 4 * options.batch_size:  # masks in memory: four batches
                pending.pop(0)[0].result()
            if len(entries) >= options.shard_size:
                commit()
            bar.update(len(batch["entry"]) + len(batch["skipped"]))
            if stats["skipped"]:
                bar.set_postfix(skipped=stats["skipped"], refresh=False)
            if on_batch is not None:
                on_batch(stats["annotated"] + stats["skipped"])
        commit()
    finally:
        pool.shutdown(wait=True)
        bar.close()
    seconds = time.perf_counter() - t0
    processed = stats["annotated"] + stats["skipped"]
    session = {"rank": rank, "world": world, "device": str(device), "host": platform.node(), "pid": os.getpid(),
               "started": round(started, 3), "seconds": round(seconds, 3), "annotated": stats["annotated"],
               "skipped": stats["skipped"], "shards": stats["shards"], "batch_size": options.batch_size,
               "num_workers": options.num_workers, "pairs_per_s": round(processed / seconds, 2) if seconds else None,
               **{k: round(v, 3) for k, v in timing.items()}}
    atomic_write(out / "state" / f"session-rank{rank}-{int(started * 1000)}-{os.getpid()}.json", json.dumps(session))
    return session


def set_cpu_threads(num_workers: int) -> int:
    """On CPU, leave a core to each decode worker: intra-op threads waiting on a busy core make small ops
    many times slower (measured: pixel_diff at 64 px, 2 cores, 2 workers: 70 -> 450 pairs/s end to end).
    An explicit OMP_NUM_THREADS wins."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - num_workers))
    return torch.get_num_threads()
