"""Tables and figures from the cells ``bench run`` published: the downstream leaderboard
(``<paths.results>/leaderboards/downstream{.csv,_summary.csv,.md,_headline.json}``) and the figures
(``<paths.results>/figures/*.png|pdf``). Both read only ``<paths.results>/runs/`` (never checkpoints), so
they work on a fresh clone from the committed results.

One profile at a time (``--profile``): cells of other profiles are never mixed in. The default profile's
reports keep the plain names; another profile's are ``downstream_<profile>.*`` and ``figures/<profile>/``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from benchmarks.config import expand
from benchmarks.downstream.study import missing_cells, study_cells
from benchmarks.reporting import downstream, plots
from benchmarks.reporting.downstream_stats import image_scores
from benchmarks.reporting.ladder import ladder_view


def inert_overrides() -> tuple[str, ...]:
    """Override prefixes that change how a run goes, not what it computes (left out of the reproduce line):
    the inert ``train`` keys, and the profile's worker count they read."""
    from benchmarks.training.config import inert_keys

    return (*(f"train.{k}=" for k in inert_keys()), "profile.num_workers=")


DEFAULT_PROFILE = "cpu-quick"  # what `make run` uses; its reports keep the plain file names


def _runs(cfg: DictConfig) -> Path:
    return Path(cfg.paths.results) / "runs"


def suffix(profile: str) -> str:
    """File-name suffix of a profile's reports: none for the default profile, else ``_<profile>``."""
    return "" if profile == DEFAULT_PROFILE else f"_{profile}"


def figures_dir(cfg: DictConfig) -> Path:
    profile = str(cfg.profile.name)
    folder = Path(cfg.paths.results) / "figures"
    return folder if profile == DEFAULT_PROFILE else folder / profile


def _load(cfg: DictConfig) -> tuple:
    runs, profile = _runs(cfg), str(cfg.profile.name)
    frame = downstream.collect(runs, profile)
    failed = downstream.failed_cells(runs, profile)
    if frame.empty and not failed:
        others = sorted({c.get("profile") for c in downstream.cell_records(runs)} - {profile})
        hint = f" (cells of other profiles: {others}; pass --profile)" if others else ""
        raise FileNotFoundError(f"{runs}: no finished cells (cell.json) of profile {profile}{hint}; run `bench run "
                                f"--generator sigma,pixel_diff,oracle --detector all --profile {profile}` first")
    quality, calibration = downstream.mask_quality(runs, profile), downstream.calibration_rows(runs)
    scores = image_scores(frame, runs)  # per-image F1 of every cell, read once for the intervals and the plots
    view = ladder_view(scores, quality, calibration)
    return frame, quality, failed, downstream.legacy_cells(runs), calibration, scores, view


def _missing(cfg: DictConfig, frame, failed) -> list[tuple[str, str, int]] | None:
    """The profile's study cells (``profile.study``) neither finished nor failed; None without a study."""
    if not study_cells(cfg):
        return None
    cells = frame[["generator", "detector", "seed"]].drop_duplicates()
    held = {(g, d, int(s)) for g, d, s in cells.itertuples(index=False)}
    held |= {(f["generator"], f["detector"], int(f["seed"])) for f in failed}
    return missing_cells(cfg, held)


def reproduce_command(frame, cfg: DictConfig) -> str:
    """The `bench run` line that regenerates the cells in `frame`."""
    gens = ",".join(plots.generator_order(set(frame["generator"])))
    dets = set(frame["detector"])
    dets = "all" if dets == set(expand("detector", "all", cfg)) else ",".join(sorted(dets))
    profile = ",".join(sorted(set(frame["profile"].dropna()))) or "cpu-quick"
    inert = (*inert_overrides(), "seed=")
    overrides = sorted({" ".join(o for o in line.split() if not o.startswith(inert))
                        for line in frame["overrides"].fillna("")})
    extra = f" {overrides[0]}" if len(overrides) == 1 and overrides[0] else ""
    seeds = sorted({int(s) for s in frame["seed"]}) if "seed" in frame else [0]
    extra += "" if seeds == [0] else f" seed=K  # once for each K in {seeds}"
    line = f"bench run --generator {gens} --detector {dets} --profile {profile}{extra}"
    return line if len(overrides) <= 1 else line + f"  # cells were made with different overrides: {overrides}"


def write_leaderboard(cfg: DictConfig, loaded: tuple | None = None) -> tuple[str, list[Path]]:
    """The downstream leaderboard of every cell in ``<results>/runs``: (its Markdown, the files written)."""
    frame, quality, failed, legacy, calibration, scores, view = loaded or _load(cfg)
    profile = str(cfg.profile.name)
    return downstream.write_leaderboard(frame, quality, Path(cfg.paths.results) / "leaderboards",
                                        reproduce_command(frame, cfg), profile=profile, suffix=suffix(profile),
                                        failed=failed, legacy=legacy, scores=scores, view=view,
                                        calibration=calibration, missing=_missing(cfg, frame, failed),
                                        stale=downstream.stale_cells(_runs(cfg), profile))


def draw_plots(cfg: DictConfig, loaded: tuple | None = None) -> list[Path]:
    """The paper figures (PNG + PDF) from every cell in ``<results>/runs``."""
    frame, quality, _, _, calibration, scores, view = loaded or _load(cfg)
    if frame.empty:
        return []
    return plots.draw_all(frame, quality, _runs(cfg), figures_dir(cfg), calibration, scores, view)


def leaderboard_and_plots(cfg: DictConfig) -> tuple[str, list[Path]]:
    """Both of the above from one reading of the cells: (the leaderboard's Markdown, every file written)."""
    loaded = _load(cfg)
    md, paths = write_leaderboard(cfg, loaded)
    return md, paths + draw_plots(cfg, loaded)
