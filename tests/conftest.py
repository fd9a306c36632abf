"""Shared fixtures: everything tiny and built in code; generated data goes to a temporary home."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _bench_home(tmp_path_factory):
    """Keep every command's outputs out of the checkout's .bench/ during tests."""
    home = tmp_path_factory.mktemp("bench-home")
    old = os.environ.get("SIGMA_BENCH_HOME")
    os.environ["SIGMA_BENCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("SIGMA_BENCH_HOME", None)
    else:
        os.environ["SIGMA_BENCH_HOME"] = old
