#!/usr/bin/env bash
# One detector experiment of results/detectors/NOTES-issue14.md: train on the suite's ground-truth corpus list
# (checkpoint chosen on its held-out corpus pairs), then score the chosen checkpoint on synth_val (val photos).
#
#   bash benchmarks/perf/detector_experiment.sh NAME DETECTOR [key=value ...]
#
# Runs and caches go to EXP_HOME (default .bench/experiments/home), leaderboards to EXP_RESULTS/NAME (default
# .bench/experiments/results/NAME), apart from the committed results; one torch thread unless OMP_NUM_THREADS
# says otherwise. The synth_val F1 is in the printed table; the corpus-val curve in the run's val.csv.
set -euo pipefail
name=$1 detector=$2
shift 2
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export SIGMA_BENCH_HOME=${EXP_HOME:-.bench/experiments/home}
results=${EXP_RESULTS:-.bench/experiments/results}/$name
common=(--detector "$detector" --train synth --name "$name" train.threads="$OMP_NUM_THREADS" paths.results="$results" "$@")
bench train-detector "${common[@]}" train.progress=false
bench eval-detector "${common[@]}" --dataset synth_val
