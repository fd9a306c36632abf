"""`bench`: the command line of SIGMA-bench.

Every subcommand composes ``configs/config.yaml``. Named flags select config groups
(``--generator sigma --detector all --dataset all --profile cpu-quick``), and any extra ``key=value``
arguments are Hydra overrides (``synth.n_corpus=200 seed=1``). Each command writes its resolved config
beside its outputs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks import __version__

log = logging.getLogger("bench")

# (subcommand, data subcommand) -> (module of benchmarks.commands, function); imported on use so that
# `bench --help` stays fast
COMMANDS = {("data", "synth"): ("data", "synth_command"), ("data", "check"): ("data", "check_command"),
            ("annotate", None): ("annotate", "annotate_command"),
            ("eval-generators", None): ("eval_generators", "eval_generators_command"),
            ("train-sigma", None): ("train_sigma", "train_sigma_command"),
            ("train-detector", None): ("train_detector", "train_detector_command"),
            ("eval-detector", None): ("eval_detector", "eval_detector_command"),
            ("run", None): ("run", "run_command"), ("leaderboard", None): ("report", "leaderboard_command"),
            ("plots", None): ("report", "plots_command")}

EPILOG = "Extra key=value arguments are Hydra overrides, e.g. `synth.n_corpus=200 seed=1 geometry.size=128`."


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def _command(sub: Any, name: str, help_text: str, description: str | None = None,
             epilog: str | None = EPILOG) -> argparse.ArgumentParser:
    """A subcommand parser with the shared help layout (description defaults to the one-line help)."""
    return sub.add_parser(name, formatter_class=_Formatter, epilog=epilog, help=help_text,
                          description=description or f"{help_text[0].upper()}{help_text[1:]}.")


def _common(p: argparse.ArgumentParser, *flags: str) -> None:
    p.add_argument("--profile", default="cpu-quick",
                   help="config profile (configs/profile/): cpu-quick, cpu-study (the downstream study) or gpu-paper")
    if "generator" in flags:
        p.add_argument("--generator", default="sigma", help="mask generator (configs/generator/), a comma list, or 'all'")
    if "detector" in flags:
        p.add_argument("--detector", default="all", help="IML detector (configs/detector/), a comma list, or 'all'")
    if "dataset" in flags:
        p.add_argument("--dataset", default="all",
                       help="dataset (configs/dataset/), a comma list, 'all' (the profile's test sets), or a folder path")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="Hydra overrides")


def build_parser() -> argparse.ArgumentParser:
    """The `bench` parser: every subcommand with its flags and help."""
    parser = argparse.ArgumentParser(
        prog="bench", formatter_class=_Formatter, epilog=EPILOG,
        description="SIGMA-bench: turn (original, edited, instruction) pairs into masks, score mask generators, "
                    "and train/test IML detectors on each generator's masks.")
    parser.add_argument("--version", action="version", version=f"sigma-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = _command(sub, "data", "build the offline synthetic suite; inspect datasets",
                    "Data utilities: `synth` writes the offline synthetic suite, `check` loads a dataset end to end "
                    "and reports what it holds and what is wrong.")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    synth = _command(
        data_sub, "synth", "write the synthetic suite (cached by config hash)",
        "Write the embedded synthetic suite from photographs shipped in the dependencies' wheels: an "
                    "inpainting set (SIGMA Stage I), an editing corpus (masks kept apart), and five test "
                    "benchmarks. Prints per-set pair count, mean mask area and median PSNR outside the edits.")
    synth.add_argument("--synth", default="default", help="suite config (configs/synth/): default, holdout, general, ...")
    synth.add_argument("--force", action="store_true", help="rebuild even when a complete suite with this hash exists")
    _common(synth)
    check = _command(
        data_sub, "check", "load every item of a dataset and report counts and errors",
        "Load a pairs-manifest folder, an IMDL-BenCo JSON, a Tp/+Gt/ folder, or a public dataset via its "
                    "adapter, decode every item, and print counts, mask areas and every bad item with its reason.", epilog=None)
    check.add_argument("path", help="dataset folder or file")
    check.add_argument("--adapter", default=None, help="public-dataset adapter name (e.g. casia2, nist16)")
    check.add_argument("--limit", type=int, default=None, help="check only the first N items")
    check.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    annotate = _command(
        sub, "annotate", "annotate a pairs corpus with a mask generator (PNG masks + IMDL-BenCo JSON)",
        "Stream (original, edited, instruction) pairs from a pairs-manifest folder or parquet files "
                    "through one mask generator (batched, no grad, bf16 on CUDA) and write DIR/masks/<id>.png, "
                    "DIR/iml.json (IMDL-BenCo list), DIR/manifest.jsonl, DIR/skipped.jsonl, DIR/provenance.json "
                    "and DIR/config.yaml. Work is committed shard by shard (DIR/shards/), so the same command "
                    "resumes after any interruption; under torchrun (or with RANK/WORLD_SIZE set) ranks take "
                    "pair i % WORLD_SIZE and the last to finish merges. Skipped pairs are final unless "
                    "--retry-skipped.")
    annotate.add_argument("--pairs", default=None,
                          help="pairs-manifest folder, or parquet file / folder / glob; when omitted, the synthetic "
                               "suite's editing corpus")
    annotate.add_argument("--out", default=None, help="output folder; when omitted, <paths.runs>/annotate/<generator>-<pairs>")
    annotate.add_argument("--batch-size", type=int, default=None, help="pairs per batch; when omitted, the profile's")
    annotate.add_argument("--shard-size", type=int, default=1000,
                          help="pairs per committed shard (a shard closes at the first batch boundary past it)")
    annotate.add_argument("--num-workers", type=int, default=None,
                          help="DataLoader decode workers per rank; when omitted, the profile's")
    annotate.add_argument("--on-error", default="skip", choices=["skip", "raise"],
                          help="bad pair: skip (log, count, list in skipped.jsonl, go on) or raise (stop, naming the file)")
    annotate.add_argument("--limit", type=int, default=None, help="annotate only the pairs with global index < N")
    annotate.add_argument("--soft", action="store_true", help="write the soft mask as 8-bit (0..255) instead of 0/255")
    annotate.add_argument("--compile", action="store_true", help="torch.compile the generator's forward")
    annotate.add_argument("--retry-skipped", action="store_true", help="retry pairs an earlier run skipped")
    annotate.add_argument("--min-quality", type=float, default=None,
                          help="leave pairs whose mask quality score (0..1, the generator's) is below this out of "
                               "iml.json; they stay in manifest.jsonl and are listed in quality_excluded.jsonl")
    annotate.add_argument("--merge-only", action="store_true",
                          help="only merge the committed shards of --out into iml.json, manifest.jsonl, provenance")
    _common(annotate, "generator")
    evalg = _command(
        sub, "eval-generators", "score mask generators against ground-truth masks (pixel F1 / IoU)",
        "Run each generator on each dataset's pairs and score its masks against the ground truth: "
                    "per-image F1 / IoU at threshold 0.5 (headline), pooled F1, oracle best-threshold F1, pixel AUC. "
                    "Writes leaderboards (CSV + Markdown), per-pair scores and a qualitative figure under results/.")
    evalg.add_argument("--tag", default=None, help="leaderboard file name (default: generators, or generators_<datasets>)")
    _common(evalg, "generator", "dataset")
    trains = _command(
        sub, "train-sigma", "train the SIGMA annotator (Stage I, Stage II)",
        "Prepare SIGMA's training data (sigma.data.source=bank, the default: frozen-backbone features of "
                    "the inpainting set, of editor round-trip calibration pairs made with a diffusers VAE or the "
                    "offline stand-in autoencoder, and of the unlabelled corpus, computed once and cached; "
                    "sigma.data.source=stream: pairs read per step from pairs manifests or parquet by DataLoader "
                    "workers, calibration pairs made per step, features on the fly, memory flat in the number of "
                    "pairs, bad pairs counted in <work>/skipped.jsonl or, with sigma.data.on_error=raise, stopping), "
                    "train Stage I (exact masks) and Stage II (calibration, EMA self-training, edit-noise "
                    "disentanglement), and export the heads to sigma.export (results/sigma/<profile>/sigma.pt). An "
                    "interrupted run resumes exactly. Under torchrun (--nproc-per-node N) the processes train "
                    "data-parallel (sigma.batch_size is the global batch; gloo on CPU, NCCL on GPU; rank 0 writes). "
                    "--variant grounding_only trains the instruction-only baseline; --variant ablations trains every "
                    "ablation and writes results/leaderboards/sigma_ablations.md; --variant lofo trains SIGMA once "
                    "without each manipulation family (--family: some of them) and writes "
                    "results/leaderboards/sigma_lofo.md.")
    trains.add_argument("--stage", default="all", choices=["1", "2", "all"], help="which stages to run")
    trains.add_argument("--variant", default="sigma", choices=["sigma", "grounding_only", "ablations", "lofo"],
                        help="what to train")
    trains.add_argument("--rows", default=None,
                        help="with --variant ablations: the rows to run, a comma list of slugs (no_text_prior, "
                             "pixel_diff, ...; default: every row); rows already scored are reused, the report holds all")
    trains.add_argument("--family", default=None,
                        help="with --variant lofo: the families to leave out, a comma list (default: every family)")
    _common(trains)
    traind = _command(
        sub, "train-detector", "train IML detectors on an IML training list (a generator's masks or ground truth)",
        "Train each detector with the one trainer (AdamW, warmup + cosine, bf16 on CUDA, exact resume, "
                    "DDP under torchrun) on --train: 'synth' (the synthetic suite's ground-truth corpus, validated on "
                    "its iml_val.json), an IMDL-BenCo JSON list, a Tp/+Gt/ folder, '<adapter>:<root>', or an IML "
                    "dataset config. The checkpoint is chosen on a validation set (--val, or train.val_fraction held "
                    "out), never a test set. Writes <paths.runs>/detectors/<train-name>/<detector>/: last.pt, best.pt, "
                    "log.csv, val.csv, config.yaml, summary.json. An unfinished run folder is resumed.")
    traind.add_argument("--train", default="synth", help="training data: synth, an IML list path, <adapter>:<root>, "
                                                         "or an IML dataset config name")
    traind.add_argument("--val", default=None, help="validation IML list (default: the synth suite's iml_val.json, "
                                                    "else train.val_fraction of the training list)")
    traind.add_argument("--name", default=None, help="run folder name under <paths.runs>/detectors/ (default: from --train)")
    traind.add_argument("--force", action="store_true", help="delete an existing run folder and train afresh")
    _common(traind, "detector")
    evald = _command(
        sub, "eval-detector", "evaluate trained detectors (headline metrics + robustness sweep)",
        "Run each trained detector (best.pt of its run, or --checkpoint) on each test dataset and score "
                    "it: per-image F1 / IoU at threshold 0.5 (headline), pooled F1, oracle best-threshold F1, pixel "
                    "AUC, image AUC / accuracy. With the robustness sweep (on in gpu-paper, --robustness to force), "
                    "also F1 under JPEG quality 50..100, Gaussian blur sigma 0..3 and Gaussian noise std 0..0.1. "
                    "Writes <run>/eval/<dataset>.json, per-image CSVs, metrics.csv and robustness.csv.")
    evald.add_argument("--train", default="synth", help="which training run to test (as given to train-detector --train)")
    evald.add_argument("--name", default=None, help="run folder name, when train-detector was given --name")
    evald.add_argument("--checkpoint", default=None, help="a checkpoint file to test instead (one --detector)")
    evald.add_argument("--robustness", action=argparse.BooleanOptionalAction, default=None,
                       help="run the perturbation sweep (default: train.test.robustness of the profile)")
    _common(evald, "detector", "dataset")
    run = _command(
        sub, "run", "end to end: annotate, train detectors, test, report",
        "Annotate the editing corpus with a generator, train each detector on the masks, test on the "
                    "profile's test datasets, and publish each (generator, detector) cell in results/runs/<G>/<D>/; "
                    "then the leaderboard and figures. '--generator all' = SIGMA, every baseline and oracle (not the "
                    "degenerate empty/full). A re-run skips finished cells.")
    run.add_argument("--force", action="store_true", help="redo finished cells (annotations stay cached by key)")
    run.add_argument("--pairs", default=None,
                     help="pairs-manifest folder to annotate (default: the synthetic suite's editing corpus)")
    _common(run, "generator", "detector", "dataset")
    _common(_command(sub, "leaderboard", "build the downstream leaderboard (CSV + Markdown) from the cells in "
                                         "results/runs/"))
    _common(_command(sub, "plots", "draw the paper figures (PNG + PDF) from the cells in results/runs/"))
    return parser


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", force=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `bench` command; bad input (a DataError, ValueError or missing file) is one line on stderr, exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["bench", *(sys.argv[1:] if argv is None else argv)])  # recorded in outputs
    _setup_logging(getattr(args, "verbose", False))
    bad = [o for o in getattr(args, "overrides", []) if "=" not in o]
    if bad:
        parser.error(f"unexpected argument(s) {bad}: extra arguments must be Hydra overrides key=value")
    from benchmarks.data.errors import DataError

    module, function = COMMANDS[(args.command, getattr(args, "data_command", None))]
    try:
        return getattr(importlib.import_module(f"benchmarks.commands.{module}"), function)(args)
    except (DataError, ValueError, FileNotFoundError) as exc:
        if args.verbose:
            raise
        print(f"bench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
