"""IML detector zoo behind one Detector contract (model library).

Not implemented yet: see the issue "Detector zoo". This package imports torch/timm/smp only, never `benchmarks`.
"""
