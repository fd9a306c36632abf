"""`bench annotate`: turn a pairs corpus into masks with one mask generator, at corpus scale.

    bench annotate --generator sigma --pairs CORPUS_FOLDER --out DIR           # a pairs-manifest folder
    bench annotate --generator sigma --pairs 'hub/train-*.parquet' --out DIR   # parquet, streamed
    torchrun --nproc-per-node 8 -m benchmarks.cli annotate ...                 # or N processes with RANK/WORLD_SIZE

Outputs (DESIGN.md, "Annotation output"); every file is written to a temporary name, then renamed:

    DIR/masks/<id>.png          the mask: 0/255 at threshold 0.5 (--soft: the soft mask as 0..255)
    DIR/images/<id>.png         the edited image, for parquet sources (manifest sources keep their own files)
    DIR/shards/rank{r}-{k:06d}.jsonl   the pairs rank r finished in its shard k, annotated or skipped
    DIR/iml.json                IMDL-BenCo list [[edited image, mask], ...], paths relative to DIR
    DIR/manifest.jsonl          the annotated pairs sorted by global index (for a manifest source: a
                                pairs manifest with masks; for parquet: ``source`` = "file#row", no original)
    DIR/skipped.jsonl           one line per skipped pair: index, id, reason, error
    DIR/provenance.json         generator, weights hashes, config, counts, skips by reason, timings, versions
    DIR/config.yaml             the resolved config;  DIR/run.json: source and generator this folder is for

Order and sharding. Pairs have a global index ``i`` (manifest: the i-th non-empty line; parquet: the
global row, files sorted). Rank ``r`` of ``W`` takes ``i % W == r``; DataLoader worker ``w`` of ``n``
takes every n-th of those (``i % (W n) == r + W w``), in increasing order, and decodes it. A batch is a
fixed window of ``batch_size`` consecutive pairs of one worker's sequence, so an interrupted and resumed
run computes every mask in the same batch as an uninterrupted one (byte-identical masks).

Resume. A shard file is renamed into ``shards/`` only after every file it lists is on disk, so after any
interruption (SIGKILL included) the shard files say exactly what is done. The same command reads them,
leaves the done indices out (workers jump over their done prefix without decoding it) and carries on; a
mask written but never listed in a committed shard is redone. In-flight files live in ``DIR/tmp/``: a
rank clears its own on start, and the final merge clears the folder.

Bad pairs. With ``on_error=skip`` (the default for streams), a pair that cannot be read (missing file,
corrupt image, bad manifest line, unreadable parquet row group) is logged, counted by reason and listed in
its shard as done, so a resume does not retry it forever; ``--retry-skipped`` retries them once the files
are fixed. An original whose size differs from the edited image is resized to it (warning) and an empty
instruction is annotated normally; both are counted. Ids must be unique: pairs sharing an id are left out
of iml.json and listed in skipped.jsonl as ``duplicate-id`` (their mask file is ambiguous).

Merge. With a process group, ranks meet at a barrier and rank 0 merges; independent processes each leave
a done marker and the last to finish merges. The merge reads only shard files (streamed, sorted by index),
so it is idempotent and any process can run it: ``bench annotate --out DIR --merge-only``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data
from PIL import Image

from benchmarks.data.imageio import sha256_file
from benchmarks.data.pair_sources import SKIP, PairSource, open_source
from benchmarks.generators.base import MaskGenerator
from benchmarks.generators.quality_filter import check_min_quality, filter_annotation
from benchmarks.runners.annotation_shards import FORMAT, file_stem, merge, read_done, write_text

log = logging.getLogger(__name__)

THRESHOLD = 0.5  # the MaskGenerator contract: >= 0.5 reads as "edited"


# ---------------------------------------------------------------------------------------------- the stream


def _save_png(path: Path, array: np.ndarray, tmp_dir: Path) -> None:
    # unique per process and thread: pairs sharing an id (an input error, reported by the merge) may be in flight at once
    tmp = tmp_dir / f"{path.parent.name}-{path.name}.{os.getpid()}-{threading.get_ident()}.tmp"
    Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def _rel(path: Path, out: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), out)).as_posix()


class PairStream(torch.utils.data.IterableDataset):
    """One rank's pairs as batches: windows of ``batch_size`` consecutive pairs of each worker's sequence,
    done pairs left out, parquet edited images written to ``DIR/images``; images stay uint8 (padded)."""

    def __init__(self, source: PairSource, out: Path, *, rank: int, world: int, batch_size: int, stop: int,
                 done: np.ndarray, on_error: str = "skip", write_images: bool = False):
        self.source, self.out, self.rank, self.world = source, out, rank, world
        self.batch_size, self.stop, self.done, self.on_error = batch_size, stop, done, on_error
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
        for item in self.source.iter_items(residue, step, residue + first * step, self.stop, self.on_error):
            i = item["index"]
            while ptr < len(later) and later[ptr] < i:
                ptr += 1
            if ptr < len(later) and later[ptr] == i:
                continue
            win = (i - residue) // step // self.batch_size
            if buf and win != window:
                yield self._collate(buf)
                buf = []
            window = win
            buf.append(self._prepare(item))
        if buf:
            yield self._collate(buf)

    def _prepare(self, item: dict[str, Any]) -> dict[str, Any]:
        if SKIP in item:
            return item
        stem = file_stem(item["id"])
        edited_path = item["edited_path"]
        if edited_path is None and self.write_images:
            edited_path = self.out / "images" / f"{stem}.png"
            _save_png(edited_path, item["edited"], self.tmp)
        entry = {"index": item["index"], "id": item["id"], "mask": f"masks/{stem}.png",
                 "edited": _rel(edited_path, self.out) if edited_path is not None else None,
                 "original": _rel(item["original_path"], self.out) if item["original_path"] is not None else None,
                 "source": item["source"], "instruction": item["instruction"],
                 "original_resized": bool(item["original_resized"])}
        return {"entry": entry, "original": torch.from_numpy(item["original"]).permute(2, 0, 1),
                "edited": torch.from_numpy(item["edited"]).permute(2, 0, 1)}

    @staticmethod
    def _collate(buf: list[dict[str, Any]]) -> dict[str, Any]:
        pairs = [b for b in buf if SKIP not in b]
        batch: dict[str, Any] = {"skipped": [b for b in buf if SKIP in b], "entry": [p["entry"] for p in pairs],
                                 "hw": [tuple(p["edited"].shape[-2:]) for p in pairs]}
        if pairs:
            h, w = max(s[0] for s in batch["hw"]), max(s[1] for s in batch["hw"])
            for key in ("original", "edited"):
                out = torch.zeros(len(pairs), 3, h, w, dtype=torch.uint8)
                for k, p in enumerate(pairs):
                    out[k, :, : p[key].shape[1], : p[key].shape[2]] = p[key]
                batch[key] = out
        return batch


def _identity(x: Any) -> Any:
    return x


# ---------------------------------------------------------------------------------------------- the loop


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
        if self.on_error not in ("skip", "raise"):
            raise ValueError(f"on_error={self.on_error!r}; use 'skip' or 'raise'")
        if self.min_quality is not None:
            check_min_quality(self.min_quality)
        if self.batch_size < 1 or self.shard_size < 1 or self.num_workers < 0 or (self.limit is not None
                                                                                 and self.limit < 0):
            raise ValueError(f"need batch_size >= 1, shard_size >= 1, num_workers >= 0, limit >= 0; got {self}")


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
                        on_error=options.on_error, write_images=write_images)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=options.num_workers,
                                         collate_fn=_identity, pin_memory=device.type == "cuda",
                                         prefetch_factor=4 if options.num_workers else None)
    if options.compile:
        generator.forward = torch.compile(generator.forward, dynamic=True)  # type: ignore[method-assign]
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext())
    stats = Counter()
    timing = Counter()
    entries: list[dict[str, Any]] = []
    pending: list[Future] = []
    started, t0 = time.time(), time.perf_counter()
    batches = iter(loader)  # start (fork) the workers before any thread exists in this process
    from tqdm import tqdm

    bar = tqdm(total=max(remaining, 0), unit="pair", desc=f"annotate {generator.info.name} [rank {rank}/{world}]",
               disable=not (options.progress and rank == 0), dynamic_ncols=True, mininterval=1.0)
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="annotate-write")

    def commit() -> None:
        nonlocal shard_k
        t = time.perf_counter()
        for f in pending:
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
            for m in batch["skipped"]:
                log.warning("skipped %s (%s): %s", m["id"], m[SKIP], m["error"])
                entries.append({"index": m["index"], "id": m["id"], "skipped": m[SKIP], "error": m["error"]})
                stats["skipped"] += 1
            t = time.perf_counter()
            groups: dict[tuple[int, int], list[int]] = {}
            for k, hw in enumerate(batch["hw"]):
                groups.setdefault(hw, []).append(k)
            if groups:  # uint8 to the device once (4x less traffic than float), then one call per size
                originals = batch["original"].to(device, non_blocking=True)
                editeds = batch["edited"].to(device, non_blocking=True)
            for (h, w), members in groups.items():  # the generator never sees padding
                sel = torch.tensor(members, device=device)
                orig = originals[sel, :, :h, :w].float().div_(255.0)
                edit = editeds[sel, :, :h, :w].float().div_(255.0)
                with autocast:
                    scored = generator.generate_scored(orig, edit, [batch["entry"][k]["instruction"] for k in members])
                prob = scored.mask.float()
                masks = ((prob * 255.0).round() if options.soft else (prob >= THRESHOLD).float() * 255.0)
                masks = masks.to(torch.uint8).cpu().numpy()
                quality = scored.quality.float().cpu().tolist()
                for j, k in enumerate(members):
                    entry = batch["entry"][k]
                    entry["quality"] = round(quality[j], 4)  # --min-quality filters on it after the merge
                    pending.append(pool.submit(_save_png, out / entry["mask"], masks[j, 0], tmp))
                    entries.append(entry)
            timing["model_s"] += time.perf_counter() - t
            n = len(batch["entry"])
            stats["annotated"] += n
            if len(pending) > 4 * options.batch_size:  # bound the masks held in memory
                for f in pending[: len(pending) // 2]:
                    f.result()
                del pending[: len(pending) // 2]
            if len(entries) >= options.shard_size:
                commit()
            bar.update(n + len(batch["skipped"]))
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
    write_text(out / "state" / f"session-rank{rank}-{int(started * 1000)}-{os.getpid()}.json", json.dumps(session))
    return session


# ---------------------------------------------------------------------------------------------- run folder


def generator_record(generator: MaskGenerator, gen_cfg: dict[str, Any]) -> dict[str, Any]:
    """Name, info, config and the SHA-256 of every weights file the config points to."""
    files = {key: {"path": str(Path(value).resolve()), "sha256": sha256_file(Path(value))}
             for key, value in gen_cfg.items() if isinstance(value, str) and value and Path(value).is_file()}
    return {**asdict(generator.info), "config": gen_cfg, "weights_files": files}



def prepare_output(out: Path, pairs: str, source: PairSource, record: dict[str, Any], mask: str,
                   config: dict[str, Any] | None = None) -> None:
    """Create ``out/run.json`` or check that it describes the same source, generator and mask mode."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run.json"
    if path.is_file():
        have = json.loads(path.read_text(encoding="utf-8"))
        source.check_same(have["source"])
        for key, want in (("generator", {k: record[k] for k in ("name", "config", "weights_files")}), ("mask", mask)):
            got = have[key] if key == "mask" else {k: have[key][k] for k in ("name", "config", "weights_files")}
            if got != want:
                raise ValueError(f"{out} holds masks made with {key} {got}, not {want}; resume with the same "
                                 "settings or annotate into a new --out folder")
        return
    run = {"format": FORMAT, "pairs": str(pairs), "source": source.describe(), "generator": record, "mask": mask,
           "config": config}
    write_text(path, json.dumps(run, indent=2, ensure_ascii=False) + "\n")


