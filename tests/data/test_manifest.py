"""Pairs manifests (docs/design.md) written by hand, as another tool would, and the bad inputs found in the wild."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from benchmarks.data.errors import DataError
from benchmarks.data.manifest import PairsDataset, iter_manifest, load_pair, read_manifest, write_manifest
from benchmarks.data.schema import validate_sample
from benchmarks.data.transforms import Geometry

H, W = 16, 24

# Typed exactly as another tool would write the file: one JSON object per line, paths relative to the folder.
MANIFEST = """\
{"id": "0001", "original": "original/0001.jpg", "edited": "edited/0001.jpg", "instruction": "make the car red", "mask": "mask/0001.png"}
{"id": "0002", "original": "original/0002.png", "edited": "edited/0002.png", "instruction": "remove the dog", "mask": "mask/0002.png"}
{"id": "0003", "original": "original/0003.png", "edited": "edited/0003.png", "instruction": "add a hat", "mask": "mask/0003.png", "source": "magicbrush", "turn": 2, "tags": ["object", "add"]}

{"id": "0004", "original": "original/0004.jpg", "edited": "edited/0004.jpg", "instruction": "turn day into night"}
"""


def photo(seed: int, h: int = H, w: int = W) -> np.ndarray:
    blocks = np.random.default_rng(seed).integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))


def region(top: int, left: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[top:top + 8, left:left + 8] = True
    return m


def save(path, arr, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "pairs"
    for i, ext in ((1, "jpg"), (2, "png"), (3, "png"), (4, "jpg")):
        kw = {"quality": 95, "subsampling": 0} if ext == "jpg" else {}
        save(root / "original" / f"000{i}.{ext}", photo(i), **kw)
        save(root / "edited" / f"000{i}.{ext}", photo(10 + i), **kw)
    save(root / "mask" / "0001.png", region(0, 0).astype(np.uint8) * 255)  # 0/255
    save(root / "mask" / "0002.png", region(8, 16).astype(np.uint8))  # 0/1
    save(root / "mask" / "0003.png", region(4, 8).astype(np.uint8) * 255)
    (root / "manifest.jsonl").write_text(MANIFEST, encoding="utf-8")
    return root


def close(a: np.ndarray, b: np.ndarray, tol: float = 4.0) -> bool:
    return a.shape == b.shape and float(np.abs(a.astype(int) - b.astype(int)).mean()) < tol


def write_lines(root, *lines: str):
    (root / "manifest.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# ---- a hand-written folder loads unchanged ---------------------------------------------------------

def test_hand_written_manifest_records(folder):
    records = read_manifest(folder)
    assert [r.id for r in records] == ["0001", "0002", "0003", "0004"]  # the blank line is ignored
    assert [r.instruction for r in records] == ["make the car red", "remove the dog", "add a hat",
                                                "turn day into night"]
    assert records[0].original == folder / "original" / "0001.jpg"
    assert records[0].mask == folder / "mask" / "0001.png"
    assert records[3].mask is None
    assert records[2].meta == {"source": "magicbrush", "turn": 2, "tags": ["object", "add"]}
    assert all(r.meta == {} for r in (records[0], records[1], records[3]))
    assert [r.id for r in iter_manifest(folder / "manifest.jsonl")] == [r.id for r in records]


def test_hand_written_manifest_pixels_and_masks(folder):
    records = read_manifest(folder)
    pairs = [load_pair(r) for r in records]
    assert close(pairs[0]["original"], photo(1)) and close(pairs[0]["image"], photo(11))  # JPEG
    np.testing.assert_array_equal(pairs[1]["original"], photo(2))  # PNG: exact
    np.testing.assert_array_equal(pairs[1]["image"], photo(12))
    np.testing.assert_array_equal(pairs[0]["mask"], region(0, 0))  # 0/255
    np.testing.assert_array_equal(pairs[1]["mask"], region(8, 16))  # 0/1
    np.testing.assert_array_equal(pairs[2]["mask"], region(4, 8))
    assert pairs[3]["has_mask"] is False and not pairs[3]["mask"].any()
    assert not any(p["original_resized"] for p in pairs)


def test_hand_written_manifest_as_samples(folder):
    ds = PairsDataset(folder)
    assert len(ds) == 4 and ds.name == "pairs"
    samples = [validate_sample(ds[i], pair=True) for i in range(len(ds))]
    assert [s["id"] for s in samples] == ["0001", "0002", "0003", "0004"]
    assert samples[1]["instruction"] == "remove the dog"
    assert [s["label"] for s in samples] == [1, 1, 1, 1]
    assert [s["has_mask"] for s in samples] == [True, True, True, False]
    assert samples[0]["image"].shape == (3, H, W) and samples[0]["mask"].shape == (1, H, W)
    np.testing.assert_array_equal(samples[2]["mask"][0].numpy() > 0.5, region(4, 8))
    resized = PairsDataset(folder, Geometry("resize", 32))[0]
    validate_sample(resized, pair=True)
    assert resized["image"].shape == (3, 32, 32) and resized["geometry"] == "resize-32"


def test_write_manifest_round_trip_keeps_metadata(folder, tmp_path):
    records = read_manifest(folder)
    write_manifest(folder, records)
    assert read_manifest(folder) == records
    lines = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert lines[2]["original"] == "original/0003.png" and lines[2]["turn"] == 2


# ---- bad inputs ----------------------------------------------------------------------------------

def test_missing_file_names_it(folder):
    (folder / "edited" / "0002.png").unlink()
    ds = PairsDataset(folder)
    with pytest.raises(DataError) as exc:
        ds[1]
    assert exc.value.reason == "missing" and "0002.png" in str(exc.value)
    assert exc.value.path == str(folder / "edited" / "0002.png")


def test_mask_size_mismatch_names_both_files(folder):
    save(folder / "mask" / "0001.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError) as exc:
        PairsDataset(folder)[0]
    msg = str(exc.value)
    assert exc.value.reason == "size-mismatch"
    assert str(folder / "mask" / "0001.png") in msg and str(folder / "edited" / "0001.jpg") in msg


def test_rgb_mask_is_read_from_colour(folder):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[region(0, 8)] = (255, 0, 0)
    save(folder / "mask" / "0001.png", rgb)
    np.testing.assert_array_equal(load_pair(read_manifest(folder)[0])["mask"], region(0, 8))


def test_jpeg_mask_is_binarized_above_127(folder):
    yy, xx = np.mgrid[:H, :W]
    disk = (yy - 7.5) ** 2 + (xx - 11.3) ** 2 < 6.2 ** 2
    save(folder / "mask" / "0001.jpg", disk.astype(np.uint8) * 255, quality=50)
    write_lines(folder, '{"id": "a", "original": "original/0001.jpg", "edited": "edited/0001.jpg", '
                        '"instruction": "x", "mask": "mask/0001.jpg"}')
    raw = np.asarray(Image.open(folder / "mask" / "0001.jpg"))
    assert len(np.unique(raw)) > 2
    sample = validate_sample(PairsDataset(folder)[0], pair=True)
    np.testing.assert_array_equal(sample["mask"][0].numpy() > 0.5, raw > 127)


def test_original_of_another_size_is_resized_and_flagged(folder):
    save(folder / "original" / "0002.png", photo(2, 32, 48))
    sample = validate_sample(PairsDataset(folder)[1], pair=True)
    assert sample["original_resized"] is True
    assert tuple(sample["original"].shape) == (3, H, W)
    assert PairsDataset(folder)[0]["original_resized"] is False


BAD_LINES = {  # what read_manifest refuses: the lines, the reason, what the message must name
    "invalid JSON": (['{"id": "a", "original": "original/0001.jpg", "edited": "edited/0001.jpg", "instruction": "x"}',
                      '{"id": "b", "original": "original/0002.png", "edited": "edited/0002.png", "instruction": "y"',
                      '{"id": "c", "original": "original/0003.png", "edited": "edited/0003.png"}'],
                     "bad-json", ["manifest.jsonl:2"]),
    "not an object": (['["0001", "original/0001.jpg", "edited/0001.jpg"]'], "bad-json", [":1"]),
    "missing key": (['{"id": "a", "original": "original/0001.jpg", "edited": "edited/0001.jpg"}',
                     '{"id": "b", "original": "original/0002.png", "instruction": "y"}'],
                    "missing-key", ["'edited'", "manifest.jsonl:2"]),
    "duplicate id": (['{"id": "a", "original": "original/0001.jpg", "edited": "edited/0001.jpg"}',
                      '{"id": "a", "original": "original/0002.png", "edited": "edited/0002.png"}'],
                     "duplicate-id", ["'a'"]),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_bad_lines_are_refused_naming_the_file_and_line(folder, case):
    lines, reason, named = BAD_LINES[case]
    write_lines(folder, *lines)
    with pytest.raises(DataError) as exc:
        read_manifest(folder)
    assert exc.value.reason == reason and all(n in str(exc.value) for n in named), str(exc.value)
    assert str(folder / "manifest.jsonl") in str(exc.value)


def test_empty_or_missing_instruction_loads_as_empty_string(folder):
    write_lines(folder,
                '{"id": "a", "original": "original/0001.jpg", "edited": "edited/0001.jpg", "instruction": ""}',
                '{"id": "b", "original": "original/0002.png", "edited": "edited/0002.png"}',
                '{"id": "c", "original": "original/0003.png", "edited": "edited/0003.png", "instruction": null}')
    ds = PairsDataset(folder)
    for i in range(3):
        sample = validate_sample(ds[i], pair=True)
        assert sample["instruction"] == ""


def test_non_string_instruction_is_refused(folder):
    write_lines(folder, '{"id": "a", "original": "original/0001.jpg", "edited": "edited/0001.jpg", "instruction": 5}')
    with pytest.raises(DataError) as exc:
        read_manifest(folder)
    assert exc.value.reason == "bad-value"


def test_require_mask_refuses_unlabelled_pair(folder):
    with pytest.raises(DataError) as exc:
        PairsDataset(folder, require_mask=True)[3]
    assert exc.value.reason == "no-mask" and "0004" in str(exc.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(DataError) as exc:
        read_manifest(tmp_path)
    assert exc.value.reason == "missing" and "manifest.jsonl" in str(exc.value)


def test_integer_id_zero_is_accepted(folder):
    write_lines(folder, '{"id": 0, "original": "original/0001.jpg", "edited": "edited/0001.jpg"}')
    assert read_manifest(folder)[0].id == "0"


def test_duplicate_id_error_gives_file_line_numbers(folder):
    write_lines(folder, '{"id": "a", "original": "o.png", "edited": "e.png"}', "",
                '{"id": "a", "original": "o.png", "edited": "e.png"}')
    with pytest.raises(DataError) as exc:
        read_manifest(folder)
    assert "lines 1 and 3" in str(exc.value) and str(exc.value).startswith(str(folder / "manifest.jsonl"))
