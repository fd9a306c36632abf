"""`bench data synth`: write the offline synthetic suite (inpainting set, editing corpus, test benchmarks).

Layout of one suite folder (``<data>/synth/<name>-<hash>/``)::

    inpainting/      pairs manifest with exact masks (SIGMA Stage I)
    corpus/          pairs manifest WITHOUT masks (what generators annotate)
    corpus_truth/    the same pairs with their true masks (oracle row only) + iml.json for detectors
    bench/<family>/  pairs manifest with masks + iml.json (edited images, masks, authentic negatives)
    config.yaml  stats.json  DONE

Every pair is generated from its own seed ``(suite seed, set, index)``, so the output does not depend on
the number of worker processes, and a folder is reused only when its config hash matches.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data.imageio import save_png
from benchmarks.io import content_hash, exclusive_lock, write_json
from benchmarks.synth.alt_edits import ALT_FAMILIES, alt_side_effect
from benchmarks.synth.alt_editor import alt_round_trip
from benchmarks.synth.editor import RoundTripConfig, jpeg_roundtrip, psnr, round_trip
from benchmarks.synth.edits import FAMILIES, side_effect
from benchmarks.synth.photos import DEFAULT_FRACTIONS, PhotoWorld, random_crop

log = logging.getLogger(__name__)

MIXED = "mixed"  # a benchmark whose pairs draw their family at random
IMPLEMENTATIONS = ("standard", "alt")
VAL_SETS = ("val", "val_noedit")  # sets drawn from the val pool (besides the corpus's held-out pairs)
# part of every suite's hash: bump it when a change to the generating code changes what a config produces
GENERATOR_VERSION = 2  # 2: the photo world (val and round-trip-only sets, corpus val pairs from the val pool)


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a suite's content (the folder hash covers all of it but `workers`).

    Photo lists name photos (file stems of the photo catalog, or wheel photos) and pools as ``pool:NAME``
    (benchmarks/synth/photos.py); ``train_photos`` / ``val_photos`` / ``test_photos`` are the lists expanded
    to photo names, and the hash covers those names and the recorded sha1 of every photo used.
    """

    name: str = "default"
    seed: int = 0
    image_size: int = 256
    n_inpainting: int = 500
    n_corpus: int = 500
    n_per_benchmark: int = 120
    n_val: int = 0                # the labelled val set (val/): mixed families from the val pool
    n_noedit: int = 0             # round-trip-only pairs (noedit/): no edit, empty masks, from the test pool
    n_val_noedit: int = 0         # the same from the val pool (val_noedit/), where false-positive limits are tuned
    authentic_fraction: float = 0.2
    benchmarks: tuple[str, ...] = ("removal", "splice", "recolour", "restyle", "copymove")
    corpus_families: tuple[str, ...] = ("removal", "splice", "recolour", "restyle", "copymove")
    # what the Stage I inpainting set regenerates (what a prompted inpainting model puts into a masked region)
    inpainting_families: tuple[str, ...] = ("removal", "splice", "recolour", "restyle")
    photo_catalog: str = ""       # "" = the shipped attribution record (benchmarks/synth/assets/photos.csv)
    pool_seed: int = 0
    pool_fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    train_pool: tuple[str, ...] = ("pool:train",)
    val_pool: tuple[str, ...] = ("pool:val",)
    test_pool: tuple[str, ...] = ("pool:test",)
    area: tuple[float, float] = (0.03, 0.25)
    side_effect_prob: float = 0.4
    side_effect_area: tuple[float, float] = (0.01, 0.05)
    edit_opacity: tuple[float, float] = (1.0, 1.0)   # the edit blended back at this opacity: subtle, low-contrast edits
    val_fraction: float = 0.1     # corpus pairs tagged split=val, drawn from the val pool (checkpoint choice)
    inpainting_roundtrip: bool = False
    roundtrip: RoundTripConfig = field(default_factory=RoundTripConfig)
    # standard: edits.py + editor.py; alt: the second implementation (alt_edits.py + alt_editor.py), used only
    # by the generalization set, so nothing trains or is tuned on its code
    implementation: str = "standard"
    workers: int = 2

    @property
    def world(self) -> PhotoWorld:
        return PhotoWorld(self.photo_catalog, self.pool_seed, tuple(self.pool_fractions))

    @functools.cached_property
    def train_photos(self) -> tuple[str, ...]:
        return self.world.expand(self.train_pool)

    @functools.cached_property
    def val_photos(self) -> tuple[str, ...]:
        return self.world.expand(self.val_pool)

    @functools.cached_property
    def test_photos(self) -> tuple[str, ...]:
        return self.world.expand(self.test_pool)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"synth config: unknown key(s) {unknown}; known keys: {sorted(known)}")
        d = dict(d)
        if isinstance(d.get("roundtrip"), dict):
            d["roundtrip"] = RoundTripConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                for k, v in d["roundtrip"].items()})
        for key, value in list(d.items()):
            if isinstance(value, list):
                d[key] = tuple(value)
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        self.world.check({"train": self.train_photos, "val": self.val_photos, "test": self.test_photos})
        needs = {"train_pool": (self.n_inpainting or self.n_corpus, self.train_photos),
                 "test_pool": (self.n_per_benchmark or self.n_noedit, self.test_photos),
                 "val_pool": (self.n_val or self.n_val_noedit or (self.n_corpus and self.val_fraction), self.val_photos)}
        empty = [k for k, (used, photos) in needs.items() if used and not photos]
        if empty:
            raise ValueError(f"synth config: {empty} empty but sets drawn from them are asked for")
        bad = [b for b in self.benchmarks + self.corpus_families + self.inpainting_families
               if b not in FAMILIES and b != MIXED]
        if bad:
            raise ValueError(f"synth config: unknown families {bad}; known: {sorted(FAMILIES)} or {MIXED!r}")
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"synth config: implementation {self.implementation!r} is unknown; use one of "
                             f"{IMPLEMENTATIONS}")
        if self.image_size < 64:
            raise ValueError(f"synth config: image_size {self.image_size} is too small; use >= 64")

    def content_hash(self) -> str:
        d = asdict(self)
        d.pop("workers")
        d["photos"] = self.world.digest(self.train_photos + self.val_photos + self.test_photos)
        d["generator_version"] = GENERATOR_VERSION
        return content_hash(d, length=10)


