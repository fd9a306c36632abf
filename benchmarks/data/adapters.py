"""Adapters for public IML benchmarks in their own released layouts: ``root -> list[ImlItem]``.

One function per dataset, registered by name (``@register_adapter("casia1")``); :func:`get_adapter` raises
an error listing the known names. Each adapter states the layout it expects and its mask rule, fails with
the subfolder or file it expected when the root is not that dataset, and returns items sorted by id.

Options every adapter takes (handled by the registry): ``resize_mismatched_masks`` (bool) to resize masks
that differ from their image (with a warning) instead of failing on them. Most adapters also take
``on_missing`` ("error" or "skip": a manipulated image without its mask) and ``include_authentic``.

The layout facts in the comments were checked against public loaders and dataset pages (named per adapter).
"""

from __future__ import annotations

import csv
import functools
import inspect
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.data.errors import DataError
from benchmarks.data.iml import IMAGE_EXTS, ImlItem, by_stem, list_images, match_by_stem, summarize

log = logging.getLogger(__name__)

Adapter = Callable[..., list[ImlItem]]
ADAPTERS: dict[str, Adapter] = {}


def register_adapter(name: str) -> Callable[[Adapter], Adapter]:
    """Register ``fn(root, **options) -> list[ImlItem]`` under `name` (options checked, ids sorted and unique)."""

    def deco(fn: Adapter) -> Adapter:
        if name in ADAPTERS:
            raise ValueError(f"adapter {name!r} is registered twice")
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(root: str | Path, *, resize_mismatched_masks: bool | None = None, **options: Any) -> list[ImlItem]:
            root = Path(root).expanduser()
            try:
                signature.bind(root, **options)
            except TypeError as exc:
                accepted = [p for p in signature.parameters if p != "root"] + ["resize_mismatched_masks"]
                raise DataError(f"adapter {name!r}: {exc}; accepted options: {accepted}", reason="bad-value") from exc
            if not root.exists():
                raise DataError(f"{root}: not found; pass the folder where {name} was unpacked", path=root,
                                reason="missing")
            items = fn(root, **options)
            if resize_mismatched_masks is not None:
                items = [replace(it, resize_mismatched_masks=resize_mismatched_masks) for it in items]
            dup = [k for k, n in Counter(it.id for it in items).items() if n > 1]
            if dup:
                raise DataError(f"{root}: {name} ids {summarize(dup)} occur twice", path=root, reason="duplicate-id")
            n_fake = sum(it.label for it in items)
            log.info("%s: %d items from %s (%d manipulated, %d authentic)", name, len(items), root, n_fake,
                     len(items) - n_fake)
            return sorted(items, key=lambda it: it.id)

        ADAPTERS[name] = run
        return run

    return deco


def adapter_names() -> list[str]:
    return sorted(ADAPTERS)


def get_adapter(name: str) -> Adapter:
    """The adapter registered as `name`; an unknown name raises DataError listing the known ones."""
    if name not in ADAPTERS:
        raise DataError(f"unknown IML dataset adapter {name!r}; known adapters: {adapter_names()}", reason="bad-value")
    return ADAPTERS[name]


# ---------------------------------------------------------------------------------------------- helpers


def _walk(root: Path, max_depth: int = 5) -> list[Path]:
    """Every non-hidden file under `root` (depth-limited), sorted: releases nest their folders differently."""
    out: list[Path] = []
    base = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and len(here.parts) - base < max_depth)
        out += [here / f for f in filenames if not f.startswith(".")]
    return sorted(out)


def _find_dir(root: Path, name: str, dataset: str, expect: str) -> Path:
    """``root/name``, or the one folder called `name` a level or two down (zips often add a wrapper folder)."""
    found = [root / name] if (root / name).is_dir() else sorted(
        {p.parent for p in _walk(root, 3) if p.parent.name.lower() == name.lower()})
    if len(found) == 1:
        # some unzips double the folder (4cam_splc/4cam_splc/...)
        return found[0] / name if (found[0] / name).is_dir() else found[0]
    if len(found) > 1:
        raise DataError(f"{root}: several {name}/ folders ({summarize(found)}); point at the {dataset} root",
                        path=root, reason="layout")
    raise DataError(f"{root}: does not look like {dataset}: expected {expect}", path=root, reason="layout")


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS


