"""The one evaluation loop (:mod:`~benchmarks.evaluation.loop`) and what it scores: mask generators against
ground truth (:mod:`~benchmarks.evaluation.generators`), trained detectors on test sets
(:mod:`~benchmarks.evaluation.detectors`) and under perturbations (:mod:`~benchmarks.evaluation.robustness`)."""
