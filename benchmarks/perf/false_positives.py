"""False-positive rates of mask generators on pairs whose only change is the editor round trip.

    python -m benchmarks.perf.false_positives --dataset synth_noedit --generator aligned_diff,pixel_diff
    python -m benchmarks.perf.false_positives --dataset NOEDIT_FOLDER --generator all --limit 200 device=cpu

On such pairs (e.g. the suite's ``synth_noedit``: original and its round-tripped copy, empty masks) every
marked pixel is a false positive. For each generator the table gives the pooled fraction of pixels marked
(mask >= 0.5), the per-image mean of that fraction, the share of pairs with any marked pixel, and the
generator's own counters (e.g. registration fallbacks). A pair whose mask file marks something is refused:
the folder is not a no-edit set. Extra ``key=value`` arguments are config overrides, as for ``bench``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.utils.data

from benchmarks.data.loading import pad_collate
from benchmarks.data.manifest import PairsDataset
from benchmarks.metrics.false_positive import FalsePositiveRate


def false_positive_rates(generators: dict[str, Any], folder: str | Path, *, limit: int | None = None,
                         batch_size: int = 16, device: torch.device | str = "cpu") -> dict[str, dict[str, Any]]:
    """{name: FalsePositiveRate.compute() + pairs/s + counters} for built generators on a no-edit folder."""
    dataset = PairsDataset(folder)
    if limit is not None:
        dataset.records = dataset.records[:limit]
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=pad_collate)
    generators = {name: g.to(device) for name, g in generators.items()}
    metrics = {name: FalsePositiveRate() for name in generators}
    seconds = dict.fromkeys(generators, 0.0)
    for batch in loader:
        marked = [i for i, m in zip(batch["id"], batch["mask"]) if bool(m.any())]
        if marked:
            raise ValueError(f"{folder}: pair(s) {marked[:3]} have non-empty masks; this report needs pairs whose only "
                             "change is the editor round trip (empty or missing masks), e.g. synth_noedit")
        for name, generator in generators.items():
            start = time.perf_counter()
            pred = generator.generate(batch["original"], batch["image"], batch["instruction"]).cpu()
            seconds[name] += time.perf_counter() - start
            metrics[name].update(pred, batch["valid"])
    out = {}
    for name, metric in metrics.items():
        result = metric.compute()
        result["pairs_per_s"] = round(result["n_images"] / seconds[name], 2) if seconds[name] else None
        result["counters"] = generators[name].counters()
        out[name] = result
    return out


def format_table(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'generator':<20}{'FP pooled':>11}{'FP/img':>9}{'pairs w/ FP':>13}{'pairs/s':>9}  counters",
             "-" * 80]
    for name, r in sorted(results.items(), key=lambda kv: kv[1]["fp_rate_pooled"]):
        counters = ", ".join(f"{k} {v}" for k, v in r["counters"].items()) or "-"
        lines.append(f"{name:<20}{r['fp_rate_pooled']:>11.5f}{r['fp_rate_per_image']:>9.5f}{r['images_with_fp']:>13.3f}"
                     f"{r['pairs_per_s'] or 0:>9.1f}  {counters}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True,
                        help="pairs whose masks are all empty (or absent): a folder or a dataset name (synth_noedit)")
    parser.add_argument("--generator", default="aligned_diff,pixel_diff", help="comma list, or 'all' (the profile's)")
    parser.add_argument("--profile", default="cpu-quick")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from benchmarks.config import compose, expand
    from benchmarks.generators.base import list_generators
    from benchmarks.builders import generator_from_config
    from benchmarks.data.datasets import pair_datasets
    from benchmarks.distributed import device_for

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [f"profile={args.profile}", *args.overrides]
    cfg = compose(overrides)
    names = [n for n in expand("generator", args.generator, cfg) if n in set(list_generators())]
    generators = {}
    for name in names:
        gcfg = compose([*overrides, f"generator={name}"])
        if gcfg.generator.get("name") == "oracle":
            continue  # needs ground truth; on empty masks it is the empty row
        try:
            generators[name] = generator_from_config(gcfg).eval()
        except FileNotFoundError as exc:  # a learned generator never trained here
            print(f"[missing] {name}: {exc}; skipped")
    (_, folder), *more = pair_datasets(cfg, args.dataset, overrides)
    if more:
        raise SystemExit(f"--dataset {args.dataset}: names {1 + len(more)} datasets; give one folder or name")
    results = false_positive_rates(generators, folder, limit=args.limit, batch_size=args.batch_size,
                                   device=device_for(cfg.device))
    n = next(iter(results.values()))["n_images"] if results else 0
    print(f"false positives on {n} no-edit pairs of {folder} (pixel marked = mask >= 0.5)")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
