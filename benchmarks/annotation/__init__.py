"""Corpus annotation (``bench annotate``): a pairs corpus turned into masks by one mask generator, at scale.

    bench annotate --generator sigma --pairs CORPUS_FOLDER --out DIR           # a pairs-manifest folder
    bench annotate --generator sigma --pairs 'hub/train-*.parquet' --out DIR   # parquet, streamed
    torchrun --nproc-per-node 8 -m benchmarks.cli annotate ...                 # or N processes with RANK/WORLD_SIZE

Outputs (docs/design.md, "Annotation output"); every file is written to a temporary name, then renamed:

    DIR/masks/<id>.png          the mask: 0/255 at threshold 0.5 (--soft: the soft mask as 0..255)
    DIR/images/<id>.png|.jpg    the edited image, for parquet sources (manifest sources keep their own files):
                                the cell's own bytes for RGB PNG / JPEG cells, else the decoded pixels as PNG
    DIR/shards/rank{r}-{k:06d}.jsonl   the pairs rank r finished in its shard k, annotated or skipped
    DIR/iml.json                IMDL-BenCo list [[edited image, mask], ...], paths relative to DIR
    DIR/manifest.jsonl          the annotated pairs sorted by global index (for a manifest source: a
                                pairs manifest with masks; for parquet: ``source`` = "file#row", no original)
    DIR/skipped.jsonl           one line per skipped pair: index, id, reason, error
    DIR/provenance.json         generator, weights hashes, config, counts, skips by reason, timings, versions
    DIR/config.yaml             the resolved config;  DIR/run.json: source and generator this folder is for

Order and sharding. Pairs have a global index ``i`` (manifest: the i-th non-empty line; parquet: the
global row, files sorted). Rank ``r`` of ``W`` takes ``i % W == r``; DataLoader worker ``w`` of ``n``
takes every n-th of those (``i % (W n) == r + W w``), in increasing order, and decodes it. A batch is a
fixed window of ``batch_size`` consecutive pairs of one worker's sequence, so an interrupted and resumed
run computes every mask in the same batch as an uninterrupted one (byte-identical masks).

Resume. A shard file is renamed into ``shards/`` only after every file it lists is on disk, so after any
interruption (SIGKILL included) the shard files say exactly what is done. The same command reads them,
leaves the done indices out (workers jump over their done prefix without decoding it) and carries on; a
mask written but never listed in a committed shard is redone. In-flight files live in ``DIR/tmp/``: a
rank clears its own on start, and the final merge clears the folder.

Bad pairs. With ``on_error=skip`` (the default for streams), a pair that cannot be read (missing file,
corrupt image, bad manifest line, unreadable parquet row group) or that is smaller than the generator
takes (``MaskGenerator.min_side``: SIGMA needs 16 px a side) is logged, counted by reason and listed in
its shard as done, so a resume does not retry it forever; ``--retry-skipped`` retries them once the files
are fixed. With ``on_error=raise`` the run stops with one short error naming the bad pair of lowest index
(workers hand bad pairs over as markers; see :func:`benchmarks.annotation.stream.first_bad_pair`). An
original whose size differs from the edited image is resized to it (warning) and an empty instruction is
annotated normally; both are counted. Ids must be unique: pairs sharing an id lose their (ambiguous) mask
file and are listed in skipped.jsonl as ``duplicate-id``, or stop the merge under ``on_error=raise``.

Merge. With a process group, ranks meet at a barrier and rank 0 merges; independent processes each leave
a done marker and the last to finish merges. The merge reads only shard files (streamed, sorted by index),
so it is idempotent and any process can run it: ``bench annotate --out DIR --merge-only``.

Modules: :mod:`~benchmarks.annotation.stream` (a rank's pairs as batches), :mod:`~benchmarks.annotation.loop`
(the loop), :mod:`~benchmarks.annotation.shards` (shard files, done set, merge), :mod:`~benchmarks.annotation.job`
(a composed config's generator over a source, the run folder, who merges).
"""
