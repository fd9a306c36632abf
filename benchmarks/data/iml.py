"""IML datasets (detector training and testing): items, the generic readers, and the Sample dataset.

An :class:`ImlItem` says where an image and its mask are and how the mask is read. Readers only *list*
items (cheap, even for 100k images); nothing is decoded until :class:`ImlDataset` loads a sample.

Generic layouts (docs/design.md):

- the IMDL-BenCo JSON list ``[[image, mask or "Negative"], ...]``, paths absolute or relative to the JSON
  file's folder (:func:`read_benco_json`, :func:`write_benco_json`);
- a folder with ``Tp/`` (images) and ``Gt/`` (masks), matched by file stem, never by sort order; a mask may
  have another extension and a ``_gt`` / ``_mask`` suffix; images in an optional ``Au/`` are authentic
  (:func:`read_tp_gt`).

Public benchmarks in their own layouts are listed by the adapters in :mod:`benchmarks.data.adapters`;
:func:`open_iml` dispatches to all of them.

Mask decoders (``ImlItem.mask_reader``), chosen by the reader or adapter, never guessed at load time:

- ``binary``: a pixel is manipulated when any colour channel is > ``threshold`` (0/1 masks accepted);
  ``invert`` flips it (NIST marks manipulated pixels in black);
- ``columbia_edgemask``: Columbia's colour-coded edge mask, green = spliced region (see the decoder);
- ``magicbrush_alpha``: an RGBA image whose transparent pixels (alpha <= threshold) are the edit region;
- ``whole``: the whole image is manipulated (fully synthetic images); the file is not read.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data
from PIL import Image, UnidentifiedImageError

from benchmarks.data.errors import DataError
from benchmarks.data.imageio import load_image, load_mask, resize_mask
from benchmarks.data.transforms import Geometry, SampleTransform
from benchmarks.io import atomic_write

log = logging.getLogger(__name__)

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
NEGATIVE = "Negative"  # IMDL-BenCo's mask entry for an authentic image
MASK_SUFFIXES = ("", "_gt", "_mask")  # Tp/Gt: a mask's stem is the image stem plus one of these
Source = Path | bytes


@dataclass(frozen=True)
class ImlItem:
    """One image of an IML dataset and how to read its mask.

    ``mask`` None means authentic (label 0). ``extra_masks`` are OR-ed into ``mask`` (multi-turn edits:
    what changed since the authentic photo is the union of every turn's region). ``row`` = (row group,
    index) means ``image`` / ``mask`` are parquet files holding the bytes in columns ``meta["image_column"]``
    / ``meta["mask_column"]`` (default ``image`` / ``mask``).
    """

    id: str
    image: Path
    mask: Path | None = None
    invert: bool = False
    mask_reader: str = "binary"
    threshold: int = 127
    resize_mismatched_masks: bool = False
    extra_masks: tuple[Path, ...] = ()
    row: tuple[int, int] | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # accept str paths from callers and configs, store Paths
        object.__setattr__(self, "image", Path(self.image))
        if self.mask is not None:
            object.__setattr__(self, "mask", Path(self.mask))
        object.__setattr__(self, "extra_masks", tuple(Path(p) for p in self.extra_masks))
        if self.mask_reader not in MASK_READERS:
            raise DataError(f"item {self.id!r}: mask_reader {self.mask_reader!r} is unknown; "
                            f"use one of {sorted(MASK_READERS)}", reason="bad-value")
        if self.mask is None and self.extra_masks:
            raise DataError(f"item {self.id!r}: extra_masks without a mask; an authentic item has no masks",
                            reason="bad-value")

    @property
    def label(self) -> int:
        """1 = manipulated, 0 = authentic."""
        return 0 if self.mask is None else 1


# ---------------------------------------------------------------------------------------------- decoding


def _open_pil(source: Source, name: str) -> Image.Image:
    if isinstance(source, Path) and not source.is_file():
        raise DataError(f"{name}: file not found (check the dataset folder)", path=name, reason="missing")
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        img.load()
        return img
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{name}: cannot decode image ({exc}); the file is truncated, corrupt or not an image",
                        path=name, reason="corrupt") from exc


def decode_alpha_mask(source: Source, name: str, threshold: int = 127) -> np.ndarray:
    """Edit region of an RGBA mask image: True where transparent (alpha <= threshold)."""
    img = _open_pil(source, name)
    if "A" not in img.getbands() and not (img.mode == "P" and "transparency" in img.info):
        raise DataError(f"{name}: mode {img.mode!r} has no alpha channel, but this mask is read by transparency "
                        "(RGBA PNG, transparent = edited); check that this is the mask file and not an image",
                        path=name, reason="unsupported")
    return np.asarray(img.convert("RGBA"))[:, :, 3] <= threshold


def decode_columbia_edgemask(rgb: np.ndarray, name: str = "<edgemask>", margin: int = 48) -> np.ndarray:
    """Spliced region of a Columbia edge mask (uint8 RGB): the green pixels, filled.

    The masks colour each side of the splice: green (0,200,0) / bright green (0,255,0) near the boundary =
    spliced, red (200,0,0) / bright red (255,0,0) = host. A pixel is green or red when that channel beats
    the other two by `margin`, which JPEG noise does not reach. Undecided pixels (red/green blends that JPEG
    chroma subsampling leaves along the boundary, edge lines in other colours) take the label of the nearest
    decided pixel, so the mask comes out filled with no seam.
    """
    r, g, b = (rgb[:, :, k].astype(np.int16) for k in range(3))
    green = (g - r > margin) & (g - b > margin)
    red = (r - g > margin) & (r - b > margin)
    known = green | red
    if not green.any():
        raise DataError(f"{name}: no green (spliced) region found; a Columbia edge mask colours the spliced "
                        "side green and the host side red; check that this is a 4cam_splc/edgemask file",
                        path=name, reason="bad-mask")
    if known.all():
        return green
    from scipy import ndimage  # only needed here; keeps the module import light

    _, (iy, ix) = ndimage.distance_transform_edt(~known, return_indices=True)
    return green[iy, ix]


MaskReader = Callable[[Source, str, ImlItem, tuple[int, int]], np.ndarray]


def _read_binary(source: Source, name: str, item: ImlItem, hw: tuple[int, int]) -> np.ndarray:
    return load_mask(source, name, invert=item.invert, threshold=item.threshold)


def _read_columbia(source: Source, name: str, item: ImlItem, hw: tuple[int, int]) -> np.ndarray:
    mask = decode_columbia_edgemask(load_image(source, name), name)
    return ~mask if item.invert else mask


def _read_alpha(source: Source, name: str, item: ImlItem, hw: tuple[int, int]) -> np.ndarray:
    mask = decode_alpha_mask(source, name, item.threshold)
    return ~mask if item.invert else mask


def _read_whole(source: Source, name: str, item: ImlItem, hw: tuple[int, int]) -> np.ndarray:
    return np.ones(hw, dtype=bool)


MASK_READERS: dict[str, MaskReader] = {
    "binary": _read_binary,
    "columbia_edgemask": _read_columbia,
    "magicbrush_alpha": _read_alpha,
    "whole": _read_whole,
}


@lru_cache(maxsize=4)
def _parquet_column(path: str, group: int, column: str) -> Any:
    # One row group of one column, cached: a loader walking rows in order decodes each group once, and
    # the file is never read whole.
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        if column not in pf.schema_arrow.names:
            raise DataError(f"{path}: no column {column!r}; columns are {pf.schema_arrow.names}",
                            path=path, reason="missing-key")
        return pf.read_row_group(group, columns=[column]).column(column)


def parquet_cell(path: Path, row: tuple[int, int], column: str) -> bytes:
    """Image bytes stored at (row group, index) of a parquet column (plain binary or hub {bytes, path})."""
    group, index = row
    value = _parquet_column(str(path), group, column)[index].as_py()
    if isinstance(value, dict):  # the hub's Image feature: struct<bytes, path>
        value = value.get("bytes")
    if not isinstance(value, bytes) or not value:
        raise DataError(f"{path}: row group {group} row {index} column {column!r} holds no image bytes",
                        path=path, reason="missing")
    return value


def _source(item: ImlItem, path: Path, column_key: str, default_column: str) -> tuple[Source, str]:
    if item.row is None:
        return path, str(path)
    column = item.meta.get(column_key, default_column)
    return parquet_cell(path, item.row, column), f"{path}[row group {item.row[0]}, row {item.row[1]}, {column}]"


def load_item(item: ImlItem) -> dict[str, Any]:
    """Decode one item: ``image`` uint8 RGB (H,W,3), ``mask`` bool (H,W) (zeros when authentic), ``mask_resized``.

    A mask whose size differs from the image is an error naming both, unless the item's adapter opted in to
    ``resize_mismatched_masks`` for a dataset known to ship such masks (then: nearest-neighbour resize and a
    warning).
    """
    src, name = _source(item, item.image, "image_column", "image")
    image = load_image(src, name)
    hw = image.shape[:2]
    mask = np.zeros(hw, dtype=bool)
    resized = False
    if item.mask_reader == "whole" and item.mask is not None:  # nothing to read; the file may hold no mask
        mask[:] = True
    elif item.mask is not None:
        reader = MASK_READERS[item.mask_reader]
        for path in (item.mask, *item.extra_masks):
            msrc, mname = _source(item, path, "mask_column", "mask")
            part = reader(msrc, mname, item, hw)
            if part.shape != hw:
                if not item.resize_mismatched_masks:
                    raise DataError(
                        f"{mname}: mask is {part.shape[1]}x{part.shape[0]} (WxH) but image {name} is "
                        f"{hw[1]}x{hw[0]}; masks must match their image (for a dataset known to ship off-size masks, "
                        "pass resize_mismatched_masks=True to its adapter)", path=mname, reason="size-mismatch")
                log.warning("%s: mask %s is %sx%s, resized to the image's %sx%s", item.id, mname,
                            part.shape[1], part.shape[0], hw[1], hw[0])
                part, resized = resize_mask(part, hw), True
            mask |= part
    return {"image": image, "mask": mask, "mask_resized": resized}


class ImlDataset(torch.utils.data.Dataset):
    """IML items as Samples (docs/design.md): image, mask (zeros when authentic), valid, label, id, dataset, geometry."""

    def __init__(self, items: Sequence[ImlItem], geometry: Geometry | None = None, *, name: str = "iml",
                 train: bool = False, seed: int = 0):
        self.items = list(items)
        dup = [k for k, n in Counter(it.id for it in self.items).items() if n > 1]
        if dup:
            raise DataError(f"dataset {name!r}: duplicate ids {dup[:5]}; ids must be unique (they name outputs)",
                            reason="duplicate-id")
        self.name = name
        self.transform = SampleTransform(geometry or Geometry("none"), train=train, seed=seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        arrays = load_item(item)
        resized = arrays.pop("mask_resized")
        sample = self.transform(arrays, index)
        sample.update(id=item.id, dataset=self.name, label=item.label, source=str(item.image),
                      mask_resized=resized)
        return sample

    @property
    def labels(self) -> list[int]:
        return [it.label for it in self.items]


# ---------------------------------------------------------------------------------------------- listing


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted; hidden files (macOS ``._x.jpg``, ``.DS_Store``) skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))


def by_stem(paths: Iterable[Path], where: str) -> dict[str, Path]:
    """Index paths by stem; two files with one stem (``a.jpg`` and ``a.png``) are ambiguous: an error."""
    out: dict[str, Path] = {}
    for p in paths:
        if p.stem in out:
            raise DataError(f"{where}: {out[p.stem].name} and {p.name} share the stem {p.stem!r}; keep one of them "
                            "(files are matched by stem)", path=p, reason="ambiguous")
        out[p.stem] = p
    return out


def match_by_stem(stems: Iterable[str], masks: dict[str, Path], suffixes: Sequence[str] = MASK_SUFFIXES,
                  where: str = "") -> tuple[dict[str, Path], list[str], list[Path]]:
    """Pair each stem with the mask whose stem is ``stem + suffix``. Returns (matched, missing stems, unused masks)."""
    matched: dict[str, Path] = {}
    missing: list[str] = []
    for stem in stems:
        found = [masks[stem + s] for s in suffixes if stem + s in masks]
        if len(found) > 1:
            raise DataError(f"{where}: image {stem!r} has several masks {[p.name for p in found]}; keep one",
                            path=found[0], reason="ambiguous")
        if found:
            matched[stem] = found[0]
        else:
            missing.append(stem)
    used = set(matched.values())
    return matched, missing, [p for p in masks.values() if p not in used]


def summarize(paths: Sequence[Any], limit: int = 8) -> str:
    """`limit` names then a count, for error messages that stay readable on 10k-file datasets."""
    names = [getattr(p, "name", str(p)) for p in paths]
    return ", ".join(names[:limit]) + (f" ... (+{len(names) - limit} more)" if len(names) > limit else "")


def read_tp_gt(folder: str | Path) -> list[ImlItem]:
    """A ``Tp/`` + ``Gt/`` folder (plus optional ``Au/`` authentic images) as items sorted by id (= stem)."""
    folder = Path(folder)
    tp, gt, au = folder / "Tp", folder / "Gt", folder / "Au"
    if not (tp.is_dir() and gt.is_dir()):
        raise DataError(f"{folder}: a Tp/Gt dataset needs the subfolders Tp/ (images) and Gt/ (masks)",
                        path=folder, reason="layout")
    images = by_stem(list_images(tp), str(tp))
    matched, missing, unused = match_by_stem(images, by_stem(list_images(gt), str(gt)), where=str(folder))
    if missing:
        raise DataError(f"{tp}: no mask in {gt} for {len(missing)} image(s): {summarize(missing)}; a mask is "
                        f"Gt/<stem>[_gt|_mask].<ext>; authentic images belong in {au}", path=tp, reason="missing")
    if unused:
        log.warning("%s: %d mask(s) match no image in Tp/: %s", gt, len(unused), summarize(unused))
    items = [ImlItem(stem, path, matched[stem]) for stem, path in images.items()]
    if au.is_dir():
        clash = sorted(set(images) & {p.stem for p in list_images(au)})
        if clash:
            raise DataError(f"{folder}: {summarize(clash)} appear in both Tp/ and Au/; a file is either "
                            "tampered or authentic", path=folder, reason="duplicate-id")
        items += [ImlItem(p.stem, p) for p in list_images(au)]
    return sorted(items, key=lambda it: it.id)


# ---------------------------------------------------------------------------------------------- IMDL-BenCo


def _resolve(root: Path, entry: str) -> Path:
    path = Path(entry).expanduser()
    return path if path.is_absolute() else root / path


def unique_ids(paths: Sequence[Path], root: Path) -> list[str]:
    """File stems as ids; where stems collide, the path relative to `root` without extension."""
    counts = Counter(p.stem for p in paths)

    def long_id(p: Path) -> str:
        try:
            return p.relative_to(root).with_suffix("").as_posix()
        except ValueError:
            return p.with_suffix("").as_posix()

    ids = [p.stem if counts[p.stem] == 1 else long_id(p) for p in paths]
    dup = [k for k, n in Counter(ids).items() if n > 1]
    if dup:
        raise DataError(f"{root}: {summarize(dup)} listed more than once; list each image once",
                        path=root, reason="duplicate-id")
    return ids


def read_benco_json(path: str | Path, *, check_files: bool = True) -> list[ImlItem]:
    """An IMDL-BenCo JSON list ``[[image, mask or "Negative"], ...]`` as items, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found", path=path, reason="missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); expected a list of [image, mask or \"Negative\"]",
                        path=path, reason="bad-json") from exc
    if not isinstance(data, list):
        raise DataError(f"{path}: top level is a {type(data).__name__}; expected a list of [image, mask or "
                        "\"Negative\"] pairs", path=path, reason="bad-json")
    root = path.parent
    pairs: list[tuple[Path, Path | None]] = []
    for i, entry in enumerate(data):
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) and x for x in entry)):
            raise DataError(f"{path}: entry {i} is {entry!r}; each entry must be [image_path, mask_path or "
                            "\"Negative\"]", path=path, reason="bad-value")
        pairs.append((_resolve(root, entry[0]), None if entry[1] == NEGATIVE else _resolve(root, entry[1])))
    if check_files:
        missing = [f"entry {i}: {p}" for i, pair in enumerate(pairs) for p in pair if p is not None and not p.is_file()]
        if missing:
            raise DataError(f"{path}: {len(missing)} listed file(s) not found: {summarize(missing, 5)}; relative "
                            f"paths are read from {root}", path=path, reason="missing")
    ids = unique_ids([image for image, _ in pairs], root)
    return [ImlItem(i, image, mask) for i, (image, mask) in zip(ids, pairs)]


