"""IML readers and public-benchmark adapters, each on a tiny fixture built here in its dataset's real layout."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from benchmarks.data.adapters import adapter_names, get_adapter
from benchmarks.data.errors import DataError
from benchmarks.data.iml import (ImlDataset, ImlItem, decode_columbia_edgemask, list_iml, load_item, open_iml,
                                 read_benco_json, read_tp_gt, write_benco_json)
from benchmarks.data.schema import validate_sample
from benchmarks.data.transforms import Geometry

H, W = 16, 24


def box(y0: int, y1: int, x0: int, x1: int, hw: tuple[int, int] = (H, W)) -> np.ndarray:
    m = np.zeros(hw, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def photo(seed: int, hw: tuple[int, int] = (H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray) -> Path:
    """Write by extension: JPEG (q95), TIFF, PNG; bool arrays become 0/255 grayscale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    img = Image.fromarray(array)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(path, quality=95)
    else:
        img.save(path)
    return path


def masks_of(items: list[ImlItem]) -> dict[str, np.ndarray]:
    return {it.id: load_item(it)["mask"] for it in items}


def assert_masks(items: list[ImlItem], expected: dict[str, np.ndarray]) -> None:
    got = masks_of(items)
    assert sorted(got) == sorted(expected)
    for key, mask in expected.items():
        assert np.array_equal(got[key], mask), key


# ------------------------------------------------------------------------------------------ generic readers


def test_benco_json_roundtrip_relative_absolute_and_negative(tmp_path):
    root = tmp_path / "ds"
    img_a, img_b = save(root / "img" / "a.jpg", photo(1)), save(root / "img" / "b.png", photo(2))
    outside = save(tmp_path / "elsewhere" / "a_mask.png", box(2, 9, 3, 11))  # outside the JSON's folder
    path = write_benco_json(root / "list.json", [(img_a, outside), (img_b, None)])
    rows = json.loads(path.read_text())
    assert rows[0][0] == "img/a.jpg" and rows[0][1] == "../elsewhere/a_mask.png" and rows[1] == ["img/b.png", "Negative"]
    assert not (root / "list.json.tmp").exists()
    items = read_benco_json(path)
    assert [(it.id, it.label) for it in items] == [("a", 1), ("b", 0)]
    assert_masks(items, {"a": box(2, 9, 3, 11), "b": np.zeros((H, W), bool)})
    ds = ImlDataset(items, Geometry("resize", 32), name="benco")
    for i in range(len(ds)):
        sample = validate_sample(ds[i])
        assert sample["dataset"] == "benco" and sample["geometry"] == "resize-32"
    assert ds[0]["mask"].sum() > 0 and ds[1]["mask"].sum() == 0 and ds.labels == [1, 0]


def test_benco_json_errors_name_the_entry(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1}')
    with pytest.raises(DataError, match="expected a list"):
        read_benco_json(bad)
    bad.write_text('[["only-one"]]')
    with pytest.raises(DataError, match="entry 0"):
        read_benco_json(bad)
    bad.write_text('[["missing.jpg", "Negative"]]')
    with pytest.raises(DataError, match="missing.jpg"):
        read_benco_json(bad)


def test_write_benco_refuses_masks_that_need_decoding(tmp_path):
    item = ImlItem("x", tmp_path / "x.jpg", tmp_path / "x.png", invert=True)
    with pytest.raises(DataError, match="save the decoded mask"):
        write_benco_json(tmp_path / "out.json", [item])


def test_tp_gt_matches_by_stem_not_sort_order(tmp_path, caplog):
    # sorted images: b1.jpg, b10.jpg; sorted masks: b10.png, b1_gt.tif -- pairing by order would swap them
    save(tmp_path / "Tp" / "b1.jpg", photo(1))
    save(tmp_path / "Tp" / "b10.jpg", photo(2))
    save(tmp_path / "Gt" / "b10.png", box(0, 4, 0, 4))
    save(tmp_path / "Gt" / "b1_gt.tif", box(8, 16, 12, 24))
    save(tmp_path / "Gt" / "orphan_mask.png", box(0, 1, 0, 1))
    save(tmp_path / "Au" / "real.jpg", photo(3))
    with caplog.at_level(logging.WARNING):
        items = read_tp_gt(tmp_path)
    assert "orphan_mask.png" in caplog.text
    assert [it.id for it in items] == ["b1", "b10", "real"]
    assert_masks(items, {"b1": box(8, 16, 12, 24), "b10": box(0, 4, 0, 4), "real": np.zeros((H, W), bool)})


