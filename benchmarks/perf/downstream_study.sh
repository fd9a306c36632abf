#!/usr/bin/env bash
# The downstream study (profile.study of the cpu-study profile, or PROFILE=gpu-paper), built cell by cell and
# committed as each cell finishes, so that the study (64 cells of 7-14 minutes each on one core of a 2-core
# CPU) survives a session that ends part-way.
#
#   bash benchmarks/perf/downstream_study.sh                              # every cell of profile.study
#   JOBS=2 JOB=0 bash benchmarks/perf/downstream_study.sh &               # two jobs on a 2-core machine:
#   JOBS=2 JOB=1 bash benchmarks/perf/downstream_study.sh &               # each takes every other generator
#   bash benchmarks/perf/downstream_study.sh oracle:mvss_net:0 pixel_diff:all:1     # named cells
#   PROFILE=gpu-paper bash benchmarks/perf/downstream_study.sh            # the same study on a GPU machine
#
# The grid is the profile's `study` (configs/profile/cpu-study.yaml; `python -m benchmarks.downstream.study
# cpu-study` lists it). On a CPU profile one torch thread per job; two jobs never annotate the same
# generator's corpus at once (they split by generator). gpu-paper builds its 512 px suite and trains its
# SIGMA heads on the first cell that needs them (hours on one GPU; never needed by tests or CI). Finished cells are skipped by `bench run`, so the same line resumes a
# study. COMMIT=0 leaves the cells uncommitted.
set -euo pipefail
profile=${PROFILE:-cpu-study}
extra=()
if [[ $profile == cpu-* ]]; then
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    extra=(train.threads="$OMP_NUM_THREADS")
fi
bench=${BENCH:-.venv/bin/bench}
python=${PYTHON:-.venv/bin/python}
cells=("$@")
if [[ ${#cells[@]} == 0 ]]; then
    mapfile -t cells < <("$python" -m benchmarks.downstream.study "$profile")
fi
jobs=${JOBS:-1} job=${JOB:-0}
mapfile -t generators < <(printf '%s\n' "${cells[@]}" | cut -d: -f1 | awk '!seen[$0]++')
for cell in "${cells[@]}"; do
    IFS=: read -r generator detectors seed <<<"$cell"
    for i in "${!generators[@]}"; do [[ ${generators[$i]} == "$generator" ]] && index=$i; done
    (( index % jobs == job )) || continue
    "$bench" run --profile "$profile" --generator "$generator" --detector "$detectors" seed="$seed" \
        "${extra[@]}" train.progress=false
    if [[ ${COMMIT:-1} == 1 ]]; then
        paths=(results/runs/"$generator" results/leaderboards results/figures/"$profile")
        flock /tmp/sigma-bench-git.lock bash -c '
            git add -- "$@" && { git diff --cached --quiet -- "$@" ||
            git commit -q -m "'"$profile"' cells: '"$generator"' x '"$detectors"', seed '"$seed"' (bash benchmarks/perf/downstream_study.sh '"$cell"')" -- "$@"; }' _ "${paths[@]}"
    fi
done
