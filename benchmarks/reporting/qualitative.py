"""Qualitative grids: original | edited | ground truth | each generator's mask."""

from __future__ import annotations

from pathlib import Path

import torch


def generator_grid(datasets: dict, shown: dict[str, dict[str, torch.Tensor]], path: Path) -> Path:
    """One row per shown pair (a few per dataset); columns: original, edited, truth, then each generator's mask
    thresholded at 0.5 (what the headline metric scores)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for name, ds in datasets.items():
        index = {r.id: i for i, r in enumerate(ds.records)}
        for item_id in sorted({i for g in shown.values() for i in g if i in index}):
            rows.append((name, ds, index[item_id], item_id))
    generators = list(shown)
    ncols = 3 + len(generators)
    fig, axes = plt.subplots(max(1, len(rows)), ncols, figsize=(1.6 * ncols, 1.7 * max(1, len(rows))), squeeze=False)
    for r, (name, ds, i, item_id) in enumerate(rows):
        sample = ds[i]
        panels = [("original", sample["original"].permute(1, 2, 0)), ("edited", sample["image"].permute(1, 2, 0)),
                  ("ground truth", sample["mask"][0])]
        panels += [(g, None if shown[g].get(item_id) is None else (shown[g][item_id] >= 0.5).float()) for g in generators]
        for c, (title, img) in enumerate(panels):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if img is not None:
                ax.imshow(img.numpy(), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            if r == 0:
                ax.set_title(title, fontsize=8)
        axes[r, 0].set_ylabel(f"{name}\n{item_id}", fontsize=6)
        instruction = sample["instruction"]
        axes[r, 1].set_xlabel(instruction[:60] + ("…" if len(instruction) > 60 else ""), fontsize=5)
    fig.suptitle("Mask generators vs ground truth (generator masks thresholded at 0.5, as scored)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
