"""The grid the ``sigma_aligned`` config was chosen from: fusion rules and cuts of SIGMA's and aligned_diff's
soft masks, scored on the val splits only.

One pass per dataset runs both generators (their configs as committed) over every pair and keeps the two
soft masks and the truth; the grid is then cheap: each rule (SIGMA alone, aligned_diff alone, the mean at
several SIGMA weights, the per-pixel maximum) at each cut, headline F1 per image over the manipulated pairs
(the harness's definition: benchmarks/metrics/pixel.py). Printed: every setting's F1 per dataset and their
mean, best first; the config's choice is the best mean.

    python -m benchmarks.perf.fusion_grid [--dataset synth_val,synth_val_shift,synth_subtle_val] [--n N]

Never run it on a test benchmark, the holdout or a generalization set: that would choose on test data.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.generators.base import GeneratorInfo, MaskGenerator
from benchmarks.generators.fusion import fuse
from benchmarks.metrics.pixel import PixelMetrics

VAL_SETS = "synth_val,synth_val_shift,synth_subtle_val"
CUTS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)


class Recorder(MaskGenerator):
    """Runs SIGMA and aligned_diff on each batch and keeps both soft masks and the truth (float16)."""

    def __init__(self, sigma: MaskGenerator, aligned: MaskGenerator):
        super().__init__()
        self.sigma, self.aligned = sigma, aligned
        self.min_side = max(sigma.min_side, aligned.min_side)
        self.info = GeneratorInfo("fusion grid recorder", "records SIGMA's and aligned_diff's soft masks")
        self.kept: dict[str, list[np.ndarray]] = {"sigma": [], "aligned": [], "truth": []}

    def forward(self, original, edited, instruction, truth=None):
        s = self.sigma.generate(original, edited, instruction)
        a = self.aligned.generate(original, edited, instruction)
        for key, x in (("sigma", s), ("aligned", a), ("truth", truth)):
            self.kept[key].extend(x.float().cpu().numpy().astype(np.float16))
        return s


def record(dataset: str, n: int | None) -> dict[str, list[np.ndarray]]:
    from benchmarks.builders import generator_from_config
    from benchmarks.config import compose
    from benchmarks.data.datasets import pair_datasets
    from benchmarks.data.manifest import PairsDataset
    from benchmarks.data.transforms import Geometry
    from benchmarks.evaluation.generators import evaluate_generator

    cfg = compose([])
    (name, folder), = pair_datasets(cfg, dataset, [])
    ds = PairsDataset(folder, Geometry("none"), require_mask=True, name=name)
    if n is not None:
        ds.records = ds.records[:n]
    rec = Recorder(generator_from_config(compose(["generator=sigma"])).eval(),
                   generator_from_config(compose(["generator=aligned_diff"])).eval())
    with torch.no_grad():
        evaluate_generator(rec, ds, batch_size=16, progress=False)
    return rec.kept


def f1_per_image(scores: list[np.ndarray], truths: list[np.ndarray], cut: float) -> float:
    """The headline F1 per image at `cut` (the harness's own metric, over the pairs with an edit)."""
    metric = PixelMetrics(cut)
    metric.update(torch.from_numpy(np.stack(scores).astype(np.float32)), torch.from_numpy(np.stack(truths) > 0.5))
    return metric.compute()["f1_per_image"]


def settings() -> list[tuple[str, str, float]]:
    """(label, rule, SIGMA weight) of every fused score the grid tries."""
    out = [("sigma", "mean", 1.0), ("aligned_diff", "mean", 0.0), ("max", "max", 0.5)]
    return out + [(f"mean w={w:g}", "mean", w) for w in WEIGHTS]


def grid(recorded: dict[str, dict[str, list[np.ndarray]]]) -> list[dict]:
    """Every setting at every cut; each fused score is computed once and scored at all cuts."""
    as_float = {name: [torch.from_numpy(np.stack(kept[k]).astype(np.float32)) for k in ("sigma", "aligned")]
                for name, kept in recorded.items()}
    per: dict[tuple[str, float], dict[str, float]] = {}
    for label, rule, weight in settings():
        for name, kept in recorded.items():
            fused = list(fuse(*as_float[name], rule, weight).numpy())
            for cut in CUTS:
                per.setdefault((label, cut), {})[name] = f1_per_image(fused, kept["truth"], cut)
    rows = [{"setting": label, "cut": cut, **f1, "mean": float(np.mean(list(f1.values())))}
            for (label, cut), f1 in per.items()]
    return sorted(rows, key=lambda r: -r["mean"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=VAL_SETS, help="val splits only (comma-separated)")
    parser.add_argument("--n", type=int, default=None, help="first N pairs of each dataset")
    parser.add_argument("--top", type=int, default=15, help="rows printed after the reference rows")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.dataset.split(",")
    recorded = {name: record(name, args.n) for name in names}
    rows = grid(recorded)
    head = f"{'setting':<14} {'cut':>5} " + " ".join(f"{n:>17}" for n in names) + f" {'mean':>6}"

    def line(r: dict) -> str:
        return f"{r['setting']:<14} {r['cut']:>5.2f} " + " ".join(f"{r[n]:>17.3f}" for n in names) + f" {r['mean']:>6.3f}"

    print("pairs: " + ", ".join(f"{n} {len(k['truth'])}" for n, k in recorded.items()))
    print("reference rows (each generator alone at the contract's 0.5):")
    print(head)
    for r in rows:
        if r["setting"] in ("sigma", "aligned_diff") and r["cut"] == 0.5:
            print(line(r))
    print(f"best {args.top} by mean F1:")
    print(head)
    for r in rows[:args.top]:
        print(line(r))
    best = rows[0]
    print(f"chosen: {best['setting']} cut {best['cut']:g} (mean val F1 {best['mean']:.3f})")


if __name__ == "__main__":
    main()
