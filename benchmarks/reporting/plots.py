"""Paper figures from the published cells (``<results>/runs``): PNG + PDF in ``<results>/figures``.

- ``downstream_bars``: F1 per detector, one bar per generator (and the mean over detectors);
- ``quality_vs_downstream``: a generator's mask F1 on the corpus against the downstream F1 of the detectors
  trained on its masks, with 95 % intervals, and the label-quality ladder's fitted line when it has cells;
- ``downstream_heatmap``: generator x test dataset, mean F1 over detectors;
- ``learning_curves``: validation F1 per epoch of the detectors trained on ground-truth masks;
- ``qualitative_generators``: corpus pairs, ground truth and each generator's mask;
- ``qualitative_detectors_<generator>``: one test image per dataset, truth and each detector's prediction.

Each generator keeps one colour in every figure (:func:`generator_colors`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ORDER = ("sigma", "grounding_only", "feature_diff", "pixel_diff", "pixel_diff_otsu", "ssim_diff", "oracle", "empty",
         "full")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def generator_order(names) -> list[str]:
    known = [g for g in ORDER if g in set(names)]
    return known + sorted(set(names) - set(ORDER))


def generator_colors(names) -> dict[str, tuple]:
    """A fixed colour per generator name (the canonical order first, then others alphabetically)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    every = list(ORDER) + sorted(set(names) - set(ORDER))
    return {g: cmap(i % 10) for i, g in enumerate(every)}


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for p in paths:  # no creation date in the PDF: the same cells give the same bytes
        fig.savefig(p, dpi=130, bbox_inches="tight", metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    _plt().close(fig)
    return paths


def bars(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    plt = _plt()
    per = frame.pivot_table(index="detector", columns="generator", values="f1_per_image")
    per.loc["mean"] = per.mean(axis=0)
    gens = generator_order(per.columns)
    colors = generator_colors(gens)
    x = np.arange(len(per.index))
    width = 0.8 / max(1, len(gens))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(per.index) + 1), 3.6))
    for i, g in enumerate(gens):
        ax.bar(x + (i - (len(gens) - 1) / 2) * width, per[g].values, width, label=g, color=colors[g])
    ax.set_xticks(x, per.index, rotation=20)
    ax.set_ylabel("pixel F1 (per image, thr 0.5)\nmean over test datasets")
    ax.set_ylim(0, 1)
    ax.set_title("Detectors trained on each generator's masks")
    ax.legend(title="training masks from", fontsize=8, ncols=min(4, len(gens)))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out_dir, "downstream_bars")


