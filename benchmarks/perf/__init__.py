"""Benchmark scripts: speed and memory goals measured as ratios within one run (never timed unit tests)."""
