#!/usr/bin/env bash
# The cpu-study downstream comparison, built cell by cell and committed as each cell finishes, so that the
# study (about 60 cells of 4-9 minutes on a 2-core CPU) survives a session that ends part-way.
#
#   bash benchmarks/perf/downstream_study.sh GENERATOR:DETECTOR:SEED [...]
#   bash benchmarks/perf/downstream_study.sh oracle:all:0 pixel_diff:mvss_net:1
#
# One torch thread per job (two jobs share the 2 cores: give each its own generators, so no two jobs annotate
# the same corpus at once). Finished cells are skipped by `bench run`, so the same line resumes a study.
# COMMIT=0 leaves the cells uncommitted.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
bench=${BENCH:-.venv/bin/bench}
for cell in "$@"; do
    IFS=: read -r generator detectors seed <<<"$cell"
    "$bench" run --profile cpu-study --generator "$generator" --detector "$detectors" seed="$seed" \
        train.threads="$OMP_NUM_THREADS" train.progress=false
    if [[ ${COMMIT:-1} == 1 ]]; then
        paths=(results/runs/"$generator" results/leaderboards results/figures/cpu-study)
        flock /tmp/sigma-bench-git.lock bash -c '
            git add -- "$@" && { git diff --cached --quiet -- "$@" ||
            git commit -q -m "cpu-study cells: '"$generator"' x '"$detectors"', seed '"$seed"' (bash benchmarks/perf/downstream_study.sh '"$cell"')" -- "$@"; }' _ "${paths[@]}"
    fi
done