def test_tp_gt_image_without_mask_is_an_error(tmp_path):
    save(tmp_path / "Tp" / "lonely.jpg", photo(1))
    (tmp_path / "Gt").mkdir()
    with pytest.raises(DataError, match="lonely"):
        read_tp_gt(tmp_path)


def test_mask_size_mismatch_names_both_files_unless_opted_in(tmp_path, caplog):
    image = save(tmp_path / "i.png", photo(1))
    mask = save(tmp_path / "m.png", box(0, 16, 0, 24, hw=(32, 48)))
    with pytest.raises(DataError, match=r"m\.png.*48x32.*i\.png.*24x16"):
        load_item(ImlItem("i", image, mask))
    with caplog.at_level(logging.WARNING):
        out = load_item(ImlItem("i", image, mask, resize_mismatched_masks=True))
    assert out["mask_resized"] and np.array_equal(out["mask"], box(0, 8, 0, 12)) and "resized" in caplog.text


def test_missing_mask_file_at_load_time(tmp_path):
    image = save(tmp_path / "i.png", photo(1))
    with pytest.raises(DataError, match="gone.png") as info:
        load_item(ImlItem("i", image, tmp_path / "gone.png"))
    assert info.value.reason == "missing"


def test_open_iml_dispatch_and_errors(tmp_path):
    save(tmp_path / "tpgt" / "Tp" / "a.jpg", photo(1))
    save(tmp_path / "tpgt" / "Gt" / "a.png", box(1, 5, 1, 5))
    assert len(open_iml(tmp_path / "tpgt")) == 1
    write_benco_json(tmp_path / "l.json", [(tmp_path / "tpgt" / "Tp" / "a.jpg", None)])
    ds = open_iml(tmp_path / "l.json")
    assert ds.name == "l" and ds.labels == [0]
    _casia1_tree(tmp_path / "c1")
    ds = open_iml(f"casia1:{tmp_path / 'c1'}", include_authentic=False)
    assert ds.name == "casia1" and set(ds.labels) == {1}
    with pytest.raises(DataError, match="casia1.*sidset|Tp/"):
        list_iml(tmp_path / "nothing-here")
    with pytest.raises(DataError, match="apply only to adapters"):
        list_iml(tmp_path / "l.json", quality=90)


def test_registry_errors_list_the_names(tmp_path):
    with pytest.raises(DataError, match="known adapters.*casia1"):
        get_adapter("casia3")
    with pytest.raises(DataError, match="accepted options"):
        get_adapter("casia1")(tmp_path, qualiti=3)


@pytest.mark.parametrize("name", adapter_names())
def test_every_adapter_rejects_a_root_that_is_not_its_dataset(tmp_path, name):
    save(tmp_path / "unrelated" / "x.jpg", photo(1))
    with pytest.raises(DataError, match="expected|found|no |not found"):
        get_adapter(name)(tmp_path)
    with pytest.raises(DataError, match="not found"):
        get_adapter(name)(tmp_path / "absent")


# ------------------------------------------------------------------------------------------ CASIA


def _casia1_tree(root: Path) -> dict[str, np.ndarray]:
    expected = {"Sp_D_CND_A_pla0005_pla0023_0281": box(2, 10, 4, 12),
                "Sp_S_CND_A_pla0016_pla0016_0196": box(0, 6, 10, 24)}  # CM files are named Sp_S_*
    tp = root / "CASIA 1.0 dataset" / "Modified Tp" / "Tp"
    gt = root / "CASIA 1.0 groundtruth"
    for (stem, mask), sub in zip(expected.items(), ("Sp", "CM")):
        save(tp / sub / f"{stem}.jpg", photo(len(stem)))
        save(gt / sub / f"{stem}_gt.png", mask)
    save(root / "CASIA 1.0 dataset" / "Au" / "Au_ani_0001.jpg", photo(9))
    return expected | {"Au_ani_0001": np.zeros((H, W), bool)}


