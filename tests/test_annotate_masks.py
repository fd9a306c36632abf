"""The annotation loop writes exactly the masks the plain generator gives: for each batch the loop forms
(windows of consecutive pairs of each worker's sequence), `generator.generate` on the decoded pairs as the
evaluation loop feeds them (float NCHW in [0,1]), thresholded (or scaled with --soft) and PNG-encoded by
PIL at compress_level 1, byte for byte; for parquet sources the edited images too. SIGMA runs with heads
initialised in-test (the loop does not depend on trained weights)."""

from __future__ import annotations

import io
import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.annotation.loop import THRESHOLD, AnnotateOptions, annotate, mask_pixels, model_input
from benchmarks.data.imageio import load_image, verbatim_suffix
from benchmarks.data.pair_sources import open_source

N, S, B = 22, 32, 4  # 22 pairs: the last window of each worker is short


def _images(i: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1000 + i)
    original = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    edited = original.copy()
    y, x = rng.integers(0, S // 2, 2)
    edited[y:y + S // 3, x:x + S // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
    return original, edited


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pairs")
    lines = []
    for sub in ("original", "edited"):
        (folder / sub).mkdir()
    for i in range(N):
        original, edited = _images(i)
        Image.fromarray(original).save(folder / "original" / f"{i}.png")
        Image.fromarray(edited).save(folder / "edited" / f"{i}.png")
        lines.append(json.dumps({"id": f"m{i:02d}", "original": f"original/{i}.png", "edited": f"edited/{i}.png",
                                 "instruction": f"change the square number {i}" if i % 5 else ""}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def parquet(corpus, tmp_path_factory) -> Path:
    from benchmarks.perf.annotate_speed import parquet_copy

    return parquet_copy(corpus, N, tmp_path_factory.mktemp("hub"), row_group=5)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as `bench annotate` gives the main process on 2 cores (DataLoader workers run too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    from benchmarks.builders import generator_from_config
    from benchmarks.config import compose
    from sigma.annotator import save_checkpoint
    from sigma.model import SigmaConfig, SigmaNet

    torch.manual_seed(0)
    heads = save_checkpoint(tmp_path_factory.mktemp("heads") / "sigma.pt", SigmaNet(SigmaConfig()), {})
    return {"pixel_diff": generator_from_config(compose(["generator=pixel_diff"])).eval(),
            "sigma": generator_from_config(compose(["generator=sigma", f"generator.checkpoint={heads}"])).eval()}


def reference(generator, source, workers: int, soft: bool) -> dict[str, bytes]:
    """Mask PNG bytes per id, computed outside the loop: the loop's batches, the plain generator."""
    items = [it for it in source.iter_items(0, 1, 0, source.count(), "raise")]
    sequences = [items[w::max(workers, 1)] for w in range(max(workers, 1))]
    out = {}
    for seq in sequences:
        for start in range(0, len(seq), B):
            batch = seq[start:start + B]
            original, edited = (torch.from_numpy(np.stack([it[k] for it in batch])).permute(0, 3, 1, 2).contiguous()
                                .float() / 255 for k in ("original", "edited"))
            prob = generator.generate(original, edited, [it["instruction"] for it in batch]).float()
            masks = (prob * 255).round() if soft else (prob >= THRESHOLD).float() * 255
            for it, mask in zip(batch, masks.to(torch.uint8).numpy()):
                out[f"{it['id']}.png"] = _png(mask[0])
    return out


@pytest.mark.parametrize("name", ["pixel_diff", "sigma"])
@pytest.mark.parametrize("kind", ["manifest", "parquet"])
def test_loop_masks_equal_the_plain_generator_byte_for_byte(name, kind, corpus, parquet, generators, tmp_path):
    source = open_source(corpus if kind == "manifest" else parquet)
    generator = generators[name]
    for workers, soft in ((2, False), (0, True)):
        out = tmp_path / f"w{workers}-{soft}"
        annotate(generator, source, out, AnnotateOptions(batch_size=B, shard_size=6, num_workers=workers, soft=soft,
                                                         progress=False))
        got = {p.name: p.read_bytes() for p in (out / "masks").glob("*.png")}
        want = reference(generator, source, workers, soft)
        assert len(got) == N and got == want, f"{name} {kind} workers={workers} soft={soft}"
        if kind == "parquet":  # the edited images written out: the cells' own files, decoding to the annotated pixels
            for it in source.iter_items(0, 1, 0, N, "raise"):
                written = list((out / "images").glob(f"{it['id']}.*"))
                assert [p.read_bytes() for p in written] == [it["edited_bytes"]]
                assert np.array_equal(load_image(written[0]), it["edited"])


def test_model_input_is_the_evaluation_loops_division_for_every_byte_value():
    """The loop's one-pass conversion (into a kept buffer or not) gives the values `x.float() / 255` gives."""
    values = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(2, 3, 16, 16).contiguous()
    want = values.float() / 255
    kept: dict[str, torch.Tensor] = {}
    assert torch.equal(model_input(values), want)
    assert torch.equal(model_input(values, kept, "original"), want)
    assert torch.equal(model_input(values[:1], kept, "original"), want[:1])  # another shape: a new buffer


def test_mask_pixels_threshold_gives_torchs_comparison_bytes_at_the_edge():
    """The NumPy threshold of CPU batches marks exactly the pixels `prob >= THRESHOLD` marks, at the cut
    itself, just below it, on NaN and on a non-contiguous batch; soft masks are unchanged."""
    below = np.nextafter(np.float32(THRESHOLD), np.float32(0))
    edge = torch.tensor([0.0, below, THRESHOLD, np.nextafter(np.float32(THRESHOLD), np.float32(1)), 1.0, float("nan")])
    prob = torch.cat([edge, torch.rand(250, generator=torch.Generator().manual_seed(0))]).reshape(1, 1, 16, 16)
    for batch in (prob, prob.expand(2, 1, 16, 16).transpose(2, 3)):
        want = ((batch >= THRESHOLD).to(torch.uint8) * 255).numpy()
        got = mask_pixels(batch)
        assert got.dtype == np.uint8 and np.array_equal(got, want)
    assert mask_pixels(prob)[0, 0, 0, :6].tolist() == [0, 0, 255, 255, 255, 0]
    soft = mask_pixels(prob.nan_to_num(), soft=True)
    assert np.array_equal(soft, (prob.nan_to_num() * 255.0).round().to(torch.uint8).numpy())


def _encoded(array: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_parquet_edited_images_keep_their_own_files_where_every_reader_sees_the_same_pixels(tmp_path):
    """RGB JPEG / PNG cells are written as they are; a cell another reader would decode differently (alpha,
    grayscale, EXIF rotation) is written as the decoded pixels, PNG."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.builders import generator_from_config
    from benchmarks.config import compose

    original, edited = _images(0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    cells = {"jpeg": _encoded(edited, "JPEG", quality=90), "png": _encoded(edited, "PNG"),
             "rgba": _encoded(np.dstack([edited, np.full((S, S), 200, np.uint8)]), "PNG"),
             "gray": _encoded(edited[..., 0], "PNG"), "rotated": _encoded(edited, "JPEG", exif=exif.tobytes())}
    assert {k: verbatim_suffix(v) for k, v in cells.items()} == \
        {"jpeg": ".jpg", "png": ".png", "rgba": None, "gray": None, "rotated": None}
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"id": list(cells), "instruction": [""] * len(cells),
                      "input_image": pa.array([{"bytes": _encoded(original, "PNG"), "path": None}] * len(cells), image),
                      "edited_image": pa.array([{"bytes": v, "path": None} for v in cells.values()], image)})
    pq.write_table(table, tmp_path / "pairs.parquet")
    out = tmp_path / "out"
    annotate(generator_from_config(compose(["generator=pixel_diff"])).eval(), open_source(tmp_path / "pairs.parquet"),
             out, AnnotateOptions(batch_size=2, num_workers=0, progress=False))
    written = {p.stem: p for p in (out / "images").iterdir()}
    assert {k: p.suffix for k, p in written.items()} == \
        {"jpeg": ".jpg", "png": ".png", "rgba": ".png", "gray": ".png", "rotated": ".png"}
    for name, data in cells.items():
        assert np.array_equal(load_image(written[name]), load_image(data))     # the pixels that were annotated
        assert (written[name].read_bytes() == data) == (verbatim_suffix(data) is not None)
    entries = [json.loads(line) for shard in (out / "shards").glob("*.jsonl")
               for line in shard.read_text().splitlines()]
    assert {e["id"]: e["edited"] for e in entries} == {k: f"images/{p.name}" for k, p in written.items()}


def test_annotate_speed_times_each_main_process_step(tmp_path, capsys):
    import argparse
    import re

    from benchmarks.perf.annotate_speed import main_process_steps

    main_process_steps(argparse.Namespace(batch_size=2, size=32, scratch=str(tmp_path)), torch.device("cpu"), batches=2)
    lines = capsys.readouterr().out.splitlines()
    times = {m.group(1).strip(): float(m.group(2)) for m in (re.match(r"\s+(.+?)\s+([\d.]+) ms$", ln) for ln in lines[1:]) if m}
    assert len(times) == 9 == len(lines) - 1 and all(t >= 0 for t in times.values())
    assert "uint8 -> float, both images" in times and "as one mixed uint8 / float division" in times
    assert "write_png, as the loop (encode + file)" in times
    assert list(tmp_path.iterdir()) == []  # the files it wrote are gone


def test_annotate_speed_splits_cpu_time_between_this_process_and_its_workers():
    from benchmarks.perf.annotate_speed import cpu_per_pair, cpu_split

    start = cpu_split()
    _burn_cpu(0.05)  # CPU spent here, in this process; no child exits meanwhile
    split = cpu_per_pair(start, 10)
    assert split["main_ms_per_pair"] >= 4.0  # 50 ms over 10 pairs (user + system, so at least that)
    assert split["workers_ms_per_pair"] == 0.0
    assert split["cpu_ms_per_pair"] == split["main_ms_per_pair"] + split["workers_ms_per_pair"]

    start = cpu_split()
    child = multiprocessing.get_context("fork").Process(target=_burn_cpu, args=(0.05,))
    child.start()
    child.join()  # a worker's CPU counts once it has exited and been waited for, as the DataLoader's do
    split = cpu_per_pair(start, 10)
    assert child.exitcode == 0 and split["workers_ms_per_pair"] >= 4.0


def _burn_cpu(seconds: float) -> None:
    import time as clock

    deadline = clock.process_time() + seconds
    while clock.process_time() < deadline:
        pass
