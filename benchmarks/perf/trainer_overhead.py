"""Trainer overhead: detectors.train.Trainer's step time vs a bare forward + backward + AdamW step, in one run.

    python -m benchmarks.perf.trainer_overhead                       # segformer (tiny) if registered
    python -m benchmarks.perf.trainer_overhead --detector conv       # the small built-in conv net
    python -m benchmarks.perf.trainer_overhead --batch 16 --size 256 --steps 30 --rounds 3
    python -m benchmarks.perf.trainer_overhead --threads 1             # steadier on a shared CPU

Both sides run the same model on the same batch with the same numerics (bf16 autocast and channels_last
on CUDA, float32 on CPU), moving the batch to the device every step and synchronizing at the step's end.
The trainer's per-step times come from its own log.csv (so its bookkeeping — loss parts, grad norm,
non-finite check, schedule, CSV row, progress bar — is inside them and its checkpoint is not). Bare and
trainer rounds alternate; the printed numbers are the lowest per-round medians, which shared machines
disturb least. Goal: ratio <= 1.10.
"""

from __future__ import annotations

import argparse
import copy
import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from detectors import Detector, DetectorInfo, create_detector, list_detectors
from detectors.losses import bce, dice
from detectors.train import Trainer, TrainConfig, param_groups, seed_everything


class ConvNet(Detector):
    """A small fully convolutional detector (fallback when no zoo detector is registered)."""

    info = DetectorInfo(name="conv", family="4-layer conv net", paper="none (perf fixture)", input_size=128, stride=4)

    def __init__(self, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.Conv2d(width, width * 2, 3, 2, 1), nn.BatchNorm2d(width * 2), nn.ReLU(),
                                  nn.Conv2d(width * 2, width * 2, 3, 1, 1), nn.ReLU(), nn.Conv2d(width * 2, 1, 1))

    def forward(self, x):
        logits = F.interpolate(self.body(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"mask_logits": logits, "score_logits": None}

    def loss(self, out, batch):
        b, d = bce(out["mask_logits"], batch), dice(out["mask_logits"], batch)
        return b + d, {"bce": b.detach(), "dice": d.detach()}


def build(name: str) -> Detector:
    if name != "conv" and name in list_detectors():
        return create_detector(name, variant="tiny")
    if name != "conv":
        print(f"detector {name!r} is not registered; using the built-in conv net")
    return ConvNet()


def make_batch(b: int, size: int) -> dict:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(b, 3, size, size, generator=g)
    mask = torch.zeros(b, 1, size, size)
    mask[:, :, size // 4: size // 2, size // 3: 2 * size // 3] = 1
    mask[-1] = 0
    return {"image": image, "mask": mask, "valid": torch.ones_like(mask, dtype=torch.bool),
            "label": (mask.flatten(1).amax(1) > 0).long()}


def bare_steps(model: Detector, batch: dict, n: int, device: torch.device, lr: float) -> list[float]:
    cuda = device.type == "cuda"
    model = model.to(device).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=lr, fused=True if cuda else None)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        b = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        x = model.normalize(b["image"])
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = model(x)
            loss, _ = model.loss(out, b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return times


def trainer_steps(model: Detector, batch: dict, n: int, device: torch.device, lr: float, folder: Path) -> list[float]:
    cfg = TrainConfig(epochs=1, lr=lr, warmup_steps=0, checkpoint_every=0, grad_clip=None, progress=True)
    Trainer(model, cfg, folder, device=device).fit([batch] * n, resume=False)
    with open(folder / "log.csv", newline="") as fh:
        return [float(r["seconds"]) for r in csv.DictReader(fh)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", default="segformer", help="a registered detector (tiny variant) or 'conv'")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=None, help="image side (default: the detector's input_size)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of each round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 steadies timings on a busy CPU)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    seed_everything(0)
    base = build(args.detector)
    size = args.size or base.info.input_size
    batch = make_batch(args.batch, size)
    n = args.warmup + args.steps
    bare, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            bare.append(statistics.median(bare_steps(copy.deepcopy(base), batch, n, device, 1e-4)[args.warmup:]))
            ours.append(statistics.median(
                trainer_steps(copy.deepcopy(base), batch, n, device, 1e-4, Path(tmp) / f"r{r}")[args.warmup:]))
    amp = "bf16 autocast + channels_last" if device.type == "cuda" else "float32"
    print(f"trainer overhead: {base.info.name} ({base.info.variant}), batch {args.batch} x 3 x {size} x {size}, "
          f"{device}, {amp}, {args.steps} timed steps x {args.rounds} rounds")
    print(f"bare loop : {1000 * min(bare):8.2f} ms/step (lowest round median; rounds "
          f"{', '.join(f'{1000 * t:.1f}' for t in bare)})")
    print(f"trainer   : {1000 * min(ours):8.2f} ms/step (lowest round median; rounds "
          f"{', '.join(f'{1000 * t:.1f}' for t in ours)})")
    print(f"ratio     : {min(ours) / min(bare):.3f}x (goal <= 1.10x)")


if __name__ == "__main__":
    main()
