"""Tiny SIGMA training sets written in code: pairs manifests of small random images with a square edit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.perf.sigma_train_speed import painted_square


def write_pairs(folder: Path, n: int, size: int = 32, masks: bool = True, seed: int = 0,
                instructions: int = 7) -> Path:
    """`n` pairs of `size` px: a random photo and the same photo with one flat square painted (its mask)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        original, edited, mask = painted_square(rng, size)
        Image.fromarray(original).save(folder / "img" / f"{i}_o.png")
        Image.fromarray(edited).save(folder / "img" / f"{i}_e.png")
        row = {"id": str(i), "original": f"img/{i}_o.png", "edited": f"img/{i}_e.png",
               "instruction": f"paint patch {i % instructions} in one colour"}
        if masks:
            Image.fromarray(mask).save(folder / "img" / f"{i}_m.png")
            row["mask"] = f"img/{i}_m.png"
        lines.append(json.dumps(row))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="session")
def training_sets(tmp_path_factory) -> tuple[Path, Path]:
    """A labelled inpainting set and an unlabelled corpus, 24 pairs of 32 px each."""
    root = tmp_path_factory.mktemp("sigma-sets")
    return write_pairs(root / "inpainting", 24), write_pairs(root / "corpus", 24, masks=False, seed=1)


def tiny_overrides(inpainting: Path, corpus: Path, home: Path, *extra: str) -> list[str]:
    """Config overrides for a SIGMA training of a few steps on the given sets."""
    return [f"sigma.inpainting={inpainting}", f"sigma.corpus={corpus}", f"paths.home={home}",
            f"paths.results={home / 'results'}", "sigma_budget.ae_steps=2", "sigma_budget.stage1_steps=4",
            "sigma_budget.stage2_steps=4", "sigma_budget.batch_size=4", *extra]


@pytest.fixture(scope="session")
def sigma_overrides():
    return tiny_overrides


@pytest.fixture(scope="session")
def pairs_writer():
    return write_pairs