def set_cpu_threads(num_workers: int) -> int:
    """On CPU, leave a core to each decode worker: intra-op threads waiting on a busy core make small ops
    many times slower (measured: pixel_diff at 64 px, 2 cores, 2 workers: 70 -> 450 pairs/s end to end).
    An explicit OMP_NUM_THREADS wins."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - num_workers))
    return torch.get_num_threads()


def rank_world() -> tuple[int, int, bool]:
    """(rank, world size, process group?) from an initialised group, else RANK / WORLD_SIZE (torchrun)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), True
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world, False


def finish(out: Path, source: PairSource, *, rank: int, world: int, group: bool,
           limit: int | None) -> dict[str, Any] | None:
    """Mark this rank done; merge if this process is rank 0 after a barrier, or the last rank to finish."""
    expected = source.count(limit)
    write_text(out / "state" / f"done-w{world}-r{rank}.json",
                json.dumps({"rank": rank, "world": world, "pairs": expected}))
    if group:
        import torch.distributed as dist

        dist.barrier()
        return merge(out, source, limit) if rank == 0 else None
    for r in range(world):
        marker = out / "state" / f"done-w{world}-r{r}.json"
        if not marker.is_file() or json.loads(marker.read_text(encoding="utf-8"))["pairs"] != expected:
            log.info("rank %d done; rank %d is still running (the last rank to finish merges)", rank, r)
            return None
    return merge(out, source, limit)


