"""`bench annotate`: streamed, sharded, resumable annotation of a pairs corpus (manifest or parquet).

Everything is tiny (32 x 32 images, the pixel_diff generator). The scale-out and crash checks run the real
command in subprocesses: two ranks with RANK / WORLD_SIZE set, and one run SIGKILLed as soon as it has
committed a shard, then resumed; both must end with every pair annotated exactly once and masks
byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from benchmarks.cli import main
from benchmarks.data.iml import read_benco_json
from benchmarks.data.manifest import read_manifest
from benchmarks.data.pair_sources import ManifestSource, open_source
from benchmarks.annotation.shards import file_stem, merge, read_done

N, S = 200, 32
FAST = ["--generator", "pixel_diff", "--batch-size", "4", "--shard-size", "8"]


def pair_images(i: int, size: int = S) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(i)
    original = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    edited = original.copy()
    y, x = rng.integers(0, size // 2, 2)
    edited[y:y + size // 3, x:x + size // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
    return original, edited


def write_pairs(folder: Path, n: int = N, extra_lines: tuple[str, ...] = ()) -> Path:
    for sub in ("original", "edited"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        original, edited = pair_images(i)
        Image.fromarray(original).save(folder / "original" / f"{i:04d}.png")
        Image.fromarray(edited).save(folder / "edited" / f"{i:04d}.png")
        lines.append(json.dumps({"id": f"p{i:04d}", "original": f"original/{i:04d}.png",
                                 "edited": f"edited/{i:04d}.png", "instruction": f"change part {i}"}))
    (folder / "manifest.jsonl").write_text("\n".join([*lines, *extra_lines]) + "\n")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    """An uninterrupted single-process run: the masks every other run must reproduce byte for byte."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(["annotate", *FAST, "--num-workers", "2", "--pairs", str(corpus), "--out", str(out)]) == 0
    return out


def bench(*argv: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.cli", "annotate", *argv],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def masks_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (out / "masks").glob("*.png")}


def check_complete(out: Path, reference: Path) -> None:
    """Exactly N masks, one manifest entry per pair in index order, same bytes as the reference run."""
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(N))
    assert len({r["id"] for r in rows}) == N
    masks = masks_of(out)
    assert len(masks) == N and masks == masks_of(reference)
    shard_ids = [json.loads(line)["id"] for p in (out / "shards").glob("*.jsonl") for line in p.read_text().splitlines()]
    assert sorted(shard_ids) == sorted(r["id"] for r in rows)  # every pair listed in exactly one shard
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["complete"] and prov["counts"]["annotated"] == N and prov["counts"]["skipped"] == 0
    assert not (out / "tmp").exists() and not list(out.rglob("*.tmp"))


def test_help():
    with pytest.raises(SystemExit) as exc:
        main(["annotate", "--help"])
    assert exc.value.code == 0


def test_outputs_of_one_run(reference, corpus):
    out = reference
    items = read_benco_json(out / "iml.json")  # IMDL-BenCo can train on it: every path resolves
    assert len(items) == N and items[0].image.resolve() == (corpus / "edited" / "0000.png").resolve()
    assert items[0].mask.resolve() == (out / "masks" / "p0000.png").resolve()
    records = read_manifest(out)  # for a manifest source the output is itself a pairs manifest, with masks
    assert [r.id for r in records] == [f"p{i:04d}" for i in range(N)] and records[5].instruction == "change part 5"
    mask = np.asarray(Image.open(out / "masks" / "p0003.png"))
    assert mask.shape == (S, S) and set(np.unique(mask)) <= {0, 255} and mask.any()
    assert (out / "skipped.jsonl").read_text() == ""
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["generator"]["name"] == "pixel_diff" and prov["generator"]["config"]["threshold"] == 0.1
    assert prov["timing"]["pairs_per_s"] > 0 and prov["software"]["torch"] and prov["config"]["command"] == "annotate"
    assert prov["source"]["kind"] == "manifest" and prov["mask"] == "binary"
    assert (out / "config.yaml").is_file()
    shards = sorted((out / "shards").glob("rank0-*.jsonl"))
    assert len(shards) == N // 8 and all(len(p.read_text().splitlines()) == 8 for p in shards)