def _handle_missing(dataset: str, where: Path, missing: list[str], on_missing: str, hint: str) -> None:
    if on_missing not in ("error", "skip"):
        raise DataError(f"{dataset}: on_missing={on_missing!r}; use 'error' or 'skip'", reason="bad-value")
    if not missing:
        return
    if on_missing == "error":
        raise DataError(f"{where}: no mask for {len(missing)} {dataset} image(s): {summarize(missing)}; {hint} "
                        "(or pass on_missing='skip' to leave them out with a warning)", path=where, reason="missing")
    log.warning("%s: skipped %d image(s) without a mask: %s", dataset, len(missing), summarize(missing))


def _casia(root: Path, dataset: str, tampered_dirs: set[str], expect: str, hint: str, on_missing: str,
           include_authentic: bool) -> list[ImlItem]:
    # Walk the whole tree: the releases (original zip, renamed "Modified Tp", separate groundtruth zip)
    # nest the same folders differently. Masks are "<stem>_gt.png" anywhere; tampered images are the
    # non-mask images in folders named as in `tampered_dirs`; authentic ones sit in Au/.
    files = [p for p in _walk(root) if _is_image(p)]
    masks = by_stem((p for p in files if p.stem.endswith("_gt")), f"{root} (masks)")
    tampered = by_stem((p for p in files if p.parent.name.lower() in tampered_dirs and not p.stem.endswith("_gt")),
                       f"{root} (tampered)")
    if not tampered:
        raise DataError(f"{root}: does not look like {dataset}: expected {expect}", path=root, reason="layout")
    matched, missing, unused = match_by_stem(tampered, masks, suffixes=("_gt",), where=str(root))
    _handle_missing(dataset, root, missing, on_missing, hint)
    if unused:
        log.warning("%s: %d mask(s) match no tampered image: %s", dataset, len(unused), summarize(unused))
    items = [ImlItem(stem, tampered[stem], mask) for stem, mask in matched.items()]
    if include_authentic:
        items += [ImlItem(p.stem, p) for p in files if p.parent.name.lower() == "au"]
    return items


# ---------------------------------------------------------------------------------------------- adapters


@register_adapter("casia1")
def casia1(root: Path, *, on_missing: str = "error", include_authentic: bool = True) -> list[ImlItem]:
    """CASIA v1.0: tampered JPEGs in ``Sp/`` (splicing) and ``CM/`` (copy-move), authentic in ``Au/``.

    Masks ``<stem>_gt.png`` from the CASIA 1.0 groundtruth release (``CASIA 1.0 groundtruth/{Sp,CM}/``),
    white = tampered. Folders may sit at any depth (``Modified Tp/Tp/Sp`` etc.).
    """
    # Evidence: namtpham/casia1groundtruth README (naming; copy-move files are named Sp_S_*, 800 Au images);
    # photoholmes datasets/casia1.py: Tp/{Sp,CM} + "CASIA 1.0 groundtruth/{Sp,CM}/<stem>_gt.png", mask > 0.
    return _casia(root, "CASIA v1", {"sp", "cm"}, "Sp/ and CM/ folders of tampered JPEGs and <stem>_gt.png masks "
                  "(CASIA 1.0 groundtruth release)", "the release renames some tampered files (see the "
                  "groundtruth repo's rename list)", on_missing, include_authentic)


@register_adapter("casia2")
def casia2(root: Path, *, on_missing: str = "error", include_authentic: bool = True) -> list[ImlItem]:
    """CASIA v2.0: tampered ``Tp/*.{jpg,tif}``, authentic ``Au/``, masks ``<stem>_gt.png`` in the groundtruth folder.

    Masks (namtpham/casia2groundtruth, any folder name and depth) are white = tampered.
    """
    # Evidence: namtpham/casia2groundtruth README + Samples/ (Tp_*.tif / Tp_*.jpg with <stem>_gt.png); its
    # issue #1: fewer masks than Tp images because of misnamed files (hence on_missing); MVSS-Net #19 uses it.
    return _casia(root, "CASIA v2", {"tp"}, "Tp/ (tampered .jpg/.tif), Au/ and <stem>_gt.png masks "
                  "(casia2groundtruth)", "rename the misnamed files per the groundtruth repo's "
                  "fileNamesCorrection list", on_missing, include_authentic)


