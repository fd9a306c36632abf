"""Leave-one-family-out (``bench train-sigma --variant lofo``): how much SIGMA's masks depend on having seen
a manipulation family's edit implementation in training.

For each family F, SIGMA (the full model, the profile's budget) is trained with F's pairs left out of every
training set: the Stage I inpainting set, the calibration pairs made from it, and the self-training corpus
(``sigma.exclude_families=[F]``). It is tested on F's benchmark (``synth_<F>``) and on F's generalization
set (``synth_general_<F>``: other edit and round-trip code), beside the model trained on every family (the
in-family model, the committed configuration) on the same sets. The drop is in-family minus held-out F1.

Each family is a cell, ``<results>/sigma/<profile>/lofo/<F>.json`` (the in-family model's is ``all.json``):
a finished cell is read back, an interrupted training resumes from its stage checkpoints, so the protocol
is built over several runs and committed cell by cell. Report: ``<results>/leaderboards/sigma_lofo.md``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from benchmarks.config import compose
from benchmarks.data.datasets import pair_datasets
from benchmarks.distributed import device_for
from benchmarks.io import atomic_write, write_json
from benchmarks.paths import config_roots, portable_tree
from benchmarks.sigma_training.inputs import FAMILIES

log = logging.getLogger(__name__)

ALL = "all"  # the in-family model's cell: trained on every family
METRIC = "all/f1_per_image"


def family_sets(family: str) -> list[str]:
    """The test sets of one family: its benchmark, then its generalization set."""
    return [f"synth_{family}", f"synth_general_{family}"]


def cell_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.results) / "sigma" / str(cfg.profile.get("trained_models") or cfg.profile.name) / "lofo"


def run_cell(cfg: DictConfig, overrides: list[str], left_out: str, families: list[str]) -> dict[str, Any]:
    """Train SIGMA without `left_out` (``ALL``: nothing left out) and score it on the sets of `families`."""
    from benchmarks.sigma_training.ablations import score_net, test_sets
    from benchmarks.sigma_training.data import prepare_data
    from benchmarks.sigma_training.stages import train_variant
    from sigma.text import TextEncoder

    extra = [] if left_out == ALL else [f"+sigma.exclude_families=[{left_out}]"]
    ccfg = compose([*overrides, *extra], command="train-sigma")
    device = device_for(ccfg.device)
    start = time.perf_counter()
    data = prepare_data(ccfg, device)
    net, summary = train_variant(ccfg, data, "sigma (full)", device)
    names = [name for f in families for name in family_sets(f)]
    sets = test_sets(ccfg, pair_datasets(ccfg, ",".join(names), overrides), device)
    text = TextEncoder(ccfg.sigma.model.text_encoder, path=ccfg.sigma.text_encoder_path)
    scores = score_net(net, text, sets, device)
    return {"left_out": left_out, "scores": scores, "seconds": round(time.perf_counter() - start, 1),
            "pairs": {k: data.info.get(k) for k in ("pairs_stage1", "pairs_calibration", "pairs_corpus")},
            "data": portable_tree(data.info, config_roots(ccfg.paths)),
            "stage_seconds": {s: (summary.get(s) or {}).get("seconds") for s in ("stage1", "stage2")}}


def in_family_from_ablations(cfg: DictConfig) -> dict[str, Any] | None:
    """The in-family cell read from the ablations' full row (the same model: the profile's full SIGMA on the
    default bank) when that row was trained on this configuration's bank (its key's ``data`` is this
    bank's key; cheap, no pixel is read) and scored on every family's sets; None otherwise."""
    from benchmarks.sigma_training.ablations import cell_path
    from benchmarks.sigma_training.data import bank_key

    path = cell_path(cfg, "sigma (full)")
    if not path.is_file():
        return None
    row = json.loads(path.read_text())
    wanted = [name for f in FAMILIES for name in family_sets(f)]
    if (row.get("key") or {}).get("data") != bank_key(cfg)[0] or any(n not in row["scores"] for n in wanted):
        return None
    return {"left_out": ALL, "scores": {n: row["scores"][n] for n in wanted}, "seconds": row.get("seconds"),
            "source": f"{path.parent.name}/{path.name} (the ablations' full row, same bank key)"}


def run_lofo(cfg: DictConfig, overrides: list[str], families: list[str] | None = None) -> Path:
    """Every asked family's cell, each reused when finished, then the in-family model's (read from the
    ablations' full row when it matches, trained otherwise), then the report. Held-out cells come first:
    they are what the protocol adds."""
    families = list(families or FAMILIES)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"--family {unknown}: unknown; the families are {list(FAMILIES)}")
    folder = cell_dir(cfg)
    cells = {}
    for left_out in [*families, ALL]:
        path = folder / f"{left_out}.json"
        if path.is_file():
            cells[left_out] = json.loads(path.read_text())
            continue
        if left_out == ALL:
            reused = in_family_from_ablations(cfg)
            if reused is not None:
                log.info("leave-one-family-out: the in-family model from %s", reused["source"])
                cells[ALL] = reused
                continue
        log.info("leave-one-family-out: training without %s", left_out if left_out != ALL else "nothing")
        wanted = FAMILIES if left_out == ALL else [left_out]
        cells[left_out] = run_cell(cfg, overrides, left_out, list(wanted))
        write_json(path, cells[left_out])
    for path in sorted(folder.glob("*.json")):  # cells of other families from earlier runs
        cells.setdefault(path.stem, json.loads(path.read_text()))
    return write_report(cfg, cells)


def rows(cells: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per held-out family with a cell: in-family and held-out F1 on its benchmark and generalization set."""
    if ALL not in cells:
        return []
    full = cells[ALL]["scores"]
    out = []
    for family in FAMILIES:
        if family not in cells:
            continue
        bench, general = family_sets(family)
        held = cells[family]["scores"]
        row = {"family": family}
        for label, name in (("benchmark", bench), ("general", general)):
            if name in held and name in full:
                row[f"{label}_in_family"] = full[name][METRIC]
                row[f"{label}_held_out"] = held[name][METRIC]
                row[f"{label}_drop"] = row[f"{label}_in_family"] - row[f"{label}_held_out"]
        out.append(row)
    return out


def write_report(cfg: DictConfig, cells: dict[str, dict[str, Any]]) -> Path:
    """``<results>/leaderboards/sigma_lofo.md``: the drop per family and its mean, with what each cell holds."""
    table = rows(cells)
    lines = ["# SIGMA leave-one-family-out", "",
             "SIGMA trained without one manipulation family (its pairs left out of the Stage I set, the calibration "
             "pairs and the self-training corpus), tested on that family's benchmark (`synth_<family>`) and "
             "generalization set (`synth_general_<family>`, other edit and round-trip code), beside the model "
             "trained on every family. Pixel F1 per image at threshold 0.5 over manipulated pairs; drop = "
             "in-family minus held-out.", "",
             "| held-out family | benchmark F1, in-family | held out | drop | general F1, in-family | held out | drop |",
             "|---|---|---|---|---|---|---|"]

    def fmt(row: dict[str, Any], key: str, sign: bool = False) -> str:
        v = row.get(key)
        return "n/a" if v is None else (f"{v:+.3f}" if sign else f"{v:.3f}")

    for row in table:
        lines.append(f"| {row['family']} | {fmt(row, 'benchmark_in_family')} | {fmt(row, 'benchmark_held_out')} | "
                     f"{fmt(row, 'benchmark_drop', True)} | {fmt(row, 'general_in_family')} | "
                     f"{fmt(row, 'general_held_out')} | {fmt(row, 'general_drop', True)} |")
    if table:
        mean = {k: sum(r[k] for r in table if k in r) / max(1, sum(k in r for r in table))
                for k in ("benchmark_in_family", "benchmark_held_out", "benchmark_drop", "general_in_family",
                          "general_held_out", "general_drop")}
        lines.append(f"| **mean** | {fmt(mean, 'benchmark_in_family')} | {fmt(mean, 'benchmark_held_out')} | "
                     f"**{fmt(mean, 'benchmark_drop', True)}** | {fmt(mean, 'general_in_family')} | "
                     f"{fmt(mean, 'general_held_out')} | **{fmt(mean, 'general_drop', True)}** |")
    missing = [f for f in FAMILIES if f not in cells]
    if (cells.get(ALL) or {}).get("source"):
        lines += ["", f"In-family F1 from {cells[ALL]['source']}."]
    lines += ["", f"Cells: {', '.join(sorted(cells))}" + (f"; missing: {', '.join(missing)} "
                                                           "(`bench train-sigma --variant lofo` trains them)"
                                                           if missing else "") + ".",
              "", "## Reproduce", "", f"```\nbench train-sigma --variant lofo --profile {cfg.profile.name}\n```", "",
              f"Cells (scores, pairs trained on, timings): `{Path(cfg.paths.results).name}/{cell_dir(cfg).relative_to(Path(cfg.paths.results)).as_posix()}"
              "/<family>.json`.", ""]
    out = Path(cfg.paths.results) / "leaderboards" / "sigma_lofo.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, "\n".join(lines))