def test_two_ranks_as_independent_processes(corpus, reference, tmp_path):
    out = tmp_path / "ranks"
    procs = [bench(*FAST, "--num-workers", "1", "--pairs", str(corpus), "--out", str(out),
                   env={"RANK": str(r), "WORLD_SIZE": "2"}) for r in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for r in (0, 1):  # each rank took i % 2 == r, in its own shard files
        indices = [json.loads(line)["index"] for p in (out / "shards").glob(f"rank{r}-*.jsonl")
                   for line in p.read_text().splitlines()]
        assert sorted(indices) == list(range(r, N, 2))
    check_complete(out, reference)


def test_sigkill_then_resume(corpus, reference, tmp_path):
    out = tmp_path / "killed"
    argv = [*FAST, "--num-workers", "2", "--pairs", str(corpus), "--out", str(out)]
    proc = bench(*argv)
    deadline = time.monotonic() + 120
    while not list((out / "shards").glob("*.jsonl")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    committed = list((out / "shards").glob("*.jsonl"))
    assert not (out / "iml.json").exists() and 0 < len(committed) < N // 8, "the run finished before the kill"
    time.sleep(0.5)  # the killed run's DataLoader workers notice their parent is gone and exit
    assert main(["annotate", *argv]) == 0
    check_complete(out, reference)
    assert main(["annotate", *argv, "--merge-only"]) == 0  # merging again changes nothing
    check_complete(out, reference)


def test_two_ranks_sigkilled_halfway_then_rerun(corpus, reference, tmp_path):
    """The acceptance run: 200 pairs over 2 ranks (torchrun's RANK / WORLD_SIZE contract), both processes
    SIGKILLed once shards exist, the same command re-run per rank: exactly 200 masks, unique entries,
    byte-identical to an uninterrupted single run."""
    out = tmp_path / "ranks-killed"
    argv = [*FAST, "--num-workers", "1", "--pairs", str(corpus), "--out", str(out)]
    procs = [bench(*argv, env={"RANK": str(r), "WORLD_SIZE": "2"}) for r in (0, 1)]
    deadline = time.monotonic() + 120
    while not all(list((out / "shards").glob(f"rank{r}-*.jsonl")) for r in (0, 1)):
        assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, "a rank ended before the kill"
        time.sleep(0.002)
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    assert not (out / "iml.json").exists()
    time.sleep(0.5)
    again = [bench(*argv, env={"RANK": str(r), "WORLD_SIZE": "2"}) for r in (0, 1)]
    for p in again:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    check_complete(out, reference)


def test_resume_reads_done_shards_and_skips_only_done_work(corpus, reference, tmp_path):
    out = tmp_path / "partial"
    argv = [*FAST, "--num-workers", "1", "--pairs", str(corpus), "--out", str(out)]
    assert main(["annotate", *argv, "--limit", "50"]) == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["counts"]["annotated"] == 50 and prov["complete"]
    # a mask written but never listed in a committed shard, and a stale temporary file, as after a crash
    (out / "masks" / "p0100.png").write_bytes(b"half written")
    (out / "tmp" / "rank0").mkdir(parents=True)
    (out / "tmp" / "rank0" / "masks-p0101.png.tmp").write_bytes(b"x")
    assert list(read_done(out, rank=0, world=1)) == list(range(50))
    assert main(["annotate", *argv]) == 0
    check_complete(out, reference)
    indices = [json.loads(line)["index"] for p in (out / "shards").glob("*.jsonl") for line in p.read_text().splitlines()]
    assert sorted(indices) == list(range(N))  # the first 50 were not redone


def test_resume_with_another_generator_is_refused(corpus, tmp_path, capsys):
    out = tmp_path / "g"
    argv = ["--batch-size", "4", "--num-workers", "0", "--pairs", str(corpus), "--out", str(out), "--limit", "8"]
    assert main(["annotate", "--generator", "pixel_diff", *argv]) == 0
    assert main(["annotate", "--generator", "ssim_diff", *argv]) == 2
    assert "new --out" in capsys.readouterr().err


def _bad_corpus(folder: Path) -> Path:
    for sub in ("original", "edited"):
        (folder / sub).mkdir(parents=True)
    extra = []
    for i, (name, kind) in enumerate([("corrupt", "corrupt"), ("missing", "missing"), ("resized", "resized"),
                                      ("empty", "empty")]):
        original, edited = pair_images(1000 + i)
        if kind == "resized":
            original = np.asarray(Image.fromarray(original).resize((S + 8, S + 8)))
        Image.fromarray(original).save(folder / "original" / f"{name}.png")
        if kind == "corrupt":
            buf = io.BytesIO()
            Image.fromarray(edited).save(buf, format="JPEG")
            (folder / "edited" / f"{name}.jpg").write_bytes(buf.getvalue()[:200])  # truncated JPEG
        elif kind != "missing":
            Image.fromarray(edited).save(folder / "edited" / f"{name}.jpg", quality=95)
        extra.append(json.dumps({"id": name, "original": f"original/{name}.png", "edited": f"edited/{name}.jpg",
                                 "instruction": "" if kind == "empty" else f"fix {name}"}))
    extra.append('{"id": "badjson", "original": ')  # a broken line
    return write_pairs(folder, n=6, extra_lines=tuple(extra))


def test_bad_inputs_are_counted_never_dropped_and_not_retried(tmp_path, capsys):
    corpus = _bad_corpus(tmp_path / "bad")
    out = tmp_path / "out"
    argv = ["--generator", "pixel_diff", "--batch-size", "4", "--num-workers", "1", "--pairs", str(corpus),
            "--out", str(out)]
    assert main(["annotate", *argv]) == 0
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert {(s["id"], s["reason"]) for s in skipped} == {("corrupt", "corrupt"), ("missing", "missing"),
                                                          ("line-11", "bad-json")}
    assert all(s["error"] for s in skipped) and [s["index"] for s in skipped] == [6, 7, 10]
    prov = json.loads((out / "provenance.json").read_text())
    c = prov["counts"]
    assert (c["pairs"], c["annotated"], c["skipped"]) == (11, 8, 3) and prov["complete"]
    assert c["skipped_by_reason"] == {"bad-json": 1, "corrupt": 1, "missing": 1}
    assert c["original_resized"] == 1 and c["empty_instruction"] == 1
    assert np.asarray(Image.open(out / "masks" / "resized.png")).shape == (S, S)  # the edited image's size
    assert "3 skipped" in capsys.readouterr().out
    shards = sorted((out / "shards").glob("*.jsonl"))
    assert main(["annotate", *argv]) == 0  # skipped pairs are done: a resume does not retry them
    assert sorted((out / "shards").glob("*.jsonl")) == shards
    # once the file is there, --retry-skipped annotates it and the merge keeps the annotated entry
    original, edited = pair_images(1001)
    Image.fromarray(edited).save(corpus / "edited" / "missing.jpg", quality=95)
    assert main(["annotate", *argv, "--retry-skipped"]) == 0
    c = json.loads((out / "provenance.json").read_text())["counts"]
    assert (c["annotated"], c["skipped_by_reason"]) == (9, {"bad-json": 1, "corrupt": 1})


def test_on_error_raise_stops_and_names_the_file(tmp_path, capsys):
    corpus = _bad_corpus(tmp_path / "bad")
    assert main(["annotate", "--generator", "pixel_diff", "--num-workers", "0", "--on-error", "raise",
                 "--pairs", str(corpus), "--out", str(tmp_path / "out")]) == 2
    assert "corrupt.jpg" in capsys.readouterr().err


def test_duplicate_ids_are_left_out_of_the_iml_list(tmp_path):
    corpus = write_pairs(tmp_path / "dup", n=4)
    lines = (corpus / "manifest.jsonl").read_text().splitlines()
    (corpus / "manifest.jsonl").write_text("\n".join([*lines, lines[1]]) + "\n")
    out = tmp_path / "out"
    assert main(["annotate", "--generator", "pixel_diff", "--num-workers", "0", "--pairs", str(corpus),
                 "--out", str(out)]) == 0
    assert len(read_benco_json(out / "iml.json")) == 3
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(s["id"], s["reason"], s["index"]) for s in skipped] == [("p0001", "duplicate-id", 1),
                                                                    ("p0001", "duplicate-id", 4)]


IMAGE = pa.struct({"bytes": pa.binary(), "path": pa.string()})  # how `datasets` stores an Image feature


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_parquet_source(tmp_path):
    folder = tmp_path / "hub"
    folder.mkdir()
    for f in range(2):
        rows = {"original_image": [], "edited_image": [], "edit_prompt": []}
        for i in range(7):
            original, edited = pair_images(100 * f + i)
            rows["original_image"].append({"bytes": _png(original), "path": f"{i}_0.png"})
            data = b"not an image" if (f, i) == (1, 3) else _png(edited)
            rows["edited_image"].append({"bytes": data, "path": f"{i}_1.png"})
            rows["edit_prompt"].append(f"edit {f} {i}")
        table = pa.table({k: pa.array(v, type=IMAGE if k != "edit_prompt" else None) for k, v in rows.items()})
        pq.write_table(table, folder / f"train-{f:05d}-of-00002.parquet", row_group_size=3)
    out = tmp_path / "out"
    assert main(["annotate", "--generator", "pixel_diff", "--batch-size", "4", "--num-workers", "2",
                 "--pairs", str(folder / "train-*.parquet"), "--out", str(out)]) == 0
    items = read_benco_json(out / "iml.json")
    assert len(items) == 13 and all(it.image.resolve().parent == (out / "images").resolve() for it in items)
    edited = np.asarray(Image.open(out / "images" / "train-00001-of-00002-2.png"))
    assert np.array_equal(edited, pair_images(102)[1])  # the edited image written out losslessly
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(s["index"], s["id"], s["reason"]) for s in skipped] == [(10, "train-00001-of-00002-3", "corrupt")]
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert rows[0]["source"].endswith("train-00000-of-00002.parquet#0") and rows[0]["instruction"] == "edit 0 0"
    assert json.loads((out / "provenance.json").read_text())["source"]["files"][1][1] == 7