def scatter(frame: pd.DataFrame, quality: dict[str, float], out_dir: Path, scores=None, view=None,
            calibration: set[str] = frozenset()) -> list[Path]:
    """Mask F1 on the corpus against downstream F1, with 95 % bootstrap error bars when the cells' per-image
    `scores` are at hand. With a ladder `view` (:func:`benchmarks.reporting.ladder.ladder_view`) every point
    is the mean over the ladder's detectors, as in the leaderboard, and the ladder's fitted line is drawn."""
    from benchmarks.reporting import stats

    plt = _plt()
    scores = scores or {}
    if view is not None:
        points = {p.generator: (p.f1.estimate, p.f1.low, p.f1.high) for p in view.points}
        ylabel = f"downstream detector F1\n(mean over {', '.join(view.detectors)} x datasets)"
    else:
        down = frame.groupby(["generator", "detector", "dataset"])["f1_per_image"].mean().groupby("generator").mean()
        points = {}
        for g, y in down.items():
            iv = stats.mean_interval(scores, g, n=500) if g in scores else None
            points[g] = (float(y), iv.low, iv.high) if iv is not None else (float(y), float(y), float(y))
        ylabel = "downstream detector F1\n(mean over detectors x datasets)"
    gens = [g for g in generator_order(points) if g in quality]
    colors = generator_colors(points)
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    for g in gens:
        y, lo, hi = points[g]
        marker = "s" if g in calibration else "o"
        ax.errorbar(quality[g], y, yerr=[[y - lo], [hi - y]], fmt=marker, ms=7, color=colors[g], mec="black",
                    mew=0.5, capsize=3, label=g)
        ax.annotate(g, (quality[g], y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if view is not None and view.power is not None:
        xs = np.linspace(min(p.label_f1 for p in view.points), 1.0, 20)
        ax.plot(xs, view.power.intercept + view.power.slope * xs, "--", color="grey", lw=1,
                label="ladder fit")
    ax.set_xlabel("generator mask F1 vs ground truth (corpus)")
    ax.set_ylabel(ylabel)
    ax.set_title("Mask quality vs downstream localization (95 % CI)")
    ax.set_xlim(0, 1.05)
    ax.grid(alpha=0.3)
    return _save(fig, out_dir, "quality_vs_downstream")


def heatmap(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    plt = _plt()
    table = frame.pivot_table(index="generator", columns="dataset", values="f1_per_image")
    table = table.reindex(generator_order(table.index))
    fig, ax = plt.subplots(figsize=(1.3 * len(table.columns) + 2.5, 0.5 * len(table.index) + 1.6))
    im = ax.imshow(table.values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(table.columns)), table.columns, rotation=25, ha="right")
    ax.set_yticks(range(len(table.index)), table.index)
    for (r, c), v in np.ndenumerate(table.values):
        if not np.isnan(v):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="F1 (mean over detectors)")
    ax.set_title("Downstream F1 per test dataset")
    ax.set_xlabel("test dataset")
    ax.set_ylabel("training masks from")
    return _save(fig, out_dir, "downstream_heatmap")


def learning_curves(frame: pd.DataFrame, runs: Path, out_dir: Path, reference: str = "oracle") -> list[Path]:
    """Detectors trained on ground truth: validation F1 per epoch (the corpus's held-out pairs), one line per
    seed: whether a family was still learning when its budget ran out. Nothing without `reference` cells
    that published ``val.csv``."""
    curves = {}
    for (detector, seed, folder), _ in frame[frame["generator"] == reference].groupby(["detector", "seed", "folder"]):
        path = runs / folder / "val.csv"
        if path.is_file():
            curves[(detector, int(seed))] = pd.read_csv(path)
    if not curves:
        return []
    plt = _plt()
    detectors = sorted({d for d, _ in curves})
    colors = {d: plt.get_cmap("tab10")(i % 10) for i, d in enumerate(detectors)}
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for (detector, seed), table in sorted(curves.items()):
        ax.plot(table["epoch"], table["f1_per_image"], marker="o", ms=3, color=colors[detector],
                alpha=1.0 if seed == 0 else 0.5, label=detector if seed == min(s for d, s in curves if d == detector)
                else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation F1 (corpus held-out pairs)")
    ax.set_title("Detectors trained on ground-truth masks: learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_dir, "learning_curves")


def _img(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB" if im.mode not in ("L", "1") else "L"))


def _grid(rows: list[list[tuple[str, np.ndarray | None]]], row_labels: list[str], title: str):
    plt = _plt()
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.45 * ncols, 1.5 * len(rows) + 0.4), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            name, img = row[c]
            if img is not None:
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            if r == 0:
                ax.set_title(name, fontsize=7)
        axes[r, 0].set_ylabel(row_labels[r], fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def qualitative_generators(runs: Path, generators: list[str], out_dir: Path) -> list[Path]:
    shared = runs / "_examples" / "corpus"
    ids = sorted(p.name[: -len("_image.png")] for p in shared.glob("*_image.png"))
    if not ids:
        return []
    gens = generator_order(generators)
    rows = [[("edited", _img(shared / f"{i}_image.png")), ("ground truth", _img(shared / f"{i}_truth.png"))]
            + [(g, _img(runs / g / "corpus_examples" / f"{i}.png")) for g in gens] for i in ids]
    fig = _grid(rows, ids, "Generator masks on corpus pairs (what the detectors train on)")
    return _save(fig, out_dir, "qualitative_generators")


def qualitative_detectors(runs: Path, generator: str, folders: dict[str, str], out_dir: Path) -> list[Path]:
    """`folders`: detector -> the cell folder (under `runs`) whose example predictions are shown."""
    shared = runs / "_examples" / "test"
    sets = sorted(p.name[: -len("_image.png")] for p in shared.glob("*_image.png"))
    if not sets:
        return []
    rows = [[("test image", _img(shared / f"{s}_image.png")), ("ground truth", _img(shared / f"{s}_truth.png"))]
            + [(d, _img(runs / f / "examples" / f"{s}.png")) for d, f in sorted(folders.items())] for s in sets]
    fig = _grid(rows, sets, f"Detector predictions (trained on {generator} masks; probability, white = edited)")
    return _save(fig, out_dir, f"qualitative_detectors_{generator}")


def draw_all(frame: pd.DataFrame, quality: dict[str, float], runs: Path, out_dir: Path,
             calibration: set[str] = frozenset(), scores=None, view=None) -> list[Path]:
    paths = bars(frame, out_dir) + scatter(frame, quality, out_dir, scores, view, calibration) + heatmap(frame, out_dir)
    paths += learning_curves(frame, runs, out_dir)
    generators = sorted(set(frame["generator"]))
    paths += qualitative_generators(runs, generators, out_dir)
    first_seed = frame.sort_values("seed").drop_duplicates(["generator", "detector"])  # one cell's examples each
    for g in generator_order(generators):
        part = first_seed[first_seed["generator"] == g]
        paths += qualitative_detectors(runs, g, dict(zip(part["detector"], part["folder"])), out_dir)
    return paths
