"""Annotation speed and memory: `bench annotate`'s loop against its own limits, and RSS over a stream.

    python -m benchmarks.perf.annotate_speed --pairs CORPUS_FOLDER --n 256           # manifest + parquet, CPU
    python -m benchmarks.perf.annotate_speed --pairs CORPUS_FOLDER --device cuda --batch-size 64 --n 4096
    python -m benchmarks.perf.annotate_speed --generators sigma --size 256 --n 256   # synthetic pairs, no disk
    python -m benchmarks.perf.annotate_speed --rss                                   # RSS at 1k and 10k pairs

One run measures, with the same workers, batch size and torch threads, per source:

- decode only: the loop's DataLoader over the same stream (read and decode both images of every pair,
  batches handed to this process), nothing else: the data side's limit; for sources whose edited images
  the loop writes out (parquet, synthetic) also "decode + edited images", that limit with those writes;
- the loop (:func:`benchmarks.annotation.loop.annotate`: upload, generator, mask PNGs, shard commits, and
  for parquet the edited images written out) with each generator of ``--generators``; ``empty`` costs
  nothing, so its rate against decode only is the loop's own overhead;
- model only, per generator: ``generator.generate`` on one batch of the source's pairs already on the device,
  in the loop's input layout (:func:`~benchmarks.annotation.loop.model_input`), with the instructions the
  loop meets in the order it meets them (text embeddings cached as in the loop, so each is encoded once).

Sources: with ``--pairs`` a pairs-manifest folder (``manifest``) and the same first ``--n`` pairs copied into
one parquet file (``parquet``: the files' own bytes in ``datasets`` Image structs, edited images written out
as PNG by the loop); without, random pairs made on the fly (``synthetic``). Rates are timed from the end of
the first batch to the end, so worker start-up is left out. Each ratio is a rate over its limit (1.0 = the
loop is free): the loop with ``empty`` over decode only, a generator's loop over its model only. The CPU
time per pair is printed too, in all and split between this process (writer threads included) and its
workers, and for ``empty`` the ratio by CPU time: on a
machine shared with other jobs it moves much less than wall time. ``--repeat R`` measures everything R
times, round robin, and keeps the best of each. ``--scratch`` puts the runs' output folders (and the
parquet copy) where a real ``--out`` would go: creating the mask files is part of the loop's cost. On CPU the
main process gets the torch threads `bench annotate` gives it (one core left per worker,
:func:`~benchmarks.annotation.loop.set_cpu_threads`) and model only runs with those same threads.

``--steps`` times, instead, each step the loop's main process takes for a batch (the float conversion, and
beside it the one mixed-dtype division it replaced; the generator ``empty``, the threshold and beside it
torch's comparison it replaced on CPU, the mask PNG and its file), in CPU ms per pair.

``--rss`` streams 10,000 tiny pairs through the same loop and prints the resident memory of this process
(and of its DataLoader workers) after 1,000 and after 10,000 pairs: memory must stay flat (within +-10 %).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.annotation.loop import (AnnotateOptions, annotate, compile_generator, model_input, pair_loader,
                                        set_cpu_threads)
from benchmarks.annotation.stream import PairStream
from benchmarks.data.pair_sources import open_source
from benchmarks.perf.memory import children_rss_mb, rss_mb


class SyntheticSource:
    """``n`` random pairs of ``size`` x ``size``, made on the fly from the index (nothing on disk)."""

    kind = "synthetic"
    edited_on_disk = False

    def __init__(self, n: int, size: int, seed: int = 0, unique_instructions: bool = False):
        self.n, self.size, self.seed = n, size, seed
        self.unique_instructions = unique_instructions  # a real corpus: every pair its own words (no text cache hit)

    def count(self, limit: int | None = None) -> int:
        return self.n if limit is None else min(self.n, limit)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "size": self.size, "seed": self.seed,
                "unique_instructions": self.unique_instructions}

    def check_same(self, recorded: dict[str, Any]) -> None:
        if recorded != self.describe():
            raise ValueError(f"synthetic source {self.describe()} != {recorded}")

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((self.seed, index))
        original = rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8)
        edited = original.copy()
        y, x = rng.integers(0, self.size // 2, 2)
        edited[y:y + self.size // 3, x:x + self.size // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
        return original, edited

    def instruction(self, index: int) -> str:
        if not self.unique_instructions:
            return "change something"
        things = ("cup", "car", "dog", "sign", "tree", "window", "hat", "lamp")
        return f"make the {things[index % len(things)]} number {index} look like it was painted over"

    def iter_items(self, residue: int, step: int, start: int, stop: int, on_error: str) -> Iterator[dict]:
        first = start + (residue - start) % step
        for index in range(first, stop, step):
            original, edited = self.pair(index)
            yield {"index": index, "id": f"syn{index:08d}", "original": original, "edited": edited,
                   "instruction": self.instruction(index), "original_resized": False, "edited_path": None,
                   "original_path": None, "source": f"synthetic#{index}"}


def build_generator(name: str, device: torch.device, overrides: list[str], random_heads: bool = False):
    from omegaconf import OmegaConf

    from benchmarks.config import compose
    from benchmarks.builders import generator_from_config

    cfg = compose([*overrides, f"generator={name}"])
    if random_heads:  # speed does not depend on the weights: SIGMA's heads, randomly initialised, no training
        from sigma.annotator import save_checkpoint
        from sigma.model import SigmaConfig, SigmaNet

        net = SigmaNet(SigmaConfig.from_dict(OmegaConf.to_container(cfg.generator.model, resolve=True)))
        path = Path(tempfile.mkdtemp(prefix="annotate-speed-")) / "random-heads.pt"
        save_checkpoint(path, net, {})
        cfg = compose([*overrides, f"generator={name}", f"generator.checkpoint={path}"])
    return generator_from_config(cfg).to(device).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def cpu_split() -> tuple[float, float]:
    """User + system CPU seconds of this process (its threads included: the loop's mask writers) and of its
    finished children (the DataLoader workers, counted once they have exited)."""
    import resource

    return tuple(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                    resource.getrusage(resource.RUSAGE_CHILDREN)))


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the DataLoader workers)."""
    return sum(cpu_split())


def cpu_per_pair(start: tuple[float, float], pairs: int) -> dict[str, float]:
    """CPU ms per pair since `start` (a :func:`cpu_split`): in all, in this process and in its workers."""
    main, workers = (1000 * (now - then) / max(pairs, 1) for now, then in zip(cpu_split(), start))
    return {"cpu_ms_per_pair": main + workers, "main_ms_per_pair": main, "workers_ms_per_pair": workers}


def _rate(marks: list[tuple[float, int]]) -> float:
    """Pairs/s from (time, pairs done) marks, first batch left out."""
    if len(marks) < 2:
        return float("nan")
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    return (n1 - n0) / (t1 - t0)


def parquet_copy(manifest: str | Path, n: int, folder: Path, row_group: int = 64) -> Path:
    """The first `n` pairs of a manifest folder as one parquet file (the image files' own bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct({"bytes": pa.binary(), "path": pa.string()})  # how `datasets` stores an Image feature
    rows: dict[str, list] = {"id": [], "original_image": [], "edited_image": [], "edit_prompt": []}
    for item in open_source(manifest).iter_items(0, 1, 0, n, "skip"):
        if "original_path" not in item:
            continue
        rows["id"].append(item["id"])
        for key, path in (("original_image", item["original_path"]), ("edited_image", item["edited_path"])):
            rows[key].append({"bytes": Path(path).read_bytes(), "path": Path(path).name})
        rows["edit_prompt"].append(item["instruction"])
    path = folder / "pairs.parquet"
    table = pa.table({k: pa.array(v, type=image if k.endswith("_image") else None) for k, v in rows.items()})
    pq.write_table(table, path, row_group_size=row_group)
    return path


def decode_only(source, options: AnnotateOptions, device: torch.device, scratch: str | None = None,
                write_images: bool = False) -> tuple[float, dict[str, Any], list[str]]:
    """Pairs/s of the loop's DataLoader alone (read + decode, batches handed over; with `write_images` the
    edited images written out too, as the loop does for parquet), its first batch (with the run's CPU
    ms per pair) and the instructions in the order this process receives them (what model only feeds)."""
    marks: list[tuple[float, int]] = []
    instructions: list[str] = []
    first: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="annotate-decode-", dir=scratch) as out:
        out = Path(out)
        for sub in ("tmp/rank0", "images"):
            (out / sub).mkdir(parents=True)
        stream = PairStream(source, out, rank=0, world=1, batch_size=options.batch_size,
                            stop=source.count(options.limit), done=np.zeros(0, dtype=np.int64),
                            write_images=write_images)
        n, cpu = 0, cpu_split()
        for batch in pair_loader(stream, options.num_workers, device):
            n += len(batch["entry"]) + len(batch["skipped"])
            marks.append((time.perf_counter(), n))
            instructions += [e["instruction"] for e in batch["entry"]]
            if not first and batch["entry"] and len(set(batch["hw"])) == 1:
                first = batch
        first.update(cpu_per_pair(cpu, n))
    return _rate(marks), first, instructions


def end_to_end(generator, source, options: AnnotateOptions, device: torch.device,
               scratch: str | None = None) -> tuple[float, dict]:
    """Pairs/s of the annotate loop, timed from the end of the first batch to the end of the run (the
    session's ``cpu_ms_per_pair``: this process and its workers, up to the end of the loop)."""
    marks: list[tuple[float, int]] = []
    clear_text_cache(generator)
    with tempfile.TemporaryDirectory(prefix="annotate-speed-", dir=scratch) as out:
        cpu = cpu_split()
        session = annotate(generator, source, out, options, device=device,
                           on_batch=lambda n: marks.append((time.perf_counter(), n)))
        _sync(device)
        session.update(cpu_per_pair(cpu, session["annotated"] + session["skipped"]))
    return _rate(marks), session


def model_only(generator, batch: dict[str, Any], instructions: list[str], device: torch.device) -> float:
    """Pairs/s of generator.generate on one batch already on the device (the loop's input layout), fed the
    loop's instructions batch by batch: the first batch warms up, the rest is timed (as the loop's rate)."""
    b = len(batch["entry"])
    orig = model_input(batch["original"].to(device))
    edit = model_input(batch["edited"].to(device))
    clear_text_cache(generator)
    steps = max(1, len(instructions) // b - 1)
    texts = instructions + [""] * (b * (steps + 1) - len(instructions))
    with _autocast(device):
        generator.generate(orig, edit, texts[:b])  # warm-up, like the loop's first batch
        _sync(device)
        t = time.perf_counter()
        for step in range(1, steps + 1):
            generator.generate(orig, edit, texts[step * b:(step + 1) * b])
        _sync(device)
    return steps * b / (time.perf_counter() - t)


def clear_text_cache(generator) -> None:
    """Forget SIGMA's cached instruction embeddings, so every measurement encodes what the loop encodes."""
    text = getattr(getattr(generator, "annotator", None), "text", None)
    if text is not None:
        text.clear_cache()


def backbone_only(generator, size: int, batch_size: int, n: int, device: torch.device) -> float | None:
    """Pairs/s of two backbone forwards per pair (SIGMA's frozen backbone), or None without one."""
    backbone = getattr(getattr(generator, "annotator", None), "backbone", None)
    if backbone is None:
        return None
    side = size + (-size) % 16
    x = torch.rand(batch_size, 3, side, side, device=device)
    with torch.no_grad(), _autocast(device):
        backbone(x)
        _sync(device)
        steps = max(1, n // batch_size)
        t = time.perf_counter()
        for _ in range(steps):
            backbone(x)
            backbone(x)
        _sync(device)
    return steps * batch_size / (time.perf_counter() - t)


def file_cost(folder: str | None, n: int = 500, size: int = 2048) -> float:
    """CPU ms (user + system) of this process to write one small file as the loop writes each mask (under a
    temporary name, then renamed: :func:`~benchmarks.annotation.stream.write_file`), in `folder`. How much
    it costs depends on the disk and on what else writes to it. It is part of the loop's cost that no change
    to the loop removes, printed so that a low ratio can be read against it."""
    from benchmarks.annotation.stream import write_file

    data = bytes(size)
    with tempfile.TemporaryDirectory(prefix="annotate-files-", dir=folder) as out:
        out = Path(out)
        start = cpu_seconds()
        for i in range(n):
            write_file(out / f"{i}.png", data, out)
        return 1000 * (cpu_seconds() - start) / n


def main_process_steps(args: argparse.Namespace, device: torch.device, batches: int = 40) -> None:
    """CPU ms per pair of each step the loop's main process takes for a batch, with the loop's own
    functions and this process's threads, on one batch of random pixels at ``--size`` whose masks each hold
    one square: where the main process's share of the cores goes (it competes with the decode workers)."""
    import io
    import itertools
    import zlib

    from PIL import Image

    from benchmarks.annotation.loop import THRESHOLD, mask_pixels
    from benchmarks.annotation.stream import write_file, write_png

    b, s = args.batch_size, args.size
    rng = torch.Generator().manual_seed(0)
    originals, editeds = (torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, generator=rng).to(device)
                          for _ in range(2))
    generator = build_generator("empty", device, [], False)
    kept: dict[str, torch.Tensor] = {}
    inputs = model_input(originals), model_input(editeds)
    prob = torch.zeros(b, 1, s, s, device=device)
    prob[:, :, s // 4:s // 2, s // 3:2 * s // 3] = 1.0
    masks = mask_pixels(prob)
    rows = np.concatenate([np.zeros((s, 1), np.uint8), masks[0, 0]], axis=1).tobytes()  # PNG rows, filter 0
    encoded = bytes(1)

    def encode_all() -> None:
        nonlocal encoded
        for j in range(b):
            buffer = io.BytesIO()
            Image.fromarray(masks[j, 0]).save(buffer, format="PNG", compress_level=1)
            encoded = buffer.getvalue()

    with tempfile.TemporaryDirectory(prefix="annotate-steps-", dir=args.scratch) as out:
        out, names = Path(out), itertools.count()
        steps = {
            "uint8 -> float, both images": lambda: (model_input(originals, kept, "original"),
                                                    model_input(editeds, kept, "edited")),
            "  as one mixed uint8 / float division": lambda: (torch.div(originals, 255.0, out=kept["original"]),
                                                              torch.div(editeds, 255.0, out=kept["edited"])),
            "generator `empty` (mask and score)": lambda: generator.generate_scored(*inputs, [""] * b),
            "threshold, mask to host": lambda: mask_pixels(prob),
            "  as torch's comparison": lambda: (prob >= THRESHOLD).view(torch.uint8).mul_(255).cpu().numpy(),
            "mask PNG, encoded in memory (PIL)": encode_all,
            "  deflate of its rows alone (zlib)": lambda: [zlib.compress(rows, 1) for _ in range(b)],
            "mask file: write + rename": lambda: [write_file(out / f"{next(names)}.png", encoded, out) for _ in range(b)],
            "write_png, as the loop (encode + file)": lambda: [write_png(out / f"{next(names)}.png", masks[j, 0], out)
                                                                for j in range(b)],
        }
        print(f"main-process steps on {device}: batch {b}, {s}x{s} px, torch threads {torch.get_num_threads()}; "
              f"CPU ms per pair, {batches} batches each; files in {args.scratch or tempfile.gettempdir()}")
        for name, step in steps.items():
            step()
            _sync(device)
            start = cpu_seconds()
            for _ in range(batches):
                step()
            _sync(device)
            print(f"  {name:42s} {1000 * (cpu_seconds() - start) / (batches * b):7.3f} ms")


def _sources(args: argparse.Namespace, scratch: Path) -> list[tuple[str, Any]]:
    if not args.pairs:
        return [("synthetic", SyntheticSource(args.n, args.size, unique_instructions=args.unique_instructions))]
    kinds = args.sources.split(",")
    found = []
    for kind in kinds:
        if kind == "manifest":
            found.append((f"manifest ({args.pairs})", open_source(args.pairs)))
        elif kind == "parquet":
            found.append(("parquet (its copy, one file)", open_source(parquet_copy(args.pairs, args.n, scratch))))
        else:
            raise SystemExit(f"--sources: {kind!r} is not manifest or parquet")
    return found


def _cpu(info: dict) -> str:
    return (f"cpu {info['cpu_ms_per_pair']:.2f} ms/pair: this process {info['main_ms_per_pair']:.2f}, workers "
            f"{info['workers_ms_per_pair']:.2f}")


def _breakdown(session: dict) -> str:
    return (f"{_cpu(session)}; data wait {session.get('data_wait_s', 0):.2f} s, model "
            f"{session.get('model_s', 0):.2f} s, write wait {session.get('write_wait_s', 0):.2f} s of "
            f"{session['seconds']:.2f} s")


def speed(args: argparse.Namespace, device: torch.device) -> None:
    names = args.generators.split(",")
    generators = {name: build_generator(name, device, args.overrides, args.random_heads) for name in names}
    if args.compile:  # as the loop does it; model only then runs the compiled forward too
        generators = {name: compile_generator(g) for name, g in generators.items()}
    options = AnnotateOptions(batch_size=args.batch_size, shard_size=args.shard_size, num_workers=args.num_workers,
                              compile=args.compile, progress=False, limit=args.n)
    print(f"annotate speed on {device}: batch {args.batch_size}, {args.num_workers} workers, torch threads "
          f"{torch.get_num_threads()} in this process (loop and model only alike), {os.cpu_count()} cores; "
          f"{args.n} pairs per source; best of {args.repeat}{'; compiled' if args.compile else ''}")
    if args.scratch:
        Path(args.scratch).mkdir(parents=True, exist_ok=True)
    print(f"files in {args.scratch or tempfile.gettempdir()}: {file_cost(args.scratch):.2f} ms CPU to write one 2 KB "
          f"file (the loop writes one per mask, and for parquet one per edited image)")
    with tempfile.TemporaryDirectory(prefix="annotate-sources-", dir=args.scratch) as folder:
        for label, source in _sources(args, Path(folder)):
            print(f"source {label}")
            limits = {"decode only": ["decode"]} if source.edited_on_disk else {
                "decode only": ["decode"], "decode + edited images": ["decode", "write"]}
            best: dict[str, tuple[float, dict]] = {}  # what -> (best rate, its session or first batch)
            models: dict[str, float] = {}

            def keep(what: str, rate: float, info: dict) -> None:
                if rate > best.get(what, (0.0, {}))[0]:
                    best[what] = (rate, info)

            for _ in range(args.repeat):  # round robin, best of each: load from other jobs moves all alike
                for what, parts in limits.items():
                    rate, batch, instructions = decode_only(source, options, device, args.scratch, "write" in parts)
                    keep(what, rate, batch)
                for name, generator in generators.items():
                    keep(name, *end_to_end(generator, source, options, device, args.scratch))
                    if name != "empty":
                        models[name] = max(models.get(name, 0.0), model_only(generator, batch, instructions, device))
            h, w = batch["hw"][0]
            decode = best["decode only"][0]
            for what in limits:
                rate, info = best[what]
                print(f"  {what:22s} {rate:9.1f} pairs/s   ({_cpu(info)}; {w}x{h} px)")
            for name in generators:
                rate, session = best[name]
                if name == "empty":
                    cpu = session["cpu_ms_per_pair"]
                    ratios = ", ".join(f"{rate / best[what][0]:.2f} of {what} (by CPU time "
                                       f"{best[what][1]['cpu_ms_per_pair'] / cpu:.2f})" for what in limits)
                    print(f"  loop, empty            {rate:9.1f} pairs/s   {ratios}   ({_breakdown(session)})")
                    continue
                model = models[name]
                print(f"  loop, {name:16s} {rate:9.1f} pairs/s   {rate / model:.2f} of model only "
                      f"({rate / min(model, decode):.2f} of min(model only, decode only))   ({_breakdown(session)})")
                print(f"  model only, {name:10s} {model:9.1f} pairs/s")
    if args.backbone:
        for name, generator in generators.items():
            backbone = backbone_only(generator, args.size, args.batch_size, args.n, device)
            if backbone is not None:
                print(f"backbone x2 ({name}) {backbone:9.1f} pairs/s   (two forwards per pair, {args.size} px, random input)")


def rss(args: argparse.Namespace, device: torch.device) -> None:
    name = args.generators.split(",")[0]
    generator = build_generator(name, device, args.overrides, args.random_heads)
    source = SyntheticSource(args.rss_n, args.rss_size)
    options = AnnotateOptions(batch_size=args.batch_size, shard_size=args.shard_size, num_workers=args.num_workers,
                              progress=False)
    samples: dict[int, float] = {}
    workers: dict[int, float] = {}  # pairs done -> mean RSS per live worker (workers exit one by one at the end)
    checkpoints = [args.rss_first, args.rss_n]

    def on_batch(n: int) -> None:
        while checkpoints and n >= checkpoints[0]:
            samples[checkpoints.pop(0)] = rss_mb()
        if n >= args.rss_first:
            total, count = children_rss_mb()
            if count:
                workers[n] = total / count

    with tempfile.TemporaryDirectory(prefix="annotate-rss-") as out:
        t = time.perf_counter()
        annotate(generator, source, out, options, device=device, on_batch=on_batch)
        seconds = time.perf_counter() - t
    a, b = samples[args.rss_first], samples[args.rss_n]
    print(f"RSS streaming {args.rss_n} pairs of {args.rss_size}x{args.rss_size} ({name}, batch "
          f"{args.batch_size}, {args.num_workers} workers, {seconds:.1f} s, {args.rss_n / seconds:.0f} pairs/s)")
    print(f"main process  {a:7.1f} MiB at {args.rss_first:>6}   {b:7.1f} MiB at {args.rss_n:>6}   ratio {b / a:.3f} "
          f"({'within' if abs(b / a - 1) <= 0.10 else 'OUTSIDE'} +-10 %)")
    if workers:
        (n0, w0), (n1, w1) = min(workers.items()), max(workers.items())
        print(f"per worker    {w0:7.1f} MiB at {n0:>6}   {w1:7.1f} MiB at {n1:>6}   ratio {w1 / w0:.3f} "
              f"({'within' if abs(w1 / w0 - 1) <= 0.10 else 'OUTSIDE'} +-10 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generators", "--generator", default=None,
                        help="generator config names, comma-separated (configs/generator/; default empty,pixel_diff,"
                             "sigma; --rss: pixel_diff, the first one named is used)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (synthetic source, --backbone)")
    parser.add_argument("--n", type=int, default=2000, help="pairs for the speed runs")
    parser.add_argument("--pairs", default=None, help="a pairs-manifest folder: measure on its first --n pairs (and on "
                                                       "their parquet copy) instead of synthetic pairs")
    parser.add_argument("--sources", default="manifest,parquet", help="with --pairs: manifest, parquet or both")
    parser.add_argument("--repeat", type=int, default=1, help="measure everything this many times, round robin; "
                                                             "report the best of each (a shared machine)")
    parser.add_argument("--scratch", default=None, help="folder for the runs' outputs and the parquet copy (default: "
                                                         "the system's temporary folder); put it where --out would go")
    parser.add_argument("--backbone", action="store_true", help="also time SIGMA's backbone alone (two forwards)")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--unique-instructions", action="store_true",
                        help="synthetic source: a different instruction per pair, as in a real corpus (the text "
                             "encoder runs for every pair; by default one instruction, encoded once)")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator in the annotate loop")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads of the main process (default: as `bench annotate` sets them "
                             "on CPU: one core left per decode worker)")
    parser.add_argument("--random-heads", action="store_true",
                        help="sigma / grounding_only: randomly initialised heads instead of a trained checkpoint")
    parser.add_argument("--rss", action="store_true", help="measure RSS over a long stream instead of speed")
    parser.add_argument("--steps", action="store_true", help="time each step of the loop's main process per batch "
                        "instead (CPU ms per pair, --size px, --batch-size)")
    parser.add_argument("--rss-n", type=int, default=10_000, help="pairs streamed in the RSS run")
    parser.add_argument("--rss-first", type=int, default=1_000, help="first RSS sample after this many pairs")
    parser.add_argument("--rss-size", type=int, default=32, help="image side in the RSS run")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="Hydra overrides for the generator config")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    elif device.type == "cpu":
        set_cpu_threads(args.num_workers)
    args.generators = args.generators or ("pixel_diff" if args.rss else "empty,pixel_diff,sigma")
    (main_process_steps if args.steps else rss if args.rss else speed)(args, device)


if __name__ == "__main__":
    main()