@register_adapter("columbia")
def columbia(root: Path, *, on_missing: str = "error", include_authentic: bool = True) -> list[ImlItem]:
    """Columbia uncompressed: ``4cam_splc/*.tif`` spliced, ``4cam_auth/*.tif`` authentic,
    ``4cam_splc/edgemask/<stem>_edgemask.jpg`` colour-coded masks, green = spliced region (decoded and filled).
    """
    # Evidence: the dataset page (ee.columbia.edu/ln/dvmm/downloads/authsplcuncmp: 4cam_auth 183, 4cam_splc
    # 180, TIFF or BMP); mjkwon2021/CAT-Net issue #16 (maintainer: green channel > 120 = tampered);
    # SunnyHaze/IML-ViT issues #10/#44 (dark+light green = tampered, dark+light red = authentic);
    # proteus1991/PSCC-Net issue #14 (undecided boundary pixels: each half goes to the nearer region);
    # photoholmes datasets/columbia.py (TAMPERED_COLOR_INDEX = 1, green).
    splc = _find_dir(root, "4cam_splc", "Columbia", "4cam_splc/ (spliced .tif) with edgemask/ inside, and 4cam_auth/")
    edge = splc / "edgemask"
    if not edge.is_dir():
        raise DataError(f"{splc}: no edgemask/ folder; Columbia's masks are 4cam_splc/edgemask/<stem>_edgemask.jpg",
                        path=splc, reason="layout")
    masks = by_stem(list_images(edge), str(edge))
    images = by_stem(list_images(splc), str(splc))
    matched, missing, _ = match_by_stem(images, masks, suffixes=("_edgemask",), where=str(splc))
    _handle_missing("Columbia", edge, missing, on_missing, "expected edgemask/<stem>_edgemask.jpg")
    items = [ImlItem(stem, images[stem], mask, mask_reader="columbia_edgemask") for stem, mask in matched.items()]
    if include_authentic:
        auth = _find_dir(root, "4cam_auth", "Columbia", "4cam_auth/ (authentic .tif)")
        items += [ImlItem(p.stem, p) for p in list_images(auth)]
    return items


@register_adapter("coverage")
def coverage(root: Path, *, on_missing: str = "error", include_authentic: bool = True) -> list[ImlItem]:
    """COVERAGE: ``image/<n>t.tif`` forged, ``image/<n>.tif`` original, GT ``mask/<n>forged.tif`` (white = forged).

    The ``<n>copy.tif`` / ``<n>paste.tif`` masks (source and target of the copy) are not the GT and are ignored.
    A few masks differ in size from their image: resized with a warning (``resize_mismatched_masks=False``
    to fail instead).
    """
    # Evidence: photoholmes datasets/coverage.py (image/{NUM}t.tif, mask/{NUM}forged.tif, threshold 125);
    # imds coverage.py docstring (COVERAGE, ICIP 2016 copy-move with similar-but-genuine objects);
    # SunnyHaze/IML-ViT issue #10: 9 of the 100 COVERAGE pairs have mask/image size mismatches.
    image_dir = _find_dir(root, "image", "COVERAGE", "image/ (<n>t.tif forged, <n>.tif original) and mask/")
    mask_dir = _find_dir(root, "mask", "COVERAGE", "mask/<n>forged.tif")
    masks = {p.stem[: -len("forged")]: p for p in list_images(mask_dir) if p.stem.endswith("forged")}
    items, missing = [], []
    for p in list_images(image_dir):
        m = re.fullmatch(r"(\d+)(t?)", p.stem)
        if m is None:
            log.warning("COVERAGE: %s is neither <n>t.tif nor <n>.tif; ignored", p)
        elif not m.group(2):
            if include_authentic:
                items.append(ImlItem(p.stem, p))
        elif m.group(1) in masks:
            items.append(ImlItem(p.stem, p, masks[m.group(1)], resize_mismatched_masks=True))
        else:
            missing.append(p.stem)
    _handle_missing("COVERAGE", mask_dir, missing, on_missing, "expected mask/<n>forged.tif")
    if not any(it.label for it in items) and not missing:
        raise DataError(f"{image_dir}: no forged <n>t.tif images; is this the COVERAGE image/ folder?",
                        path=image_dir, reason="layout")
    return items


