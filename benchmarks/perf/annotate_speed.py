"""Annotation speed and memory: `bench annotate`'s loop against the model-only limit, and RSS over a stream.

    python -m benchmarks.perf.annotate_speed                                   # pixel_diff, 2,000 pairs of 64 px
    python -m benchmarks.perf.annotate_speed --generator sigma --device cuda --size 512 --batch-size 32 --n 4000
    python -m benchmarks.perf.annotate_speed --pairs CORPUS_FOLDER             # a real corpus instead
    python -m benchmarks.perf.annotate_speed --rss                             # RSS at 1k and 10k streamed pairs

Speed, in one run on the same device, batch size and resolution:

- end to end: :func:`benchmarks.annotation.loop.annotate` (DataLoader workers, batched inference, mask
  PNGs, shard commits) over a synthetic on-the-fly source (random pairs made per index, edited images
  written like a parquet corpus) or ``--pairs``; the rate is measured after the first batch, so worker
  start-up is left out;
- model only: ``generator.generate`` on pre-made tensors already on the device (no decoding, no writing);
- backbone only (generators with a SIGMA backbone): two backbone forwards per pair on random tensors.

The ratio end-to-end / model-only says how much of the model's speed the pipeline keeps (1.0 = the loop
is free). ``--rss`` streams 10,000 tiny pairs through the same loop and prints the resident memory of this
process (and of its DataLoader workers) after 1,000 and after 10,000 pairs: memory must stay flat (goal:
within +-10 %).
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

from benchmarks.data.pair_sources import open_source
from benchmarks.annotation.loop import AnnotateOptions, annotate, set_cpu_threads


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


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size from /proc (Linux), in MiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def children_rss_mb() -> tuple[float, int]:
    """Summed RSS of this process's live children (the DataLoader workers) and how many there are."""
    total, count = 0.0, 0
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as fh:
                for pid in fh.read().split():
                    with contextlib.suppress(OSError):
                        value = rss_mb(pid)
                        if value == value:  # a zombie has no VmRSS
                            total, count = total + value, count + 1
    return total, count


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


def end_to_end(generator, source, options: AnnotateOptions, device: torch.device) -> tuple[float, dict]:
    """Pairs/s of the annotate loop, timed from the end of the first batch to the end of the run."""
    marks: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory(prefix="annotate-speed-") as out:
        session = annotate(generator, source, out, options, device=device,
                           on_batch=lambda n: marks.append((time.perf_counter(), n)))
    _sync(device)
    if len(marks) < 2:
        return session["pairs_per_s"] or float("nan"), session
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    return (n1 - n0) / (t1 - t0), session


def model_only(generator, size: int, batch_size: int, n: int, device: torch.device,
               unique_instructions: bool = False) -> float:
    """Pairs/s of generator.generate on pre-made device tensors (the same batch size and resolution); with
    ``unique_instructions`` every pair's words are new, so the text encoder's cost is inside the figure."""
    source = SyntheticSource(batch_size, size, seed=1, unique_instructions=unique_instructions)
    pairs = [source.pair(i) for i in range(batch_size)]
    orig = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).to(device).float() / 255
    edit = torch.from_numpy(np.stack([p[1] for p in pairs])).permute(0, 3, 1, 2).to(device).float() / 255
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    with autocast:
        generator.generate(orig, edit, [source.instruction(-1 - i) for i in range(batch_size)])  # warm-up
        _sync(device)
        steps = max(1, n // batch_size)
        t = time.perf_counter()
        for step in range(steps):
            generator.generate(orig, edit, [source.instruction(step * batch_size + i) for i in range(batch_size)])
        _sync(device)
    return steps * batch_size / (time.perf_counter() - t)


def backbone_only(generator, size: int, batch_size: int, n: int, device: torch.device) -> float | None:
    """Pairs/s of two backbone forwards per pair (SIGMA's frozen backbone), or None without one."""
    backbone = getattr(getattr(generator, "annotator", None), "backbone", None)
    if backbone is None:
        return None
    side = size + (-size) % 16
    x = torch.rand(batch_size, 3, side, side, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    with torch.no_grad(), autocast:
        backbone(x)
        _sync(device)
        steps = max(1, n // batch_size)
        t = time.perf_counter()
        for _ in range(steps):
            backbone(x)
            backbone(x)
        _sync(device)
    return steps * batch_size / (time.perf_counter() - t)


def speed(args: argparse.Namespace, device: torch.device) -> None:
    generator = build_generator(args.generator, device, args.overrides, args.random_heads)
    source = open_source(args.pairs) if args.pairs else SyntheticSource(args.n, args.size,
                                                                         unique_instructions=args.unique_instructions)
    options = AnnotateOptions(batch_size=args.batch_size, shard_size=args.shard_size, num_workers=args.num_workers,
                              compile=args.compile, progress=False, limit=args.n if args.pairs else None)
    e2e, session = end_to_end(generator, source, options, device)
    model = model_only(generator, args.size, args.batch_size, args.n, device, args.unique_instructions)
    backbone = backbone_only(generator, args.size, args.batch_size, args.n, device)
    print(f"generator {args.generator} on {device}, batch {args.batch_size}, {args.size}x{args.size}, "
          f"{args.num_workers} workers, torch threads {torch.get_num_threads()}, "
          f"{'--pairs ' + args.pairs if args.pairs else f'{args.n} synthetic pairs'}")
    print(f"end to end  {e2e:9.1f} pairs/s   (data wait {session.get('data_wait_s', 0):.2f} s, model "
          f"{session.get('model_s', 0):.2f} s, write wait {session.get('write_wait_s', 0):.2f} s of "
          f"{session['seconds']:.2f} s)")
    print(f"model only  {model:9.1f} pairs/s   ratio end-to-end / model-only {e2e / model:.2f}")
    if backbone is not None:
        print(f"backbone x2 {backbone:9.1f} pairs/s   ratio end-to-end / backbone-only {e2e / backbone:.2f}")


def rss(args: argparse.Namespace, device: torch.device) -> None:
    generator = build_generator(args.generator, device, args.overrides, args.random_heads)
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
    print(f"RSS streaming {args.rss_n} pairs of {args.rss_size}x{args.rss_size} ({args.generator}, batch "
          f"{args.batch_size}, {args.num_workers} workers, {seconds:.1f} s, {args.rss_n / seconds:.0f} pairs/s)")
    print(f"main process  {a:7.1f} MiB at {args.rss_first:>6}   {b:7.1f} MiB at {args.rss_n:>6}   ratio {b / a:.3f} "
          f"({'within' if abs(b / a - 1) <= 0.10 else 'OUTSIDE'} +-10 %)")
    if workers:
        (n0, w0), (n1, w1) = min(workers.items()), max(workers.items())
        print(f"per worker    {w0:7.1f} MiB at {n0:>6}   {w1:7.1f} MiB at {n1:>6}   ratio {w1 / w0:.3f} "
              f"({'within' if abs(w1 / w0 - 1) <= 0.10 else 'OUTSIDE'} +-10 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default="pixel_diff", help="generator config name (configs/generator/)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (synthetic source, model-only)")
    parser.add_argument("--n", type=int, default=2000, help="pairs for the speed runs")
    parser.add_argument("--pairs", default=None, help="measure end to end on this corpus instead (first --n pairs)")
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
    (rss if args.rss else speed)(args, device)


if __name__ == "__main__":
    main()
