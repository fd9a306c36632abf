"""Image and mask I/O that survives real files.

Images come back as uint8 RGB arrays (H, W, 3) and masks as bool arrays (H, W). Every failure raises
:class:`DataError` naming the file and the reason (``missing``, ``corrupt``, ``unsupported``), so a long
stream can log and count it instead of dying, and a short command can stop with a message that says what
to fix.

What is normalised, and how:

- EXIF orientation is applied (phones store rotated JPEGs);
- grayscale, palette, CMYK, LA/RGBA (alpha dropped, colour kept) become RGB;
- 16-bit and float inputs are rescaled to 8 bits from their own range (``I;16``: /257);
- masks: any colour channel counts (a red-on-black mask is read correctly); a clean two-level mask (0 and
  one other value: 0/1, 0/255, 0/50) means nonzero = edited, as docs/design.md defines; a mask with more
  levels (JPEG-compressed, anti-aliased) is binarized at > ``threshold`` (127). Polarity (``invert``) is
  the caller's choice: NIST16 marks edits in black.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from benchmarks.data.errors import DataError
from benchmarks.io import atomic_open

Image.MAX_IMAGE_PIXELS = 250_000_000  # big scans are fine; decompression bombs beyond this still fail loudly

Source = str | Path | bytes


def _open(source: Source, name: str) -> Image.Image:
    if isinstance(source, bytes):
        if not source:
            raise DataError(f"{name}: empty image bytes", path=name, reason="corrupt")
        fh = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path}: file not found (check the path, relative to the dataset folder)",
                            path=path, reason="missing")
        fh = open(path, "rb")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fh)
            img.load()  # decode now, so truncation surfaces here and not later in a worker
        return img
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{name}: cannot decode image ({exc}); the file is truncated, corrupt or not an image",
                        path=name, reason="corrupt") from exc
    finally:
        if not isinstance(source, bytes):
            fh.close()


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Rescale a 16-bit / 32-bit / float array to uint8 from its type range (float: [0,1] or its own max)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16 or (np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) > 255):
        top = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
        return np.clip(np.round(arr.astype(np.float64) / top * 255.0), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        top = 1.0 if arr.max(initial=0.0) <= 1.0 else float(arr.max())
        return np.clip(np.round(arr.astype(np.float64) / top * 255.0), 0, 255).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _pil_to_array(img: Image.Image, name: str, *, rescale: bool = True) -> np.ndarray:
    """Pixels as an array in the image's own channels, 8 bits (unless not `rescale`), EXIF orientation applied."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not lose an otherwise readable image
        pass
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _to_uint8(np.asarray(img)) if rescale else np.asarray(img)
    if mode == "1":
        return np.asarray(img.convert("L"))
    if mode in ("P", "PA"):
        img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    if img.mode not in ("L", "LA", "RGB", "RGBA"):
        raise DataError(f"{name}: unsupported image mode {img.mode!r}; convert it to RGB or grayscale",
                        path=name, reason="unsupported")
    return np.asarray(img)


def load_image(source: Source, name: str | None = None) -> np.ndarray:
    """Read an image as uint8 RGB (H, W, 3). `name` labels errors when `source` is bytes."""
    name = name or str(source if not isinstance(source, bytes) else "<bytes>")
    arr = _pil_to_array(_open(source, name), name)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 2:  # LA
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    elif arr.shape[2] == 4:  # RGBA: keep the colour, drop the alpha
        arr = arr[:, :, :3]
    arr = np.ascontiguousarray(arr)
    return arr if arr.flags.writeable else arr.copy()  # np.asarray(PIL image) is read-only


VERBATIM = {"PNG": ".png", "JPEG": ".jpg"}  # formats whose files are kept as they are (see verbatim_suffix)


def verbatim_suffix(data: bytes) -> str | None:
    """The file suffix under which encoded image `data` can be written out unchanged: when it is an 8-bit
    RGB PNG (no transparency) or an RGB JPEG, without EXIF rotation, every reader decodes it to the pixels
    :func:`load_image` returns. None otherwise: write the decoded pixels instead."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in VERBATIM or img.mode != "RGB" or "transparency" in img.info:
                return None
            if img.format == "PNG" and any(t[3] != "RGB" for t in img.tile):  # 16-bit: PIL keeps the top byte
                return None
            if img.getexif().get(0x0112, 1) != 1:
                return None
            return VERBATIM[img.format]
    except Exception:  # undecodable headers were refused by load_image already; never keep them
        return None


def load_mask(source: Source, name: str | None = None, *, invert: bool = False, threshold: int = 127) -> np.ndarray:
    """Read a mask as bool (H, W), True = edited. See the module docstring for the binarization rule."""
    name = name or str(source if not isinstance(source, bytes) else "<bytes>")
    arr = _pil_to_array(_open(source, name), name, rescale=False)
    if arr.ndim == 3:
        channels = arr.shape[2]
        color = arr[:, :, : 3 if channels >= 3 else 1]
        arr = color.max(axis=2)
    if arr.dtype != np.uint8 and not (np.issubdtype(arr.dtype, np.integer) and int(arr.max(initial=0)) <= 1):
        arr = _to_uint8(arr)  # 16-bit / float: rescale only after the 0/1 test, which reads the stored values
    levels = np.bincount(arr.ravel(), minlength=256) > 0
    # a clean two-level mask (0 and one other value: 0/1, 0/255, 0/50) means "nonzero = edited";
    # anything with more levels (JPEG-compressed, anti-aliased) is binarized at the threshold
    mask = arr > 0 if levels.sum() <= 2 and levels[0] else arr > threshold
    return ~mask if invert else mask


def image_size(source: str | Path) -> tuple[int, int]:
    """(H, W) of an image file without decoding the pixels (EXIF rotation taken into account)."""
    name = str(source)
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: file not found", path=path, reason="missing")
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{name}: cannot read image header ({exc})", path=name, reason="corrupt") from exc
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def save_png(path: str | Path, array: np.ndarray) -> None:
    """Write uint8 (H,W) / (H,W,3) or bool (H,W) as PNG (bool → 0/255), atomically (write then rename)."""
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    with atomic_open(path, "wb") as fh:
        Image.fromarray(np.ascontiguousarray(array)).save(fh, format="PNG", compress_level=1)


def save_jpeg(path: str | Path, array: np.ndarray, quality: int = 95) -> None:
    """Write uint8 RGB as JPEG, atomically."""
    with atomic_open(path, "wb") as fh:
        Image.fromarray(np.ascontiguousarray(array)).save(fh, format="JPEG", quality=int(quality))


def resize_image(array: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 RGB image to (H, W) with an antialiasing filter."""
    if tuple(array.shape[:2]) == tuple(hw):
        return array
    return np.array(Image.fromarray(array).resize((hw[1], hw[0]), Image.Resampling.BICUBIC))  # writable copy


def resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask to (H, W) with nearest neighbour (keeps it binary)."""
    if tuple(mask.shape[:2]) == tuple(hw):
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((hw[1], hw[0]), Image.Resampling.NEAREST)
    return np.asarray(img) > 127
