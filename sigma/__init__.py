"""SIGMA annotator: semantic-feature differencing with an instruction-derived prior (model library).

Not implemented yet: see the issue "SIGMA annotator". This package imports torch/timm only, never `benchmarks`.
"""
