"""Does SIGMA use its instruction prior? One run per dataset, the same trained heads fed three kinds of text:

- ``own``: each pair's instruction (what annotation does);
- ``empty``: no instruction at all (the prior then sees only the null token);
- ``other``: another pair's instruction (the next pair's in the file: a wrong target, same wording style).

Per kind: headline F1 per image (threshold 0.5, manipulated pairs), and how well the grounding prior itself
points at the edit: pooled AUC of its stride-16 map against the truth mask averaged onto that grid (cells
more than half edited count as edited), and the mean gate (sigmoid of the prior) inside and outside the
edit. A model that ignores its prior scores the same with every kind; a prior that localizes has an AUC
well above 0.5 with the own instructions and near 0.5 with another pair's.

    python -m benchmarks.perf.prior_check --dataset synth_subtle_val,synth_val [--checkpoint PATH] [--n 200]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.generators.base import GeneratorInfo, MaskGenerator

KINDS = ("own", "empty", "other")


class InstructionSwap(MaskGenerator):
    """SIGMA with its instructions replaced (`kind`), recording its prior map against the truth."""

    def __init__(self, sigma: MaskGenerator, kind: str):
        super().__init__()
        self.sigma, self.kind = sigma, kind
        self.min_side = sigma.min_side
        self.info = GeneratorInfo(f"sigma ({kind} instructions)", "prior check")
        self.cells: list[np.ndarray] = []   # prior probability per stride-16 cell
        self.edited: list[np.ndarray] = []  # the cell is mostly edited
        self._prior: torch.Tensor | None = None
        sigma.annotator.net.register_forward_hook(self._keep_prior)

    def _keep_prior(self, module, inputs, output) -> None:
        self._prior = output["prior_logits"]

    def _text(self, instruction: list[str]) -> list[str]:
        if self.kind == "empty":
            return [""] * len(instruction)
        if self.kind == "other":
            return instruction[1:] + instruction[:1]
        return list(instruction)

    def forward(self, original, edited, instruction, truth=None):
        mask = self.sigma(original, edited, self._text(list(instruction)))
        if self._prior is not None and truth is not None:
            share = F.adaptive_avg_pool2d(truth.float(), self._prior.shape[-2:])
            self.cells.append(torch.sigmoid(self._prior.float()).flatten().cpu().numpy())
            self.edited.append((share > 0.5).flatten().cpu().numpy())
        return mask

    def prior_stats(self) -> dict[str, float]:
        from sklearn.metrics import roc_auc_score

        p, y = np.concatenate(self.cells), np.concatenate(self.edited)
        auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
        return {"prior_auc": auc, "gate_in": float(p[y].mean()), "gate_out": float(p[~y].mean())}


def check(dataset: str, checkpoint: str | None, n: int | None) -> list[dict[str, Any]]:
    from benchmarks.builders import generator_from_config
    from benchmarks.config import compose
    from benchmarks.data.datasets import pair_datasets
    from benchmarks.data.manifest import PairsDataset
    from benchmarks.data.transforms import Geometry
    from benchmarks.evaluation.generators import evaluate_generator

    overrides = ["generator=sigma", *([f"generator.checkpoint={checkpoint}"] if checkpoint else [])]
    cfg = compose(overrides)
    (name, folder), = pair_datasets(cfg, dataset, overrides)
    ds = PairsDataset(folder, Geometry("none"), require_mask=True, name=name)
    if n is not None:
        ds.records = ds.records[:n]
    out = []
    for kind in KINDS:
        gen = InstructionSwap(generator_from_config(cfg).eval(), kind)
        with torch.no_grad():
            res = evaluate_generator(gen, ds, batch_size=16, progress=False)
        f1 = [r["f1"] for r in res.rows if r["manipulated"] and r["f1"] is not None]
        out.append({"dataset": name, "instructions": kind, "pairs": len(f1), "f1": float(np.mean(f1)),
                    "prior_scale": float(gen.sigma.annotator.net.prior_scale.detach()), **gen.prior_stats()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="synth_subtle_val,synth_val")
    parser.add_argument("--checkpoint", default=None, help="SIGMA heads (default: the generator config's)")
    parser.add_argument("--n", type=int, default=None, help="first N pairs of each dataset")
    args = parser.parse_args()
    print(f"{'dataset':<18} {'instructions':<12} {'pairs':>5} {'F1':>6} {'prior AUC':>9} {'gate in':>7} "
          f"{'gate out':>8} {'prior_scale':>11}")
    for dataset in args.dataset.split(","):
        for r in check(dataset, args.checkpoint, args.n):
            print(f"{r['dataset']:<18} {r['instructions']:<12} {r['pairs']:>5} {r['f1']:>6.3f} {r['prior_auc']:>9.3f} "
                  f"{r['gate_in']:>7.3f} {r['gate_out']:>8.3f} {r['prior_scale']:>11.3f}", flush=True)


if __name__ == "__main__":
    main()