NIST_COLUMNS = ("ProbeFileName", "ProbeMaskFileName", "IsTarget")


@register_adapter("nist16")
def nist16(root: Path, *, csv_path: str | None = None, on_missing: str = "error",
           include_authentic: bool = True) -> list[ImlItem]:
    """NIST Nimble 2016 (NC2016): ``reference/manipulation/NC2016-manipulation-ref.csv``, pipe-separated, with
    ``ProbeFileName``, ``ProbeMaskFileName``, ``IsTarget`` (Y = manipulated) paths relative to the root.

    NIST masks mark manipulated pixels in BLACK: read inverted (<= 127 = manipulated).
    """
    # Evidence: usnistgov MediScore DetectionScorer/MaskScorer (reference/manipulation/NC2016-manipulation-
    # ref.csv read with sep='|'; columns TaskID, ProbeFileID, ProbeFileName, ProbeMaskFileName, IsTarget,
    # BaseFileName, IsManipulationType*); SunnyHaze/ManTraNet-Pytorch issue #4: NIST masks are black =
    # tampered, white = original.
    if csv_path is not None:
        ref = Path(csv_path) if Path(csv_path).is_absolute() else root / csv_path
    else:
        found = sorted(root.glob("reference/manipulation/*-manipulation-ref.csv"))
        if not found:
            raise DataError(f"{root}: does not look like NIST16: expected reference/manipulation/"
                            "NC2016-manipulation-ref.csv (or pass csv_path=...)", path=root, reason="layout")
        ref = found[0]
    if not ref.is_file():
        raise DataError(f"{ref}: reference CSV not found", path=ref, reason="missing")
    with open(ref, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="|")
        lacking = [c for c in NIST_COLUMNS if c not in (reader.fieldnames or [])]
        if lacking:
            raise DataError(f"{ref}: columns {lacking} missing (found {reader.fieldnames}); a NIST reference CSV "
                            f"is pipe-separated with {list(NIST_COLUMNS)}", path=ref, reason="missing-key")
        rows = list(reader)
    items: dict[str, ImlItem] = {}
    missing = []
    for row in rows:
        probe = root / row["ProbeFileName"]
        key = row.get("ProbeFileID") or probe.stem
        target = row["IsTarget"].strip().upper() == "Y"
        mask = (row["ProbeMaskFileName"] or "").strip()
        if target and (not mask or not (root / mask).is_file()):
            missing.append(key)
            continue
        item = ImlItem(key, probe, root / mask, invert=True) if target else ImlItem(key, probe)
        if key in items and items[key] != item:
            raise DataError(f"{ref}: {key} listed twice with different files or labels", path=ref,
                            reason="duplicate-id")
        if target or include_authentic:
            items[key] = item
    _handle_missing("NIST16", ref, missing, on_missing, "the ProbeMaskFileName of IsTarget=Y rows must exist")
    return list(items.values())