def test_casia1(tmp_path):
    expected = _casia1_tree(tmp_path)
    items = get_adapter("casia1")(tmp_path)
    assert [it.id for it in items] == sorted(expected)
    assert_masks(items, expected)
    assert {it.id: it.label for it in items}["Au_ani_0001"] == 0


def test_casia1_missing_mask_errors_or_skips(tmp_path):
    _casia1_tree(tmp_path)
    (tmp_path / "CASIA 1.0 groundtruth" / "CM" / "Sp_S_CND_A_pla0016_pla0016_0196_gt.png").unlink()
    with pytest.raises(DataError, match="Sp_S_CND_A_pla0016_pla0016_0196"):
        get_adapter("casia1")(tmp_path)
    items = get_adapter("casia1")(tmp_path, on_missing="skip", include_authentic=False)
    assert [it.id for it in items] == ["Sp_D_CND_A_pla0005_pla0023_0281"]


def test_casia2_jpg_and_tif(tmp_path):
    expected = {"Tp_D_CRN_S_N_nat00033_cha00086_11502": box(1, 9, 1, 9),
                "Tp_S_NRN_S_N_pla20093_pla20093_01993": box(5, 16, 0, 7)}
    base = tmp_path / "CASIA2.0_revised"
    save(base / "Tp" / "Tp_D_CRN_S_N_nat00033_cha00086_11502.jpg", photo(1))
    save(base / "Tp" / "Tp_S_NRN_S_N_pla20093_pla20093_01993.tif", photo(2))
    for stem, mask in expected.items():
        save(tmp_path / "CASIA 2 Groundtruth" / f"{stem}_gt.png", mask)
    save(base / "Au" / "Au_ani_00001.jpg", photo(3))
    items = get_adapter("casia2")(tmp_path)
    assert_masks(items, expected | {"Au_ani_00001": np.zeros((H, W), bool)})


# ------------------------------------------------------------------------------------------ Columbia


def _edgemask(spliced: np.ndarray) -> np.ndarray:
    """Columbia colours: spliced side green, host side red; bright shades in a band along the boundary."""
    from scipy import ndimage

    near = ndimage.binary_dilation(spliced, iterations=2) & ~ndimage.binary_erosion(spliced, iterations=2)
    rgb = np.zeros((*spliced.shape, 3), np.uint8)
    rgb[spliced] = (0, 200, 0)
    rgb[~spliced] = (200, 0, 0)
    rgb[spliced & near] = (0, 255, 0)
    rgb[~spliced & near] = (255, 0, 0)
    return rgb


def test_columbia_edgemask_jpeg_decodes_to_filled_region(tmp_path):
    spliced = box(8, 24, 16, 40, hw=(32, 48))  # boundaries on the 8x8 JPEG grid, as the real masks roughly are
    stem = "canong3_canonxt_sub_01"
    save(tmp_path / "4cam_splc" / f"{stem}.tif", photo(1, (32, 48)))
    save(tmp_path / "4cam_splc" / "edgemask" / f"{stem}_edgemask.jpg", _edgemask(spliced))
    save(tmp_path / "4cam_splc" / "edgemask" / f"{stem}_edgemask_3.jpg", _edgemask(~spliced))  # variant: ignored
    save(tmp_path / "4cam_auth" / "canong3_02_sub_01.tif", photo(2, (32, 48)))
    items = get_adapter("columbia")(tmp_path)
    assert_masks(items, {stem: spliced, "canong3_02_sub_01": np.zeros((32, 48), bool)})
    assert {it.id: it.mask_reader for it in items}[stem] == "columbia_edgemask"


