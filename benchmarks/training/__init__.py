"""Detector training as the harness runs it: the typed ``train`` config (:mod:`~benchmarks.training.config`),
what ``--train`` / ``--val`` resolve to (:mod:`~benchmarks.training.data`) and one training run with its
validation and run folder (:mod:`~benchmarks.training.detectors`)."""
