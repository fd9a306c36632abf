"""The decoded cache gives the samples the per-epoch decoding gives, bit for bit, in memory and on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.data.cache import CachedSamples, DecodedCache, choose_mode, estimate_bytes
from benchmarks.data.iml import read_benco_json
from benchmarks.data.loading import SKIP, EpochSamples
from benchmarks.data.transforms import Geometry, SampleTransform


def _list(folder, n=6, broken=False):
    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True)
    (folder / "mask").mkdir()
    rows = []
    for i in range(n):
        h, w = (40, 52) if i % 2 else (48, 36)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / "img" / f"{i}.png")
        if i == n - 1:
            rows.append([f"img/{i}.png", "Negative"])
            continue
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[3:20, 5:25] = 255
        Image.fromarray(mask).save(folder / "mask" / f"{i}.png")
        rows.append([f"img/{i}.png", f"mask/{i}.png"])
    if broken:
        (folder / "img" / "1.png").write_bytes(b"not a png")
    (folder / "list.json").write_text(json.dumps(rows))
    return read_benco_json(folder / "list.json", check_files=False)


def _same(a, b):
    assert SKIP not in a and SKIP not in b
    for key in ("image", "mask", "valid"):
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    for key in ("id", "label", "geometry", "mask_resized"):
        assert a[key] == b[key]


@pytest.mark.parametrize("geometry", [Geometry("resize", 24), Geometry("pad", 32), Geometry("crop", 24),
                                      Geometry("none", 24)])
@pytest.mark.parametrize("where", ["memory", "mmap"])
def test_cached_samples_equal_decoded_ones_every_epoch(tmp_path, geometry, where):
    items = _list(tmp_path / "data")
    plain = EpochSamples(items, geometry, name="x", train=True, seed=3)
    transform = SampleTransform(geometry, train=True, seed=3)
    cache = (DecodedCache.in_memory(items, transform) if where == "memory"
             else DecodedCache.on_disk(items, transform, tmp_path / "cache"))
    cached = CachedSamples(items, transform, cache, name="x")
    for epoch in (0, 1, 5):
        for i in range(len(items)):
            _same(cached[(epoch, i)], plain[(epoch, i)])
    if where == "mmap":  # a second run maps the finished folder without decoding
        again = DecodedCache.on_disk(items, transform, tmp_path / "cache", build=False)
        _same(CachedSamples(items, transform, again, name="x")[(2, 0)], plain[(2, 0)])


@pytest.mark.parametrize("where", ["memory", "mmap"])
def test_a_bad_item_comes_back_as_the_same_skip_marker(tmp_path, where):
    items = _list(tmp_path / "data", broken=True)
    geometry = Geometry("resize", 16)
    transform = SampleTransform(geometry, train=True, seed=0)
    cache = (DecodedCache.in_memory(items, transform) if where == "memory"
             else DecodedCache.on_disk(items, transform, tmp_path / "cache"))
    cached = CachedSamples(items, transform, cache, name="x")[(0, 1)]
    plain = EpochSamples(items, geometry, name="x", train=True, seed=0)[(0, 1)]
    assert cached[SKIP] == plain[SKIP] and cached["error"] == plain["error"] and cached["id"] == plain["id"]
    _same(CachedSamples(items, transform, cache, name="x")[(0, 2)], EpochSamples(items, geometry, name="x", train=True,
                                                                                  seed=0)[(0, 2)])


def test_size_rule_picks_memory_or_disk_and_memory_over_the_limit_names_the_fix(tmp_path):
    items = _list(tmp_path / "data")
    assert estimate_bytes(items, Geometry("resize", 10)) == len(items) * 10 * 10 * 4
    assert estimate_bytes(items, Geometry("none", 10)) == len(items) * 48 * 36 * 4   # first item's size
    assert choose_mode("auto", items, Geometry("resize", 10), memory_mb=1) == "memory"
    assert choose_mode("auto", items, Geometry("resize", 512), memory_mb=1) == "mmap"
    assert choose_mode("off", items, Geometry("resize", 512), memory_mb=1) == "off"
    with pytest.raises(ValueError, match="train.cache_memory_mb=1.*train.cache=mmap"):
        choose_mode("memory", items, Geometry("resize", 512), memory_mb=1)
    with pytest.raises(ValueError, match="train.cache must be one of"):
        choose_mode("ram", items, Geometry("resize", 10), memory_mb=1)