# ---------------------------------------------------------------------------------------------- command


def annotate_with_config(cfg: Any, pairs: str | Path, out: Path, options: AnnotateOptions, *,
                         source: PairSource | None = None) -> dict[str, Any] | None:
    """Annotate `pairs` into `out` with the generator of a composed config (``cfg.generator``): this
    process's share under torchrun / RANK+WORLD_SIZE, then the merge. Returns the provenance, or None when
    another rank merges."""
    from omegaconf import OmegaConf

    from benchmarks.config import save_resolved
    from benchmarks.runners.eval_generators import generator_from_config, resolve_device

    rank, world, group = rank_world()
    source = source if source is not None else open_source(pairs)
    OmegaConf.update(cfg, "annotate", {"pairs": str(pairs), "out": str(out), **asdict(options)}, force_add=True)
    generator = generator_from_config(cfg)
    if generator.needs_truth:
        raise ValueError(f"generator {cfg.generator.name!r} needs ground-truth masks; annotation is for unlabelled "
                         "corpora")
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1 and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    generator = generator.to(device).eval()
    gen_cfg = OmegaConf.to_container(cfg.generator, resolve=True)
    prepare_output(out, os.path.abspath(pairs), source, generator_record(generator, gen_cfg),
                   "soft" if options.soft else "binary", OmegaConf.to_container(cfg, resolve=True))
    if rank == 0:
        save_resolved(cfg, out)
    threads = torch.get_num_threads()
    try:
        if device.type == "cpu":
            log.debug("torch intra-op threads: %d", set_cpu_threads(options.num_workers))
        session = annotate(generator, source, out, options, rank=rank, world=world, device=device)
    finally:
        torch.set_num_threads(threads)  # may be called in-process (bench run, tests, notebooks)
    log.info("rank %d/%d: %d annotated, %d skipped in %.1f s (%s pairs/s)", rank, world, session["annotated"],
             session["skipped"], session["seconds"], session["pairs_per_s"])
    return _filtered(out, finish(out, source, rank=rank, world=world, group=group, limit=options.limit),
                     options.min_quality)


