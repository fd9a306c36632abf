"""SIGMA-bench harness: data, mask generators, metrics, runners, leaderboards, plots and the `bench` CLI.

This package sits on top of the two model libraries (`sigma`, `detectors`); they never import it.
"""

__version__ = "0.1.0"
