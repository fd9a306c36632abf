"""Image and mask I/O on real files with the oddities found in the wild, one case per test."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from benchmarks.data.errors import DataError
from benchmarks.data.imageio import image_size, load_image, load_mask, resize_image, resize_mask, save_png

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def quadrants(h: int = 16, w: int = 32) -> np.ndarray:
    """Four flat colour quadrants (16-pixel aligned, so JPEG keeps them within a few levels)."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = RED
    a[: h // 2, w // 2:] = GREEN
    a[h // 2:, : w // 2] = BLUE
    a[h // 2:, w // 2:] = WHITE
    return a


def jpeg_with_orientation(path, arr: np.ndarray, orientation: int):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, format="JPEG", quality=95, subsampling=0, exif=exif.tobytes())
    return path


def close(a: np.ndarray, b: np.ndarray, tol: float = 4.0) -> bool:
    return a.shape == b.shape and float(np.abs(a.astype(int) - b.astype(int)).mean()) < tol


# ---- images --------------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation, expected", [
    (1, lambda a: a),
    (3, lambda a: np.rot90(a, 2)),
    (6, lambda a: np.rot90(a, -1)),  # stored rotated left: shown after a 90 degree clockwise turn
    (8, lambda a: np.rot90(a, 1)),
])
def test_exif_orientation_is_applied(tmp_path, orientation, expected):
    stored = quadrants()
    path = jpeg_with_orientation(tmp_path / f"o{orientation}.jpg", stored, orientation)
    assert close(load_image(path), expected(stored))


def test_exif_orientation_6_turns_landscape_into_portrait(tmp_path):
    path = jpeg_with_orientation(tmp_path / "phone.jpg", quadrants(16, 32), 6)
    img = load_image(path)
    assert img.shape == (32, 16, 3)
    assert close(img[:16, :8], np.broadcast_to(np.uint8(BLUE), (16, 8, 3)))  # bottom-left came up to top-left
    assert close(img[:16, 8:], np.broadcast_to(np.uint8(RED), (16, 8, 3)))


def test_image_size_honours_exif_rotation(tmp_path):
    path = jpeg_with_orientation(tmp_path / "phone.jpg", quadrants(16, 32), 6)
    assert image_size(path) == (32, 16) == load_image(path).shape[:2]
    plain = jpeg_with_orientation(tmp_path / "plain.jpg", quadrants(16, 32), 1)
    assert image_size(plain) == (16, 32)


def test_grayscale_becomes_rgb(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.shape == (6, 8, 3) and img.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], gray)


