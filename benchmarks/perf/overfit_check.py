"""Can each detector fit one fixed batch of real training data? A wiring check, not a benchmark.

    python -m benchmarks.perf.overfit_check                              # every detector, 16 images, 150 steps
    python -m benchmarks.perf.overfit_check --detector mesorch --steps 300 --lr 1e-3

Each detector is built as the profile trains it (tiny variant, its encoder initialization, its own loss,
``train.geometry.size`` pixels), then takes `--steps` AdamW steps on the same `--images` manipulated images of
the synthetic suite's ground-truth training corpus. It prints the loss and the per-image F1 (threshold 0.5)
on that batch before and after (in eval mode, and after also with training-mode normalization, which
tells a running-statistics problem from a fitting one). A detector whose F1 on a batch it has seen hundreds of times stays far from
1 has a bug or an optimization problem; one that fits it but scores low on the test sets is short of data,
resolution or training budget instead.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.config import compose, expand
from benchmarks.data.loading import pad_collate
from benchmarks.data.transforms import Geometry
from benchmarks.metrics import PixelMetrics
from benchmarks.builders import detector_params
from benchmarks.data.loading import EpochSamples
from benchmarks.training.data import resolve_training_data
from detectors import create_detector
from detectors.train import param_groups, seed_everything


def fixed_batch(cfg, images: int, size: int) -> dict:
    data = resolve_training_data(cfg, "synth", None, [])
    manipulated = [it for it in data.train if it.mask is not None][:images]
    ds = EpochSamples(manipulated, Geometry("resize", size), name="overfit", train=False, seed=int(cfg.seed))
    return pad_collate([ds[i] for i in range(len(ds))])


def batch_f1(model, batch: dict, eval_mode: bool = True) -> float:
    """F1 per image on the batch; eval_mode=False keeps training-mode normalization (batch statistics)."""
    model.train(not eval_mode)
    with torch.no_grad():
        prob = torch.sigmoid(model(batch["image"])["mask_logits"].float())
    model.train()
    metric = PixelMetrics()
    metric.update(prob, batch["mask"], batch["valid"])
    return metric.compute()["f1_per_image"]


def check(name: str, profile: str, batch: dict, steps: int, lr: float | None) -> dict:
    cfg = compose([f"profile={profile}", f"detector={name}"])
    seed_everything(int(cfg.seed))
    model = create_detector(name, **detector_params(cfg.detector))
    rate = float(lr if lr is not None else cfg.train.lr)
    opt = torch.optim.AdamW(param_groups(model, float(cfg.train.weight_decay)), lr=rate)
    model.train()
    first_f1 = batch_f1(model, batch)
    start, losses = time.perf_counter(), []
    for _ in range(steps):
        loss, _ = model.loss(model(batch["image"]), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return {"detector": name, "lr": rate, "loss_first": losses[0], "loss_last": losses[-1],
            "f1_before": first_f1, "f1_after": batch_f1(model, batch), "f1_after_train_mode": batch_f1(model, batch, False),
            "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", default="all", help="a detector name, a comma list, or 'all'")
    parser.add_argument("--profile", default="cpu-quick")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--lr", type=float, default=None, help="default: the profile's train.lr")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose([f"profile={args.profile}"])
    size = int(cfg.train.geometry.size or cfg.train.test.geometry.size)  # one side for every detector's batch
    batch = fixed_batch(cfg, args.images, size)
    print(f"{len(batch['id'])} images at {size} px, {args.steps} AdamW steps, profile {args.profile}")
    print("| detector | lr | loss first -> last | F1 on the batch before -> after | F1 after, training-mode norms | "
          "seconds |\n|---|---|---|---|---|---|")
    for name in expand("detector", args.detector, cfg):
        r = check(name, args.profile, batch, args.steps, args.lr)
        print(f"| {r['detector']} | {r['lr']:g} | {r['loss_first']:.3f} -> {r['loss_last']:.3f} | "
              f"{r['f1_before']:.3f} -> {r['f1_after']:.3f} | {r['f1_after_train_mode']:.3f} | {r['seconds']:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
