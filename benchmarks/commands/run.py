"""`bench run`: the downstream comparison end to end, one (generator, detector) cell at a time.

    bench run --generator sigma --detector all                       # what `make run` runs (plus its rows)
    bench run --generator sigma,pixel_diff,oracle --detector segformer
    bench run --generator all --detector all --profile gpu-paper      # SIGMA, every baseline and oracle

For each generator G: annotate the editing corpus (``--pairs``, default the synthetic suite's corpus) with
G into ``<paths.runs>/annotate/<G>-<key>/`` (PNG masks + IMDL-BenCo ``iml.json``; ``key`` hashes the
generator's resolved config, the bytes of its weights files and the corpus path, so a new checkpoint gets
new masks and an unchanged one reuses them; ``oracle`` uses the corpus's ground-truth masks). The
corpus's own ``split`` column (else a hash of the id) holds the same pairs out for every generator; they
choose each detector's checkpoint on *G's* masks, as a user without ground truth would; test sets are
never used for that. Then, for each detector D: train, test on the profile's test datasets, and publish
the cell into ``<paths.results>/runs/<G>/<D>/<profile>/seed<k>/`` (:mod:`benchmarks.downstream.cells`; ``seed=k``
trains another seed beside it).

A cell is finished when its run folder holds ``cell.json`` for the same test sets and test geometry; a
re-run skips finished cells (``--force`` redoes them), re-tests a trained detector asked for other test
sets, and resumes an interrupted training from its ``last.pt``. A cell whose training diverged is published as
failed with its reason (and skipped by a re-run like a finished one). Every generator also gets
``<paths.results>/runs/<G>/annotation.json`` (mask quality vs the corpus's ground truth, when it has any,
speed, counts). The run ends with the leaderboard and the figures over everything in
``<paths.results>/runs/``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from benchmarks.builders import implemented
from benchmarks.config import check_option, compose, expand
from benchmarks.data.datasets import iml_test_sets
from benchmarks.downstream import cells
from benchmarks.downstream.corpus import (annotate_corpus, annotation_key, ensure_weights, mask_quality, open_corpus,
                                          run_generators, training_data)
from benchmarks.io import write_json
from benchmarks.reporting.runs import leaderboard_and_plots

log = logging.getLogger(__name__)


def run_command(args: argparse.Namespace) -> int:
    """Every (generator, detector) cell, one line each as it finishes, then the leaderboard and figures."""
    check_option("profile", args.profile)
    overrides = [f"profile={args.profile}", *args.overrides]
    cfg = compose(overrides, command="run")
    generators = run_generators(args.generator, cfg)
    detectors = implemented("detector", expand("detector", args.detector, cfg), args.detector)
    corpus = open_corpus(cfg, args.pairs)
    sets = iml_test_sets(cfg, args.dataset, overrides)
    cells.save_test_examples(cfg, sets)
    log.info("bench run: generators %s x detectors %s on %s; test sets %s", generators, detectors, corpus.pairs,
             [n for n, _ in sets])
    start = time.perf_counter()
    counts = {"done": 0, "skipped": 0, "failed": 0}
    for generator in generators:
        gcfg = compose([*overrides, f"generator={generator}"], command="run")
        ensure_weights(gcfg, generator)
        key = annotation_key(gcfg, corpus) if generator != "oracle" else "truth"
        items, annotation = annotate_corpus(gcfg, generator, corpus, key)
        annotation = {**annotation, "key": key, "quality_vs_truth": mask_quality(items, corpus.truth)}
        write_json(Path(cfg.paths.results) / "runs" / generator / "annotation.json", annotation)
        cells.save_corpus_examples(cfg, generator, items, corpus)
        data = training_data(cfg, generator, key, items, corpus, annotation["source"])
        for detector in detectors:
            status, cell = cells.run_cell(cfg, overrides, generator, detector, data, sets, annotation, args.force)
            counts[status] += 1
            if cell.get("status") == "failed":
                print(f"[failed] {generator} x {detector} (seed {cell['seed']}): {cell['reason']} "
                      f"({time.perf_counter() - start:.0f} s so far)", flush=True)
                continue
            mean = np.mean([m["f1_per_image"] for m in cell["metrics"].values()])
            print(f"[{status}] {generator} x {detector}: mean F1 {mean:.3f} over {len(cell['metrics'])} test sets "
                  f"({time.perf_counter() - start:.0f} s so far)", flush=True)
    print(f"bench run: {counts['done']} cell(s) run, {counts['skipped']} finished earlier, {counts['failed']} failed "
          f"(never averaged in), {time.perf_counter() - start:.0f} s")
    md, paths = leaderboard_and_plots(cfg)
    print(md)
    print("\n".join(str(p) for p in paths))
    return 0
