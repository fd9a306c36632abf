"""SIGMA's training as the harness runs it: the feature bank (:mod:`~benchmarks.sigma_training.bank`), the
prepared and cached training data (:mod:`~benchmarks.sigma_training.data`), the variants and stages
(:mod:`~benchmarks.sigma_training.stages`), the exported heads (:mod:`~benchmarks.sigma_training.export`) and
the ablations (:mod:`~benchmarks.sigma_training.ablations`)."""
