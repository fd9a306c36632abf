"""SIGMA's training as the harness runs it: what it trains on and how (:mod:`~benchmarks.sigma_training.inputs`,
``sigma.data``), the feature bank (:mod:`~benchmarks.sigma_training.bank`) and the prepared, cached training data
(:mod:`~benchmarks.sigma_training.data`), the stream (:mod:`~benchmarks.sigma_training.stream`), the variants and
stages (:mod:`~benchmarks.sigma_training.stages`), the exported heads (:mod:`~benchmarks.sigma_training.export`)
and the ablations (:mod:`~benchmarks.sigma_training.ablations`)."""
