"""Data layer: the Sample schema, robust image I/O, pairs manifests, parquet corpora, IML datasets, transforms."""

from benchmarks.data.errors import DataError
from benchmarks.data.schema import PAIR_KEYS, SAMPLE_KEYS, validate_sample

__all__ = ["DataError", "PAIR_KEYS", "SAMPLE_KEYS", "validate_sample"]
