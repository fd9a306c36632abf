"""Streaming parquet reader: hub column layouts, decoding, bounded memory, sharding, skip accounting.

Every corpus file is written here with pyarrow, in the layouts the hub cards declare:
InstructPix2Pix (original_image / edited_image / edit_prompt, ``datasets`` Image structs), MagicBrush
(img_id, turn_index, source_img, mask_img with the edit marked by alpha 0, instruction, target_img),
UltraEdit (source_image / edited_image / edit_prompt / idx, raw binary, an all-null mask_image column).
"""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch.utils.data
from PIL import Image

from benchmarks.data.errors import DataError, SkipLog
from benchmarks.data.parquet import ParquetPairs, ParquetPairsDataset, expand_files, resolve_columns
from benchmarks.data.schema import validate_sample
from benchmarks.data.transforms import Geometry

IMAGE = pa.struct({"bytes": pa.binary(), "path": pa.string()})  # how `datasets` stores an Image feature
H, W = 16, 24


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def noisy(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def flat(seed: int) -> np.ndarray:
    """8x8-aligned colour blocks: survive JPEG within a few levels."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))


def struct(data: bytes | None, path: str | None = None) -> dict:
    return {"bytes": data, "path": path}


def write(path, columns: dict, types: dict | None = None, row_group_size: int = 3):
    types = types or {}
    table = pa.table({k: pa.array(v, type=types.get(k)) for k, v in columns.items()})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def ip2p_file(tmp_path, n=7, name="train-00000-of-00002.parquet"):
    originals = [noisy(i) for i in range(n)]
    editeds = [noisy(100 + i) for i in range(n)]
    path = write(tmp_path / name, {
        "original_prompt": [f"caption {i}" for i in range(n)],
        "original_image": [struct(png(a), f"{i}_0.png") for i, a in enumerate(originals)],
        "edit_prompt": [f"make it {i}" for i in range(n)],
        "edited_prompt": [f"edited caption {i}" for i in range(n)],
        "edited_image": [struct(png(a), f"{i}_1.png") for i, a in enumerate(editeds)],
    }, {"original_image": IMAGE, "edited_image": IMAGE})
    return path, originals, editeds


def magicbrush_file(tmp_path):
    src, tgt = flat(1), flat(2)
    rgba = np.dstack([src, np.full((H, W), 255, np.uint8)])
    rgba[4:12, 8:20, 3] = 0  # DALL-E 2 editor: the region to edit is erased to transparent
    truth = np.zeros((H, W), bool)
    truth[4:12, 8:20] = True
    path = write(tmp_path / "magicbrush-train.parquet", {
        "img_id": ["242679", "242679", "391066"],
        "turn_index": [1, 2, 1],
        "source_img": [struct(jpeg(src)) for _ in range(3)],
        "mask_img": [struct(png(rgba)) for _ in range(3)],
        "instruction": ["put a hat on the dog", "make the hat red", "add a boat"],
        "target_img": [jpeg(tgt) for _ in range(3)],  # raw binary this time
    }, {"turn_index": pa.int32(), "source_img": IMAGE, "mask_img": IMAGE, "target_img": pa.binary()}, row_group_size=2)
    return path, src, tgt, truth


def ultraedit_file(tmp_path, region=False):
    n = 5
    cols = {
        "clip_sim_source": [0.3] * n, "source_caption": ["a dog"] * n, "target_caption": ["a cat"] * n,
        "idx": [1000 + i for i in range(n)], "edit_prompt": [f"turn the dog into cat {i}" for i in range(n)],
        "edit_object": [None] * n,
        "source_image": [jpeg(flat(10 + i)) for i in range(n)], "edited_image": [png(noisy(20 + i)) for i in range(n)],
        "mask_image": [None] * n,
    }
    types = {"source_image": pa.binary(), "edited_image": pa.binary(), "mask_image": pa.null(),
             "edit_object": pa.null()}
    if region:
        m = np.zeros((H, W), np.uint8)
        m[:8, :12] = 255
        cols["mask_image"] = [struct(png(m)) for _ in range(n)]
        cols["edit_object"] = ["dog"] * n
        types.update(mask_image=IMAGE, edit_object=pa.string())
    return write(tmp_path / ("region.parquet" if region else "freeform.parquet"), cols, types, row_group_size=2)


# ---- corpus layouts --------------------------------------------------------------------------------

def test_instructpix2pix_layout_decodes_pixels_ids_and_instruction(tmp_path):
    path, originals, editeds = ip2p_file(tmp_path)
    rows = list(ParquetPairs(path))
    assert [r["id"] for r in rows] == [f"{path.stem}-{i}" for i in range(7)]
    assert [r["source"] for r in rows] == [f"{path}#{i}" for i in range(7)]
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(r["original"], originals[i])
        np.testing.assert_array_equal(r["edited"], editeds[i])
        assert r["original"].dtype == np.uint8 and r["original"].shape == (H, W, 3)
        assert r["instruction"] == f"make it {i}"  # edit_prompt, never the captions
        assert r["mask"] is None and r["row"] == i and r["original_resized"] is False


def test_magicbrush_layout_ids_and_alpha_mask(tmp_path):
    path, src, tgt, truth = magicbrush_file(tmp_path)
    rows = list(ParquetPairs(path))
    assert [r["id"] for r in rows] == ["242679_1", "242679_2", "391066_1"]
    assert [r["instruction"] for r in rows] == ["put a hat on the dog", "make the hat red", "add a boat"]
    for r in rows:
        assert np.abs(r["original"].astype(int) - src).mean() < 4  # JPEG
        assert np.abs(r["edited"].astype(int) - tgt).mean() < 4
        assert r["mask"].dtype == bool
        np.testing.assert_array_equal(r["mask"], truth)  # transparent = edited, opaque colour ignored


def test_magicbrush_mask_reader_options(tmp_path):
    path, _, _, truth = magicbrush_file(tmp_path)
    np.testing.assert_array_equal(next(iter(ParquetPairs(path, mask_reader="alpha")))["mask"], truth)
    custom = next(iter(ParquetPairs(path, mask_reader=lambda data, name: np.ones((H, W)))))
    assert custom["mask"].all()
    # the value rule reads the colour, which is the photo here: clearly not the edit region
    assert not np.array_equal(next(iter(ParquetPairs(path, mask_reader="value")))["mask"], truth)


def test_alpha_reader_refuses_mask_without_alpha(tmp_path):
    path = ultraedit_file(tmp_path, region=True)
    with pytest.raises(DataError) as exc:
        next(iter(ParquetPairs(path, mask_reader="alpha")))
    assert exc.value.reason == "unsupported" and "mask_reader='value'" in str(exc.value)


def test_ultraedit_freeform_layout_null_mask_column(tmp_path):
    path = ultraedit_file(tmp_path)
    rows = list(ParquetPairs(path))
    assert [r["id"] for r in rows] == [str(1000 + i) for i in range(5)]
    assert all(r["mask"] is None for r in rows)
    assert rows[3]["instruction"] == "turn the dog into cat 3"
    np.testing.assert_array_equal(rows[2]["edited"], noisy(22))
    assert np.abs(rows[2]["original"].astype(int) - flat(12)).mean() < 4


def test_ultraedit_region_layout_value_mask(tmp_path):
    rows = list(ParquetPairs(ultraedit_file(tmp_path, region=True)))
    expected = np.zeros((H, W), bool)
    expected[:8, :12] = True
    for r in rows:
        np.testing.assert_array_equal(r["mask"], expected)


def test_extra_columns_are_carried_as_meta(tmp_path):
    rows = list(ParquetPairs(ultraedit_file(tmp_path), extra=["clip_sim_source", "source_caption"]))
    assert rows[0]["meta"] == {"clip_sim_source": 0.3, "source_caption": "a dog"}


def test_resolve_columns_aliases():
    cmap = resolve_columns(["input_image", "output_image", "edit_instruction"])
    assert (cmap.original, cmap.edited, cmap.instruction, cmap.mask, cmap.id) == \
        ("input_image", "output_image", "edit_instruction", None, ())
    cmap = resolve_columns(["Original_Image", "Edited_Image", "Edit_Prompt"])  # case-insensitive
    assert (cmap.original, cmap.edited, cmap.instruction) == ("Original_Image", "Edited_Image", "Edit_Prompt")


def test_column_overrides(tmp_path):
    path = write(tmp_path / "custom.parquet", {
        "before": [png(noisy(1))], "after": [png(noisy(2))], "cmd": ["do it"], "idx": [7]})
    row = next(iter(ParquetPairs(path, columns={"original": "before", "edited": "after", "instruction": "cmd",
                                                "id": None})))
    np.testing.assert_array_equal(row["original"], noisy(1))
    assert row["instruction"] == "do it" and row["id"] == "custom-0"  # id=None: the idx column is ignored


def test_unknown_columns_error_lists_them(tmp_path):
    path = write(tmp_path / "odd.parquet", {"foo": [b"x"], "bar": ["y"]})
    with pytest.raises(DataError) as exc:
        list(ParquetPairs(path))
    msg = str(exc.value)
    assert exc.value.reason == "unknown-columns" and "odd.parquet" in msg
    assert "'foo'" in msg and "'bar'" in msg and "columns=" in msg
    with pytest.raises(DataError, match="not in this file"):
        list(ParquetPairs(ip2p_file(tmp_path)[0], columns={"mask": "no_such_column"}))


def test_missing_instruction_column_gives_empty_string(tmp_path):
    path = write(tmp_path / "noinstr.parquet", {"source_img": [png(noisy(1))], "target_img": [png(noisy(2))]})
    assert next(iter(ParquetPairs(path)))["instruction"] == ""


# ---- streaming ---------------------------------------------------------------------------------------

def test_reads_one_row_group_at_a_time_in_small_batches(tmp_path, monkeypatch):
    path, _, _ = ip2p_file(tmp_path)  # 7 rows, row groups of 3
    calls, batch_rows = [], []
    real = pq.ParquetFile.iter_batches

    def spy(self, batch_size=65536, row_groups=None, columns=None, **kw):
        calls.append((batch_size, list(row_groups), list(columns)))
        for batch in real(self, batch_size=batch_size, row_groups=row_groups, columns=columns, **kw):
            batch_rows.append(batch.num_rows)
            yield batch

    def refuse(*a, **k):
        raise AssertionError("a whole file or table was read")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    monkeypatch.setattr(pq.ParquetFile, "read", refuse)
    monkeypatch.setattr(pq, "read_table", refuse)

    it = iter(ParquetPairs(path, batch_size=2))
    next(it)
    assert len(calls) == 1 and calls[0][1] == [0]  # lazily: only the first row group was touched
    rest = list(it)
    assert len(rest) == 6
    assert [c[1] for c in calls] == [[0], [1], [2]]
    assert all(bs == 2 for bs, _, _ in calls) and max(batch_rows) <= 2
    assert all(set(cols) == {"original_image", "edited_image", "edit_prompt"} for _, _, cols in calls)


def test_glob_directory_and_list_inputs(tmp_path):
    a, _, _ = ip2p_file(tmp_path, n=4, name="train-00000-of-00002.parquet")
    b, _, _ = ip2p_file(tmp_path, n=3, name="train-00001-of-00002.parquet")
    assert expand_files(tmp_path / "train-*.parquet") == [a, b]
    assert expand_files(tmp_path) == [a, b]
    assert expand_files([b, a]) == [a, b]  # sorted: every rank sees the same order
    rows = list(ParquetPairs(str(tmp_path / "*.parquet")))
    assert [r["row"] for r in rows] == list(range(7))
    assert rows[4]["id"] == f"{b.stem}-0" and rows[4]["source"] == f"{b}#0"
    with pytest.raises(DataError) as exc:
        expand_files(tmp_path / "nothing-*.parquet")
    assert exc.value.reason == "missing"


def two_files(tmp_path):
    ip2p_file(tmp_path, n=7, name="a.parquet")
    ip2p_file(tmp_path, n=5, name="b.parquet")
    return str(tmp_path / "*.parquet")


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_partition_rows_without_overlap_or_gap(tmp_path, world):
    files = two_files(tmp_path)
    reader = ParquetPairs(files)
    everything = [r["id"] for r in reader]
    assert len(everything) == len(set(everything)) == 12
    parts = []
    for rank in range(world):
        shard = reader.shard(rank, world)
        rows = list(shard)
        assert [r["row"] for r in rows] == [i for i in range(12) if i % world == rank]
        assert len(shard) == len(rows)
        parts.append({r["id"] for r in rows})
    assert set().union(*parts) == set(everything)
    assert sum(len(p) for p in parts) == len(everything)  # pairwise disjoint


def test_start_row_resumes(tmp_path):
    reader = ParquetPairs(two_files(tmp_path), start_row=8)
    assert [r["row"] for r in reader] == [8, 9, 10, 11] and len(reader) == 4
    shard = ParquetPairs(two_files(tmp_path)).shard(1, 3).resume(5)
    assert [r["row"] for r in shard] == [7, 10]


def test_dataset_splits_workers_without_overlap(tmp_path, monkeypatch):
    reader = ParquetPairs(two_files(tmp_path)).shard(1, 2)  # this process is rank 1 of 2
    expected = {r["id"] for r in reader}
    seen = []
    for worker in range(3):
        info = type("Info", (), {"id": worker, "num_workers": 3})()
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda info=info: info)
        seen.append([s["id"] for s in ParquetPairsDataset(reader)])
    flat_ids = [i for part in seen for i in part]
    assert len(flat_ids) == len(set(flat_ids)) and set(flat_ids) == expected


def test_dataset_with_real_dataloader_workers(tmp_path):
    ds = ParquetPairsDataset(ParquetPairs(two_files(tmp_path)), Geometry("resize", 32), name="ip2p")
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    samples = list(loader)
    assert sorted(s["id"] for s in samples) == sorted(r["id"] for r in ParquetPairs(two_files(tmp_path)))
    for s in samples:
        validate_sample(s, pair=True)
        assert s["dataset"] == "ip2p" and s["has_mask"] is False and s["label"] == 1


def test_dataset_samples_follow_the_contract_with_masks(tmp_path):
    path, _, _, truth = magicbrush_file(tmp_path)
    samples = list(ParquetPairsDataset(ParquetPairs(path)))
    for s in samples:
        validate_sample(s, pair=True)
        assert s["has_mask"] and s["label"] == 1
        np.testing.assert_array_equal(s["mask"][0].numpy() > 0.5, truth)


# ---- bad rows ------------------------------------------------------------------------------------

def corrupt_file(tmp_path):
    good = [png(noisy(i)) for i in range(5)]
    edited = list(good)
    broken = jpeg(flat(3))
    edited[2] = broken[: len(broken) // 2]  # truncated JPEG
    return write(tmp_path / "bad.parquet", {"original_image": good, "edited_image": edited,
                                            "edit_prompt": ["x"] * 5}, row_group_size=2)


def test_corrupt_row_is_skipped_counted_and_recorded(tmp_path):
    path = corrupt_file(tmp_path)
    log = SkipLog(path=tmp_path / "skipped.jsonl")
    rows = list(ParquetPairs(path, on_error="skip", skip_log=log))
    assert [r["row"] for r in rows] == [0, 1, 3, 4]
    assert log.summary() == {"corrupt": 1} and log.total == 1
    record = json.loads((tmp_path / "skipped.jsonl").read_text().strip())
    assert record["id"] == "bad-2" and record["reason"] == "corrupt" and "bad.parquet#2" in record["error"]


def test_corrupt_row_raises_naming_file_and_row(tmp_path):
    path = corrupt_file(tmp_path)
    with pytest.raises(DataError) as exc:
        list(ParquetPairs(path))
    assert exc.value.reason == "corrupt"
    assert f"{path}#2:edited_image" in str(exc.value)


def test_null_image_cell_is_missing(tmp_path):
    path = write(tmp_path / "nulls.parquet", {
        "source_img": [struct(png(noisy(1))), None, struct(None, None)],
        "target_img": [struct(png(noisy(2)))] * 3, "instruction": ["a", "b", "c"]}, {"source_img": IMAGE,
                                                                                    "target_img": IMAGE})
    reader = ParquetPairs(path, on_error="skip")
    assert [r["row"] for r in reader] == [0]
    assert reader.skip_log.summary() == {"missing": 2}


def test_struct_with_path_only_reads_the_file_beside_the_parquet(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "o.png").write_bytes(png(noisy(5)))
    path = write(tmp_path / "paths.parquet", {
        "original_image": [struct(None, "imgs/o.png")], "edited_image": [struct(png(noisy(6)))]},
        {"original_image": IMAGE, "edited_image": IMAGE})
    np.testing.assert_array_equal(next(iter(ParquetPairs(path)))["original"], noisy(5))


def test_mask_size_mismatch_and_original_resize(tmp_path):
    small = np.zeros((8, 8), np.uint8)
    path = write(tmp_path / "sizes.parquet", {
        "source_img": [png(noisy(1)[:8, :12]), png(noisy(1))], "target_img": [png(noisy(2))] * 2,
        "mask_img": [None, png(small)], "instruction": ["a", "b"]}, {"mask_img": pa.binary()})
    reader = ParquetPairs(path, on_error="skip")
    rows = list(reader)
    assert len(rows) == 1 and rows[0]["original_resized"] is True and rows[0]["original"].shape == (H, W, 3)
    assert reader.skip_log.summary() == {"size-mismatch": 1}
    with pytest.raises(DataError, match="masks must match the edited image size"):
        list(ParquetPairs(path))


def test_unreadable_parquet_file(tmp_path):
    good, _, _ = ip2p_file(tmp_path, n=3, name="a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(DataError) as exc:
        list(ParquetPairs(tmp_path))
    assert exc.value.reason == "corrupt" and "b.parquet" in str(exc.value)
    reader = ParquetPairs(tmp_path, on_error="skip")
    assert len(list(reader)) == 3 and reader.skip_log.summary() == {"corrupt": 1}


def test_bad_options_are_refused(tmp_path):
    path, _, _ = ip2p_file(tmp_path, n=1)
    for kwargs in ({"on_error": "ignore"}, {"mask_reader": "luma"}, {"batch_size": 0}, {"start_row": -1}):
        with pytest.raises(DataError):
            ParquetPairs(path, **kwargs)
    with pytest.raises(DataError):
        ParquetPairs(path).shard(2, 2)


def test_reader_pickles_for_spawned_workers(tmp_path):
    path = corrupt_file(tmp_path)
    reader = ParquetPairs(path, on_error="skip", skip_log=SkipLog(path=tmp_path / "skips.jsonl")).shard(1, 2)
    clone = pickle.loads(pickle.dumps(ParquetPairsDataset(reader))).reader
    assert [r["id"] for r in clone] == [r["id"] for r in reader] == ["bad-1", "bad-3"]
    assert clone.skip_log.path == tmp_path / "skips.jsonl" and (clone.rank, clone.world_size) == (1, 2)


def test_damaged_row_group_is_skipped_whole_and_reading_goes_on(tmp_path, monkeypatch):
    path, _, _ = ip2p_file(tmp_path)  # row groups [0-2], [3-5], [6]
    real = pq.ParquetFile.iter_batches

    def damaged(self, *a, row_groups=None, **kw):
        if row_groups == [1]:
            raise OSError("Corrupt snappy compressed data.")
        yield from real(self, *a, row_groups=row_groups, **kw)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", damaged)
    reader = ParquetPairs(path, on_error="skip")
    assert [r["row"] for r in reader] == [0, 1, 2, 6]
    assert reader.skip_log.summary() == {"corrupt": 1}
    with pytest.raises(DataError, match="row group 1 is unreadable from row 3"):
        list(ParquetPairs(path))