def test_sources_and_names(tmp_path, corpus):
    assert isinstance(open_source(corpus), ManifestSource) and open_source(corpus).count() == N
    assert open_source(corpus).count(limit=7) == 7
    assert [it["index"] for it in open_source(corpus).iter_items(1, 3, 4, 14, "raise")] == [4, 7, 10, 13]
    assert file_stem("p0001") == "p0001"
    odd = file_stem("a/b c")
    assert "/" not in odd and odd.startswith("a_b_c-") and odd != file_stem("a_b c")
    with pytest.raises(FileNotFoundError):
        merge(tmp_path / "nothing")


def test_mixed_sizes_share_a_batch_without_padding_effects(tmp_path):
    import torch

    from benchmarks.generators.base import create_generator

    corpus = write_pairs(tmp_path / "mixed", n=3)
    original, edited = (np.array(Image.fromarray(a).resize((40, 24))) for a in pair_images(7))
    Image.fromarray(original).save(corpus / "original" / "0001.png")
    Image.fromarray(edited).save(corpus / "edited" / "0001.png")
    for mode in ("binary", "soft"):
        out = tmp_path / mode
        assert main(["annotate", "--generator", "pixel_diff", "--batch-size", "4", "--num-workers", "0",
                     "--pairs", str(corpus), "--out", str(out), *(["--soft"] if mode == "soft" else [])]) == 0
        mask = np.asarray(Image.open(out / "masks" / "p0001.png"))
        assert mask.shape == (24, 40)  # cropped back to the pair's own size
        alone = create_generator("pixel_diff").generate(
            torch.from_numpy(original).permute(2, 0, 1)[None].float() / 255,
            torch.from_numpy(edited).permute(2, 0, 1)[None].float() / 255)[0, 0]
        want = (alone * 255).round() if mode == "soft" else (alone >= 0.5).float() * 255
        assert np.array_equal(mask, want.to(torch.uint8).numpy())  # the same mask as on its own: no padding seen
        levels = np.unique(np.asarray(Image.open(out / "masks" / "p0000.png")))
        assert (len(levels) > 2) == (mode == "soft")


