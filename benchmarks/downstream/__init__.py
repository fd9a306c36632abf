"""``bench run``'s library: the corpus side (each generator's annotations and their quality,
:mod:`~benchmarks.downstream.corpus`) and the (generator, detector) cells (:mod:`~benchmarks.downstream.cells`)."""