def test_columbia_decoder_fills_undecided_pixels_and_survives_noise():
    spliced = box(4, 12, 6, 18)
    rgb = _edgemask(spliced).astype(np.int16)
    rgb += np.random.default_rng(0).integers(-20, 21, rgb.shape)  # JPEG-like colour noise
    rgb[6, 10] = rgb[1, 1] = (0, 0, 0)  # dark specks inside each side
    rgb[0, :] = (0, 0, 200)  # a blue edge line on the host side
    assert np.array_equal(decode_columbia_edgemask(np.clip(rgb, 0, 255).astype(np.uint8)), spliced)
    with pytest.raises(DataError, match="no green"):
        decode_columbia_edgemask(np.full((4, 4, 3), (200, 0, 0), np.uint8))


# ------------------------------------------------------------------------------------------ COVERAGE, NIST16


def test_coverage_forged_mask_only(tmp_path):
    forged = box(3, 12, 2, 9)
    save(tmp_path / "image" / "1t.tif", photo(1))
    save(tmp_path / "image" / "1.tif", photo(2))
    save(tmp_path / "mask" / "1forged.tif", forged)
    save(tmp_path / "mask" / "1copy.tif", box(0, 16, 0, 24))  # source of the copy: not the GT
    save(tmp_path / "mask" / "1paste.tif", box(0, 2, 0, 2))
    items = get_adapter("coverage")(tmp_path)
    assert_masks(items, {"1t": forged, "1": np.zeros((H, W), bool)})
    save(tmp_path / "mask" / "1forged.tif", box(6, 24, 4, 18, hw=(32, 48)))  # known off-size COVERAGE masks
    assert np.array_equal(load_item(get_adapter("coverage")(tmp_path)[1])["mask"], box(3, 12, 2, 9))
    with pytest.raises(DataError, match="size"):
        load_item(get_adapter("coverage")(tmp_path, resize_mismatched_masks=False)[1])


NIST_HEADER = ("TaskID|ProbeFileID|ProbeFileName|ProbeMaskFileName|DonorFileID|DonorFileName|DonorMaskFileName|"
               "IsTarget|ProbePostProcessed|DonorPostProcessed|ManipulationQuality|IsManipulationTypeRemoval|"
               "IsManipulationTypeSplice|IsManipulationTypeCopyClone|Collection|BaseFileName|Lighting|IsControl|"
               "CorrespondingControlFileName|SemanticConsistency")


def _nist_row(pid: str, mask: str, target: str) -> str:
    return "|".join(["manipulation", pid, f"probe/{pid}.jpg", mask, "", "", "", target, "", "", "", "N", "Y", "N",
                     "Nimble-WEB", f"world/{pid}.jpg", "", "N", "", ""])


def test_nist16_inverted_black_masks(tmp_path):
    manipulated = box(4, 10, 5, 20)
    save(tmp_path / "probe" / "NC2016_0001.jpg", photo(1))
    save(tmp_path / "probe" / "NC2016_0002.jpg", photo(2))
    nist_mask = np.where(manipulated, 0, 255).astype(np.uint8)  # NIST: black = manipulated
    save(tmp_path / "reference" / "manipulation" / "mask" / "NC2016_0001.png", nist_mask)
    ref = tmp_path / "reference" / "manipulation" / "NC2016-manipulation-ref.csv"
    ref.write_text("\n".join([NIST_HEADER, _nist_row("NC2016_0001", "reference/manipulation/mask/NC2016_0001.png", "Y"),
                              _nist_row("NC2016_0002", "", "N")]) + "\n")
    items = get_adapter("nist16")(tmp_path)
    assert all(it.invert for it in items if it.label)
    assert_masks(items, {"NC2016_0001": manipulated, "NC2016_0002": np.zeros((H, W), bool)})
    ref.write_text("ProbeFileName,IsTarget\nx.jpg,Y\n")  # comma-separated: wrong format
    with pytest.raises(DataError, match="ProbeMaskFileName"):
        get_adapter("nist16")(tmp_path)


def test_nist16_missing_mask_file(tmp_path):
    save(tmp_path / "probe" / "NC2016_0001.jpg", photo(1))
    ref = tmp_path / "reference" / "manipulation" / "NC2016-manipulation-ref.csv"
    ref.parent.mkdir(parents=True)
    ref.write_text(NIST_HEADER + "\n" + _nist_row("NC2016_0001", "reference/manipulation/mask/gone.png", "Y") + "\n")
    with pytest.raises(DataError, match="NC2016_0001"):
        get_adapter("nist16")(tmp_path)