def _filtered(out: Path, prov: dict[str, Any] | None, min_quality: float | None) -> dict[str, Any] | None:
    """The merged folder with the quality filter applied (when asked for and this process merged)."""
    if prov is None or min_quality is None:
        return prov
    return {**prov, "quality_filter": filter_annotation(out, min_quality)}


def annotate_command(args: argparse.Namespace) -> int:
    from benchmarks.config import check_option, compose

    check_option("profile", args.profile)
    if args.merge_only and args.out:  # needs neither the generator nor the config
        out = Path(args.out)
        prov = _filtered(out, merge(out, open_source(args.pairs) if args.pairs else None, args.limit), args.min_quality)
        _print_summary(out, prov)
        return 0
    name = check_option("generator", args.generator)
    overrides = [f"profile={args.profile}", f"generator={name}", *args.overrides]
    cfg = compose(overrides, command="annotate")
    pairs = args.pairs
    if pairs is None:
        from benchmarks.runners.data import ensure_suite

        pairs = str(ensure_suite(cfg) / "corpus")
        log.info("no --pairs: annotating the synthetic suite's editing corpus %s", pairs)
    out = Path(args.out or Path(cfg.paths.runs) / "annotate" / f"{name}-{Path(pairs).name or 'pairs'}").resolve()
    options = AnnotateOptions(
        batch_size=args.batch_size or int(cfg.profile.batch_size), shard_size=args.shard_size,
        num_workers=int(cfg.profile.num_workers) if args.num_workers is None else args.num_workers,
        on_error=args.on_error, soft=args.soft, limit=args.limit, compile=args.compile,
        retry_skipped=args.retry_skipped, min_quality=args.min_quality)
    source = open_source(pairs)
    if args.merge_only:
        prov = _filtered(out, merge(out, source, args.limit), args.min_quality)
        _print_summary(out, prov)
        return 0
    prov = annotate_with_config(cfg, pairs, out, options, source=source)
    if prov is None:
        rank, world, _ = rank_world()
        print(f"bench annotate: rank {rank}/{world} finished its pairs; the last rank to finish merges into {out}")
        return 0
    _print_summary(out, prov)
    return 0


def _print_summary(out: Path, prov: dict[str, Any]) -> None:
    c = prov["counts"]
    skipped = ", ".join(f"{k} {v}" for k, v in c["skipped_by_reason"].items()) or "none"
    todo = "" if prov["complete"] else f", {c['missing']} still to do"
    print(f"bench annotate: {c['annotated']} of {c['pairs']} pairs annotated, {c['skipped']} skipped ({skipped}), "
          f"{c['original_resized']} originals resized, {c['empty_instruction']} empty instructions{todo}; "
          f"{prov['timing']['pairs_per_s']} pairs/s")
    if "quality_filter" in prov:
        q = prov["quality_filter"]
        print(f"quality filter (>= {q['min_quality']}): {q['kept']} pairs kept in iml.json, {q['excluded']} excluded "
              f"(listed in {out / q['excluded_list']}), {q['unscored']} without a score kept")
    print(f"{out / 'iml.json'}\n{out / 'provenance.json'}")