def suite_dir(cfg: SynthConfig, data_root: str | Path) -> Path:
    return Path(data_root) / "synth" / f"{cfg.name}-{cfg.content_hash()}"


# ---------------------------------------------------------------------------------------------- one item


@dataclass(frozen=True)
class Job:
    kind: str        # "inpainting" | "corpus" | "bench" | "val" | "authentic" | "noedit"
    set_name: str    # folder under the suite ("inpainting", "corpus", "bench/removal", "val", ...)
    family: str
    index: int


def _rng(cfg: SynthConfig, job: Job) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, zlib.crc32(job.set_name.encode()), zlib.crc32(job.kind.encode()), job.index])


def _photo_pair(pool: tuple[str, ...], cfg: SynthConfig, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
    world = cfg.world
    name = str(rng.choice(pool))
    image = random_crop(world.load(name), cfg.image_size, rng)
    donor_name = str(rng.choice([p for p in pool if p != name] or [name]))
    donor = random_crop(world.load(donor_name), cfg.image_size, rng)
    return name, image, donor


def _corpus_split(cfg: SynthConfig, index: int) -> str:
    """Every 1/val_fraction-th corpus pair is held out, so a corpus of n pairs holds round(n * val_fraction)."""
    return "val" if int((index + 1) * cfg.val_fraction) > int(index * cfg.val_fraction) else "train"


def set_photos(cfg: SynthConfig, set_name: str) -> tuple[str, ...]:
    """Every photo a set of the suite draws from: the inpainting set the train pool, the corpus the train
    pool and (its val pairs) the val pool, the val sets the val pool, the benchmarks and ``noedit`` the test
    pool."""
    if set_name == "inpainting":
        return cfg.train_photos
    if set_name == "corpus":
        return cfg.train_photos + cfg.val_photos
    return cfg.val_photos if set_name in VAL_SETS else cfg.test_photos


def _pool(cfg: SynthConfig, job: Job, split: str | None) -> tuple[str, ...]:
    """The photos one item draws from (:func:`set_photos`; a corpus pair by its split)."""
    if job.kind == "corpus":
        return cfg.train_photos if split == "train" else cfg.val_photos
    return set_photos(cfg, job.set_name)


def make_item(cfg: SynthConfig, root: Path, job: Job) -> dict[str, Any]:
    """Generate and write one item; return its manifest row plus stats (keys starting with '_')."""
    rng = _rng(cfg, job)
    out = root / job.set_name
    item_id = f"{job.set_name.split('/')[-1]}-{job.index:05d}" if job.kind != "authentic" else f"auth-{job.index:05d}"
    split = _corpus_split(cfg, job.index) if job.kind == "corpus" else None
    photo, image, donor = _photo_pair(_pool(cfg, job, split), cfg, rng)

    if job.kind == "authentic":  # an unedited photo that still went through the editor
        decoded, data, ext = _editor_pass(cfg, image, rng)
        path = out / "authentic" / f"{item_id}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return {"id": item_id, "edited": _rel(path, out), "photo": photo, "_psnr": psnr(decoded, image)}
    if job.kind == "noedit":  # the pair an annotator sees when the editor changed nothing but its round trip
        return _noedit_item(cfg, out, item_id, photo, image, rng)

    families = cfg.inpainting_families if job.kind == "inpainting" else cfg.corpus_families
    family = job.family if job.family != MIXED else str(rng.choice(families))
    alt = cfg.implementation == "alt"
    edit = (ALT_FAMILIES if alt else FAMILIES)[family](image, rng, cfg.area, donor)
    edited, mask = edit.image, edit.mask.copy()
    if tuple(cfg.edit_opacity) != (1.0, 1.0):  # drawn only when asked, so full-opacity suites keep their content
        opacity = rng.uniform(*cfg.edit_opacity)
        edited = np.clip(np.round(image + opacity * (edited.astype(np.float32) - image)), 0, 255).astype(np.uint8)
    side_kind = None
    if job.kind != "inpainting" and rng.random() < cfg.side_effect_prob:
        edited, side_mask, side_kind = (alt_side_effect if alt else side_effect)(edited, mask, rng, cfg.side_effect_area)
        if side_kind == "none":
            side_kind = None
        else:
            mask |= side_mask

    outside = ~_dilate(mask, 5)  # the 2-px feather band belongs to neither side
    original_path = out / "original" / f"{item_id}.png"
    mask_dir = "mask" if job.kind != "corpus" else "../corpus_truth/mask"
    mask_path = (out / mask_dir / f"{item_id}.png").resolve()
    save_png(original_path, image)
    save_png(mask_path, mask)
    if job.kind == "inpainting" and not cfg.inpainting_roundtrip:
        # inpainting datasets composite the filled region back into the untouched photo
        edited_path = out / "edited" / f"{item_id}.png"
        save_png(edited_path, edited)
        decoded = edited
    else:
        decoded, data, ext = _editor_pass(cfg, edited, rng, measure=outside)
        edited_path = out / "edited" / f"{item_id}.{ext}"
        edited_path.parent.mkdir(parents=True, exist_ok=True)
        edited_path.write_bytes(data)

    row: dict[str, Any] = {"id": item_id, "original": _rel(original_path, out), "edited": _rel(edited_path, out),
                           "instruction": edit.instruction, "mask": _rel(mask_path, out), "family": family,
                           "side_effect": side_kind is not None, "photo": photo, **edit.meta}
    if side_kind is not None:
        row["side_effect_kind"] = side_kind
        intended = out / ("mask_intended" if job.kind != "corpus" else "../corpus_truth/mask_intended") / f"{item_id}.png"
        save_png(intended.resolve(), edit.mask)
        row["mask_intended"] = _rel(intended.resolve(), out)
    if split is not None:
        row["split"] = split
    row["_area"] = float(mask.mean())
    row["_psnr"] = psnr(decoded, image, outside) if outside.any() else float("inf")
    return row


def _editor_pass(cfg: SynthConfig, image: np.ndarray, rng: np.random.Generator,
                 measure: np.ndarray | None = None) -> tuple[np.ndarray, bytes, str]:
    """The editor's round trip and the stored file: (decoded pixels, bytes, file extension)."""
    if cfg.implementation == "alt":
        return alt_round_trip(image, rng, measure=measure)
    rt, quality = round_trip(image, rng, cfg.roundtrip, measure=measure)
    decoded, data = jpeg_roundtrip(rt, quality)
    return decoded, data, "jpg"


def _noedit_item(cfg: SynthConfig, out: Path, item_id: str, photo: str, image: np.ndarray,
                 rng: np.random.Generator) -> dict[str, Any]:
    from benchmarks.synth.instructions import noedit_instruction

    decoded, data, ext = _editor_pass(cfg, image, rng)
    original_path, edited_path, mask_path = (out / "original" / f"{item_id}.png", out / "edited" / f"{item_id}.{ext}",
                                             out / "mask" / f"{item_id}.png")
    save_png(original_path, image)
    save_png(mask_path, np.zeros(image.shape[:2], bool))
    edited_path.parent.mkdir(parents=True, exist_ok=True)
    edited_path.write_bytes(data)
    return {"id": item_id, "original": _rel(original_path, out), "edited": _rel(edited_path, out),
            "instruction": noedit_instruction(rng), "mask": _rel(mask_path, out), "family": "none",
            "side_effect": False, "photo": photo, "_area": 0.0, "_psnr": psnr(decoded, image)}


def _dilate(mask: np.ndarray, k: int) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def _run_job(args: tuple[SynthConfig, Path, Job]) -> dict[str, Any]:
    return make_item(*args)


# ---------------------------------------------------------------------------------------------- the suite


def plan(cfg: SynthConfig) -> list[Job]:
    inpainting = cfg.inpainting_families[0] if len(cfg.inpainting_families) == 1 else MIXED
    jobs = [Job("inpainting", "inpainting", inpainting, i) for i in range(cfg.n_inpainting)]
    jobs += [Job("corpus", "corpus", MIXED, i) for i in range(cfg.n_corpus)]
    n_auth = int(round(cfg.n_per_benchmark * cfg.authentic_fraction))
    for family in cfg.benchmarks:
        jobs += [Job("bench", f"bench/{family}", family, i) for i in range(cfg.n_per_benchmark)]
        jobs += [Job("authentic", f"bench/{family}", family, i) for i in range(n_auth)]
    jobs += [Job("val", "val", MIXED, i) for i in range(cfg.n_val)]
    jobs += [Job("authentic", "val", MIXED, i) for i in range(int(round(cfg.n_val * cfg.authentic_fraction)))]
    jobs += [Job("noedit", "noedit", "none", i) for i in range(cfg.n_noedit)]
    jobs += [Job("noedit", "val_noedit", "none", i) for i in range(cfg.n_val_noedit)]
    return jobs


def build_suite(cfg: SynthConfig, data_root: str | Path, force: bool = False, progress: bool = True) -> Path:
    """Write the suite (or reuse a complete one with the same config hash). Returns its folder. Two
    processes that need the same suite at once build it once: the second waits on the first's lock."""
    root = suite_dir(cfg, data_root)
    if (root / "DONE").is_file() and not force:
        log.info("synthetic suite up to date: %s", root)
        return root
    cfg.world.verify(cfg.train_photos + cfg.val_photos + cfg.test_photos)  # a bad photo stops the build before any write
    with exclusive_lock(root.with_name(f".{root.name}.lock")):
        if (root / "DONE").is_file() and not force:
            log.info("synthetic suite built by another process meanwhile: %s", root)
            return root
        _build(cfg, root, progress)
    return root


def _build(cfg: SynthConfig, root: Path, progress: bool) -> None:
    from tqdm import tqdm

    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    (root / "DONE").unlink(missing_ok=True)
    jobs = plan(cfg)
    rows: dict[str, list[dict[str, Any]]] = {}
    args = [(cfg, root, job) for job in jobs]
    bar = tqdm(total=len(jobs), desc="synth", unit="item", disable=not progress)
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers, mp_context=get_context("fork"), initializer=_worker_init) as pool:
            results = pool.map(_run_job, args, chunksize=8)
            for job, row in zip(jobs, results):
                rows.setdefault(f"{job.set_name}|{job.kind}", []).append(row)
                bar.update()
    else:
        _worker_init()
        for job, a in zip(jobs, args):
            rows.setdefault(f"{job.set_name}|{job.kind}", []).append(_run_job(a))
            bar.update()
    bar.close()
    stats = _write_outputs(cfg, root, rows)
    stats["seconds"] = round(time.perf_counter() - start, 1)
    write_json(root / "stats.json", stats)
    write_json(root / "config.json", asdict(cfg))
    (root / "DONE").write_text(cfg.content_hash() + "\n")