def test_rgba_drops_alpha_keeps_colour(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (10, 200, 30)
    rgba[..., 3] = 0  # fully transparent, colour still stored
    rgba[0, 0] = (250, 1, 2, 255)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.shape == (4, 4, 3)
    assert tuple(img[0, 0]) == (250, 1, 2) and tuple(img[2, 2]) == (10, 200, 30)


def palette_image(transparency: int | None) -> Image.Image:
    img = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    if transparency is not None:
        img.info["transparency"] = transparency
    return img


def test_palette_without_transparency(tmp_path):
    palette_image(None).save(tmp_path / "p.png")
    img = load_image(tmp_path / "p.png")
    assert img.shape == (2, 2, 3)
    assert [tuple(img[0, 0]), tuple(img[0, 1]), tuple(img[1, 0])] == [RED, GREEN, BLUE]


def test_palette_with_transparency(tmp_path):
    palette_image(1).save(tmp_path / "pt.png", transparency=1)
    assert "transparency" in Image.open(tmp_path / "pt.png").info
    img = load_image(tmp_path / "pt.png")
    assert img.shape == (2, 2, 3)
    assert tuple(img[0, 1]) == GREEN and tuple(img[0, 0]) == RED  # the transparent index keeps its colour


def test_16bit_grayscale_is_scaled_by_257(tmp_path):
    raw = np.array([[0, 257, 1000], [32768, 65280, 65535]], np.uint16)
    Image.fromarray(raw).save(tmp_path / "d16.png")
    assert Image.open(tmp_path / "d16.png").mode.startswith("I")
    img = load_image(tmp_path / "d16.png")
    np.testing.assert_array_equal(img[:, :, 0], np.round(raw / 257.0).astype(np.uint8))
    assert img.dtype == np.uint8


def test_1bit_image(tmp_path):
    bits = np.array([[0, 1, 1], [1, 0, 0]], bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    img = load_image(tmp_path / "b.png")
    np.testing.assert_array_equal(img[:, :, 1], bits.astype(np.uint8) * 255)


def test_loaded_image_is_writable(tmp_path):
    Image.fromarray(quadrants()).save(tmp_path / "q.png")
    img = load_image(tmp_path / "q.png")
    assert img.flags.writeable and img.flags.c_contiguous
    img[0, 0] = 0  # callers (and torch.from_numpy) may write into it


def test_resized_arrays_are_writable_and_typed():
    img = resize_image(quadrants(16, 32), (8, 12))
    assert img.shape == (8, 12, 3) and img.dtype == np.uint8 and img.flags.writeable
    mask = resize_mask(np.eye(16, dtype=bool), (32, 32))
    assert mask.shape == (32, 32) and mask.dtype == bool and mask.flags.writeable


def test_truncated_jpeg_is_corrupt_and_named(tmp_path):
    src = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(src, quality=90)
    cut = tmp_path / "cut.jpg"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as exc:
        load_image(cut)
    assert exc.value.reason == "corrupt" and exc.value.path == str(cut) and "cut.jpg" in str(exc.value)


def test_truncated_jpeg_bytes_use_the_given_name():
    import io
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    with pytest.raises(DataError) as exc:
        load_image(data[: len(data) // 2], name="shard-3.parquet#17:edited_image")
    assert exc.value.reason == "corrupt" and "shard-3.parquet#17" in str(exc.value)


def test_non_image_file_is_corrupt(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(DataError) as exc:
        load_image(path)
    assert exc.value.reason == "corrupt" and "notes.png" in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as exc:
        load_image(tmp_path / "nowhere.jpg")
    assert exc.value.reason == "missing" and "nowhere.jpg" in str(exc.value)
    with pytest.raises(DataError) as exc:
        load_mask(tmp_path / "nowhere.png")
    assert exc.value.reason == "missing"


def test_empty_bytes_and_empty_file(tmp_path):
    with pytest.raises(DataError) as exc:
        load_image(b"", name="row-5")
    assert exc.value.reason == "corrupt" and "row-5" in str(exc.value)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError) as exc:
        load_image(tmp_path / "empty.jpg")
    assert exc.value.reason == "corrupt"


def test_image_size_errors(tmp_path):
    with pytest.raises(DataError) as exc:
        image_size(tmp_path / "nowhere.jpg")
    assert exc.value.reason == "missing"
    (tmp_path / "bad.jpg").write_text("nope")
    with pytest.raises(DataError) as exc:
        image_size(tmp_path / "bad.jpg")
    assert exc.value.reason == "corrupt"


# ---- masks ---------------------------------------------------------------------------------------

def region(h: int = 16, w: int = 24) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[8:16, 8:16] = True
    return m


def test_mask_0_255(tmp_path):
    Image.fromarray(region().astype(np.uint8) * 255).save(tmp_path / "m.png")
    m = load_mask(tmp_path / "m.png")
    assert m.dtype == bool
    np.testing.assert_array_equal(m, region())


def test_mask_0_1(tmp_path):
    Image.fromarray(region().astype(np.uint8)).save(tmp_path / "m01.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "m01.png"), region())


def test_mask_16bit_0_1_and_0_65535(tmp_path):
    Image.fromarray(region().astype(np.uint16)).save(tmp_path / "m16a.png")
    Image.fromarray(region().astype(np.uint16) * 65535).save(tmp_path / "m16b.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "m16a.png"), region())
    np.testing.assert_array_equal(load_mask(tmp_path / "m16b.png"), region())


def test_mask_red_on_black(tmp_path):
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[region()] = RED
    Image.fromarray(rgb).save(tmp_path / "red.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "red.png"), region())


def test_mask_jpeg_compressed_is_binarized_above_127(tmp_path):
    yy, xx = np.mgrid[:32, :32]
    disk = (yy - 15.5) ** 2 + (xx - 13.2) ** 2 < 9.3 ** 2  # curved edges: compression leaves grey pixels
    Image.fromarray(disk.astype(np.uint8) * 255).save(tmp_path / "m.jpg", quality=60)
    raw = np.asarray(Image.open(tmp_path / "m.jpg"))
    assert len(np.unique(raw)) > 10 and raw.max() > 1
    mask = load_mask(tmp_path / "m.jpg")
    np.testing.assert_array_equal(mask, raw > 127)
    assert (mask == disk).mean() > 0.97


def test_mask_threshold_is_strictly_above_127(tmp_path):
    Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8)).save(tmp_path / "t.png")
    assert load_mask(tmp_path / "t.png").tolist() == [[False, False, True, True]]


def test_mask_inverted_polarity(tmp_path):
    Image.fromarray((~region()).astype(np.uint8) * 255).save(tmp_path / "black_marks_edit.png")  # NIST16 style
    np.testing.assert_array_equal(load_mask(tmp_path / "black_marks_edit.png", invert=True), region())


def test_mask_1bit(tmp_path):
    Image.fromarray(region()).save(tmp_path / "m1.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "m1.png"), region())


def test_mask_rgba_reads_colour_not_alpha(tmp_path):
    rgba = np.zeros((16, 24, 4), np.uint8)
    rgba[region(), :3] = WHITE
    rgba[..., 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "rgba.png"), region())


def test_all_black_mask_is_empty(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "z.png")
    assert not load_mask(tmp_path / "z.png").any()


def test_save_png_round_trips_a_bool_mask(tmp_path):
    save_png(tmp_path / "out" / "m.png", region())
    assert not list((tmp_path / "out").glob("*.tmp"))
    assert np.asarray(Image.open(tmp_path / "out" / "m.png")).max() == 255
    np.testing.assert_array_equal(load_mask(tmp_path / "out" / "m.png"), region())


def test_two_level_mask_with_any_nonzero_value_is_edited(tmp_path):
    """docs/design.md: nonzero = edited. A clean 0/50 mask is read as such, not thresholded to nothing."""
    arr = np.zeros((6, 8), np.uint8)
    arr[1:3, 2:5] = 50
    path = tmp_path / "m.png"
    Image.fromarray(arr).save(path)
    assert np.array_equal(load_mask(path), arr > 0)
