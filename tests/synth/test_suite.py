"""The synthetic suite: deterministic, leak-free, exact masks, calibrated round trip, locating instructions."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.data.iml import read_benco_json
from benchmarks.data.imageio import load_image, load_mask
from benchmarks.data.manifest import PairsDataset, read_manifest
from benchmarks.data.schema import validate_sample
from benchmarks.data.transforms import Geometry
from benchmarks.io import exclusive_lock
from benchmarks.synth.build import SynthConfig, build_suite, suite_dir
from benchmarks.synth.editor import psnr
from benchmarks.synth.instructions import location
SMALL = SynthConfig(image_size=96, n_inpainting=10, n_corpus=24, n_per_benchmark=10, n_val=10, n_noedit=4, workers=2)
BENCHES = [f"bench/{b}" for b in SMALL.benchmarks]
# the blend's feather is a Gaussian of sigma 1, which OpenCV cuts at 4 sigma: a pixel up to 4 px outside the mask
# may move by one grey level (a 9 x 9 dilation), never further
FEATHER_SUPPORT = 9


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    return build_suite(SMALL, tmp_path_factory.mktemp("synth"), progress=False)


def _dilate(mask: np.ndarray, k: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in ("stats.json", "config.json")}


def test_deterministic_and_independent_of_worker_count(suite, tmp_path):
    again = build_suite(dataclasses.replace(SMALL, workers=1), tmp_path, progress=False)
    assert _tree_digest(again) == _tree_digest(suite)


def test_a_second_build_of_the_same_suite_waits_for_the_first_and_reuses_it(tmp_path):
    # two jobs (the study's, a training run) asking for one suite at once: the second must not rebuild the
    # folder the first is writing and reading
    tiny = dataclasses.replace(SMALL, n_inpainting=0, n_corpus=0, n_per_benchmark=3, benchmarks=("splice",), workers=1)
    root = suite_dir(tiny, tmp_path)
    result: list[Path] = []
    with exclusive_lock(root.with_name(f".{root.name}.lock")):          # the first builder holds the lock
        second = threading.Thread(target=lambda: result.append(build_suite(tiny, tmp_path, progress=False)))
        second.start()
        second.join(timeout=1.0)
        assert second.is_alive() and not root.exists()
        root.mkdir(parents=True)
        (root / "DONE").write_text(tiny.content_hash() + "\n")      # ... and finishes
    second.join(timeout=60)
    assert result == [root] and sorted(p.name for p in root.iterdir()) == ["DONE"]


def test_seed_changes_content(tmp_path):
    a = build_suite(dataclasses.replace(SMALL, n_inpainting=0, n_corpus=0, n_per_benchmark=3, benchmarks=("splice",)),
                    tmp_path / "a", progress=False)
    b = build_suite(dataclasses.replace(SMALL, n_inpainting=0, n_corpus=0, n_per_benchmark=3, benchmarks=("splice",),
                                        seed=1), tmp_path / "b", progress=False)
    assert _tree_digest(a) != _tree_digest(b)


def test_layout_and_counts(suite):
    stats = json.loads((suite / "stats.json").read_text())
    for name in BENCHES:
        assert stats["sets"][name]["pairs"] == SMALL.n_per_benchmark
        assert stats["sets"][name]["authentic"] == 2
        entries = read_benco_json(suite / name / "iml.json")
        assert len(entries) == SMALL.n_per_benchmark + 2
        assert sum(e.mask is None for e in entries) == 2
    assert (suite / "DONE").read_text().strip() == SMALL.content_hash()
    assert suite == suite_dir(SMALL, suite.parent.parent)


def test_every_set_draws_from_its_own_pool(suite):
    for name in BENCHES + ["noedit"]:
        assert {r.meta["photo"] for r in read_manifest(suite / name)} <= set(SMALL.test_photos)
    assert {r.meta["photo"] for r in read_manifest(suite / "inpainting")} <= set(SMALL.train_photos)
    assert {r.meta["photo"] for r in read_manifest(suite / "val")} <= set(SMALL.val_photos)
    corpus = read_manifest(suite / "corpus")
    for split, pool in (("train", SMALL.train_photos), ("val", SMALL.val_photos)):
        assert {r.meta["photo"] for r in corpus if r.meta["split"] == split} <= set(pool)
    assert {r.meta["split"] for r in corpus} == {"train", "val"}
    assert not {*SMALL.train_photos} & {*SMALL.val_photos} | {*SMALL.train_photos} & {*SMALL.test_photos}
    assert not {*SMALL.val_photos} & {*SMALL.test_photos}


def test_val_set_has_masks_and_negatives_and_noedit_pairs_are_round_trips_only(suite):
    entries = read_benco_json(suite / "val" / "iml.json")
    assert len(entries) == SMALL.n_val + 2 and sum(e.mask is None for e in entries) == 2
    for rec in read_manifest(suite / "noedit"):
        orig, edit, mask = load_image(rec.original), load_image(rec.edited), load_mask(rec.mask)
        assert not mask.any() and rec.instruction and rec.meta["family"] == "none"
        assert 20.0 <= psnr(edit, orig) <= 30.0, rec.id


def test_corpus_hides_its_masks(suite):
    corpus = read_manifest(suite / "corpus")
    assert all(r.mask is None and "mask_intended" not in r.meta for r in corpus)
    truth = {r.id: r for r in read_manifest(suite / "corpus_truth")}
    assert set(truth) == {r.id for r in corpus}
    for r in corpus:
        assert truth[r.id].edited.resolve() == r.edited.resolve()
        assert truth[r.id].mask.is_file() and not str(truth[r.id].mask.resolve()).startswith(str((suite / "corpus").resolve()) + "/")
    splits = [r.meta["split"] for r in corpus]
    train = read_benco_json(suite / "corpus_truth" / "iml_train.json")
    val = read_benco_json(suite / "corpus_truth" / "iml_val.json")
    assert len(train) == splits.count("train") and len(val) == splits.count("val")


def test_inpainting_pairs_are_exact_outside_the_mask(suite):
    for rec in read_manifest(suite / "inpainting"):
        orig, edit, mask = load_image(rec.original), load_image(rec.edited), load_mask(rec.mask)
        outside = ~_dilate(mask, FEATHER_SUPPORT)
        assert np.array_equal(orig[outside], edit[outside]), rec.id
        assert np.abs(orig[mask].astype(int) - edit[mask].astype(int)).mean() > 0, rec.id


def test_round_trip_touches_every_pixel_within_vae_psnr(suite):
    for name in BENCHES + ["val", "corpus_truth"]:
        touched = []
        for rec in read_manifest(suite / name):
            orig, edit, mask = load_image(rec.original), load_image(rec.edited), load_mask(rec.mask)
            outside = ~_dilate(mask, 5)
            value = psnr(edit, orig, outside)
            assert 20.0 <= value <= 30.0, (rec.id, value)
            touched.append((np.abs(edit.astype(int) - orig.astype(int)).max(axis=2) > 0)[outside].mean())
        assert np.mean(touched) > 0.9, name


def test_edits_change_the_masked_region_more_than_the_round_trip(suite):
    for name in BENCHES:
        inside, outside = [], []
        for rec in read_manifest(suite / name):
            orig, edit, mask = load_image(rec.original).astype(float), load_image(rec.edited).astype(float), load_mask(rec.mask)
            diff = np.abs(orig - edit).mean(axis=2)
            inside.append(diff[mask].mean())
            outside.append(diff[~_dilate(mask, 5)].mean())
        assert np.median(inside) > 1.5 * np.median(outside), name


def test_side_effects_are_in_the_mask_but_not_in_the_instruction(suite):
    records = [r for name in BENCHES + ["val", "corpus_truth"] for r in read_manifest(suite / name)]
    with_side = [r for r in records if r.meta["side_effect"]]
    share = len(with_side) / len(records)
    assert 0.2 <= share <= 0.6, share  # configured 0.4
    for rec in with_side:
        full = load_mask(rec.mask)
        intended = load_mask(rec.mask.parent.parent / rec.meta["mask_intended"])
        assert (intended <= full).all() and (full & ~intended).sum() > 0, rec.id
        assert location(intended).split()[0] in rec.instruction or "center" in location(intended), rec.id


def test_instructions_locate_the_edit(suite):
    hits = total = 0
    for name in BENCHES + ["val", "corpus_truth"]:
        for rec in read_manifest(suite / name):
            full = load_mask(rec.mask)
            intended = load_mask(rec.mask.parent.parent / rec.meta["mask_intended"]) if rec.meta["side_effect"] else full
            words = location(intended).split()
            hits += all(w in rec.instruction.replace("-", " ") or (w == "center" and "middle" in rec.instruction)
                        for w in words)
            total += 1
            assert rec.instruction and rec.instruction == " ".join(rec.instruction.split())
    assert hits / total > 0.95, hits / total


def test_every_set_loads_as_samples(suite):
    for name in BENCHES + ["val", "noedit", "inpainting", "corpus_truth"]:
        ds = PairsDataset(suite / name, Geometry("resize", 64), require_mask=True)
        for i in (0, len(ds) - 1):
            sample = validate_sample(ds[i], pair=True)
            assert sample["image"].shape == (3, 64, 64) and sample["has_mask"]
    # the unlabelled corpus loads too, marked as having no mask
    sample = PairsDataset(suite / "corpus", Geometry("resize", 64))[0]
    assert not sample["has_mask"] and sample["instruction"]


def test_inpainting_set_regenerates_content_of_the_configured_kinds(tmp_path):
    """Prompted inpainting: removals, new objects and re-rendered objects, each composited into the untouched
    photo with an exact mask and no side effect."""
    families = ("removal", "splice", "recolour", "restyle")
    cfg = dataclasses.replace(SMALL, n_inpainting=16, n_corpus=0, n_per_benchmark=0, benchmarks=(),
                              inpainting_families=families)
    root = build_suite(cfg, tmp_path, progress=False)
    records = read_manifest(root / "inpainting")
    seen = {rec.meta["family"] for rec in records}
    assert seen <= set(families) and len(seen) >= 3, seen
    for rec in records:
        assert not rec.meta["side_effect"], rec.id
        orig, edit, mask = load_image(rec.original), load_image(rec.edited), load_mask(rec.mask)
        outside = ~_dilate(mask, FEATHER_SUPPORT)
        assert np.array_equal(orig[outside], edit[outside]), rec.id


def test_content_hash_covers_what_changes_content():
    base = SynthConfig()
    for change in ({"inpainting_families": ("removal",)}, {"pool_seed": 3}, {"n_val": 7},
                   {"test_pool": base.test_photos[1:]}):
        assert dataclasses.replace(base, **change).content_hash() != base.content_hash(), change
    assert dataclasses.replace(base, workers=7).content_hash() == base.content_hash()
    with pytest.raises(ValueError, match="unknown families"):
        SynthConfig.from_dict({"inpainting_families": ["removal", "teleport"]})


def test_alt_implementation_makes_other_edits_and_round_trips(tmp_path):
    """The generalization set's second implementation: same layout and contracts, other pixels."""
    cfg = dataclasses.replace(SMALL, n_inpainting=0, n_corpus=0, n_val=0, n_noedit=0, n_per_benchmark=6,
                              implementation="alt")
    root = build_suite(cfg, tmp_path / "alt", progress=False)
    standard = build_suite(dataclasses.replace(cfg, implementation="standard"), tmp_path / "std", progress=False)
    assert cfg.content_hash() != dataclasses.replace(cfg, implementation="standard").content_hash()
    for name in BENCHES:
        records = read_manifest(root / name)
        assert len(records) == 6 and all(r.meta["implementation"] == "alt" for r in records)
        for rec, twin in zip(records, read_manifest(standard / name)):
            orig, edit, mask = load_image(rec.original), load_image(rec.edited), load_mask(rec.mask)
            assert np.array_equal(orig, load_image(twin.original))  # same crops, other edits and round trip
            assert not np.array_equal(edit, load_image(twin.edited))
            assert 18.0 <= psnr(edit, orig, ~_dilate(mask, 9)) <= 29.0, rec.id
        assert sum(load_mask(r.mask).any() for r in records) >= 5, name
    with pytest.raises(ValueError, match="implementation"):
        SynthConfig.from_dict({"implementation": "magic"})


def test_edit_opacity_makes_the_same_edits_subtler(tmp_path):
    cfg = dataclasses.replace(SMALL, n_inpainting=0, n_corpus=0, n_val=0, n_noedit=0, n_per_benchmark=6,
                              benchmarks=("recolour",), side_effect_prob=0.0)
    full = build_suite(cfg, tmp_path / "full", progress=False)
    faint = build_suite(dataclasses.replace(cfg, edit_opacity=(0.35, 0.6)), tmp_path / "faint", progress=False)
    strength = {}
    for name, root in (("full", full), ("faint", faint)):
        diffs = []
        for rec in read_manifest(root / "bench/recolour"):
            orig, edit, mask = load_image(rec.original).astype(float), load_image(rec.edited).astype(float), load_mask(rec.mask)
            diffs.append(np.abs(orig - edit).mean(axis=2)[mask].mean())
        strength[name] = np.median(diffs)
    assert strength["faint"] < 0.8 * strength["full"], strength