def test_masks_waiting_for_the_writers_stay_within_four_batches_with_mixed_sizes(tmp_path, monkeypatch):
    import threading

    from benchmarks.annotation import loop
    from benchmarks.generators.base import create_generator

    corpus = write_pairs(tmp_path / "mixed", n=48)
    for i in range(0, 48, 2):  # every other pair another size: each batch of 4 splits into two size groups
        for sub, a in zip(("original", "edited"), pair_images(i, size=24)):
            Image.fromarray(a).save(corpus / sub / f"{i:04d}.png")
    written, lock = [0], threading.Lock()

    def slow_writer(files, tmp_dir):  # a writer slower than the generator, so the bound is what holds masks back
        time.sleep(0.02)
        loop.write_pngs_now(files, tmp_dir)
        with lock:
            written[0] += len(files)

    monkeypatch.setattr(loop, "write_pngs_now", loop.write_pngs, raising=False)
    monkeypatch.setattr(loop, "write_pngs", slow_writer)
    held = []
    options = loop.AnnotateOptions(batch_size=4, shard_size=1000, num_workers=0, progress=False)
    loop.annotate(create_generator("pixel_diff"), ManifestSource(corpus), tmp_path / "out", options,
                  on_batch=lambda done: held.append(done - written[0]))
    assert len(held) == 12 and max(held) <= 4 * 4  # never more than four batches of masks in memory
    assert max(held) > 4  # the writers did fall behind: the bound was exercised
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == 48
