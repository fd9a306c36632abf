"""`bench annotate`: a pairs corpus (manifest folder or parquet) through one mask generator into PNG masks,
an IMDL-BenCo list and a provenance record (the engine and the folder layout: :mod:`benchmarks.annotation`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from benchmarks.annotation.job import annotate_with_config
from benchmarks.annotation.loop import AnnotateOptions
from benchmarks.annotation.shards import merge
from benchmarks.config import check_option, compose
from benchmarks.data.datasets import ensure_suite
from benchmarks.data.pair_sources import open_source
from benchmarks.distributed import rank_world
from benchmarks.generators.quality_filter import with_quality_filter

log = logging.getLogger(__name__)


def annotate_command(args: argparse.Namespace) -> int:
    """Annotate --pairs into --out (or only merge its shards); exit 1 when nothing was annotated."""
    check_option("profile", args.profile)
    if args.merge_only and args.out:  # needs neither the generator nor the config
        out = Path(args.out)
        prov = merge(out, open_source(args.pairs) if args.pairs else None, args.limit, args.on_error)
        return _report(out, with_quality_filter(out, prov, args.min_quality))
    name = check_option("generator", args.generator)
    cfg = compose([f"profile={args.profile}", f"generator={name}", *args.overrides], command="annotate")
    pairs = args.pairs
    if pairs is None:
        pairs = str(ensure_suite(cfg) / "corpus")
        log.info("no --pairs: annotating the synthetic suite's editing corpus %s", pairs)
    out = Path(args.out or Path(cfg.paths.runs) / "annotate" / f"{name}-{Path(pairs).name or 'pairs'}").resolve()
    options = AnnotateOptions(
        batch_size=args.batch_size or int(cfg.profile.batch_size), shard_size=args.shard_size,
        num_workers=int(cfg.profile.num_workers) if args.num_workers is None else args.num_workers,
        on_error=args.on_error, soft=args.soft, limit=args.limit, compile=args.compile,
        retry_skipped=args.retry_skipped, min_quality=args.min_quality)
    source = open_source(pairs)
    if args.merge_only:
        return _report(out, with_quality_filter(out, merge(out, source, args.limit, args.on_error), args.min_quality))
    prov = annotate_with_config(cfg, pairs, out, options, source=source)
    if prov is None:
        rank, world = rank_world()
        print(f"bench annotate: rank {rank}/{world} finished its pairs; the last rank to finish merges into {out}")
        return 0
    return _report(out, prov)


def _report(out: Path, prov: dict[str, Any]) -> int:
    """Print the summary; a run that annotated nothing at all is a failure (exit 1), saying why."""
    c = prov["counts"]
    skipped = ", ".join(f"{k} {v}" for k, v in c["skipped_by_reason"].items()) or "none"
    todo = "" if prov["complete"] else f", {c['missing']} still to do"
    print(f"bench annotate: {c['annotated']} of {c['pairs']} pairs annotated, {c['skipped']} skipped ({skipped}), "
          f"{c['original_resized']} originals resized, {c['empty_instruction']} empty instructions{todo}; "
          f"{prov['timing']['pairs_per_s']} pairs/s")
    if "quality_filter" in prov:
        q = prov["quality_filter"]
        print(f"quality filter (>= {q['min_quality']}): {q['kept']} pairs kept in iml.json, {q['excluded']} excluded "
              f"(listed in {out / q['excluded_list']}), {q['unscored']} without a score kept")
    print(f"{out / 'iml.json'}\n{out / 'provenance.json'}")
    if c["annotated"] == 0 and prov["complete"]:
        print(f"bench annotate: error: nothing annotated: {c['pairs']} pair(s), {c['skipped']} skipped ({skipped}); "
              f"the reasons are in {out / 'skipped.jsonl'}", file=sys.stderr)
        return 1
    return 0