# ------------------------------------------------------------------------------------------ IMD2020 ... AutoSplice


def test_imd2020_folder_per_photo(tmp_path):
    expected = {"1a1ogs/c8tf5mq_0": box(0, 8, 0, 8), "1a3oag/c8ttq2x_0": box(8, 16, 8, 24),
                "1a3oag/c8ttq2x_1": box(2, 4, 2, 20)}
    save(tmp_path / "1a1ogs" / "1a1ogs_orig.jpg", photo(1))
    save(tmp_path / "1a1ogs" / "c8tf5mq_0.png", photo(2))
    save(tmp_path / "1a3oag" / "1a3oag_orig.jpg", photo(3))
    save(tmp_path / "1a3oag" / "c8ttq2x_0.jpg", photo(4))
    save(tmp_path / "1a3oag" / "c8ttq2x_1.jpg", photo(5))
    for key, mask in expected.items():
        save(tmp_path / f"{key}_mask.png", mask)
    items = get_adapter("imd2020")(tmp_path)
    zero = np.zeros((H, W), bool)
    assert_masks(items, expected | {"1a1ogs/1a1ogs_orig": zero, "1a3oag/1a3oag_orig": zero})
    (tmp_path / "1a3oag" / "c8ttq2x_1_mask.png").unlink()
    with pytest.raises(DataError, match="c8ttq2x_1"):
        get_adapter("imd2020")(tmp_path)


def test_cocoglide_fake_mask_real(tmp_path):
    base = tmp_path / "CocoGlide"  # the zip's wrapper folder
    inpainted = box(3, 13, 6, 18)
    save(base / "fake" / "airplane_44652.png", photo(1))
    save(base / "mask" / "airplane_44652_mask.png", inpainted)
    save(base / "real" / "airplane_44652.png", photo(2))
    items = get_adapter("cocoglide")(tmp_path)
    assert_masks(items, {"fake/airplane_44652": inpainted, "real/airplane_44652": np.zeros((H, W), bool)})


def test_autosplice_quality_folders_and_shared_mask(tmp_path):
    region = box(0, 10, 4, 16)
    for q in (100, 90):
        save(tmp_path / f"Forged_JPEG{q}" / "71695_0.jpg", photo(1))
        save(tmp_path / f"Forged_JPEG{q}" / "71695_1.jpg", photo(2))
    save(tmp_path / "Mask" / "71695_mask.png", region)
    save(tmp_path / "Authentic" / "71695.jpg", photo(3))
    items = get_adapter("autosplice")(tmp_path, quality=90)
    assert all("JPEG90" in str(it.image) for it in items if it.label)
    assert_masks(items, {"71695_0": region, "71695_1": region, "authentic/71695": np.zeros((H, W), bool)})
    with pytest.raises(DataError, match="Forged_JPEG75.*Forged_JPEG100"):
        get_adapter("autosplice")(tmp_path, quality=75)


# ------------------------------------------------------------------------------------------ MagicBrush


def _rgba_mask(source: np.ndarray, edit: np.ndarray) -> np.ndarray:
    """MagicBrush mask: the source image with the edit region made transparent."""
    return np.dstack([source, np.where(edit, 0, 255).astype(np.uint8)])


def _magicbrush_tree(base: Path, with_json: bool) -> tuple[np.ndarray, np.ndarray]:
    folder = base / "images" / "139"
    edit1, edit2 = box(0, 6, 0, 10), box(10, 16, 14, 24)
    save(folder / "139-input.png", photo(1))
    save(folder / "139-output1.png", photo(2))
    save(folder / "139-output2.png", photo(3))
    big = lambda m: np.kron(m, np.ones((2, 2), bool))  # noqa: E731 -- masks ship at another resolution
    save(folder / "139-mask1.png", _rgba_mask(photo(1, (32, 48)), big(edit1)))
    save(folder / "139-mask2.png", _rgba_mask(photo(2, (32, 48)), big(edit2)))
    if with_json:
        turns = [{"input": "139-input.png", "output": "139-output1.png", "mask": "139-mask1.png",
                  "instruction": "add a hat"},
                 {"input": "139-output1.png", "output": "139-output2.png", "mask": "139-mask2.png",
                  "instruction": "make the dog red"}]
        (base / "edit_sessions.json").write_text(json.dumps({"139": turns}))
    return edit1, edit2


