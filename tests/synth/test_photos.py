"""The photo world: a complete attribution record, disjoint pools, and clear errors for bad photos."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.data.errors import DataError
from benchmarks.synth.build import SynthConfig, build_suite
from benchmarks.synth.phash import distances, near_duplicate
from benchmarks.synth.photos import (ALLOWED_LICENCES, CATALOG, COLUMNS, POOL_NAMES, PhotoWorld, photo_folder,
                                     read_catalog, split_pools)


def test_every_photo_has_a_row_and_every_row_a_file():
    records = read_catalog(CATALOG)  # raises on a missing file, an unlisted file or an incomplete row
    files = {p.name for p in photo_folder(CATALOG).iterdir()}
    assert files == {r.file for r in records}
    for r in records:
        assert r.licence in ALLOWED_LICENCES and r.source and r.licence_evidence and r.scene, r.file
        assert max(r.width, r.height) <= 512, r.file


def test_pool_sizes_and_variety():
    world = PhotoWorld()
    records, pools = world.records(), world.pools()
    assert len(records) >= 150 and len({r.scene for r in records.values()}) >= 150
    assert len(pools["test"]) >= 30 and len(pools["val"]) >= 15 and len(pools["holdout"]) >= 15
    for pool in POOL_NAMES:
        tags = [records[n].content for n in pools[pool]]
        assert max(tags.count(t) for t in set(tags)) / len(tags) < 0.4, pool  # no kind of content dominates


def test_pools_are_disjoint_by_photo_scene_and_near_duplicate():
    world = PhotoWorld()
    records, pools = world.records(), world.pools()
    owner = {n: p for p in POOL_NAMES for n in pools[p]}
    assert len(owner) == sum(len(pools[p]) for p in POOL_NAMES) == len(records)
    scenes: dict[str, set[str]] = {}
    for name, pool in owner.items():
        scenes.setdefault(records[name].scene, set()).add(pool)
    assert all(len(p) == 1 for p in scenes.values())
    names = sorted(owner)
    d, p = distances([world.load(n) for n in names])
    close = np.argwhere(np.triu(near_duplicate(d, p), 1))
    crossing = [(names[i], names[j]) for i, j in close if owner[names[i]] != owner[names[j]]]
    assert not crossing, crossing


def test_split_is_deterministic_proportional_and_in_the_suite_hash():
    records = list(PhotoWorld().records().values())
    a, b = split_pools(records, seed=0), split_pools(list(reversed(records)), seed=0)
    assert a == b
    assert split_pools(records, seed=1) != a
    n = len(records)
    assert abs(len(a["train"]) - 0.5 * n) <= 0.05 * n and abs(len(a["test"]) - 0.25 * n) <= 0.05 * n
    base = SynthConfig(n_inpainting=1, n_corpus=0, n_per_benchmark=1)
    assert dataclasses.replace(base, pool_seed=1).content_hash() != base.content_hash()
    with pytest.raises(ValueError, match="summing to 1"):
        split_pools(records, fractions=(0.5, 0.5, 0.5, 0.0))


def test_named_photos_and_wheel_photos_still_work():
    cfg = SynthConfig(train_pool=("astronaut", "coffee"), val_pool=("pool:val",), test_pool=("chelsea",))
    assert cfg.train_photos == ("astronaut", "coffee") and len(cfg.val_photos) >= 15
    with pytest.raises(ValueError, match="pools must be disjoint"):
        SynthConfig(train_pool=("astronaut",), test_pool=("astronaut",)).validate()
    with pytest.raises(ValueError, match="unknown photo pool"):
        SynthConfig(train_pool=("pool:nope",)).validate()


# ------------------------------------------------------------------------------------------ bad photos


def _copy_catalog(tmp_path: Path, names: int = 12) -> Path:
    """A small catalog: the first photos of the shipped record, copied with their rows."""
    folder = tmp_path / "world" / "photos"
    folder.mkdir(parents=True)
    rows = list(csv.DictReader(CATALOG.open(newline="", encoding="utf-8")))[:names]
    for row in rows:
        shutil.copy(photo_folder(CATALOG) / row["file"], folder / row["file"])
    return _write_rows(folder.parent / "photos.csv", rows)


def _write_rows(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _synth(catalog: Path, tmp_path: Path, capsys) -> str:
    """`bench data synth` on the catalog; the error it stopped with (it must stop)."""
    code = main(["data", "synth", "experiment=smoke", f"synth.photo_catalog={catalog}",
                 "synth.pool_fractions=[0.5,0.25,0.25,0.0]", f"paths.data={tmp_path / 'data'}", "synth.workers=1"])
    err = capsys.readouterr().err
    assert code == 2 and "bench data: error:" in err, (code, err)
    return err


def test_synth_builds_from_another_catalog(tmp_path, capsys):
    assert main(["data", "synth", "experiment=smoke", f"synth.photo_catalog={_copy_catalog(tmp_path)}",
                 "synth.pool_fractions=[0.5,0.25,0.25,0.0]", f"paths.data={tmp_path / 'data'}",
                 "synth.workers=1"]) == 0
    assert "corpus" in capsys.readouterr().out


def test_missing_photo_stops_synth_naming_it(tmp_path, capsys):
    catalog = _copy_catalog(tmp_path)
    victim = next((catalog.parent / "photos").iterdir())
    victim.unlink()
    err = _synth(catalog, tmp_path, capsys)
    assert victim.name in err and "missing" in err


def test_corrupt_photo_stops_synth_naming_it(tmp_path, capsys):
    catalog = _copy_catalog(tmp_path)
    rows = list(csv.DictReader(catalog.open(newline="", encoding="utf-8")))
    victim = catalog.parent / "photos" / rows[3]["file"]
    victim.write_bytes(victim.read_bytes()[:500])  # truncated
    err = _synth(catalog, tmp_path, capsys)
    assert victim.name in err and "sha1" in err
    # a truncated file whose record was updated to match still cannot be decoded
    rows[3]["sha1"] = hashlib.sha1(victim.read_bytes()).hexdigest()
    _write_rows(catalog, rows)
    assert victim.name in _synth(catalog, tmp_path, capsys)


@pytest.mark.parametrize("licence", ["CC-BY-NC-4.0", "All rights reserved", ""])
def test_unlicensed_photo_stops_synth_naming_it(tmp_path, capsys, licence):
    catalog = _copy_catalog(tmp_path)
    rows = list(csv.DictReader(catalog.open(newline="", encoding="utf-8")))
    rows[2]["licence"] = licence
    _write_rows(catalog, rows)
    err = _synth(catalog, tmp_path, capsys)
    assert rows[2]["file"] in err and "licence" in err


def test_unlisted_photo_file_stops_synth_naming_it(tmp_path, capsys):
    catalog = _copy_catalog(tmp_path)
    stray = catalog.parent / "photos" / "stray-photo.jpg"
    shutil.copy(next((catalog.parent / "photos").iterdir()), stray)
    assert "stray-photo.jpg" in _synth(catalog, tmp_path, capsys)


def test_build_suite_checks_photos_before_writing(tmp_path):
    catalog = _copy_catalog(tmp_path)
    rows = list(csv.DictReader(catalog.open(newline="", encoding="utf-8")))
    cfg = SynthConfig(photo_catalog=str(catalog), pool_fractions=(0.5, 0.25, 0.25, 0.0), image_size=64,
                      n_inpainting=2, n_corpus=2, n_per_benchmark=1, workers=1)
    (catalog.parent / "photos" / rows[0]["file"]).write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=rows[0]["file"]):
        build_suite(cfg, tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists()
