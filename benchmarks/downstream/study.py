"""The cells a profile's committed study is made of (``profile.study``), so that its leaderboard can say
which are missing and its driver (``benchmarks/perf/downstream_study.sh``) which to run.

    profile:
      study:
        generators: [sigma, grounding_only, pixel_diff, oracle]   # x every profile detector x seeds
        seeds: [0, 1]
        ladder:                                                   # x these detectors x the same seeds
          generators: [ladder_1, ladder_2, ladder_3, ladder_4]
          detectors: [mvss_net, mesorch]

    python -m benchmarks.downstream.study cpu-study      # one GENERATOR:DETECTOR:SEED per line
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig, OmegaConf

Cell = tuple[str, str, int]  # (generator, detector, seed)


def study_cells(cfg: DictConfig) -> list[Cell]:
    """The profile's study grid in the order it is best run (every generator's seed 0 before any seed 1, the
    ladder last); empty when the profile names no study."""
    study = OmegaConf.select(cfg, "profile.study")
    if study is None:
        return []
    seeds = [int(s) for s in study.get("seeds", [0])]
    detectors = list(cfg.profile.detectors)
    cells = [(g, d, s) for s in seeds for g in study.get("generators", []) for d in detectors]
    ladder = study.get("ladder")
    if ladder is not None:
        cells += [(g, d, s) for s in seeds for g in ladder.generators for d in ladder.detectors]
    return cells


def missing_cells(cfg: DictConfig, held: set[Cell]) -> list[Cell]:
    """The study's cells not in `held` (finished or failed cells of the profile)."""
    return [c for c in study_cells(cfg) if c not in held]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.config import compose

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.downstream.study PROFILE", file=sys.stderr)
        return 2
    cells = study_cells(compose([f"profile={args[0]}"], command="run"))
    if not cells:
        print(f"profile {args[0]!r} names no study (profile.study)", file=sys.stderr)
        return 2
    print("\n".join(f"{g}:{d}:{s}" for g, d, s in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
