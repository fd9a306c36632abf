"""Tables and figures from the cells ``bench run`` published: the downstream leaderboard
(``<paths.results>/leaderboards/downstream{.csv,_summary.csv,.md,_headline.json}``) and the figures
(``<paths.results>/figures/*.png|pdf``). Both read only ``<paths.results>/runs/`` (never checkpoints), so
they work on a fresh clone from the committed results."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from benchmarks.config import expand
from benchmarks.reporting import downstream, plots


def inert_overrides() -> tuple[str, ...]:
    """Override prefixes that change how a run goes, not what it computes (left out of the reproduce line):
    the inert ``train`` keys, and the profile's worker count they read."""
    from benchmarks.training.config import inert_keys

    return (*(f"train.{k}=" for k in inert_keys()), "profile.num_workers=")


def _runs(cfg: DictConfig) -> Path:
    return Path(cfg.paths.results) / "runs"


def _load(cfg: DictConfig) -> tuple:
    runs = _runs(cfg)
    frame = downstream.collect(runs)
    if frame.empty:
        raise FileNotFoundError(f"{runs}: no finished cells (cell.json); run `bench run --generator sigma,pixel_diff,"
                                "oracle --detector all` first")
    return frame, downstream.mask_quality(runs)


def reproduce_command(frame, cfg: DictConfig) -> str:
    """The `bench run` line that regenerates the cells in `frame`."""
    gens = ",".join(plots.generator_order(set(frame["generator"])))
    dets = set(frame["detector"])
    dets = "all" if dets == set(expand("detector", "all", cfg)) else ",".join(sorted(dets))
    profile = ",".join(sorted(set(frame["profile"].dropna()))) or "cpu-quick"
    inert = inert_overrides()
    overrides = sorted({" ".join(o for o in line.split() if not o.startswith(inert))
                        for line in frame["overrides"].fillna("")})
    extra = f" {overrides[0]}" if len(overrides) == 1 and overrides[0] else ""
    line = f"bench run --generator {gens} --detector {dets} --profile {profile}{extra}"
    return line if len(overrides) <= 1 else line + f"  # cells were made with different overrides: {overrides}"


def write_leaderboard(cfg: DictConfig, loaded: tuple | None = None) -> tuple[str, list[Path]]:
    """The downstream leaderboard of every cell in ``<results>/runs``: (its Markdown, the files written)."""
    frame, quality = loaded or _load(cfg)
    return downstream.write_leaderboard(frame, quality, Path(cfg.paths.results) / "leaderboards",
                                        reproduce_command(frame, cfg))


def draw_plots(cfg: DictConfig, loaded: tuple | None = None) -> list[Path]:
    """The paper figures (PNG + PDF) from every cell in ``<results>/runs``."""
    frame, quality = loaded or _load(cfg)
    return plots.draw_all(frame, quality, _runs(cfg), Path(cfg.paths.results) / "figures")


def leaderboard_and_plots(cfg: DictConfig) -> tuple[str, list[Path]]:
    """Both of the above from one reading of the cells: (the leaderboard's Markdown, every file written)."""
    loaded = _load(cfg)
    md, paths = write_leaderboard(cfg, loaded)
    return md, paths + draw_plots(cfg, loaded)