@pytest.mark.parametrize("with_json", [True, False])
def test_magicbrush_alpha_masks_union_over_turns(tmp_path, with_json):
    edit1, edit2 = _magicbrush_tree(tmp_path / "test", with_json)
    items = get_adapter("magicbrush")(tmp_path, include_authentic=True)
    assert {it.id: it.label for it in items} == {"139/turn1": 1, "139/turn2": 1, "139/input": 0}
    assert_masks(items, {"139/turn1": edit1, "139/turn2": edit1 | edit2, "139/input": np.zeros((H, W), bool)})
    if with_json:
        assert {it.id: it.meta.get("instruction") for it in items}["139/turn2"] == "make the dog red"
    last = get_adapter("magicbrush")(tmp_path / "test", turns="last")
    assert [it.id for it in last] == ["139/turn2"] and last[0].image.name == "139-output2.png"


def test_magicbrush_mask_without_alpha_is_an_error(tmp_path):
    _magicbrush_tree(tmp_path, with_json=True)
    save(tmp_path / "images" / "139" / "139-mask1.png", photo(5))  # RGB: no alpha
    with pytest.raises(DataError, match="no alpha"):
        load_item(get_adapter("magicbrush")(tmp_path)[0])


# ------------------------------------------------------------------------------------------ SID-Set


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8) * 255 if array.dtype == bool else array).save(buf, format="PNG")
    return buf.getvalue()


def test_sidset_parquet_row_groups(tmp_path, monkeypatch):
    tampered = {"tampered_29551": box(2, 8, 2, 8), "tampered_25335": box(8, 16, 0, 24)}
    rows = [("9f2c2560a72d603c", 0, None), ("tampered_29551", 2, tampered["tampered_29551"]),
            ("full_synthetic_063970", 1, None), ("tampered_25335", 2, tampered["tampered_25335"]),
            ("824dafcc529ea513", 0, None)]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # the hub's Image feature
    table = pa.table({
        "img_id": [r[0] for r in rows],
        "image": pa.array([{"bytes": _png(photo(i)), "path": None} for i in range(len(rows))], image_type),
        "mask": pa.array([None if r[2] is None else {"bytes": _png(r[2]), "path": None} for r in rows], image_type),
        "width": [W] * len(rows), "height": [H] * len(rows), "label": [r[1] for r in rows]})
    path = tmp_path / "data" / "validation-00000-of-00001.parquet"
    path.parent.mkdir()
    pq.write_table(table, path, row_group_size=2)
    assert pq.ParquetFile(path).num_row_groups == 3

    def whole_file(*args, **kwargs):
        raise AssertionError("read the whole parquet file")

    monkeypatch.setattr(pq.ParquetFile, "read", whole_file)
    monkeypatch.setattr(pq, "read_table", whole_file)
    items = get_adapter("sidset")(tmp_path, split="validation")
    zero = np.zeros((H, W), bool)
    assert_masks(items, tampered | {"9f2c2560a72d603c": zero, "824dafcc529ea513": zero})
    assert {it.id: it.row for it in items}["tampered_25335"] == (1, 1)
    ds = ImlDataset(items, name="sidset")
    sample = validate_sample(ds[[it.id for it in items].index("tampered_25335")])
    assert sample["label"] == 1 and np.array_equal(sample["mask"][0].numpy() > 0, tampered["tampered_25335"])
    assert np.allclose(sample["image"].permute(1, 2, 0).numpy() * 255, photo(3))
    whole = {it.id: it for it in get_adapter("sidset")(tmp_path, synthetic="whole", include_authentic=False)}
    assert sorted(whole) == ["full_synthetic_063970", "tampered_25335", "tampered_29551"]
    assert load_item(whole["full_synthetic_063970"])["mask"].all()
    with pytest.raises(DataError, match="starting with 'train'"):
        get_adapter("sidset")(tmp_path, split="train")