def _json_path(path: Path, root: Path) -> str:
    # relative to the JSON's folder (``../`` allowed), so a dataset tree can move as a whole
    full = path.resolve()
    try:
        return Path(os.path.relpath(full, root.resolve())).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return full.as_posix()


def write_benco_json(path: str | Path, items: Iterable[ImlItem | tuple[str | Path, str | Path | None]]) -> Path:
    """Write an IMDL-BenCo JSON list atomically (temp file, then rename). Items: ImlItems or (image, mask|None)."""
    path = Path(path)
    root = path.parent
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for it in items:
        if isinstance(it, ImlItem):
            if it.row is not None or it.mask_reader != "binary" or it.invert or it.extra_masks:
                raise DataError(f"item {it.id!r}: its mask needs decoding (reader {it.mask_reader!r}, invert="
                                f"{it.invert}, parquet row {it.row}); an IMDL-BenCo JSON holds plain white = "
                                "manipulated files, so save the decoded mask as a PNG (imageio.save_png) and list "
                                "that", reason="unsupported")
            image, mask = it.image, it.mask
        else:
            image, mask = it
        rows.append([_json_path(Path(image), root), NEGATIVE if mask is None else _json_path(Path(mask), root)])
    return atomic_write(path, json.dumps(rows, ensure_ascii=False, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------- dispatch


def list_iml(spec: str | Path, *, adapter: str | None = None, **options: Any) -> list[ImlItem]:
    """Items of an IML dataset: ``x.json`` (IMDL-BenCo), a ``Tp/`` + ``Gt/`` folder, or ``<adapter>:<root>``."""
    from benchmarks.data import adapters  # lazy: adapters imports this module

    if adapter is None and isinstance(spec, str) and ":" in spec:
        prefix, rest = spec.split(":", 1)
        if prefix in adapters.ADAPTERS:  # "C:\data" is a drive letter, not an adapter
            adapter, spec = prefix, rest
    path = Path(spec).expanduser()
    if adapter is not None:
        return adapters.get_adapter(adapter)(path, **options)
    if options:
        raise DataError(f"options {sorted(options)} apply only to adapters; name one with adapter=... or "
                        f"'<adapter>:{path}'", reason="bad-value")
    if path.is_file() and path.suffix.lower() == ".json":
        return read_benco_json(path)
    if path.is_dir() and (path / "Tp").is_dir() and (path / "Gt").is_dir():
        return read_tp_gt(path)
    raise DataError(
        f"{path}: not a layout I can read. Accepted: an IMDL-BenCo JSON list (a .json file of [image, mask or "
        "\"Negative\"] pairs); a folder with Tp/ (images) and Gt/ (masks matched by stem) and optional Au/; or a "
        f"public benchmark in its own layout, as '<adapter>:<root>' or adapter=..., adapters: "
        f"{adapters.adapter_names()}", path=path, reason="layout")


def open_iml(spec: str | Path, name: str | None = None, *, geometry: Geometry | None = None,
             adapter: str | None = None, train: bool = False, seed: int = 0, **options: Any) -> ImlDataset:
    """An :class:`ImlDataset` over whatever `spec` is (see :func:`list_iml`).

    `name` (the samples' ``dataset``) defaults to the adapter name or the file/folder name.
    """
    items = list_iml(spec, adapter=adapter, **options)
    if name is None:
        text = str(spec)
        name = adapter or (text.split(":", 1)[0] if ":" in text and not Path(text).exists() else Path(text).stem)
    return ImlDataset(items, geometry, name=name, train=train, seed=seed)
