"""Mask-quality scores, the annotate-side quality filter, F1 with and without filtering, false-positive rates
on no-edit pairs, and the tuning script on a tiny folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.generators.base import create_generator
from benchmarks.generators.quality import agreement, stability
from benchmarks.generators.quality_filter import EXCLUDED, check_min_quality, f1_with_and_without_filter


def test_stability_and_agreement_on_known_masks():
    binary = torch.zeros(1, 1, 8, 8)
    binary[..., 2:6, 2:6] = 1
    undecided = torch.full((1, 1, 8, 8), 0.5)
    assert stability(torch.cat([binary, undecided, torch.zeros(1, 1, 8, 8)])).tolist() == [1.0, 0.0, 1.0]
    a, b = binary.bool(), torch.zeros_like(binary).bool()
    b[..., 2:6, 2:4] = True  # half of a
    assert agreement([a, a]).item() == 1.0 and agreement([a, b]).item() == pytest.approx(0.5)
    assert agreement([a, a, b]).item() == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    with pytest.raises(ValueError, match="at least two"):
        agreement([a])
    with pytest.raises(ValueError, match="delta"):
        stability(binary, delta=0.6)


def test_stability_is_the_iou_of_the_two_thresholded_masks():
    """Counted as |high| / |low| (the high mask lies inside the low one): the IoU, computed the long way."""
    from sklearn.metrics import jaccard_score

    soft = torch.rand(6, 1, 20, 30, generator=torch.Generator().manual_seed(0)) ** 2
    soft[0] = 0.0
    got = stability(soft, delta=0.15)
    for i in range(1, 6):
        hi, lo = (soft[i].flatten() >= 0.65).numpy(), (soft[i].flatten() >= 0.35).numpy()
        assert got[i].item() == pytest.approx(jaccard_score(lo, hi), abs=1e-6)
    assert got[0].item() == 1.0


def test_f1_with_and_without_filter_counts_what_each_keeps():
    rows = [{"f1": 0.9, "quality": 0.8}, {"f1": 0.1, "quality": 0.2}, {"f1": 0.5, "quality": None},
            {"f1": None, "quality": 0.1}]  # the last is authentic: out of the headline either way
    r = f1_with_and_without_filter(rows, 0.5)
    assert r["n_pairs"] == 3 and r["n_kept"] == 2 and r["n_excluded"] == 1  # an unscored pair is kept
    assert r["f1_per_image"] == pytest.approx(0.5) and r["f1_per_image_filtered"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        check_min_quality(1.5)


def _corpus(root: Path, n_edited: int = 2, n_same: int = 2, size: int = 48) -> Path:
    """Pairs manifest without masks: some pairs edited (a box inverted), some unchanged."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n_edited + n_same):
        orig = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        edit = orig.copy()
        if i < n_edited:
            edit[8:30, 10:34] = 255 - edit[8:30, 10:34]
        Image.fromarray(orig).save(root / "img" / f"{i}_o.png")
        Image.fromarray(edit).save(root / "img" / f"{i}_e.png")
        rows.append({"id": f"p{i}", "original": f"img/{i}_o.png", "edited": f"img/{i}_e.png", "instruction": "x"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _iml(out: Path) -> list:
    return json.loads((out / "iml.json").read_text())


def test_annotate_min_quality_excludes_records_and_counts(tmp_path):
    from benchmarks.cli import main

    corpus, out = _corpus(tmp_path / "corpus"), tmp_path / "out"
    argv = ["annotate", "--generator", "pixel_diff", "--pairs", str(corpus), "--out", str(out), "--num-workers", "0"]
    # unchanged pairs: an empty mask, nothing near the threshold (quality 1); edited ones have soft borders (< 1)
    assert main([*argv, "--min-quality", "1.0"]) == 0
    shards = [json.loads(line) for p in (out / "shards").glob("*.jsonl") for line in p.read_text().splitlines()]
    quality = {e["id"]: e["quality"] for e in shards}
    assert quality["p2"] == quality["p3"] == 1.0 and quality["p0"] < 1.0 and quality["p1"] < 1.0
    assert [Path(e).name for e, _ in _iml(out)] == ["2_e.png", "3_e.png"]
    excluded = [json.loads(line) for line in (out / EXCLUDED).read_text().splitlines()]
    assert [e["id"] for e in excluded] == ["p0", "p1"] and all(e["quality"] < 1.0 for e in excluded)
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 4  # every mask stays listed
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["quality_filter"] == {"min_quality": 1.0, "kept": 2, "excluded": 2, "unscored": 0,
                                      "excluded_list": EXCLUDED}
    assert main([*argv, "--merge-only"]) == 0  # a merge without the flag gives the full list back
    assert len(_iml(out)) == 4 and "quality_filter" not in json.loads((out / "provenance.json").read_text())
    assert main([*argv, "--merge-only", "--min-quality", "0.0"]) == 0
    assert len(_iml(out)) == 4 and (out / EXCLUDED).read_text() == ""


def test_generate_scored_default_is_the_masks_stability():
    g = torch.Generator().manual_seed(0)
    original = torch.rand(2, 3, 32, 32, generator=g)
    edited = original.clone()
    edited[0, :, 4:20, 4:20] = 1 - edited[0, :, 4:20, 4:20]
    gen = create_generator("pixel_diff")
    scored = gen.generate_scored(original, edited)
    assert torch.equal(scored.mask, gen.generate(original, edited))
    assert torch.equal(scored.quality, stability(scored.mask)) and scored.diagnostics == [{}, {}]


@pytest.mark.parametrize("value", [0.0, 0.45, 0.5, 1.0])
def test_a_constant_masks_quality_is_the_stability_of_the_whole_mask(value):
    from benchmarks.generators.reference import Constant

    x = torch.rand(3, 3, 16, 24)
    scored = Constant(value, "c").generate_scored(x, x)
    assert torch.equal(scored.quality, stability(scored.mask)) and scored.quality.shape == (3,)


# ------------------------------------------------------------------------------ false positives on no-edit pairs


def _noedit(root: Path, n: int = 3, size: int = 64, marked: bool = False) -> Path:
    rng = np.random.default_rng(1)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        orig = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        noisy = np.clip(orig.astype(np.int16) + rng.integers(-3, 4, orig.shape), 0, 255).astype(np.uint8)
        Image.fromarray(orig).save(root / "img" / f"{i}_o.png")
        Image.fromarray(noisy if i else orig).save(root / "img" / f"{i}_e.png")
        mask = np.zeros((size, size), np.uint8)
        if marked and i == n - 1:
            mask[:4, :4] = 255
        Image.fromarray(mask).save(root / "img" / f"{i}_m.png")
        rows.append({"id": f"n{i}", "original": f"img/{i}_o.png", "edited": f"img/{i}_e.png", "instruction": "",
                     "mask": f"img/{i}_m.png"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_false_positive_rates_on_no_edit_pairs(tmp_path, capsys):
    from benchmarks.perf.false_positives import false_positive_rates, main

    folder = _noedit(tmp_path / "noedit")
    gens = {"aligned_diff": create_generator("aligned_diff"), "full": create_generator("full")}
    out = false_positive_rates(gens, folder)
    assert out["aligned_diff"]["fp_rate_pooled"] == 0.0 and out["aligned_diff"]["n_images"] == 3
    assert out["full"]["fp_rate_pooled"] == 1.0 and out["full"]["images_with_fp"] == 1.0
    assert out["aligned_diff"]["counters"]["registration/pairs"] == 3
    assert main(["--dataset", str(folder), "--generator", "empty,pixel_diff"]) == 0
    assert "pixel_diff" in capsys.readouterr().out
    with pytest.raises(ValueError, match="non-empty masks"):
        false_positive_rates(gens, _noedit(tmp_path / "marked", marked=True))


# ------------------------------------------------------------------------------ the tuning script


def _val(root: Path, n: int = 4, size: int = 64) -> Path:
    """A tiny validation-like folder: textured originals, a recoloured box per pair, masks."""
    import cv2

    rng = np.random.default_rng(2)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        base = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 1.5)
        orig = (np.clip((base - base.mean()) / base.std() * 0.2 + 0.5, 0, 1) * 255).astype(np.uint8)
        mask = np.zeros((size, size), bool)
        y, x = rng.integers(4, size // 2, 2)
        mask[y:y + size // 3, x:x + size // 3] = True
        edit = orig.copy()
        edit[mask] = (edit[mask] // 2 + 120).astype(np.uint8)
        Image.fromarray(orig).save(root / "img" / f"{i}_o.png")
        Image.fromarray(edit).save(root / "img" / f"{i}_e.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "img" / f"{i}_m.png")
        rows.append({"id": f"v{i}", "original": f"img/{i}_o.png", "edited": f"img/{i}_e.png", "instruction": "",
                     "mask": f"img/{i}_m.png"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_tuning_script_chooses_and_checks_through_the_evaluation_loop(tmp_path, capsys, monkeypatch):
    from benchmarks.perf import tune_baselines

    monkeypatch.setitem(tune_baselines.GRIDS, "aligned_diff", {
        "prefilter_sigma": [1.0], "tone": ["none", "local"], "sigma": [1.0], "k": [3.0], "floor": [4.0, 30.0],
        "morphology": [(1, 2)]})
    monkeypatch.setitem(tune_baselines.GRIDS, "aligned_semantic", {
        "input_scale": [1.0], "layer_weights": [(1.0, 1.0, 0.0)], "sigma": [2.0], "threshold": [("otsu", 0.0), ("mad", 3.0)],
        "floor": [0.1]})
    out = tmp_path / "rows.json"
    assert tune_baselines.main(["--dataset", str(_val(tmp_path / "val")), "--noedit", str(_noedit(tmp_path / "ne")),
                                "--label", "tiny_val", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "chosen_on: tiny_val" in text and "Spearman" in text
    report = json.loads(out.read_text())
    for name, settings in (("aligned_diff", 4), ("aligned_semantic", 2)):
        entry = report["generators"][name]
        assert len(entry["rows"]) == settings and entry["check_f1"] == pytest.approx(entry["chosen"]["f1"], abs=1e-6)
        assert "fp_noedit" in entry["chosen"]
    assert report["generators"]["aligned_diff"]["chosen"]["params"]["floor"] == 4.0  # 30 deltaE misses the edits


def test_tuning_script_refuses_test_and_holdout_sets_by_name():
    from benchmarks.perf import tune_baselines

    for name in ("synth_removal", "synth_holdout", "synth_noedit", "synth_subtle"):
        with pytest.raises(SystemExit, match="validation"):
            tune_baselines.main(["--dataset", name])
    for name in ("synth_val", "synth_val_noedit", "synth_val_shift", "synth_subtle_val"):  # val photos: allowed
        assert not tune_baselines.test_photos_in(name, ["profile=cpu-quick"])
    with pytest.raises(SystemExit, match="test or holdout photos"):
        tune_baselines.main(["--dataset", "synth_val", "--noedit", "synth_noedit"])


def test_leaderboard_quality_filter_table_counts_and_scores_the_kept_pairs():
    from benchmarks.reporting.leaderboard import quality_filter_markdown

    rows = [{"generator": "g", "f1": 0.9, "quality": 0.8}, {"generator": "g", "f1": 0.1, "quality": 0.2},
            {"generator": "g", "f1": float("nan"), "quality": 0.9},          # authentic: not in the headline
            {"generator": "h", "f1": 0.4, "quality": float("nan")}]          # no score: not in the table
    table = quality_filter_markdown(rows, 0.5)
    assert "| g | 0.500 | 0.900 | 1 / 2 |" in table
    assert "| h |" not in table
    assert quality_filter_markdown([{"generator": "h", "f1": 0.4, "quality": None}]) == ""


def test_leaderboard_deltas_are_paired_and_leave_out_truth_reading_and_constant_rows():
    from benchmarks.reporting.leaderboard import deltas_markdown, paired_deltas

    rows = []
    for d in ("a", "b"):
        for i in range(20):
            rows += [{"generator": "sigma", "dataset": d, "id": f"{d}{i}", "f1": 0.5 + 0.01 * i, "manipulated": True},
                     {"generator": "base", "dataset": d, "id": f"{d}{i}", "f1": 0.4 + 0.01 * i, "manipulated": True},
                     {"generator": "tie", "dataset": d, "id": f"{d}{i}", "f1": 0.5 + 0.01 * i, "manipulated": True}]
    rows.append({"generator": "base", "dataset": "a", "id": "only-base", "f1": 0.0, "manipulated": True})
    deltas = paired_deltas(rows, "sigma", ["base", "tie"], n=200)
    # a constant paired difference has a zero-width interval; the unpaired extra pair is left out
    assert deltas["base"].estimate == pytest.approx(0.1) and deltas["base"].low == pytest.approx(0.1)
    assert deltas["tie"].estimate == 0.0 and not deltas["tie"].significant
    report = {"generators": {"sigma": {}, "base": {}, "tie": {}, "oracle": {"reads_truth": True}, "empty": {}}}
    table = deltas_markdown(rows, report)
    assert "| base | +0.100 | [+0.100, +0.100] | yes |" in table and "oracle" not in table and "empty" not in table
    # a row built on SIGMA's masks gets its own table, against the baselines and plain SIGMA, and is never a
    # baseline of SIGMA's
    rows += [{**r, "generator": "sigma_aligned", "f1": r["f1"] + 0.05} for r in rows if r["generator"] == "sigma"]
    report["generators"]["sigma_aligned"] = {}
    first, second = deltas_markdown(rows, report).split("\n\n")
    assert first.startswith("| sigma minus") and "sigma_aligned" not in first
    assert second.startswith("| sigma_aligned minus") and "| sigma | +0.050 |" in second
    assert "| base | +0.150 |" in second