@register_adapter("imd2020")
def imd2020(root: Path, *, on_missing: str = "error", include_authentic: bool = True) -> list[ImlItem]:
    """IMD2020: one folder per source photo: ``<name>_orig.<ext>`` authentic, manipulated ``<x>_<k>.<ext>`` with
    ``<x>_<k>_mask.png`` (white = manipulated). Ids are ``<folder>/<stem>``. Off-size masks are resized with a
    warning (``resize_mismatched_masks=False`` to fail instead).
    """
    # Evidence: imds imd2020.py docstring (1a1ogs/1a1ogs_orig.jpg, c8tf5mq_0.png, c8tf5mq_0_mask.png: the
    # manipulated stem differs from the folder name); CAT-Net/TruFor loaders (IMD2020 folder per photo);
    # SunnyHaze/IML-ViT issue #10: at least one IMD2020 mask (z14/00030_fake) does not match its image size.
    folders = {p: list_images(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    if not any(f.stem.endswith("_orig") for files in folders.values() for f in files):
        raise DataError(f"{root}: does not look like IMD2020: expected one folder per photo holding "
                        "<name>_orig.<ext>, <x>_<k>.<ext> and <x>_<k>_mask.png", path=root, reason="layout")
    items, missing = [], []
    for folder, files in folders.items():
        masks = by_stem((p for p in files if p.stem.endswith("_mask")), str(folder))
        for p in files:
            if p.stem.endswith("_mask"):
                continue
            if p.stem.endswith("_orig"):
                if include_authentic:
                    items.append(ImlItem(f"{folder.name}/{p.stem}", p))
            elif p.stem + "_mask" in masks:
                items.append(ImlItem(f"{folder.name}/{p.stem}", p, masks[p.stem + "_mask"],
                                     resize_mismatched_masks=True))
            else:
                missing.append(f"{folder.name}/{p.name}")
    _handle_missing("IMD2020", root, missing, on_missing, "expected <stem>_mask.png beside each manipulated image")
    return items


@register_adapter("cocoglide")
def cocoglide(root: Path, *, on_missing: str = "error", include_authentic: bool = True) -> list[ImlItem]:
    """CocoGlide (TruFor release): ``fake/<s>.png`` GLIDE-inpainted, ``mask/<s>_mask.png`` (white = inpainted),
    ``real/<s>.png`` authentic when present. Ids ``fake/<s>`` and ``real/<s>`` (the folders reuse stems).
    """
    # Evidence: grip-unina/TruFor README (CocoGlide.zip with CocoGlide/real and CocoGlide/fake); public code
    # pairing CocoGlide/real/airplane_44652.png with CocoGlide/mask/airplane_44652_mask.png.
    fake = _find_dir(root, "fake", "CocoGlide", "fake/ (inpainted images), mask/ (<stem>_mask.png), real/")
    mask_dir = _find_dir(root, "mask", "CocoGlide", "mask/<stem>_mask.png")
    images = by_stem(list_images(fake), str(fake))
    matched, missing, _ = match_by_stem(images, by_stem(list_images(mask_dir), str(mask_dir)),
                                        suffixes=("_mask", ""), where=str(root))
    _handle_missing("CocoGlide", mask_dir, missing, on_missing, "expected mask/<stem>_mask.png")
    items = [ImlItem(f"fake/{s}", images[s], m) for s, m in matched.items()]
    real = fake.parent / "real"
    if include_authentic and real.is_dir():
        items += [ImlItem(f"real/{p.stem}", p) for p in list_images(real)]
    return items


@register_adapter("autosplice")
def autosplice(root: Path, *, quality: int = 100, on_missing: str = "error",
               include_authentic: bool = True) -> list[ImlItem]:
    """AutoSplice: ``Forged_JPEG{100,90,75}/<id>_<k>.jpg`` (DALL-E 2 splices at that JPEG quality),
    ``Mask/<id>_mask.png`` shared by the variants of one source (white = manipulated), ``Authentic/<id>.jpg``.
    """
    # Evidence: shanface33/AutoSplice_Dataset README (3,621 manipulated + 2,273 authentic, JPEG-100/90/75
    # with masks); photoholmes datasets/autosplice.py (Forged_JPEG<q>, Mask/<prefix before "_">_mask.png,
    # Authentic/, mask > 0); public eval code: Forged_JPEG90/71695_0.jpg -> Mask/71695_mask.png.
    forged = root / f"Forged_JPEG{quality}"
    if not forged.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.name.startswith("Forged_JPEG"))
        raise DataError(f"{root}: no Forged_JPEG{quality}/ (found {present or 'none'}); AutoSplice ships "
                        "Forged_JPEG100/90/75, Mask/ and Authentic/", path=root, reason="layout")
    mask_dir = _find_dir(root, "Mask", "AutoSplice", "Mask/<id>_mask.png")
    masks = by_stem(list_images(mask_dir), str(mask_dir))
    items, missing = [], []
    for p in list_images(forged):
        mask = masks.get(f"{p.stem}_mask") or masks.get(f"{p.stem.split('_')[0]}_mask")
        if mask is None:
            missing.append(p.stem)
        else:
            items.append(ImlItem(p.stem, p, mask, meta={"jpeg_quality": quality}))
    _handle_missing("AutoSplice", mask_dir, missing, on_missing, "expected Mask/<id>_mask.png for <id>_<k>.jpg")
    auth = root / "Authentic"
    if include_authentic and auth.is_dir():
        items += [ImlItem(f"authentic/{p.stem}", p) for p in list_images(auth)]
    return items


def _magicbrush_sessions(base: Path) -> dict[str, list[dict[str, str]]]:
    sessions_file = base / "edit_sessions.json"
    if sessions_file.is_file():
        try:
            data = json.loads(sessions_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{sessions_file}: not valid JSON ({exc})", path=sessions_file, reason="bad-json") from exc
        if not isinstance(data, dict):
            raise DataError(f"{sessions_file}: expected {{img_id: [turns]}}", path=sessions_file, reason="bad-json")
        return data
    # No JSON: rebuild the turns from the file names <img_id>-input.png, -output<k>.png, -mask<k>.png.
    sessions = {}
    for folder in sorted(p for p in (base / "images").iterdir() if p.is_dir()):
        outs = sorted((int(m.group(1)), p.name) for p in list_images(folder)
                      if (m := re.fullmatch(rf"{re.escape(folder.name)}-output(\d+)", p.stem)))
        sessions[folder.name] = [{"input": f"{folder.name}-input.png" if k == 1 else f"{folder.name}-output{k - 1}.png",
                                  "output": name, "mask": f"{folder.name}-mask{k}.png"} for k, name in outs]
    return sessions


@register_adapter("magicbrush")
def magicbrush(root: Path, *, turns: str = "all", include_authentic: bool = False) -> list[ImlItem]:
    """MagicBrush dev/test release: ``edit_sessions.json`` ({img_id: [{input, output, mask, instruction}]}) and
    ``images/<img_id>/`` holding each turn's source, mask and target. The target (``output``) is the IML image.

    Masks are RGBA: the edit region is TRANSPARENT. Turn k's manipulated region (against the real photo) is
    the union of the masks of turns 1..k. Masks may differ in size from the images: resized, with a warning.
    ``turns``: "all", "first" or "last". ``include_authentic`` adds each session's real photo (turn-1 input).
    """
    # Evidence: OSU-NLP-Group/MagicBrush issue #10 (maintainer: released masks are RGBA masked images, may
    # differ in resolution, binarize from the alpha channel; transparent = edit region for mask-guided
    # editors) and evaluation/image_eval.py ("output<i>" targets per img_id folder, "mask" files);
    # public loaders read test/edit_sessions.json with keys input/output/mask/instruction per turn.
    base = root if (root / "images").is_dir() else root / "test"
    if not (base / "images").is_dir():
        raise DataError(f"{root}: does not look like MagicBrush: expected edit_sessions.json and images/<img_id>/",
                        path=root, reason="layout")
    if turns not in ("all", "first", "last"):
        raise DataError(f"magicbrush: turns={turns!r}; use 'all', 'first' or 'last'", reason="bad-value")
    items = []
    for img_id, session in _magicbrush_sessions(base).items():
        folder = base / "images" / str(img_id)
        chosen = range(len(session)) if turns == "all" else [0] if turns == "first" else [len(session) - 1]
        masks = [folder / turn["mask"] for turn in session]
        for k in chosen:
            turn = session[k]
            lost = [p for p in [folder / turn["output"], *masks[: k + 1]] if not p.is_file()]
            if lost:
                raise DataError(f"{folder}: turn {k + 1} of session {img_id} lacks {summarize(lost)}",
                                path=folder, reason="missing")
            items.append(ImlItem(f"{img_id}/turn{k + 1}", folder / turn["output"], masks[k],
                                 mask_reader="magicbrush_alpha", resize_mismatched_masks=True,
                                 extra_masks=tuple(masks[:k]),
                                 meta={"instruction": turn.get("instruction", ""), "turn": k + 1}))
        if include_authentic and session:
            items.append(ImlItem(f"{img_id}/input", folder / session[0]["input"]))
    return items


SID_COLUMNS = ("img_id", "image", "label")


@register_adapter("sidset")
def sidset(root: Path, *, split: str | None = None, synthetic: str = "skip",
           include_authentic: bool = True) -> list[ImlItem]:
    """SID-Set (SIDA, CVPR 2025) parquet: columns ``img_id``, ``image``, ``mask``, ``label`` (0 real, 1 fully
    synthetic, 2 tampered); ``mask`` (white = tampered) only for tampered rows. Listed row group by row group,
    reading only ``img_id`` and ``label``; pixels are read per row group at load time.

    ``synthetic``: "skip" (default) leaves fully synthetic images out: they have no mask, and SIDA scores
    localization on tampered images only; "whole" keeps them as manipulated everywhere (all-ones mask),
    which turns localization into whole-image detection for those rows. ``split`` keeps files whose name
    starts with it (``train``, ``validation``).
    """
    # Evidence: saberzl/SID_Set dataset card (features img_id, image, mask, width, height, label; "mask:
    # binary mask highlighting manipulated regions in tampered images"; label 0 real / 1 full synthetic /
    # 2 tampered; data/train-*, data/validation-*); saberzl/SIDA-7B card (localization of tampered regions).
    import pyarrow.parquet as pq

    if synthetic not in ("skip", "whole"):
        raise DataError(f"sidset: synthetic={synthetic!r}; use 'skip' or 'whole'", reason="bad-value")
    files = [root] if root.is_file() else [p for p in _walk(root, 3) if p.suffix == ".parquet"]
    files = [p for p in files if split is None or p.name.startswith(split)]
    if not files:
        raise DataError(f"{root}: does not look like SID-Set: expected *.parquet files (data/train-*.parquet, "
                        f"data/validation-*.parquet){f' starting with {split!r}' if split else ''}", path=root,
                        reason="layout")
    items = []
    skipped = 0
    for path in files:
        with pq.ParquetFile(path) as pf:
            lacking = [c for c in SID_COLUMNS if c not in pf.schema_arrow.names]
            if lacking:
                raise DataError(f"{path}: columns {lacking} missing (found {pf.schema_arrow.names}); SID-Set rows "
                                f"hold {list(SID_COLUMNS) + ['mask']}", path=path, reason="missing-key")
            for group in range(pf.num_row_groups):
                table = pf.read_row_group(group, columns=["img_id", "label"]).to_pydict()
                for index, (img_id, label) in enumerate(zip(table["img_id"], table["label"])):
                    row = (group, index)
                    if label == 2:
                        items.append(ImlItem(str(img_id), path, path, row=row, meta={"sid_label": 2}))
                    elif label == 1 and synthetic == "whole":
                        items.append(ImlItem(str(img_id), path, path, mask_reader="whole", row=row,
                                             meta={"sid_label": 1}))
                    elif label == 0 and include_authentic:
                        items.append(ImlItem(str(img_id), path, row=row, meta={"sid_label": 0}))
                    elif label not in (0, 1, 2):
                        raise DataError(f"{path}: row group {group} row {index} has label {label!r}; SID-Set labels "
                                        "are 0 real, 1 fully synthetic, 2 tampered", path=path, reason="bad-value")
                    else:
                        skipped += 1
    if skipped:
        log.info("SID-Set: left out %d rows (synthetic=%r, include_authentic=%s)", skipped, synthetic,
                 include_authentic)
    return items
