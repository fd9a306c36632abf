"""The `bench` command line: help at every level, flags and overrides, data synth end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.cli import build_parser, main

SUBCOMMANDS = ["data", "annotate", "eval-generators", "train-sigma", "train-detector", "eval-detector", "run",
               "leaderboard", "plots"]


def test_top_level_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("argv", [[c] for c in SUBCOMMANDS] + [["data", "synth"], ["data", "check"]])
def test_help_at_every_level(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: bench" in out and len(out.splitlines()) > 5


def test_eval_generators_writes_leaderboard_per_pair_scores_and_figure(tmp_path, capsys):
    import pandas as pd

    argv = ["eval-generators", "--generator", "oracle,empty,pixel_diff", "--dataset", "synth_removal,synth_splice",
            "experiment=smoke", "profile.num_workers=1", f"paths.results={tmp_path}"]
    assert main(argv) == 0
    tag = "generators_synth_removal_synth_splice"
    board = pd.read_csv(tmp_path / "leaderboards" / f"{tag}.csv", index_col="generator")
    assert board.loc["oracle", "mean/f1_per_image"] == 1.0 and board.loc["empty", "mean/f1_per_image"] == 0.0
    assert 0.0 < board.loc["pixel_diff", "synth_splice/f1_per_image"] < 1.0
    md = (tmp_path / "leaderboards" / f"{tag}.md").read_text()
    assert "per image" in md and "## Reproduce" in md
    per_pair = pd.read_csv(tmp_path / "generators" / "per_pair" / "synth_removal.csv")
    assert set(per_pair.generator) == {"oracle", "empty", "pixel_diff"} and len(per_pair) == 3 * 8
    assert (tmp_path / "figures" / f"{tag}_qualitative.png").stat().st_size > 10_000
    resolved = yaml.safe_load((tmp_path / "leaderboards" / f"{tag}.config.yaml").read_text())
    assert resolved["command"] == "eval-generators"
    assert "oracle" in capsys.readouterr().out


def test_eval_generators_on_a_pairs_folder_path(tmp_path, capsys):
    _tiny_pairs(tmp_path / "mine", ['{"id": "a", "original": "img/o.png", "edited": "img/e.jpg", "instruction": "x", '
                                    '"mask": "img/m.png"}'])
    assert main(["eval-generators", "--generator", "oracle", "--dataset", str(tmp_path / "mine"),
                 f"paths.results={tmp_path / 'res'}"]) == 0
    assert (tmp_path / "res" / "leaderboards" / "generators_mine.csv").is_file()


def test_named_flags_select_groups():
    args = build_parser().parse_args(["run", "--generator", "sigma", "--detector", "all", "--profile", "cpu-quick",
                                      "seed=3"])
    assert (args.generator, args.detector, args.profile, args.overrides) == ("sigma", "all", "cpu-quick", ["seed=3"])


def test_unknown_profile_is_a_clear_error(capsys):
    assert main(["data", "synth", "--profile", "laptop"]) == 2
    err = capsys.readouterr().err
    assert "laptop" in err and "cpu-quick" in err


def test_override_without_equals_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["data", "synth", "oops"])
    assert "key=value" in capsys.readouterr().err


def test_data_synth_writes_suite_and_resolved_config(capsys, _bench_home):
    assert main(["data", "synth", "experiment=smoke", "profile.num_workers=1"]) == 0
    out = capsys.readouterr().out
    assert "bench/removal" in out and "median" in out and "written in" in out
    suites = list(Path(_bench_home, "data", "synth").glob("default-*"))
    assert len(suites) == 1
    resolved = yaml.safe_load((suites[0] / "config.yaml").read_text())
    assert resolved["command"] == "data synth" and resolved["synth"]["n_per_benchmark"] == 8
    # a second call reuses the complete suite (same hash), it does not rebuild
    assert main(["data", "synth", "experiment=smoke", "profile.num_workers=1"]) == 0
    assert list(Path(_bench_home, "data", "synth").glob("default-*")) == suites


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("bench")
    assert exe.is_file(), "pip install -e . should have put `bench` beside the interpreter"
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "sigma-bench" in proc.stdout


def _tiny_pairs(folder: Path, lines: list[str], size: int = 8) -> None:
    from PIL import Image
    import numpy as np

    (folder / "img").mkdir(parents=True)
    Image.fromarray(np.full((size, size, 3), 90, np.uint8)).save(folder / "img" / "o.png")
    Image.fromarray(np.full((size, size, 3), 120, np.uint8)).save(folder / "img" / "e.jpg")
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4: size * 5 // 8, size // 4: size * 5 // 8] = 255
    Image.fromarray(mask).save(folder / "img" / "m.png")
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")


def test_data_check_reports_counts_and_bad_items(tmp_path, capsys):
    import json

    _tiny_pairs(tmp_path, ['{"id": "a", "original": "img/o.png", "edited": "img/e.jpg", "instruction": "x", "mask": "img/m.png"}',
                           '{"id": "b", "original": "img/gone.png", "edited": "img/e.jpg", "instruction": ""}'])
    assert main(["data", "check", str(tmp_path)]) == 1  # a bad item makes the check fail
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "pairs" and report["items"] == 2 and report["ok"] == 1
    assert report["bad_by_reason"] == {"missing": 1} and "gone.png" in report["bad_items"][0]["error"]
    assert report["mean_mask_area_of_manipulated"] == pytest.approx(9 / 64, abs=1e-4)


def test_data_check_on_a_clean_iml_list(tmp_path, capsys):
    import json

    _tiny_pairs(tmp_path, [])
    (tmp_path / "list.json").write_text(json.dumps([["img/e.jpg", "img/m.png"], ["img/o.png", "Negative"]]))
    assert main(["data", "check", str(tmp_path / "list.json")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "iml" and report["authentic"] == 1 and report["ok"] == 2


def test_train_sigma_exports_checkpoints_the_generators_load(tmp_path, capsys):
    """`bench train-sigma` end to end on the smoke suite: data bank, Stage I + II, export; then the sigma
    and grounding_only generators load what it wrote and score a benchmark."""
    common = ["experiment=smoke", f"paths.home={tmp_path / 'home'}", f"paths.results={tmp_path / 'res'}"]
    assert main(["train-sigma", *common]) == 0
    assert main(["train-sigma", "--variant", "grounding_only", *common]) == 0
    assert "data from cache" in capsys.readouterr().out  # the second run reused the prepared data
    assert (tmp_path / "res" / "sigma" / "cpu-quick" / "sigma.json").is_file()
    assert main(["eval-generators", "--generator", "sigma,grounding_only", "--dataset", "synth_splice", *common]) == 0
    import pandas as pd

    board = pd.read_csv(tmp_path / "res" / "leaderboards" / "generators_synth_splice.csv", index_col="generator")
    assert set(board.index) == {"sigma", "grounding_only"}


def test_eval_generators_runs_from_a_directory_outside_the_repo(tmp_path):
    """`bench` resolves its config paths against the project root, not the current directory: from a
    folder outside the checkout, SIGMA's committed checkpoint is found and the outputs land under the root
    (here a temporary SIGMA_BENCH_ROOT holding a link to the committed checkpoint, so that the test writes
    nothing into the checkout)."""
    import json
    import os

    import pandas as pd

    repo = Path(__file__).resolve().parents[1]
    root, cwd = tmp_path / "root", tmp_path / "somewhere" / "else"
    (root / "results" / "sigma" / "cpu-quick").mkdir(parents=True)
    for name in ("sigma.pt", "sigma.json"):
        os.symlink(repo / "results" / "sigma" / "cpu-quick" / name, root / "results" / "sigma" / "cpu-quick" / name)
    _tiny_pairs(cwd / "pairs", [json.dumps({"id": str(i), "original": "img/o.png", "edited": "img/e.jpg",
                                            "instruction": "brighten it", "mask": "img/m.png"}) for i in range(2)],
                size=32)  # SIGMA takes 16 px a side at least
    exe = Path(sys.executable).with_name("bench")
    env = {**os.environ, "SIGMA_BENCH_ROOT": str(root), "PYTHONPATH": str(repo)}
    proc = subprocess.run([str(exe), "eval-generators", "--generator", "sigma,pixel_diff", "--dataset", "pairs"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    board = pd.read_csv(root / "results" / "leaderboards" / "generators_pairs.csv", index_col="generator")
    assert set(board.index) == {"sigma", "pixel_diff"}
    report = (root / "results" / "leaderboards" / "generators_pairs.report.json").read_text()
    assert str(tmp_path) not in report.replace(str(cwd / "pairs"), "")  # recorded paths are relative to their roots
