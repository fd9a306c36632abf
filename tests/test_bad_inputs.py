"""Bad inputs found by an independent audit: each is a clear error or a counted skip, never a crash that
loses a run. Everything goes through the `bench` command line, as a user would meet it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.cli import main

ROOT = Path(__file__).resolve().parents[1]
SIGMA_PT = ROOT / "results" / "sigma" / "cpu-quick" / "sigma.pt"  # the committed checkpoint


def write_pairs(folder: Path, sizes: dict[str, int], *, masks: bool = True, missing: tuple[str, ...] = (),
                extra_lines: tuple[str, ...] = ()) -> Path:
    """A pairs-manifest folder: one pair per id, square images of the given side (a box edit)."""
    for sub in ("original", "edited", "mask"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (item_id, side) in enumerate(sizes.items()):
        rng = np.random.default_rng(k)
        original = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        edited, mask = original.copy(), np.zeros((side, side), np.uint8)
        edited[side // 4: side // 2, side // 4: side // 2] = 255 - edited[side // 4: side // 2, side // 4: side // 2]
        mask[side // 4: side // 2, side // 4: side // 2] = 255
        if item_id not in missing:
            Image.fromarray(original).save(folder / "original" / f"{item_id}.png")
        Image.fromarray(edited).save(folder / "edited" / f"{item_id}.png")
        Image.fromarray(mask).save(folder / "mask" / f"{item_id}.png")
        row = {"id": item_id, "original": f"original/{item_id}.png", "edited": f"edited/{item_id}.png",
               "instruction": "invert the box"}
        if masks:
            row["mask"] = f"mask/{item_id}.png"
        lines.append(json.dumps(row))
    (folder / "manifest.jsonl").write_text("\n".join([*lines, *extra_lines]) + "\n")
    return folder


def sigma_overrides(results: Path) -> list[str]:
    return [f"paths.results={results}", f"sigma.export={SIGMA_PT}", "eval.batch_size=1"]


# ---------------------------------------------------------------------------------------------- 8 x 8 pairs


def test_a_pair_smaller_than_sigmas_stride_is_a_counted_skip_per_generator(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "tiny", {"big0": 32, "small": 8, "big1": 32})
    results = tmp_path / "res"
    assert main(["eval-generators", "--generator", "sigma,pixel_diff", "--dataset", str(pairs),
                 "eval.on_error=skip", *sigma_overrides(results)]) == 0
    report = json.loads((results / "leaderboards" / "generators_tiny.report.json").read_text())
    assert report["skipped"] == {"sigma": {"tiny": {"too-small": 1}}}
    lines = [json.loads(x) for x in (results / "leaderboards" / "generators_tiny.skipped.jsonl").read_text().splitlines()]
    assert [(s["generator"], s["dataset"], s["id"], s["reason"]) for s in lines] == [("sigma", "tiny", "small",
                                                                                      "too-small")]
    import pandas as pd

    board = pd.read_csv(results / "leaderboards" / "generators_tiny.csv", index_col="generator")
    assert set(board.index) == {"sigma", "pixel_diff"}  # the other generator's results are kept
    per_pair = pd.read_csv(results / "generators" / "per_pair" / "tiny.csv")
    assert sorted(per_pair[per_pair.generator == "sigma"].id) == ["big0", "big1"]
    assert sorted(per_pair[per_pair.generator == "pixel_diff"].id) == ["big0", "big1", "small"]


def test_a_pair_smaller_than_sigmas_stride_is_a_clear_error_under_raise(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "tiny", {"small": 8})
    assert main(["eval-generators", "--generator", "sigma", "--dataset", str(pairs), "eval.on_error=raise",
                 *sigma_overrides(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert "edited/small.png" in err and "16" in err and "on_error=skip" in err and "Traceback" not in err


def test_annotate_skips_a_too_small_pair_and_reruns_cleanly(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "tiny", {"big0": 32, "small": 8, "big1": 32}, masks=False)
    out = tmp_path / "out"
    argv = ["annotate", "--generator", "sigma", "--pairs", str(pairs), "--out", str(out), "--num-workers", "0",
            "--batch-size", "2", f"sigma.export={SIGMA_PT}"]
    assert main(argv) == 0
    skipped = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(s["id"], s["reason"]) for s in skipped] == [("small", "too-small")]
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == ["big0", "big1"]
    assert main(argv) == 0  # a rerun does not abort either
    assert json.loads((out / "provenance.json").read_text())["counts"]["annotated"] == 2


# ---------------------------------------------------------------------------------------------- data check


def test_data_check_flags_duplicate_ids(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "dup", {"a": 16, "b": 16})
    lines = (pairs / "manifest.jsonl").read_text().splitlines()
    (pairs / "manifest.jsonl").write_text("\n".join([*lines, lines[0]]) + "\n")
    assert main(["data", "check", str(pairs)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["items"] == 3 and report["ok"] == 2 and report["bad_by_reason"] == {"duplicate-id": 1}
    assert "line 1" in report["bad_items"][0]["error"] and report["bad_items"][0]["id"] == "a"


def test_data_check_reports_what_it_checked_past_a_broken_json_line(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "broken", {"a": 16, "b": 16})
    lines = (pairs / "manifest.jsonl").read_text().splitlines()
    (pairs / "manifest.jsonl").write_text("\n".join([lines[0], '{"id": "c", "original": ', lines[1]]) + "\n")
    assert main(["data", "check", str(pairs)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["items"] == 3 and report["ok"] == 2 and report["bad_by_reason"] == {"bad-json": 1}
    assert ":2" in report["bad_items"][0]["error"]


# ---------------------------------------------------------------------------------------------- skipped.jsonl


def test_eval_generators_skips_name_the_generator_and_do_not_pile_up(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "some", {"a": 16, "gone": 16, "b": 16}, missing=("gone",))
    results = tmp_path / "res"
    argv = ["eval-generators", "--generator", "pixel_diff,empty", "--dataset", str(pairs), "eval.on_error=skip",
            f"paths.results={results}"]
    for _ in range(2):  # a second run replaces the first one's list
        assert main(argv) == 0
    lines = [json.loads(x) for x in (results / "leaderboards" / "generators_some.skipped.jsonl").read_text().splitlines()]
    assert sorted((s["generator"], s["id"], s["reason"]) for s in lines) == [("empty", "gone", "missing"),
                                                                             ("pixel_diff", "gone", "missing")]
    report = json.loads((results / "leaderboards" / "generators_some.report.json").read_text())
    assert report["datasets"]["some"]["skipped"] == 1  # one bad pair, however many generators met it
    assert report["skipped"] == {"pixel_diff": {"some": {"missing": 1}}, "empty": {"some": {"missing": 1}}}
    assert "1 skipped" in (results / "leaderboards" / "generators_some.md").read_text()


# ---------------------------------------------------------------------------------------------- annotate


def test_annotate_with_workers_names_the_first_bad_pair_briefly(tmp_path, capsys):
    # 2 workers, batches of 4: worker 0 takes even indices, worker 1 odd ones; the main process reads worker
    # 0's first batch first, which holds the later bad pair (index 2); the first bad pair is index 1
    ids = {f"p{i}": 16 for i in range(16)}
    pairs = write_pairs(tmp_path / "two_bad", ids, masks=False, missing=("p1", "p2"))
    assert main(["annotate", "--generator", "pixel_diff", "--pairs", str(pairs), "--out", str(tmp_path / "out"),
                 "--num-workers", "2", "--batch-size", "4", "--on-error", "raise"]) == 2
    err = capsys.readouterr().err
    assert "original/p1.png" in err and "p2.png" not in err
    assert len(err.strip().splitlines()) <= 3 and "Traceback" not in err


def test_annotate_duplicate_ids_under_raise_are_an_error(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "dup", {"a": 16, "b": 16}, masks=False)
    lines = (pairs / "manifest.jsonl").read_text().splitlines()
    (pairs / "manifest.jsonl").write_text("\n".join([*lines, lines[0]]) + "\n")
    assert main(["annotate", "--generator", "pixel_diff", "--pairs", str(pairs), "--out", str(tmp_path / "out"),
                 "--num-workers", "0", "--on-error", "raise"]) == 2
    err = capsys.readouterr().err
    assert "'a'" in err and "duplicate" in err.lower()


def test_annotate_leaves_no_mask_for_a_skipped_duplicate(tmp_path):
    pairs = write_pairs(tmp_path / "dup", {"a": 16, "b": 16}, masks=False)
    lines = (pairs / "manifest.jsonl").read_text().splitlines()
    (pairs / "manifest.jsonl").write_text("\n".join([*lines, lines[0]]) + "\n")
    out = tmp_path / "out"
    assert main(["annotate", "--generator", "pixel_diff", "--pairs", str(pairs), "--out", str(out),
                 "--num-workers", "0"]) == 0
    assert sorted(p.name for p in (out / "masks").glob("*.png")) == ["b.png"]


def test_annotate_fails_when_nothing_was_annotated(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "bad", {"a": 16, "b": 16}, masks=False, missing=("a", "b"))
    assert main(["annotate", "--generator", "pixel_diff", "--pairs", str(pairs), "--out", str(tmp_path / "out"),
                 "--num-workers", "0"]) == 1
    assert "nothing" in capsys.readouterr().err.lower()


# ---------------------------------------------------------------------------------------------- unsafe pickles


class _Payload:
    """Unpickling this runs code: it writes the file `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def _evil(path: Path, marker: Path, wrap=lambda payload: payload) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(wrap({"payload": _Payload(marker)}), path)
    return path


def _refused(call, path: Path, marker: Path) -> None:
    with pytest.raises(Exception) as exc:
        call()
    assert not marker.exists(), "the pickle ran code on load"
    assert str(path) in str(exc.value) and "weights_only" in str(exc.value)


def test_sigma_checkpoints_that_run_code_are_refused(tmp_path):
    from sigma.annotator import load_checkpoint

    marker = tmp_path / "pwned"
    path = _evil(tmp_path / "sigma.pt", marker)
    _refused(lambda: load_checkpoint(path), path, marker)
    assert main(["eval-generators", "--generator", "sigma", "--dataset",
                 str(write_pairs(tmp_path / "p", {"a": 32})), f"sigma.export={path}",
                 f"paths.results={tmp_path / 'res'}"]) == 2
    assert not marker.exists()


def test_stage_checkpoints_that_run_code_are_refused(tmp_path):
    import torch

    from sigma.model import SigmaConfig, SigmaNet
    from sigma.train import SigmaTrainer, StageConfig

    marker = tmp_path / "pwned"
    path = _evil(tmp_path / "work" / "stage1_last.pt", marker)
    trainer = SigmaTrainer(SigmaNet(SigmaConfig(use_text=False, refinement="none")), None, torch.device("cpu"),
                           tmp_path / "work", progress=False)
    _refused(lambda: trainer.stage1(StageConfig(steps=2), lambda step: {}), path, marker)


def test_detector_checkpoints_that_run_code_are_refused(tmp_path):
    from detectors import create_detector
    from detectors.train_state import load_checkpoint, load_weights

    marker = tmp_path / "pwned"
    path = _evil(tmp_path / "best.pt", marker)
    _refused(lambda: load_checkpoint(path), path, marker)
    _refused(lambda: load_weights(create_detector("segformer"), path), path, marker)


@pytest.mark.parametrize("detector", ["mvss_net", "mesorch", "pscc_net", "iml_vit", "segformer"])
def test_weight_files_that_run_code_are_refused(tmp_path, detector):
    from detectors import create_detector

    marker = tmp_path / "pwned"
    path = _evil(tmp_path / "weights.pth", marker)
    _refused(lambda: create_detector(detector, pretrained_path=str(path)), path, marker)


def test_backbone_weight_files_that_run_code_are_refused(tmp_path):
    from sigma.backbone import FrozenBackbone

    marker = tmp_path / "pwned"
    path = _evil(tmp_path / "backbone.pth", marker)
    _refused(lambda: FrozenBackbone("tf_efficientnet_lite0", pretrained_path=str(path)), path, marker)


def test_feature_banks_that_run_code_are_refused(tmp_path, capsys):
    common = ["experiment=smoke", f"paths.home={tmp_path / 'home'}", f"paths.results={tmp_path / 'res'}",
              "sigma_budget.stage1_steps=1", "sigma_budget.stage2_steps=1", "profile.num_workers=0"]
    assert main(["train-sigma", "--stage", "1", *common]) == 0
    banks = list((tmp_path / "home" / "cache" / "sigma").glob("*/data.pt"))
    assert len(banks) == 1
    marker = tmp_path / "pwned"
    _evil(banks[0], marker)
    assert main(["train-sigma", "--stage", "1", *common]) == 2
    assert not marker.exists(), "the feature bank ran code on load"
    err = capsys.readouterr().err
    assert str(banks[0]) in err and "weights_only" in err