def _write_outputs(cfg: SynthConfig, root: Path, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    from benchmarks.data.iml import write_benco_json
    from benchmarks.data.manifest import write_manifest

    stats: dict[str, Any] = {"suite": cfg.name, "hash": cfg.content_hash(), "sets": {}}
    for key in sorted(rows):
        set_name, kind = key.split("|")
        if kind == "authentic":
            continue
        items = rows[key]
        manifest = [{k: v for k, v in r.items() if not k.startswith("_")} for r in items]
        stats["sets"][set_name] = _set_stats(items)
        if kind == "corpus":
            # generators see the corpus without masks; the truth sits apart for the oracle row only
            write_manifest(root / "corpus", [{k: v for k, v in r.items() if k not in ("mask", "mask_intended")}
                                             for r in manifest])
            truth = [dict(r, original=f"../corpus/{r['original']}", edited=f"../corpus/{r['edited']}",
                          mask=r["mask"].replace("../corpus_truth/", ""),
                          **({"mask_intended": r["mask_intended"].replace("../corpus_truth/", "")}
                             if "mask_intended" in r else {})) for r in manifest]
            write_manifest(root / "corpus_truth", truth)
            for split in ("train", "val"):
                write_benco_json(root / "corpus_truth" / f"iml_{split}.json",
                                 [(root / "corpus_truth" / r["edited"], root / "corpus_truth" / r["mask"])
                                  for r in truth if r["split"] == split])
        else:
            write_manifest(root / set_name, manifest)
            if kind in ("bench", "val"):
                folder = root / set_name
                negatives = [(folder / r["edited"], None) for r in rows.get(f"{set_name}|authentic", [])]
                write_benco_json(folder / "iml.json",
                                 [(folder / r["edited"], folder / r["mask"]) for r in manifest] + negatives)
                stats["sets"][set_name]["authentic"] = len(negatives)
    return stats


def _set_stats(items: list[dict[str, Any]]) -> dict[str, Any]:
    psnrs = [r["_psnr"] for r in items if np.isfinite(r["_psnr"])]
    return {"pairs": len(items), "photos": len({r["photo"] for r in items}), "mean_mask_area": round(float(np.mean([r["_area"] for r in items])), 4),
            "median_psnr_outside_db": round(float(np.median(psnrs)), 2) if psnrs else None,
            "side_effect_share": round(float(np.mean([r["side_effect"] for r in items])), 3)}


def format_stats(stats: dict[str, Any]) -> str:
    lines = [f"{'set':<22}{'pairs':>7}{'auth':>6}{'photos':>8}{'mask area':>11}{'PSNR out (dB, median)':>23}{'side fx':>9}"]
    for name, s in stats["sets"].items():
        psnr_txt = "clean (no round trip)" if s["median_psnr_outside_db"] is None else f"{s['median_psnr_outside_db']:.2f}"
        lines.append(f"{name:<22}{s['pairs']:>7}{s.get('authentic', 0):>6}{s.get('photos', '?'):>8}{s['mean_mask_area']:>11.3f}"
                     f"{psnr_txt:>23}{s['side_effect_share']:>9.2f}")
    return "\n".join(lines)
