"""Two `bench eval-generators` runs of the same generator name, paired: the headline F1 of each and their
difference with a 95 % paired bootstrap interval over test pairs (per dataset, then averaged, as the
generator leaderboard's deltas). For comparing two checkpoints of one generator that were scored into
different results folders (``paths.results=...``), e.g. SIGMA trained from the feature bank and from the
streamed data:

    python -m benchmarks.perf.compare_evals --a results --b results/sigma/cpu-quick/stream/eval \\
        --generator sigma --dataset synth_removal,synth_splice,synth_recolour,synth_restyle,synth_copymove

Each folder's ``generators/per_pair/<dataset>.csv`` is read (written by every eval-generators run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from benchmarks.reporting.leaderboard import paired_deltas


def rows(folder: Path, generator: str, datasets: list[str], label: str) -> list[dict]:
    out = []
    for dataset in datasets:
        path = folder / "generators" / "per_pair" / f"{dataset}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no per-pair scores; run bench eval-generators --dataset {dataset} "
                                    f"with paths.results={folder}")
        frame = pd.read_csv(path)
        frame = frame[frame.generator == generator]
        if frame.empty:
            raise ValueError(f"{path}: no rows for generator {generator!r} (it has {sorted(set(pd.read_csv(path).generator))})")
        out += [{**r, "generator": label, "dataset": dataset} for r in frame.to_dict("records")]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="first results folder")
    parser.add_argument("--b", type=Path, required=True, help="second results folder")
    parser.add_argument("--generator", default="sigma")
    parser.add_argument("--dataset", required=True, help="comma list of datasets both folders scored")
    args = parser.parse_args(argv)
    datasets = args.dataset.split(",")
    both = rows(args.a, args.generator, datasets, "a") + rows(args.b, args.generator, datasets, "b")
    for label, folder in (("a", args.a), ("b", args.b)):
        kept = [r for r in both if r["generator"] == label and r["manipulated"]]
        per_set = [pd.DataFrame([r for r in kept if r["dataset"] == d]).f1.mean() for d in datasets]
        print(f"{label}: {folder}  {args.generator} mean F1 {sum(per_set) / len(per_set):.3f}  ("
              + ", ".join(f"{d} {v:.3f}" for d, v in zip(datasets, per_set)) + ")")
    iv = paired_deltas(both, "a", ["b"])["b"]
    print(f"a - b: {iv.estimate:+.3f} F1, 95 % paired bootstrap CI [{iv.low:+.3f}, {iv.high:+.3f}] "
          f"({'significant' if iv.significant else 'not significant'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
