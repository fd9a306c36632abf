"""Leave-one-family-out: the family filter on SIGMA's training sets, the bank key, the report."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from benchmarks.config import compose
from benchmarks.sigma_training.bank import load_pairs
from benchmarks.sigma_training.inputs import excluded_families
from benchmarks.sigma_training.lofo import ALL, family_sets, write_report


def _with_families(folder, families):
    """Give the pairs of a written manifest families in turn."""
    path = folder / "manifest.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, "family": families[i % len(families)]}) + "\n" for i, r in enumerate(rows)))
    return folder


def test_excluded_families_are_left_out_of_every_training_set(tmp_path, pairs_writer, sigma_overrides):
    from benchmarks.sigma_training.data import prepare_bank

    inpainting = _with_families(pairs_writer(tmp_path / "inpainting", 12), ["removal", "splice", "recolour"])
    corpus = _with_families(pairs_writer(tmp_path / "corpus", 12, masks=False, seed=1), ["removal", "splice"])
    records, *_ = load_pairs(inpainting, with_masks=True, exclude_families=["removal"])
    assert len(records) == 8 and {r.meta["family"] for r in records} == {"splice", "recolour"}
    with pytest.raises(ValueError, match="no pairs left"):
        load_pairs(corpus, with_masks=False, exclude_families=["removal", "splice"])

    base = sigma_overrides(inpainting, corpus, tmp_path / "home")
    lofo = prepare_bank(compose([*base, "+sigma.exclude_families=[removal]"]), torch.device("cpu"), progress=False)
    assert lofo.info["pairs_stage1"] == 8 and lofo.info["pairs_corpus"] == 6
    assert lofo.info["pairs_calibration"] == 16   # the round-tripped edits and unedited originals of the 8 kept
    full = prepare_bank(compose(base), torch.device("cpu"), progress=False)
    empty = prepare_bank(compose([*base, "+sigma.exclude_families=[]"]), torch.device("cpu"), progress=False)
    assert full.info["pairs_stage1"] == 12 and full.info["cache_key"] != lofo.info["cache_key"]
    assert empty.info["cache_key"] == full.info["cache_key"]     # nothing left out: the default bank's key


def test_unknown_families_and_the_stream_are_refused(tmp_path, pairs_writer, sigma_overrides, training_sets):
    from benchmarks.sigma_training.stream import prepare_stream

    with pytest.raises(ValueError, match="unknown family"):
        excluded_families(compose(["+sigma.exclude_families=[wheels]"]))
    assert excluded_families(compose([])) == []
    cfg = compose([*sigma_overrides(*training_sets, tmp_path), "sigma.data.source=stream",
                   "+sigma.exclude_families=[splice]"])
    with pytest.raises(ValueError, match="feature bank only"):
        prepare_stream(cfg, torch.device("cpu"), progress=False)


def test_lofo_report_shows_the_drop_per_family_and_the_missing_cells(tmp_path):
    def scores(values):
        return {name: {"all/f1_per_image": v} for name, v in values.items()}

    full = {n: 0.7 for f in ("removal", "splice", "recolour", "restyle", "copymove") for n in family_sets(f)}
    cells = {ALL: {"scores": scores(full)},
             "removal": {"scores": scores({"synth_removal": 0.6, "synth_general_removal": 0.5})},
             "splice": {"scores": scores({"synth_splice": 0.7, "synth_general_splice": 0.66})}}
    cfg = OmegaConf.create({"paths": {"results": str(tmp_path / "results")}, "profile": {"name": "cpu-quick"}})
    md = write_report(cfg, cells).read_text()
    assert "| removal | 0.700 | 0.600 | +0.100 | 0.700 | 0.500 | +0.200 |" in md
    assert "| **mean** | 0.700 | 0.650 | **+0.050** | 0.700 | 0.580 | **+0.120** |" in md
    assert "missing: recolour, restyle, copymove" in md


def test_lofo_runs_cell_by_cell_and_reuses_finished_cells(tmp_path, pairs_writer, sigma_overrides, monkeypatch):
    from benchmarks.sigma_training import lofo

    inpainting = _with_families(pairs_writer(tmp_path / "inpainting", 12), ["removal", "splice"])
    corpus = _with_families(pairs_writer(tmp_path / "corpus", 12, masks=False, seed=1), ["removal", "splice"])
    tests = pairs_writer(tmp_path / "test", 6, seed=2)
    monkeypatch.setattr(lofo, "pair_datasets", lambda cfg, names, overrides: [(n, tests) for n in names.split(",")])
    overrides = sigma_overrides(inpainting, corpus, tmp_path / "home")
    cfg = compose(overrides, command="train-sigma")
    md = lofo.run_lofo(cfg, overrides, ["removal"]).read_text()
    cells = sorted(p.name for p in lofo.cell_dir(cfg).iterdir())
    assert cells == ["all.json", "removal.json"]
    held = json.loads((lofo.cell_dir(cfg) / "removal.json").read_text())
    assert held["pairs"]["pairs_stage1"] == 6 and set(held["scores"]) == set(family_sets("removal"))
    assert "| removal |" in md and "missing: splice, recolour, restyle, copymove" in md
    monkeypatch.setattr(lofo, "run_cell", lambda *a: pytest.fail("a finished cell was trained again"))
    assert lofo.run_lofo(cfg, overrides, ["removal"]).read_text() == md


def test_the_in_family_cell_is_read_from_a_matching_ablations_row(tmp_path, pairs_writer, sigma_overrides,
                                                                  monkeypatch):
    from benchmarks.sigma_training import lofo
    from benchmarks.sigma_training.ablations import cell_path
    from benchmarks.sigma_training.data import bank_key

    inpainting = _with_families(pairs_writer(tmp_path / "inpainting", 12), ["removal", "splice"])
    corpus = _with_families(pairs_writer(tmp_path / "corpus", 12, masks=False, seed=1), ["removal", "splice"])
    overrides = sigma_overrides(inpainting, corpus, tmp_path / "home")
    cfg = compose(overrides, command="train-sigma")
    sets = [n for f in ("removal", "splice", "recolour", "restyle", "copymove") for n in family_sets(f)]
    row = cell_path(cfg, "sigma (full)")
    row.parent.mkdir(parents=True)
    row.write_text(json.dumps({"row": "sigma (full)", "key": {"data": "another bank", "sets": sets},
                               "scores": {n: {"all/f1_per_image": 0.7} for n in sets}}))
    assert lofo.in_family_from_ablations(cfg) is None          # trained on another bank: not the same model
    row.write_text(json.dumps({"row": "sigma (full)", "key": {"data": bank_key(cfg)[0], "sets": sets[:-1]},
                               "scores": {n: {"all/f1_per_image": 0.7} for n in sets[:-1]}}))
    assert lofo.in_family_from_ablations(cfg) is None          # a family's set missing
    row.write_text(json.dumps({"row": "sigma (full)", "key": {"data": bank_key(cfg)[0], "sets": sets},
                               "scores": {n: {"all/f1_per_image": 0.7} for n in sets}}))
    held = {"left_out": "removal", "scores": {"synth_removal": {"all/f1_per_image": 0.5},
                                             "synth_general_removal": {"all/f1_per_image": 0.6}}}
    lofo.cell_dir(cfg).mkdir(parents=True)
    (lofo.cell_dir(cfg) / "removal.json").write_text(json.dumps(held))
    monkeypatch.setattr(lofo, "run_cell", lambda *a: pytest.fail("the in-family model was trained again"))
    md = lofo.run_lofo(cfg, overrides, ["removal"]).read_text()
    assert "| removal | 0.700 | 0.500 | +0.200 | 0.700 | 0.600 | +0.100 |" in md
    assert "the ablations' full row" in md and not (lofo.cell_dir(cfg) / "all.json").exists()
