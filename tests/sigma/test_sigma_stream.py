"""SIGMA's streamed training data: the bank's draws, random access to manifests and parquet, per-sample round
trips, rank shares, the stream against the bank on the same pairs, and bad pairs counted or raised."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from benchmarks.config import compose
from benchmarks.data.errors import DataError
from benchmarks.data.manifest import load_pair, read_manifest
from benchmarks.data.pair_index import ManifestIndex, ParquetIndex, open_index
from benchmarks.sigma_training.stream import Draws, PairSet, StepShares
from sigma.roundtrip import StandInAE, editor_roundtrip_per_sample


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_draws_are_the_bank_rule_and_windows_keep_to_their_row_groups():
    draws = Draws(50, 8, seed=3, tag=1)
    for step in (0, 7):
        assert draws.at(step).tolist() == np.random.default_rng((3, 1, step)).integers(0, 50, 8).tolist()
    blocks = [(0, 10), (10, 30), (30, 35), (35, 50)]
    windowed = Draws(50, 8, seed=3, tag=1, blocks=blocks, window=2)
    seen = set()
    for step in range(12):
        ids = windowed._window_of(step)
        allowed = {i for b in ids for i in range(*blocks[b])}
        drawn = windowed.at(step).tolist() + [windowed.retry(step, 0, 0)]
        assert set(drawn) <= allowed, (step, drawn)
        seen |= {b for b in ids}
    assert seen == {0, 1, 2, 3}  # a pass of windows visits every row group
    assert windowed.at(5).tolist() == Draws(50, 8, seed=3, tag=1, blocks=blocks, window=2).at(5).tolist()


def test_manifest_index_reads_lines_by_offset_and_leaves_out_a_split(tmp_path, training_sets):
    inpainting, _ = training_sets
    lines = (inpainting / "manifest.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[:6]]
    for i, row in enumerate(rows):
        row["split"] = "val" if i % 3 == 0 else "train"
        for key in ("original", "edited", "mask"):
            row[key] = str(inpainting / row[key])
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    index = ManifestIndex(tmp_path, exclude_split="val")
    assert len(index) == 4 and index.excluded == 2
    records = [r for r in read_manifest(tmp_path) if r.meta["split"] != "val"]
    for i, rec in enumerate(records):
        got, want = index.get(i, need_mask=True), load_pair(rec)
        assert got["id"] == rec.id and got["instruction"] == rec.instruction
        assert np.array_equal(got["edited"], want["image"]) and np.array_equal(got["mask"], want["mask"])
    assert index.offsets.dtype == np.int64 and index.offsets.nbytes == 8 * len(index)  # 8 bytes a pair


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_parquet_rows_at_random_match_the_stream_and_keep_few_row_groups(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(14)]
    table = pa.table({"original_image": [_png(a) for a in images], "edited_image": [_png(255 - a) for a in images],
                      "edit_prompt": [f"edit {i}" for i in range(14)]})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=4)
    pq.write_table(table.slice(0, 5), tmp_path / "b.parquet", row_group_size=5)
    index = open_index(tmp_path / "*.parquet", keep_groups=2)
    assert isinstance(index, ParquetIndex) and len(index) == 19
    assert index.blocks == [(0, 4), (4, 8), (8, 12), (12, 14), (14, 19)]
    streamed = list(index.reader)
    for i in [18, 3, 0, 13, 9, 14]:
        got = index.get(i)
        assert got["id"] == streamed[i]["id"] and np.array_equal(got["edited"], streamed[i]["edited"])
    assert len(index.reader._groups) == 2  # memory: at most keep_groups row groups


def test_round_trip_per_sample_does_not_depend_on_the_batch():
    torch.manual_seed(0)
    ae = StandInAE()
    images = torch.rand(3, 3, 32, 32)

    def autoencoder(x, gens):
        return ae.roundtrip(x, gens, 0.5)

    together = editor_roundtrip_per_sample(images, autoencoder, [11, 12, 13], tone=0.03)
    alone = torch.cat([editor_roundtrip_per_sample(images[i:i + 1], autoencoder, [s], tone=0.03)
                       for i, s in enumerate([11, 12, 13])])
    assert torch.allclose(together, alone, atol=1 / 255 + 1e-6)  # JPEG of the same pixels, up to a conv's last bits
    assert not torch.allclose(together[0], editor_roundtrip_per_sample(images[:1], autoencoder, [99], tone=0.03)[0])


def test_ranks_take_disjoint_shares_of_the_same_global_batch(training_sets):
    pairs = PairSet([open_index(training_sets[0])])
    draws = Draws(len(pairs), 4, seed=0, tag=1)
    whole = StepShares(pairs, draws, "pairs", rank=0, world=1, size=None, retries=2)[5]
    halves = [StepShares(pairs, draws, "pairs", rank=r, world=2, size=None, retries=2)[5] for r in range(2)]
    assert halves[0]["slots"] + halves[1]["slots"] == whole["slots"] == [0, 1, 2, 3]
    assert torch.equal(torch.cat([h["edited"] for h in halves]), whole["edited"])
    assert sum((h["instruction"] for h in halves), []) == whole["instruction"]
    with pytest.raises(ValueError, match="split evenly"):
        StepShares(pairs, draws, "pairs", rank=0, world=3, size=None, retries=2)


# ---------------------------------------------------------------------------------------------- stream vs bank


@pytest.fixture(scope="module")
def both_sources(training_sets, sigma_overrides, tmp_path_factory):
    from benchmarks.sigma_training.data import prepare_data

    home = tmp_path_factory.mktemp("stream-vs-bank")
    out = {}
    for source in ("bank", "stream"):  # flips off: the stream mirrors images, the bank mirrors cached features
        cfg = compose(sigma_overrides(*training_sets, home, f"sigma.data.source={source}", "sigma.data.workers=0",
                                      "sigma.stage1.flip=false", "sigma.stage2.flip=false"))
        out[source] = cfg, prepare_data(cfg, torch.device("cpu"), progress=False)
    return out


def test_stream_batches_hold_the_bank_batches_pairs(both_sources):
    from sigma.backbone import FrozenBackbone
    from sigma.model import SigmaConfig, SigmaNet
    from sigma.train import SigmaTrainer

    from benchmarks.sigma_training.inputs import backbone_path

    (cfg, bank), (_, stream) = both_sources["bank"], both_sources["stream"]
    assert not bank.streamed and stream.streamed and stream.info["source"] == "stream"
    backbone = FrozenBackbone(pretrained_path=backbone_path(cfg))
    trainer = SigmaTrainer(SigmaNet(SigmaConfig()), None, torch.device("cpu"), "unused", backbone=backbone)
    a_at, b_at = bank.batch_fn(bank.stage1, 1, 4, 0), stream.batch_fn(stream.stage1, 1, 4, 0, steps=3)
    for step in range(3):
        a, b = a_at(step), b_at(step)
        assert a["instruction"] == b["instruction"] and b["slots"] == [0, 1, 2, 3]
        for key in ("original", "edited", "mask", "intended"):
            assert torch.equal(a[key], b[key]), key
        feats_o, feats_e = trainer.features(b, difference=True)
        for x, y in zip(a["feats_o"] + a["feats_e"], feats_o + feats_e):  # the bank keeps float16
            assert torch.allclose(x, y, rtol=2e-3, atol=2e-2), (x - y).abs().max()


def test_stream_and_bank_train_to_the_same_losses_on_the_same_pairs(both_sources, tmp_path):
    from benchmarks.sigma_training.stages import train

    finals = {}
    for source, (cfg, data) in both_sources.items():
        net, summary = train(cfg, data, tmp_path / source, device=torch.device("cpu"), progress=False)
        finals[source] = summary
        assert all(np.isfinite(list(h.values())).all() for h in summary["history"])
    first = [[h for h in finals[s]["history"] if h["stage"] == 1] for s in ("bank", "stream")]
    assert [h["step"] for h in first[0]] == [h["step"] for h in first[1]] == [0, 3]
    for bank, stream in zip(*first):  # the same pairs and weights: only the bank's float16 features differ
        for key in ("mask", "prior"):
            assert stream[key] == pytest.approx(bank[key], abs=1e-3), (key, bank, stream)
    assert finals["stream"]["skipped"] == {}
    assert set(finals["stream"]["stage2"]["final"]) == set(finals["bank"]["stage2"]["final"])


# ---------------------------------------------------------------------------------------------- bad pairs


def _with_bad_pairs(folder, source):
    """A copy of `source`'s manifest whose pairs 1, 2 and 3 are broken: a missing image, a corrupt file, a
    line that is not JSON."""
    lines = (source / "manifest.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    for row in rows:
        for key in ("original", "edited", "mask"):
            if key in row:
                row[key] = str(source / row[key])
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    rows[1]["edited"] = str(folder / "gone.png")
    rows[2]["original"] = str(folder / "broken.png")
    text = [json.dumps(r) for r in rows]
    text[3] = '{"id": "3", "original": '
    (folder / "manifest.jsonl").write_text("\n".join(text) + "\n")
    return folder


def test_bad_pairs_are_counted_skips_named_in_skipped_jsonl(training_sets, sigma_overrides, tmp_path):
    from benchmarks.sigma_training.data import prepare_data
    from benchmarks.sigma_training.stages import train

    inpainting = _with_bad_pairs(tmp_path / "bad", training_sets[0])
    cfg = compose(sigma_overrides(inpainting, training_sets[1], tmp_path / "home", "sigma.data.source=stream",
                                  "sigma.data.workers=1", "sigma_budget.stage1_steps=12", "sigma_budget.batch_size=8",
                                  "sigma.model.use_text=false", "sigma.model.refinement=none"))
    data = prepare_data(cfg, torch.device("cpu"), progress=False)
    net, summary = train(cfg, data, tmp_path / "work", run_stage2=False, device=torch.device("cpu"), progress=False)
    assert summary["stage1"]["steps"] == 12  # no crash mid-run
    lines = [json.loads(line) for line in (tmp_path / "work" / "skipped.jsonl").read_text().splitlines()]
    assert len(lines) == sum(summary["skipped"].values()) > 0
    named = " ".join(line["error"] for line in lines)
    assert "gone.png" in named and "broken.png" in named and "manifest.jsonl:4" in named
    assert set(summary["skipped"]) == {"missing", "corrupt", "bad-json"}
    assert all({"tag", "step", "slot", "id", "reason", "error"} <= set(line) for line in lines)


def test_on_error_raise_stops_at_the_first_bad_pair_naming_its_file(training_sets, sigma_overrides, tmp_path):
    from benchmarks.sigma_training.data import prepare_data
    from benchmarks.sigma_training.stages import train

    inpainting = _with_bad_pairs(tmp_path / "bad", training_sets[0])
    cfg = compose(sigma_overrides(inpainting, training_sets[1], tmp_path / "home", "sigma.data.source=stream",
                                  "sigma.data.on_error=raise", "sigma.data.workers=1", "sigma_budget.stage1_steps=12",
                                  "sigma_budget.batch_size=8", "sigma.model.use_text=false",
                                  "sigma.model.refinement=none"))
    data = prepare_data(cfg, torch.device("cpu"), progress=False)
    with pytest.raises(DataError, match=r"(gone\.png|broken\.png|manifest\.jsonl:4).*step \d+.*on_error=skip"):
        train(cfg, data, tmp_path / "work", run_stage2=False, device=torch.device("cpu"), progress=False)


def test_a_step_with_no_readable_pair_is_a_clear_error(tmp_path, training_sets):
    (tmp_path / "manifest.jsonl").write_text(
        "\n".join(json.dumps({"id": str(i), "original": "no.png", "edited": "no.png", "mask": "no.png"})
                  for i in range(3)) + "\n")
    from benchmarks.data.errors import SkipLog
    from benchmarks.sigma_training.inputs import SigmaDataConfig
    from benchmarks.sigma_training.stream import StreamBatches

    shares = StepShares(PairSet([open_index(tmp_path)]), Draws(3, 2, 0, 1), "pairs", rank=0, world=1, size=None,
                        retries=1)
    batches = StreamBatches(shares, SigmaDataConfig(source="stream", workers=0), torch.device("cpu"), SkipLog())
    with pytest.raises(DataError, match="none of this process's pairs could be read.*no.png"):
        batches(0)


def test_the_instruction_cache_is_bounded_and_keeps_the_batch_it_serves():
    from sigma.text import TextEncoder

    text = TextEncoder(cache_size=3)
    first, first_valid = text(["one edit", "two edits"])
    n = int(first_valid[0].sum())
    tokens, valid = text(["one edit", "three", "four", "five"])  # more new strings than the cache holds
    assert len(text._cache) == 3 and int(valid[0].sum()) == n and torch.equal(tokens[0, :n], first[0, :n])


def test_pairs_of_other_sizes_are_resized_or_a_clear_error(tmp_path, pairs_writer):
    write_pairs = pairs_writer
    small, large = write_pairs(tmp_path / "a", 1, size=32), write_pairs(tmp_path / "b", 1, size=48, seed=1)
    rows = [json.loads((f / "manifest.jsonl").read_text()) for f in (small, large)]
    for row, folder in zip(rows, (small, large)):
        for key in ("original", "edited", "mask"):
            row[key] = str(folder / row[key])
    rows[1]["id"] = "1"
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pairs = PairSet([open_index(tmp_path)])
    draws = Draws(2, 2, seed=0, tag=1)
    step = next(s for s in range(50) if len(set(draws.at(s).tolist())) == 2)
    resized = StepShares(pairs, draws, "pairs", rank=0, world=1, size=32, retries=0)[step]
    assert resized["edited"].shape == (2, 3, 32, 32) and resized["mask"].shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="set sigma.data.size"):
        StepShares(pairs, draws, "pairs", rank=0, world=1, size=None, retries=0)[step]


def test_a_parquet_corpus_streams_into_stage2_self_training(training_sets, sigma_overrides, tmp_path):
    from benchmarks.sigma_training.data import prepare_data
    from benchmarks.sigma_training.stages import train

    rows = [json.loads(line) for line in (training_sets[1] / "manifest.jsonl").read_text().splitlines()]
    image = {"bytes": pa.binary(), "path": pa.string()}
    cells = {key: [{"bytes": (training_sets[1] / r[key]).read_bytes(), "path": None} for r in rows]
             for key in ("original", "edited")}
    table = pa.table({"original_image": pa.array(cells["original"], pa.struct(image)),
                      "edited_image": pa.array(cells["edited"], pa.struct(image)),
                      "edit_prompt": [r["instruction"] for r in rows]})
    pq.write_table(table, tmp_path / "corpus.parquet", row_group_size=6)
    cfg = compose(sigma_overrides(training_sets[0], tmp_path / "corpus.parquet", tmp_path / "home",
                                  "sigma.data.source=stream", "sigma.data.workers=1", "sigma.data.parquet_window=2",
                                  "sigma.stage2.self_training_start=0.0", "sigma.model.use_text=false",
                                  "sigma.model.refinement=none"))
    data = prepare_data(cfg, torch.device("cpu"), progress=False)
    assert data.corpus.pairs.blocks == [(0, 6), (6, 12), (12, 18), (18, 24)]
    net, summary = train(cfg, data, tmp_path / "work", device=torch.device("cpu"), progress=False)
    assert "self_training" in summary["stage2"]["final"] and summary["skipped"] == {}
