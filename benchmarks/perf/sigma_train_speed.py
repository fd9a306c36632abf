"""SIGMA's streamed training (``sigma.data.source=stream``): its speed against the frozen backbone's, and
its memory against the number of pairs.

    python -m benchmarks.perf.sigma_train_speed                                   # synthetic 64 px pairs, CPU
    python -m benchmarks.perf.sigma_train_speed --pairs INPAINTING --corpus CORPUS --device cuda --size 512 \\
        --batch-size 32 --workers 8 --steps 200
    python -m benchmarks.perf.sigma_train_speed --rss                             # peak RSS: 1k vs 10k pairs

Speed, in one run on one device, with the same batch, image size and workers:

- backbone: the frozen backbone's forward on a batch of random pairs already on the device (two images a
  pair, bf16 autocast on CUDA, no gradients), the bound that features on the fly put on training;
- data: the Stage I stream alone (draws, decoding in the DataLoader workers, the move to the device);
- Stage I / Stage II: ``bench train-sigma``'s stages (:func:`benchmarks.sigma_training.stages.train`) on the
  stream, pairs trained per second; Stage II counts its labelled (round-trip calibration) pairs, and reads
  as many corpus pairs again once the EMA teacher starts.

Rates are timed from the second step of each to its last (worker start-up left out). Each training rate is
also given as a share of the backbone's rate (1.0 = training costs no more than the features do).

``--rss`` writes a synthetic pairs manifest of ``--rss-n`` (10,000) pairs of ``--rss-size`` (32) px with
unique instructions, and trains on its first ``--rss-first`` (1,000) and on all of them, each in a fresh
process with the same steps (Stage I and II, ``--rss-steps`` each): it prints the peak RSS (VmHWM) of the
training process and of its largest DataLoader worker in both runs and their ratios, which must stay within
10 % (memory flat in the number of pairs). ``--rss --source bank`` measures the feature bank the same way,
for contrast (it holds every pair's images and features).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.config import compose
from benchmarks.distributed import device_for
from benchmarks.perf.memory import children, peak_rss_mb


def painted_square(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random `size` px photo, the same photo with one flat square painted on it, and that square's mask
    (0/255): the smallest pair SIGMA can learn from."""
    original = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    edited, mask = original.copy(), np.zeros((size, size), np.uint8)
    y, x = rng.integers(0, size // 2, 2)
    edited[y:y + size // 4, x:x + size // 4] = rng.integers(0, 256, 3)
    mask[y:y + size // 4, x:x + size // 4] = 255
    return original, edited, mask


def write_pairs(folder: Path, n: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    """`n` random pairs of `size` px with a painted square (its mask) and a unique instruction each: an
    inpainting manifest (``folder/inpainting``) and a corpus manifest of the same images without masks."""
    images = folder / "img"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labelled, unlabelled = [], []
    for i in range(n):
        original, edited, mask = painted_square(rng, size)
        for name, arr in ((f"{i}_o.png", original), (f"{i}_e.png", edited), (f"{i}_m.png", mask)):
            Image.fromarray(arr).save(images / name, compress_level=1)
        row = {"id": str(i), "original": f"../img/{i}_o.png", "edited": f"../img/{i}_e.png",
               "instruction": f"paint patch number {i} in a flat colour"}
        unlabelled.append(json.dumps(row))
        labelled.append(json.dumps({**row, "mask": f"../img/{i}_m.png"}))
    return _manifest(folder / "inpainting", labelled), _manifest(folder / "corpus", unlabelled)


def _manifest(folder: Path, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _config(args: argparse.Namespace, inpainting: Path, corpus: Path, home: Path, steps: int) -> Any:
    return compose([f"sigma.inpainting={inpainting}", f"sigma.corpus={corpus}", f"paths.home={home}",
                    f"paths.results={home / 'results'}", f"device={args.device}", f"sigma.data.source={args.source}",
                    f"sigma.data.workers={args.workers}", f"sigma_budget.batch_size={args.batch_size}",
                    f"sigma_budget.stage1_steps={steps}", f"sigma_budget.stage2_steps={steps}",
                    f"sigma_budget.ae_steps={args.ae_steps}", *(["sigma.data.size=" + str(args.resize)] if args.resize
                                                                 else []), *args.overrides])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def backbone_rate(cfg: Any, size: int, batch: int, device: torch.device, iters: int = 10) -> float:
    """Pairs per second through the frozen backbone (both images of a pair in one forward)."""
    from benchmarks.sigma_training.inputs import backbone_path
    from benchmarks.sigma_training.stages import sigma_config
    from sigma.backbone import FrozenBackbone
    from sigma.model import SigmaNet
    from sigma.train import SigmaTrainer

    backbone = FrozenBackbone(cfg.sigma.model.backbone, pretrained_path=backbone_path(cfg))
    trainer = SigmaTrainer(SigmaNet(sigma_config(cfg)), None, device, "unused", backbone=backbone, progress=False)
    pairs = {"original": torch.rand(batch, 3, size, size, device=device),
             "edited": torch.rand(batch, 3, size, size, device=device)}
    for _ in range(2):
        trainer.features(pairs, difference=True)
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        trainer.features(pairs, difference=True)
    _sync(device)
    return batch * iters / (time.perf_counter() - t)


class Clock:
    """Wraps ``step -> batch`` functions and records when each step asked for its batch."""

    def __init__(self) -> None:
        self.stamps: dict[int, list[float]] = {}

    def wrap(self, tag: int, fn: Callable[[int], Any]) -> Callable[[int], Any]:
        def at(step: int) -> Any:
            self.stamps.setdefault(tag, []).append(time.perf_counter())
            return fn(step)
        return at

    def rate(self, tag: int, batch: int, end: float) -> float:
        """Pairs per second from the start of the second step to `end` (the stage's end)."""
        stamps = self.stamps.get(tag, [])
        return (len(stamps) - 1) * batch / (end - stamps[1]) if len(stamps) > 2 else float("nan")


def speed(args: argparse.Namespace) -> None:
    from benchmarks.sigma_training.stages import train
    from benchmarks.sigma_training.stream import prepare_stream

    device = device_for(args.device)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sigma-speed-") as tmp:
        tmp = Path(tmp)
        if args.pairs:
            inpainting, corpus = Path(args.pairs), Path(args.corpus or args.pairs)
        else:
            inpainting, corpus = write_pairs(tmp / "pairs", args.n, args.size)
        cfg = _config(args, inpainting, corpus, tmp / "home", args.steps)
        data = prepare_stream(cfg, device, progress=False)
        size = args.resize or data.stage1.pairs.get(0)["edited"].shape[0]
        bb = backbone_rate(cfg, size, args.batch_size, device)
        only = data.batch_fn(data.stage1, 1, args.batch_size, 0, steps=args.steps)
        only(0)
        t = time.perf_counter()
        for step in range(1, args.steps):
            only(step)
        _sync(device)
        data_rate = (args.steps - 1) * args.batch_size / (time.perf_counter() - t)
        clock, plain = Clock(), data.batch_fn
        data.batch_fn = lambda table, tag, *a, **kw: clock.wrap(tag, plain(table, tag, *a, **kw))  # type: ignore
        ends: dict[int, float] = {}
        import sigma.train as trainer_module

        run = trainer_module.SigmaTrainer._run

        def timed(self, stage, cfg_, step_fn):
            out = run(self, stage, cfg_, step_fn)
            _sync(device)
            ends[stage] = time.perf_counter()
            return out

        trainer_module.SigmaTrainer._run = timed
        try:
            train(cfg, data, tmp / "work", device=device, progress=False)
        finally:
            trainer_module.SigmaTrainer._run = run
        s1, s2 = clock.rate(1, args.batch_size, ends[1]), clock.rate(2, args.batch_size, ends[2])
    where = f"{device}, {size} px, batch {args.batch_size}, {args.workers} workers, {torch.get_num_threads()} threads"
    print(f"SIGMA streamed training speed ({where}; pairs: {inpainting})")
    print(f"backbone forward  {bb:9.1f} pairs/s   (2 images a pair, on the device)")
    print(f"data only         {data_rate:9.1f} pairs/s   (Stage I stream: draws, decoding, to the device)")
    print(f"Stage I training  {s1:9.1f} pairs/s   = {s1 / bb:.2f} x the backbone's rate")
    print(f"Stage II training {s2:9.1f} pairs/s   = {s2 / bb:.2f} x the backbone's rate (labelled pairs; the corpus "
          "batch comes on top once the teacher starts)")


# ---------------------------------------------------------------------------------------------- memory


def rss_child(args: argparse.Namespace) -> None:
    """One training run in this process; prints its peak RSS and its largest worker's as JSON."""
    from benchmarks.sigma_training.export import train_and_export

    torch.set_num_threads(args.threads)
    worker_peak: dict[str, float] = {}
    done = threading.Event()

    def sample() -> None:  # workers come and go: read each one's peak while it lives
        while not done.wait(0.05):
            for pid in children():
                with contextlib.suppress(OSError):
                    worker_peak[pid] = max(worker_peak.get(pid, 0.0), peak_rss_mb(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    home = Path(args.home)
    cfg = _config(args, Path(args.pairs), Path(args.corpus), home, args.rss_steps)
    t = time.perf_counter()
    train_and_export(cfg)
    done.set()
    thread.join()
    print(json.dumps({"main_mb": peak_rss_mb(), "worker_mb": max(worker_peak.values(), default=float("nan")),
                      "workers_seen": len(worker_peak), "seconds": time.perf_counter() - t}))


def rss(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="sigma-rss-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        inpainting, corpus = write_pairs(tmp / "pairs", args.rss_n, args.rss_size)
        first = {}  # the first --rss-first lines of each manifest, naming the same image files
        for name, folder in (("inpainting", inpainting), ("corpus", corpus)):
            lines = (folder / "manifest.jsonl").read_text().splitlines()[:args.rss_first]
            first[name] = _manifest(tmp / "first" / name, [line.replace('"../img/', '"../../pairs/img/')
                                                            for line in lines])
        print(f"wrote {args.rss_n} pairs of {args.rss_size} px in {time.perf_counter() - t:.0f} s")
        results = {}
        runs = ((args.rss_first, (first["inpainting"], first["corpus"])), (args.rss_n, (inpainting, corpus)))
        for n, (inp, cor) in runs:
            cmd = [sys.executable, "-m", "benchmarks.perf.sigma_train_speed", "--rss-child", "--pairs", str(inp),
                   "--corpus", str(cor), "--home", str(tmp / f"home{n}"), "--device", args.device,
                   "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--threads", str(args.threads),
                   "--rss-steps", str(args.rss_steps), "--ae-steps", str(args.ae_steps), "--source", args.source,
                   *args.overrides]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"the run on {n} pairs failed:\n{proc.stderr[-3000:]}")
            results[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    a, b = results[args.rss_first], results[args.rss_n]
    print(f"peak RSS training on {args.rss_first} vs {args.rss_n} pairs of {args.rss_size} px ({args.source}, "
          f"Stage I + II, {args.rss_steps} steps each, batch {args.batch_size}, {args.workers} workers)")
    for key, what in (("main_mb", "training process"), ("worker_mb", "largest worker")):
        if a[key] != a[key]:  # NaN: this path has no DataLoader workers
            print(f"{what:17s} (none on this path)")
            continue
        ratio = b[key] / a[key]
        print(f"{what:17s} {a[key]:7.1f} MiB at {args.rss_first:>6}   {b[key]:7.1f} MiB at {args.rss_n:>6}   ratio "
              f"{ratio:.3f} ({'within' if abs(ratio - 1) <= 0.10 else 'OUTSIDE'} +-10 %)")
    print(f"run time {a['seconds']:.0f} s and {b['seconds']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default=None, help="inpainting pairs manifest (default: synthetic pairs)")
    parser.add_argument("--corpus", default=None, help="unlabelled corpus manifest (default: --pairs)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n", type=int, default=512, help="synthetic pairs (speed)")
    parser.add_argument("--size", type=int, default=64, help="synthetic pair size (speed)")
    parser.add_argument("--resize", type=int, default=None, help="sigma.data.size: resize every pair to this side")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process (CPU)")
    parser.add_argument("--steps", type=int, default=40, help="steps of each stage (speed)")
    parser.add_argument("--ae-steps", type=int, default=20, help="stand-in autoencoder steps (not timed)")
    parser.add_argument("--rss", action="store_true", help="peak RSS on --rss-first vs --rss-n pairs instead of speed")
    parser.add_argument("--rss-n", type=int, default=10_000)
    parser.add_argument("--rss-first", type=int, default=1_000)
    parser.add_argument("--rss-size", type=int, default=32)
    parser.add_argument("--rss-steps", type=int, default=150, help="steps of each stage in each RSS run")
    parser.add_argument("--source", default="stream", choices=["stream", "bank"],
                        help="--rss: the data path measured (bank: the feature bank, for contrast)")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--home", default=None, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides key=value for the composed config")
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args)
    elif args.rss:
        rss(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
